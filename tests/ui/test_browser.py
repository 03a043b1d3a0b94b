"""The web app in a real browser (Debian chromium via Playwright): generate -> download -> verify, inpaint with a
drawn mask, a 3-item batch downloaded as a zip, Verify verdicts for a sealed and a tampered file, and the file
route refusing anything outside the output folder. Screenshots of every tab go to artifacts/ui/."""
from __future__ import annotations

import json
import time
import zipfile
from pathlib import Path

import pytest

from ui.browser_paths import upload_dir
from ui_testutil import SIZE, open_tab, pick, shot, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]


def download(page, link_locator, target: Path) -> Path:
    with page.expect_download() as info:
        link_locator.click()
    info.value.save_as(str(target))
    return target


def any_output(handlers, model) -> Path:
    entries = handlers.history_entries() or handlers.generate(
        handlers.request_fields(prompt="a red circle", model=model, seed=3))
    return Path(entries[0]["file"])


def generate(page, model: str, prompt: str, seed: int = 11) -> None:
    page.locator("#g-prompt textarea").fill(prompt)
    pick(page, "g-model", model)
    page.wait_for_timeout(300)  # the model's defaults fill steps/size
    page.locator("#g-seed input").fill(str(seed))
    page.locator("#g-go").click()
    page.locator("#g-files a").first.wait_for(timeout=120_000)


def test_generate_download_verify_and_gallery(page, ui_server, tmp_path):
    import studio

    url, handlers, model = ui_server
    generate(page, model, "a large red circle in the center on a white background", seed=11)
    status = page.locator("#g-status").inner_text()
    assert "sealed image" in status and "seed 11" in status
    assert page.external_requests == []
    shot(page, "01-generate")

    got = download(page, page.locator("#g-files a").first, tmp_path / "downloaded.png")
    # What the browser received is the sealed file itself, byte for byte.
    entry = handlers.history_entries()[0]
    assert got.read_bytes() == Path(entry["file"]).read_bytes()
    assert Path(entry["file"]).resolve().is_relative_to(handlers.out_dir)
    report = studio.verify(got)
    assert report.state in ("trusted", "valid"), report.render()
    assert report.watermark_found, report.render()

    # The parameters of the image are on the page; "reuse last" brings the seed back.
    page.locator("#g-seed-random").click()
    wait_until(lambda: page.locator("#g-seed input").input_value() == "-1", timeout=10)
    page.locator("#g-seed-reuse").click()
    wait_until(lambda: page.locator("#g-seed input").input_value() == "11", timeout=10)

    # Gallery tab: the output is listed with its verify state; "reuse settings" fills the Generate form.
    # "Send to Edit" puts the sealed file in the Edit tab as the source.
    page.locator("#g-to-edit").click()
    wait_until(lambda: Path(entry["file"]).stem in page.locator("#e-source").inner_text(), timeout=30)
    open_tab(page, "Gallery")
    page.locator("#h-gallery img").first.wait_for()
    page.locator("#h-gallery button").first.click()
    page.locator("#verdict-text").wait_for()
    assert "Authentic" in page.locator("#h-verdict").inner_text()
    shot(page, "04-gallery")
    page.locator("#h-reuse").click()
    wait_until(lambda: page.locator("#g-prompt textarea").input_value().startswith("a large red circle"), 10)
    assert page.locator("#g-seed input").input_value() == "11"


