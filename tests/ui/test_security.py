"""Hardening of the shared web app (issue 13): paths and models from a browser are confined to uploads and
outputs, downloads reveal no server paths, served files are never active content, and password guessing is
rate-limited. Fast: a fake studio, the app served on a loopback port, httpx."""
from __future__ import annotations

import json
import logging
import time
import zipfile
from pathlib import Path

import pytest

gr = pytest.importorskip("gradio")

from test_handlers import FakeStudio, app_fn  # noqa: E402
from ui_testutil import free_port  # noqa: E402


@pytest.fixture()
def app(registry, tmp_path):
    from ui.app import build_app

    return build_app(FakeStudio(registry), tmp_path / "out", verify_on_write=False)


def _png(path: Path) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (64, 64), (10, 20, 30)).save(path)
    return path


def _upload(app, name: str, data: bytes) -> Path:
    """A file as Gradio's upload route stores it: `<upload cache>/<hash>/<name>`."""
    p = _upload_dir(app.ui_out_dir) / "a1b2c3" / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return p


def _upload_dir(out: Path) -> Path:
    return out / ".gradio"  # ui.app's GRADIO_TEMP_DIR


def _secret_image(tmp_path) -> Path:
    return _png(tmp_path / "server" / "private.png")


# -- 1. paths from the browser -------------------------------------------------------------------------------
def test_batch_items_may_not_name_server_files_or_model_paths(app, tmp_path):
    from ui import batch

    secret = _secret_image(tmp_path)
    (tmp_path / "server" / "style.safetensors").write_bytes(b"x")
    inside = _png(app.ui_out_dir / "images" / "mine.png")
    lines = [
        {"prompt": "ok", "model": "fake"},
        {"prompt": "abs", "model": "fake", "init_image": str(secret)},
        {"prompt": "rel", "model": "fake", "init_image": str(inside), "mask": "../../../server/private.png"},
        {"prompt": "lora", "model": "fake", "loras": [{"path": str(tmp_path / "server" / "style.safetensors")}]},
        {"prompt": "model path", "model": str(tmp_path / "fake-model")},
        {"prompt": "hub id", "model": "someone/some-model"},
        {"prompt": "probe", "model": "fake", "init_image": "/no/such/dir/shadow.png"},
        {"prompt": "output", "model": "fake", "init_image": "../../images/mine.png"},
    ]
    job = _upload(app, "job.jsonl", "".join(json.dumps(x) + "\n" for x in lines).encode())
    rows, errors = batch.validate(str(job), app.ui_handlers.registry, app.ui_out_dir)
    assert [r[0] for r in rows] == [1, 8], (rows, errors)  # a file of this app's outputs is fine
    by_line = {int(e.split(":")[0].split()[1]): e for e in errors}
    assert set(by_line) == {2, 3, 4, 5, 6, 7}, errors
    assert "init_image" in by_line[2] and "not a file uploaded" in by_line[2]
    assert "mask" in by_line[3] and "loras" in by_line[4]
    assert "registry" in by_line[5] and "registry" in by_line[6]
    # A missing server file reads like any other refused one (no probing which files exist).
    assert "not a file uploaded" in by_line[7] and "does not exist" not in by_line[7]
    assert all(str(tmp_path) not in e for e in errors)


def test_batch_file_itself_must_be_an_upload(app, tmp_path):
    from ui import batch

    outside = tmp_path / "server" / "job.txt"
    outside.parent.mkdir(parents=True)
    outside.write_text("a red circle\n")
    rows, check, go = app_fn(app, "on_batch_file")(str(outside))
    assert rows == [] and "prompt file" in check and str(tmp_path) not in check and go["interactive"] is False
    with pytest.raises(gr.Error, match="prompt file"):
        app_fn(app, "do_batch")(str(outside), request=None, progress=lambda *a, **k: None)


def test_form_fields_may_not_name_server_files_or_model_paths(app, tmp_path):
    secret = _secret_image(tmp_path)
    upload = _upload(app, "src.png", _png(tmp_path / "src.png").read_bytes())
    edit = app_fn(app, "do_edit")
    noprog = dict(request=None, progress=lambda *a, **k: None)

    def run_edit(source=str(upload), mode="img2img", editor=None, mask=None, model="fake"):
        return edit(source, mode, editor, mask, 0.5, 0, 0, 64, 0, "a prompt", "", model, "Euler", 2, 5.0, 1,
                    **noprog)

    for kwargs, field in [({"source": str(secret)}, "source image"),
                          ({"source": f"{upload.parent}/../../../server/private.png"}, "source image"),
                          ({"mode": "inpaint", "mask": str(secret)}, "mask file"),
                          ({"mode": "inpaint", "editor": {"background": str(upload), "layers": [str(secret)]}},
                           "editor layer"),
                          ({"source": None, "editor": {"background": str(secret), "layers": []}}, "editor background"),
                          ({"model": str(tmp_path / "fake-model")}, "model")]:
        with pytest.raises(gr.Error) as info:
            run_edit(**kwargs)
        assert field in info.value.message and str(tmp_path) not in info.value.message, (kwargs, info.value.message)
    assert app.ui_handlers.studio.calls == []  # nothing was rendered from a refused request
    run_edit()  # an uploaded source is fine
    assert app.ui_handlers.studio.calls[-1]["init_image"] == str(upload.resolve())

    with pytest.raises(gr.Error, match="model"):
        app_fn(app, "do_generate")("a prompt", "", str(tmp_path / "fake-model"), "Euler", 2, 5.0, 64, 64, -1, 1,
                                   **noprog)
    with pytest.raises(gr.Error, match="file to verify"):
        app_fn(app, "do_verify")(str(secret))


