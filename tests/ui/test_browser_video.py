"""The Video tab in a real browser (Debian chromium via Playwright, issue 15): pick a tiny video model, generate
a clip with live progress and a sealed live preview, the <video> player gets the sealed file, the download is
that file byte for byte and verifies; a clip restyles an uploaded clip (vid2vid); the Gallery plays a clip and
"Reuse settings" fills the Video form; Verify reports a clip with its frames and fps. Screenshots go to
artifacts/ui/ like the other browser tests'."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from ui_testutil import VIDEO_FRAMES, add_tiny_video_model, open_tab, pick, shot, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.timeout(400)]


@pytest.fixture(scope="module")
def video_model(ui_server, tmp_path_factory):
    """A tiny AnimateDiff in the served app's registry; the Video tab lists it when opened."""
    url, handlers, _ = ui_server
    return add_tiny_video_model(handlers.registry, tmp_path_factory.mktemp("ui-video") / "tiny-video")


def open_video_tab(page, model):
    open_tab(page, "Video")
    page.locator("#vd-prompt textarea").wait_for()
    pick(page, "vd-model", model)
    wait_until(lambda: page.locator("#vd-frames input").input_value() == str(VIDEO_FRAMES), timeout=15)


def set_steps(page, n):
    page.locator("#vd-steps input[type=number]").fill(str(n))
    page.locator("#vd-steps input[type=number]").press("Enter")


def newest_clip(handlers):
    return next(e for e in handlers.history_entries() if e.get("modality") == "video")


def test_generate_a_clip_play_download_verify(page, ui_server, video_model, tmp_path):
    import studio
    from studio.rewards import RatingStore

    url, handlers, _ = ui_server
    open_video_tab(page, video_model)
    page.locator("#vd-prompt textarea").fill("a red ball bouncing on a white floor")
    page.locator("#vd-seed input").fill("21")
    set_steps(page, 40)  # long enough to see the status and a live preview (every 5th step) while it runs
    page.locator("#vd-go").click()
    wait_until(lambda: "ETA" in page.locator("#vd-status").inner_text(), timeout=120)
    status = page.locator("#vd-status").inner_text()
    assert "step " in status and "/40" in status and "elapsed" in status, status
    page.locator("#vd-live img").first.wait_for(timeout=60_000)
    live = page.request.get(page.locator("#vd-live img").first.get_attribute("src"))
    (tmp_path / "live.png").write_bytes(live.body())
    assert studio.verify(tmp_path / "live.png").state in ("trusted", "valid")  # the preview is sealed too

    page.locator("#vd-files a").first.wait_for(timeout=180_000)
    video = page.locator("#vd-player video").first
    video.wait_for(timeout=30_000)
    wait_until(lambda: (video.get_attribute("src") or "").endswith(".mp4"), timeout=30)
    status = page.locator("#vd-status").inner_text()
    assert status.startswith("txt2vid: sealed clip") and "8 frames @ 8 fps" in status and "seed 21" in status
    assert not page.locator("#vd-live img").count() or not page.locator("#vd-live").is_visible()
    # the player can actually load what it was given (the MP4 is one chromium decodes)
    wait_until(lambda: page.evaluate("document.querySelector('#vd-player video').readyState") >= 1, timeout=30)
    assert page.external_requests == []
    shot(page, "15-video")

    entry = newest_clip(handlers)
    sealed = Path(entry["file"])
    with page.expect_download() as info:
        page.locator("#vd-files a").first.click()
    got = tmp_path / "downloaded.mp4"
    info.value.save_as(str(got))
    assert got.read_bytes() == sealed.read_bytes()  # exactly the sealed bytes
    report = studio.verify(got)
    assert report.state in ("trusted", "valid"), report.render()
    assert report.video["frames"] == VIDEO_FRAMES
    # what the player streams is the sealed file too, served as video/mp4 and never sniffed
    r = page.request.get(video.get_attribute("src"))
    assert r.status == 200 and r.headers["content-type"] == "video/mp4"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert hashlib.sha256(r.body()).hexdigest() == entry["sha256"]
    # 👍 under the result rates this sealed file (the server's own record of what this page shows)
    page.locator("#vd-rate-up").click()
    wait_until(lambda: "thumbs up recorded" in page.locator("#vd-ratings-count").inner_text(), timeout=30)
    assert RatingStore().ratings()[-1]["item"]["sha256"] == entry["sha256"]