def test_inpaint_with_drawn_mask(page, ui_server, tmp_path):
    import studio

    url, handlers, model = ui_server
    # A sealed source: generated through the same app (so the edit must keep it as an ingredient).
    fields = handlers.request_fields(prompt="a blue square", model=model, seed=5)
    source = handlers.generate(fields)[0]["file"]

    open_tab(page, "Edit")
    page.locator("#e-source input[type=file]").set_input_files(source)
    page.locator("#e-mode").get_by_text("inpaint").click()
    canvas = page.locator("#e-editor canvas").first
    canvas.wait_for()
    page.wait_for_timeout(1500)  # the background is drawn
    page.locator("#e-editor button[aria-label='Brush']").click()
    box = canvas.bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(cx - 40, cy - 20)
    page.mouse.down()
    for dx in range(-40, 41, 8):
        page.mouse.move(cx + dx, cy - 20 + (dx % 16))
    page.mouse.move(cx + 40, cy + 20)
    page.mouse.up()
    page.locator("#e-prompt textarea").fill("a yellow star")
    pick(page, "e-model", model)
    page.wait_for_timeout(300)
    shot(page, "02-edit-inpaint-mask")
    page.locator("#e-go").click()
    page.locator("#e-files a").first.wait_for(timeout=120_000)
    shot(page, "02-edit-inpaint-result")
    assert "inpaint" in page.locator("#e-status").inner_text()

    entry = handlers.history_entries()[0]
    assert entry["mode"] == "inpaint" and entry["source"] == "edit"
    got = download(page, page.locator("#e-files a").first, tmp_path / "inpainted.png")
    report = studio.verify(got)
    assert report.state in ("trusted", "valid") and report.watermark_found, report.render()
    ingredients = (report.manifest or {}).get("ingredients") or []
    assert ingredients and ingredients[0].get("has_manifest"), report.to_dict()
    # The mask came from the strokes: a non-empty white region the size of the source.
    from PIL import Image

    masks = sorted((upload_dir(handlers.out_dir) / "masks").glob("*.png"))
    with Image.open(masks[-1]) as m:
        assert m.size == (SIZE, SIZE) and m.getbbox() is not None


def test_batch_validation_run_and_zip(page, ui_server, tmp_path):
    import studio

    url, handlers, model = ui_server
    open_tab(page, "Batch")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "ok", "model": model}) + "\n" +
                   json.dumps({"prompt": "x", "model": model, "steps": -3}) + "\n", encoding="utf-8")
    page.locator("#b-file input[type=file]").set_input_files(str(bad))
    page.get_by_text("problem(s)").wait_for()
    assert "line 2" in page.locator("#b-check").inner_text()
    assert page.locator("#b-go").is_disabled()

    good = tmp_path / "three.jsonl"
    good.write_text("".join(json.dumps({"prompt": p, "model": model, "width": SIZE, "height": SIZE}) + "\n"
                            for p in ("a red circle", "a green triangle", "a blue square")), encoding="utf-8")
    page.locator("#b-file button[aria-label='Clear']").click() if page.locator(
        "#b-file button[aria-label='Clear']").count() else None
    page.locator("#b-file input[type=file]").set_input_files(str(good))
    page.get_by_text("3 valid item(s)").wait_for()
    page.locator("#b-go").click()
    page.locator("#b-zip a").first.wait_for(timeout=150_000)
    shot(page, "03-batch")
    assert "3** of 3 item(s)" in page.locator("#b-status").inner_text() or \
        "3 of 3" in page.locator("#b-status").inner_text()
    got = download(page, page.locator("#b-zip a").first, tmp_path / "batch.zip")
    with zipfile.ZipFile(got) as zf:
        names = zf.namelist()
        pngs = [n for n in names if n.endswith(".png")]
        assert len(pngs) == 3 and any(n.endswith("manifest.jsonl") for n in names), names
        data = zf.read(pngs[0])
    (tmp_path / "from-zip.png").write_bytes(data)
    report = studio.verify(tmp_path / "from-zip.png")
    assert report.state in ("trusted", "valid") and report.watermark_found


