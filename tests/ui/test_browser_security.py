"""The hardening rules seen from a real browser (Debian chromium via Playwright): a job file naming a server
file is refused in the Batch tab, an .html upload is refused, and an .html that sits in the upload folder is
neither rendered nor run when its file URL is opened or framed."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from ui_testutil import open_tab, shot

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

XSS_MARK = "xss-ran-7f3a"
EVIL = f"<html><body><script>fetch('/{XSS_MARK}');document.title='{XSS_MARK}'</script>hello</body></html>"


def test_batch_job_naming_server_files_is_refused(page, ui_server, tmp_path):
    from PIL import Image

    url, handlers, model = ui_server
    secret = tmp_path / "server-only" / "private.png"
    secret.parent.mkdir()
    Image.new("RGB", (64, 64), (1, 2, 3)).save(secret)
    job = tmp_path / "sneaky.jsonl"
    job.write_text(json.dumps({"prompt": "ok", "model": model}) + "\n" +
                   json.dumps({"prompt": "steal", "model": model, "init_image": str(secret)}) + "\n" +
                   json.dumps({"prompt": "model", "model": str(tmp_path / "server-only")}) + "\n",
                   encoding="utf-8")
    open_tab(page, "Batch")
    page.locator("#b-file input[type=file]").set_input_files(str(job))
    page.get_by_text("problem(s)").wait_for()
    check = page.locator("#b-check").inner_text()
    shot(page, "07-batch-refused-server-path")
    assert "line 2: init_image" in check and "not a file uploaded" in check, check
    assert "line 3: model" in check and "registry" in check, check
    assert str(tmp_path) not in check and "/tmp" not in check
    assert page.locator("#b-go").is_disabled()


def test_html_upload_is_refused(page, ui_server, tmp_path):
    url, handlers, model = ui_server
    evil = tmp_path / "evil-upload.html"
    evil.write_text(EVIL)
    open_tab(page, "Verify")  # its File input takes any type on the client side
    with page.expect_response(lambda r: r.request.method == "POST" and "/gradio_api/upload" in r.url
                              and "upload_progress" not in r.url) as info:
        page.locator("#v-file input[type=file]").set_input_files(str(evil))
    assert info.value.status == 415
    assert not list(Path(handlers.out_dir).rglob("evil-upload.html"))


def test_html_in_the_upload_folder_is_not_rendered_or_run(page, ui_server):
    url, handlers, model = ui_server
    planted = Path(handlers.out_dir) / ".gradio" / "planted" / "evil.html"
    planted.parent.mkdir(parents=True, exist_ok=True)
    planted.write_text(EVIL)
    file_url = f"{url}/gradio_api/file={planted}"
    ran = []
    page.context.on("request", lambda r: ran.append(r.url) if XSS_MARK in r.url else None)

    # Framed by the app's own page: nothing renders, nothing runs.
    page.evaluate("u => { const f = document.createElement('iframe'); f.id = 'evil-frame'; f.src = u;"
                  " document.body.appendChild(f); }", file_url)
    page.wait_for_timeout(1500)
    frame = page.frame_locator("#evil-frame")
    assert frame.locator("text=hello").count() == 0
    assert page.title() != XSS_MARK
    assert ran == [], ran

    r = page.request.get(file_url)
    assert r.status == 200 and not r.headers["content-type"].startswith("text/html"), r.headers
    assert r.headers["content-disposition"].startswith("attachment")
    assert r.headers["x-content-type-options"] == "nosniff"

    # Opened directly: a download, not a page of this origin.
    other = page.context.new_page()
    with other.expect_download() as dl:
        try:
            other.goto(file_url)
        except Exception:  # chromium aborts the navigation when it turns into a download
            pass
    assert dl.value.suggested_filename == "evil.html"
    other.close()

    # The app's own media still shows: a sealed output loads in an <img>.
    # an image of this server's history: earlier tests of the session may have left clips and music first
    images = [e for e in handlers.history_entries() if str(e.get("file", "")).endswith((".png", ".jpg", ".webp"))]
    out = images or handlers.generate(handlers.request_fields(prompt="a dot", model=model, seed=1))
    loaded = page.evaluate("u => new Promise(ok => { const i = new Image(); i.onload = () => ok(i.width);"
                           " i.onerror = () => ok(-1); i.src = u; })", f"{url}/gradio_api/file={out[0]['file']}")
    assert loaded > 0