def test_restyle_an_uploaded_clip(page, ui_server, video_model):
    import studio

    url, handlers, _ = ui_server
    source = Path(newest_clip(handlers)["file"]) if any(
        e.get("modality") == "video" for e in handlers.history_entries()) else None
    if source is None:
        source = Path(handlers.video(handlers.video_fields(prompt="a ball", model=video_model, seed=2))[0]["file"])
    open_video_tab(page, video_model)
    assert not page.locator("#vd-strength").is_visible()
    page.locator("#vd-clip input[type=file]").set_input_files(str(source))
    wait_until(lambda: "vid2vid" in page.locator("#vd-mode").inner_text(), timeout=30)
    page.locator("#vd-strength").wait_for(state="visible")
    page.locator("#vd-prompt textarea").fill("the same ball, in blue")
    page.locator("#vd-go").click()
    wait_until(lambda: page.locator("#vd-status").inner_text().startswith("vid2vid: sealed clip"), timeout=180)
    assert "C2PA ingredient" in page.locator("#vd-status").inner_text()
    shot(page, "15-video-vid2vid")
    entry = newest_clip(handlers)
    assert entry["mode"] == "vid2vid" and entry["request"]["strength"] == 0.6
    assert studio.verify(entry["file"]).state in ("trusted", "valid")


def test_gallery_plays_a_clip_and_reuse_fills_the_video_form(page, ui_server, video_model):
    url, handlers, _ = ui_server
    if not any(e.get("modality") == "video" for e in handlers.history_entries()):
        handlers.video(handlers.video_fields(prompt="a ball", model=video_model, seed=4))
    entry = newest_clip(handlers)
    open_tab(page, "Gallery")
    page.locator("#h-refresh").click()
    page.locator("#h-gallery video").first.wait_for(timeout=30_000)  # a clip is shown as a video
    index = [e["id"] for e in handlers.history_entries()].index(entry["id"])
    page.locator("#h-gallery button").nth(index).click()
    page.locator("#verdict-text").wait_for()
    player = page.locator("#h-video video").first
    player.wait_for(timeout=30_000)
    wait_until(lambda: (player.get_attribute("src") or "").endswith(".mp4"), timeout=30)
    assert "C2PA" in page.locator("#h-verdict").inner_text()
    shot(page, "15-gallery-clip")
    page.locator("#h-reuse").click()
    wait_until(lambda: page.locator("#vd-prompt textarea").is_visible() and
               page.locator("#vd-prompt textarea").input_value() == entry["request"]["prompt"], timeout=15)
    assert page.locator("#vd-seed input").input_value() == str(entry["seed"])
    assert page.locator("#vd-frames input").input_value() == str(VIDEO_FRAMES)


def test_verify_reports_a_clip(page, ui_server, video_model):
    url, handlers, _ = ui_server
    if not any(e.get("modality") == "video" for e in handlers.history_entries()):
        handlers.video(handlers.video_fields(prompt="a ball", model=video_model, seed=5))
    clip = newest_clip(handlers)["file"]
    open_tab(page, "Verify")
    page.locator("#v-file input[type=file]").set_input_files(clip)
    page.locator("#verdict-text").wait_for(timeout=60_000)
    verdict = page.locator("#v-verdict").inner_text()
    assert verdict.startswith(("Authentic", "C2PA trusted", "C2PA valid")), verdict
    details = page.locator("#v-details").inner_text()
    assert "Clip: 8 frames @ 8 fps" in details and "video/mp4" in details, details
    assert "frames 8" in details and "fps 8.0" in details, details
    shot(page, "15-verify-clip")


def test_bad_video_request_is_one_line_and_server_survives(page, ui_server, video_model):
    url, handlers, _ = ui_server
    open_video_tab(page, video_model)
    page.locator("#vd-prompt textarea").fill("a ball")
    page.locator("#vd-fps input").fill("0")
    page.locator("#vd-go").click()
    wait_until(lambda: "fps must be above 0" in page.locator("#vd-status").inner_text(), timeout=60)
    text = page.locator("#vd-status").inner_text()
    assert text.startswith("Error:") and "\n" not in text.strip() and "Traceback" not in text
    assert page.request.get(url).status == 200