def test_verify_sealed_and_tampered(page, ui_server, tmp_path):
    url, handlers, model = ui_server
    sealed = any_output(handlers, model)
    tampered = tmp_path / "tampered.png"
    data = bytearray(sealed.read_bytes())
    idat = data.index(b"IDAT")
    data[idat + 200] ^= 0x01  # one bit of pixel data
    tampered.write_bytes(bytes(data))

    open_tab(page, "Verify")
    page.locator("#v-file input[type=file]").set_input_files(str(sealed))
    page.locator("#verdict-text").wait_for()
    verdict = page.locator("#v-verdict").inner_text()
    assert verdict.startswith("Authentic") and "watermark found" in verdict, verdict
    details = page.locator("#v-details").inner_text()
    assert "trainedAlgorithmicMedia" in details and "ledger" in details.lower()
    shot(page, "05-verify-sealed")

    page.locator("#v-file button[aria-label='Clear']").first.click()
    page.locator("#v-file input[type=file]").set_input_files(str(tampered))
    wait_until(lambda: "TAMPERED" in page.locator("#v-verdict").inner_text(), timeout=60)
    shot(page, "05-verify-tampered")
    assert "dataHash" in page.locator("#v-details").inner_text()


def test_models_tab_and_file_route_refusals(page, ui_server, tmp_path):
    url, handlers, model = ui_server
    open_tab(page, "Models")
    page.locator("#m-table").get_by_text(model, exact=True).first.wait_for()
    shot(page, "06-models")
    assert "/tmp" not in page.locator("#m-table").inner_text()  # no server paths shown

    inside = any_output(handlers, model)
    ok = page.request.get(f"{url}/gradio_api/file={inside}")
    assert ok.status == 200
    outside = tmp_path / "secret.txt"
    outside.write_text("TOPSECRET-CONTENT")
    from studio.config import config_dir

    key_files = [p for p in (config_dir() / "safety").rglob("*") if p.is_file()]
    for path in ["/etc/passwd", str(outside), str(Path.cwd() / "pyproject.toml"), *map(str, key_files[:2]),
                 f"{handlers.out_dir}/../{Path(handlers.out_dir).name}/../secret.txt"]:
        r = page.request.get(f"{url}/gradio_api/file={path}")
        assert r.status in (403, 404), (path, r.status)
        assert b"TOPSECRET" not in r.body() and b"root:" not in r.body()


def test_cancel_stops_a_long_generation(page, ui_server):
    url, handlers, model = ui_server
    before = len(handlers.history_entries())
    page.locator("#g-prompt textarea").fill("a long one")
    pick(page, "g-model", model)
    page.wait_for_timeout(300)
    page.locator("#g-steps input[type=number]").fill("150")
    page.locator("#g-steps input[type=number]").press("Enter")
    page.locator("#g-go").click()
    page.get_by_text("denoising").first.wait_for(timeout=60_000)
    # Live previews stream in while it runs; each is a sealed file from the output folder.
    page.locator("#g-live img").first.wait_for(timeout=60_000)
    import studio

    previews = sorted((handlers.out_dir / "previews").rglob("*.png"))
    assert previews and studio.verify(previews[0]).exit_code == 0
    page.locator("#g-cancel").click()
    wait_until(lambda: "Cancelled" in page.locator("#g-status").inner_text(), timeout=30)
    time.sleep(0.5)
    with handlers.studio._lock:  # the worker has stopped (at its next step)
        assert len(handlers.history_entries()) == before
    # The studio is free again: the next request runs.
    page.locator("#g-steps input[type=number]").fill("2")
    page.locator("#g-steps input[type=number]").press("Enter")
    page.locator("#g-go").click()
    page.locator("#g-files a").first.wait_for(timeout=120_000)
    assert len(handlers.history_entries()) == before + 1


def test_error_is_one_line_and_server_survives(page, ui_server):
    url, handlers, model = ui_server
    page.locator("#g-prompt textarea").fill("   ")
    page.locator("#g-go").click()
    toast = page.locator(".toast-body").first
    toast.wait_for(timeout=30_000)
    text = toast.inner_text()
    assert "prompt" in text and "Traceback" not in text and "/" not in text.split("prompt", 1)[1][:80]
    # The server keeps serving.
    assert page.request.get(url).status == 200
