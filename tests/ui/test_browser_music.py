"""The Music tab in a real browser (Debian chromium via Playwright, issue 16): pick a tiny MusicGen, generate a
clip with live progress, the <audio> element gets the sealed file (served as audio/*, never sniffed), the
waveform picture shows, the download is that file byte for byte and verifies; an uploaded clip is continued
(before/after picture); the Gallery shows music as its waveform and plays it, and "Reuse settings" fills the
Music form; Verify reports duration, sample rate and the watermark status; a bad request is one line.
Screenshots go to artifacts/ui/ like the other browser tests'."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from ui_testutil import MUSIC_SECONDS, add_tiny_music_model, open_tab, pick, shot, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.timeout(400)]


@pytest.fixture(scope="module")
def music_model(ui_server, tmp_path_factory):
    """A tiny MusicGen in the served app's registry; the Music tab lists it when opened."""
    url, handlers, _ = ui_server
    return add_tiny_music_model(handlers.registry, tmp_path_factory.mktemp("ui-music") / "tiny-music")


def open_music_tab(page, model):
    open_tab(page, "Music")
    page.locator("#mu-prompt textarea").wait_for()
    pick(page, "mu-model", model)
    wait_until(lambda: page.locator("#mu-duration input").input_value() == f"{MUSIC_SECONDS:g}", timeout=15)


def newest_music(handlers):
    return next(e for e in handlers.history_entries() if e.get("modality") == "audio")


def ensure_music(handlers, model, seed=3):
    if not any(e.get("modality") == "audio" for e in handlers.history_entries()):
        handlers.music(handlers.music_fields(prompt="a plucked melody", model=model, seed=seed))
    return newest_music(handlers)


def audio_src(page, elem):
    """The URL the player's <audio> element plays (Gradio's player keeps it in the DOM, hidden behind its own
    waveform and controls)."""
    return page.evaluate(f"(() => {{ const a = document.querySelector('#{elem} audio'); "
                         f"return a ? (a.currentSrc || a.src || '') : ''; }})()")


def test_generate_music_play_download_verify(page, ui_server, music_model, tmp_path):
    import studio
    from studio.rewards import RatingStore

    url, handlers, _ = ui_server
    open_music_tab(page, music_model)
    assert not page.locator("#mu-edit").is_visible() and not page.locator("#mu-strength").is_visible()
    page.locator("#mu-prompt textarea").fill("a slow plucked melody in a minor key")
    page.locator("#mu-seed input").fill("21")
    page.locator("#mu-duration input").fill("4")  # 200 sampling steps: long enough to watch the status
    page.locator("#mu-duration input").press("Tab")
    page.locator("#mu-go").click()
    wait_until(lambda: "ETA" in page.locator("#mu-status").inner_text(), timeout=120)
    status = page.locator("#mu-status").inner_text()
    assert "generating" in status and "step " in status and "elapsed" in status, status

    page.locator("#mu-files a").first.wait_for(timeout=180_000)
    wait_until(lambda: page.locator("#mu-status").inner_text().startswith("txt2audio: sealed clip"), timeout=30)
    status = page.locator("#mu-status").inner_text()
    assert "4 s · 32 kHz mono, wav" in status and "seed 21" in status, status
    entry = newest_music(handlers)
    assert ("too short to carry the watermark" in status) == (entry["watermark_status"] == "too_short"), status
    wait_until(lambda: audio_src(page, "mu-player"), timeout=30)
    page.locator("#mu-wave img").first.wait_for(timeout=30_000)
    assert page.external_requests == []
    shot(page, "16-music")

    sealed = Path(entry["file"])
    assert entry["duration_s"] == 4.0 and entry["sample_rate"] == 32000
    with page.expect_download() as info:
        page.locator("#mu-files a").first.click()
    got = tmp_path / "downloaded.wav"
    info.value.save_as(str(got))
    assert got.read_bytes() == sealed.read_bytes()  # exactly the sealed bytes
    report = studio.verify(got)
    assert report.state in ("trusted", "valid"), report.render()
    if entry["watermark_status"] == "embedded":  # long enough for the mark: it survives the download
        assert report.watermark_found and report.watermark_id == entry["watermark_id"]
    # what the player streams is the sealed file too, typed as audio and never sniffed or re-encoded
    src = audio_src(page, "mu-player")
    r = page.request.get(src)
    assert r.status == 200 and r.headers["content-type"] == "audio/wav", r.headers
    assert r.headers["x-content-type-options"] == "nosniff"
    assert hashlib.sha256(r.body()).hexdigest() == entry["sha256"]
    # the browser decodes it: the element knows the clip's length
    wait_until(lambda: page.evaluate("document.querySelector('#mu-player audio').readyState") >= 1, timeout=30)
    assert abs(page.evaluate("document.querySelector('#mu-player audio').duration") - 4.0) < 0.05
    wave = page.request.get(page.locator("#mu-wave img").first.get_attribute("src"))
    assert wave.status == 200 and wave.headers["content-type"] == "image/png"
    # 👍 under the result rates this sealed file (the server's own record of what this page shows)
    page.locator("#mu-rate-up").click()
    wait_until(lambda: "thumbs up recorded" in page.locator("#mu-ratings-count").inner_text(), timeout=30)
    assert RatingStore().ratings()[-1]["item"]["sha256"] == entry["sha256"]