def test_symlink_out_of_the_uploads_is_refused(app, tmp_path):
    from ui import batch

    secret = _secret_image(tmp_path)
    link = _upload(app, "placeholder", b"").parent / "link.png"
    link.symlink_to(secret)
    job = _upload(app, "job.jsonl", json.dumps({"prompt": "x", "model": "fake", "init_image": "link.png"}).encode())
    rows, errors = batch.validate(str(job), app.ui_handlers.registry, app.ui_out_dir)
    assert rows == [] and errors and errors[0].startswith("line 1: init_image"), errors
    with pytest.raises(gr.Error, match="file to verify"):
        app_fn(app, "do_verify")(str(link))


def test_batch_zip_manifest_has_no_server_paths(ui_server, tmp_path):
    """A real render (the session's small model): an img2img item from an output and a plain one."""
    from ui import batch

    url, handlers, model = ui_server
    fields = handlers.request_fields(prompt="a red circle", model=model, seed=3)
    source = Path(handlers.generate(fields)[0]["file"])
    job = _upload_dir(handlers.out_dir) / "f00d" / "job.jsonl"
    job.parent.mkdir(parents=True, exist_ok=True)
    rel = Path("../..") / source.relative_to(handlers.out_dir)
    job.write_text(json.dumps({"prompt": "a blue square", "model": model, "init_image": str(rel),
                               "strength": 0.5, "steps": 2}) + "\n" +
                   json.dumps({"prompt": "a green ring /not/a/path", "model": model, "steps": 2}) + "\n")
    zip_path, summary, entries = batch.run(handlers, str(job))
    assert "2** of 2" in summary and str(handlers.out_dir) not in summary
    with zipfile.ZipFile(zip_path) as zf:
        manifest = next(zf.read(n).decode() for n in zf.namelist() if n.endswith("manifest.jsonl"))
    records = [json.loads(line) for line in manifest.splitlines()]
    assert str(handlers.out_dir) not in manifest and str(tmp_path) not in manifest
    assert not any(s.startswith("/") for s in _strings(records)), manifest
    items = [r for r in records if r["type"] == "item"]
    assert {r["request"]["prompt"] for r in items} == {"a blue square", "a green ring /not/a/path"}  # user text kept
    img2img = next(r for r in items if r["request"].get("init_image"))
    assert img2img["request"]["init_image"] == source.name
    assert next(r for r in records if r["type"] == "job")["file"] == "job.jsonl"
    # The folder's own manifest keeps real paths (resume needs them); only the download is rewritten.
    assert str(source) in (Path(zip_path).with_suffix("") / "manifest.jsonl").read_text()
    assert all(not str(e["request"].get("init_image") or "").startswith("/") for e in entries)


def _strings(obj, key=None):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield k
            yield from _strings(v, k)
    elif isinstance(obj, list):
        for v in obj:
            yield from _strings(v, key)
    elif isinstance(obj, str) and key not in ("prompt", "negative_prompt"):
        yield obj


# -- 2. served files ----------------------------------------------------------------------------------------
@pytest.fixture()
def served(app):
    from ui.app import launch

    port = free_port()
    launch(demo=app, port=port, block=False, quiet=True, max_file_size="1mb")
    yield f"http://127.0.0.1:{port}", app
    app.close()


EVIL = b"<html><body><script>fetch('/xss-ran')</script>hello</body></html>"


def test_uploaded_active_content_is_never_served_inline(served):
    import httpx

    base, app = served
    for name, data in [("evil.html", EVIL), ("evil.svg", b"<svg xmlns='http://www.w3.org/2000/svg'>"
                                                         b"<script>alert(1)</script></svg>"),
                       ("evil.xhtml", EVIL), ("noext", EVIL)]:
        path = _upload(app, name, data)  # however it got there (an older upload, another route)
        for route in (f"/gradio_api/file={path}", f"/gradio_api/file/{path}"):  # current, deprecated
            r = httpx.get(base + route, timeout=30)
            assert r.status_code == 200, (route, r.status_code)
            assert r.headers["content-type"] == "application/octet-stream", (name, r.headers)
            assert r.headers["content-disposition"].startswith("attachment"), (name, r.headers)
            assert r.headers["x-content-type-options"] == "nosniff"
            assert "sandbox" in r.headers["content-security-policy"]