def test_continue_an_uploaded_clip(page, ui_server, music_model):
    import studio

    url, handlers, _ = ui_server
    src_entry = ensure_music(handlers, music_model)
    source = Path(src_entry["file"])
    open_music_tab(page, music_model)
    page.locator("#mu-source input[type=file]").set_input_files(str(source))
    wait_until(lambda: "audio_extend" in page.locator("#mu-mode").inner_text(), timeout=30)
    page.locator("#mu-extend").wait_for(state="visible")
    assert not page.locator("#mu-duration").is_visible() and not page.locator("#mu-span-start").is_visible()
    page.get_by_label("Regenerate a span").check()  # the span fields replace the continuation's
    wait_until(lambda: "audio_inpaint" in page.locator("#mu-mode").inner_text(), timeout=15)
    page.locator("#mu-span-start").wait_for(state="visible")
    assert not page.locator("#mu-extend").is_visible()
    page.get_by_label("Continue it").check()
    page.locator("#mu-extend").wait_for(state="visible")
    page.locator("#mu-extend input").fill("0.5")
    page.locator("#mu-extend input").press("Tab")
    page.locator("#mu-prompt textarea").fill("more of the same")
    page.locator("#mu-go").click()
    wait_until(lambda: page.locator("#mu-status").inner_text().startswith("audio_extend: sealed clip"),
               timeout=180)
    assert "C2PA ingredient" in page.locator("#mu-status").inner_text()
    page.locator("#mu-wave img").first.wait_for(timeout=30_000)
    shot(page, "16-music-continue")
    entry = newest_music(handlers)
    assert entry["mode"] == "audio_extend" and entry["request"]["extend"] == 0.5
    assert abs(entry["duration_s"] - (src_entry["duration_s"] + 0.5)) < 0.05, entry
    assert studio.verify(entry["file"]).state in ("trusted", "valid")


def test_gallery_plays_music_and_reuse_fills_the_music_form(page, ui_server, music_model):
    url, handlers, _ = ui_server
    entry = ensure_music(handlers, music_model)
    open_tab(page, "Gallery")
    page.locator("#h-refresh").click()
    index = [e["id"] for e in handlers.history_entries()].index(entry["id"])
    tile = page.locator("#h-gallery button").nth(index)
    tile.wait_for(timeout=30_000)
    thumb = tile.locator("img").first.get_attribute("src") or ""
    assert thumb.endswith(f"{entry['id']}.png"), thumb  # the waveform picture stands for the clip
    assert "♪ music" in page.locator("#h-gallery").inner_text()
    tile.click()
    page.locator("#verdict-text").wait_for()
    wait_until(lambda: audio_src(page, "h-audio"), timeout=30)
    r = page.request.get(audio_src(page, "h-audio"))
    assert hashlib.sha256(r.body()).hexdigest() == entry["sha256"]
    assert "C2PA" in page.locator("#h-verdict").inner_text()
    shot(page, "16-gallery-music")
    page.locator("#h-reuse").click()
    wait_until(lambda: page.locator("#mu-prompt textarea").is_visible() and
               page.locator("#mu-prompt textarea").input_value() == entry["request"]["prompt"], timeout=15)
    assert page.locator("#mu-seed input").input_value() == str(entry["seed"])


def test_verify_reports_music(page, ui_server, music_model):
    url, handlers, _ = ui_server
    # a text-to-music clip of 4 s: long enough for the audio mark (an edit's mark depends on its source)
    clip = next((e for e in handlers.history_entries() if e.get("mode") == "txt2audio" and e["duration_s"] >= 4),
                None) or handlers.music(handlers.music_fields(prompt="a tune", model=music_model, seed=8,
                                                              duration=4))[0]
    open_tab(page, "Verify")
    page.locator("#v-file input[type=file]").set_input_files(clip["file"])
    page.locator("#verdict-text").wait_for(timeout=60_000)
    verdict = page.locator("#v-verdict").inner_text()
    details = page.locator("#v-details").inner_text()
    if clip["watermark_status"] == "too_short":  # signed, below the audio mark's minimum length
        assert verdict.startswith(("C2PA trusted", "C2PA valid")) and "too short to carry one" in verdict, verdict
        assert "too_short" in details, details
    else:
        assert verdict.startswith("Authentic") and clip["watermark_id"] in verdict, verdict
        assert f"Found: ID {clip['watermark_id']}" in details, details
    assert f"Audio: {clip['duration_s']:g} s · sample rate 32000 Hz · mono" in details, details
    assert "audio/" in details, details
    shot(page, "16-verify-music")


def test_bad_music_request_is_one_line_and_server_survives(page, ui_server, music_model):
    url, handlers, _ = ui_server
    open_music_tab(page, music_model)
    page.locator("#mu-prompt textarea").fill("a tune")
    page.locator("#mu-duration input").fill("0")
    page.locator("#mu-duration input").press("Tab")
    page.locator("#mu-go").click()
    wait_until(lambda: "duration must be above 0" in page.locator("#mu-status").inner_text(), timeout=60)
    text = page.locator("#mu-status").inner_text()
    assert text.startswith("Error:") and "\n" not in text.strip() and "Traceback" not in text
    assert page.request.get(url).status == 200