def test_media_is_served_inline_with_nosniff_and_a_sandbox_csp(served, tmp_path):
    import httpx

    base, app = served
    h = app.ui_handlers
    png = h.generate(h.request_fields(prompt="x", model="fake"))[0]["file"]
    note = _upload(app, "notes.json", b'{"a": "<script>alert(1)</script>"}')
    for path, ctype in [(png, "image/png"), (note, "text/plain; charset=utf-8")]:
        r = httpx.get(f"{base}/gradio_api/file={path}", timeout=30)
        assert r.status_code == 200 and r.headers["content-type"] == ctype, r.headers
        assert r.headers["content-disposition"].startswith("inline")
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["content-security-policy"] == "default-src 'none'; sandbox"
    r = httpx.get(f"{base}/gradio_api/file={png}", headers={"Range": "bytes=0-15"}, timeout=30)
    assert r.status_code == 206 and r.headers["content-type"] == "image/png", r.headers
    page = httpx.get(base + "/", timeout=30)
    assert page.status_code == 200 and "frame-ancestors 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    r = httpx.get(f"{base}/gradio_api/file=https://example.com/x.png", timeout=30)
    assert r.status_code == 403


def test_the_servers_own_records_are_not_served(served):
    import httpx

    base, app = served
    h = app.ui_handlers
    h.generate(h.request_fields(prompt="x", model="fake"))
    job_manifest = app.ui_out_dir / "batches" / "20260101-000000-abcdef" / "manifest.jsonl"
    job_manifest.parent.mkdir(parents=True)
    job_manifest.write_text('{"type": "job", "file": "/srv/private/job.jsonl"}\n')
    for path in (h.history.file, job_manifest):
        assert path.exists()
        r = httpx.get(f"{base}/gradio_api/file={path}", timeout=30)
        assert r.status_code == 404 and b"/srv/private" not in r.content, (path, r.status_code)


def test_upload_of_a_type_off_the_allow_list_is_refused(served):
    import httpx

    base, app = served
    r = httpx.post(f"{base}/gradio_api/upload", files={"files": ("evil.html", EVIL, "text/html")}, timeout=30)
    assert r.status_code == 415, (r.status_code, r.text)
    assert "text/html" not in r.headers["content-type"]
    assert not list(_upload_dir(app.ui_out_dir).rglob("evil.html"))  # and nothing was kept
    r = httpx.post(f"{base}/gradio_api/upload", files={"files": ("job.jsonl", b'{"prompt": "x"}\n',
                                                                 "application/octet-stream")}, timeout=30)
    assert r.status_code == 200 and r.json()[0].endswith("job.jsonl")


# -- 3. login rate limit ------------------------------------------------------------------------------------
def test_wrong_passwords_are_rate_limited_per_address_and_logged(app, caplog):
    import httpx

    from ui.app import launch
    from ui.login_throttle import LoginThrottle

    port = free_port()
    launch(demo=app, port=port, block=False, quiet=True, auth=("ann", "s3cret"),
           login_throttle=LoginThrottle(max_failures=3, window_s=60, base_backoff_s=1.5, max_backoff_s=3))
    caplog.set_level(logging.WARNING, logger="ui")
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as c:
            def login(password):
                return c.post("/login", data={"username": "ann", "password": password}).status_code

            assert login("s3cret") == 200 and login("guess-1") == 400  # a success does not count against
            assert [login(f"guess-{i}") for i in (2, 3)] == [400, 400]
            assert login("s3cret") == 429  # locked, even with the right password
            r = c.post("/login", data={"username": "ann", "password": "guess-4"})
            assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
            time.sleep(1.6)
            assert login("s3cret") == 200  # the back-off expires; a success clears the count
            assert [login(f"guess-{i}") for i in (5, 6)] == [400, 400] and login("s3cret") == 200
            assert [login(f"again-{i}") for i in range(3)] == [400] * 3 and login("s3cret") == 429
    finally:
        app.close()
    text = "\n".join(r.getMessage() for r in caplog.records if r.name == "ui")
    assert "127.0.0.1" in text and "failed login" in text and "locked" in text
    assert "guess" not in text and "s3cret" not in text


def test_throttle_backoff_grows_is_capped_and_expires():
    from ui.login_throttle import LoginThrottle

    now = [0.0]
    t = LoginThrottle(max_failures=2, window_s=10, base_backoff_s=30, max_backoff_s=100, clock=lambda: now[0])
    assert t.failed("a") == 0 and t.failed("a") == 30 and t.retry_after("a") == 30
    assert t.retry_after("b") == 0  # per address
    backoffs = []
    for _ in range(4):
        now[0] += 200
        t.failed("a")
        backoffs.append(t.failed("a"))
    assert backoffs == [60, 100, 100, 100]
    now[0] += 101
    assert t.retry_after("a") == 0
    t.succeeded("a")
    assert t.failed("a") == 0 and t.failed("a") == 30  # a success starts over
    now[0] += 5
    t2 = LoginThrottle(max_failures=3, window_s=10, clock=lambda: now[0])
    t2.failed("c")
    t2.failed("c")
    now[0] += 11  # failures outside the window are forgotten
    assert t2.failed("c") == 0
