"""The Edit tab's instruction mode given a clip (issue 17) in chromium: upload a two-frame clip, run "make the circle
blue" on the bundled mini-instruct (64 px, 2 steps), and the source clip and the sealed result play side by side;
the player and the download hand over the sealed file byte for byte, and it verifies with the upload as its
ingredient."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from ui_testutil import open_tab, pick, set_slider, shot, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def upload(tmp_path_factory):
    """Two 64 px frames of a red circle moving right, written by the studio's own encoder (H.264, 8 fps)."""
    from safety.media import encode_mp4

    frames = []
    for x in (8, 24):
        im = Image.new("RGB", (64, 64), "white")
        ImageDraw.Draw(im).ellipse((x, 20, x + 24, 44), fill=(220, 30, 30))
        frames.append(np.asarray(im))
    path = tmp_path_factory.mktemp("ui-iv-browser") / "circle.mp4"
    path.write_bytes(encode_mp4(np.stack(frames), 8.0, None))
    return path


def served(page, locator) -> bytes:
    from urllib.parse import urljoin

    return page.request.get(urljoin(page.url, locator.get_attribute("src"))).body()


def test_instruction_edit_of_an_uploaded_clip_plays_before_and_after(page, ui_server, upload, tmp_path):
    import studio

    url, handlers, _ = ui_server
    if not handlers.registry.entries["mini-instruct"].available_locally():
        pytest.skip("mini-instruct's weights are not in studio/mini")
    open_tab(page, "Edit")
    page.locator("#e-mode").get_by_text("instruct").click()
    page.locator("#e-source input[type=file]").set_input_files(str(upload))
    pick(page, "e-model", "mini-instruct")
    wait_until(lambda: "Edits with mini-instruct" in page.locator("#e-instruct-note").inner_text(), timeout=30)
    set_slider(page, "e-steps", 2)
    page.locator("#e-prompt textarea").fill("make the circle blue")
    page.locator("#e-seed input").fill("3")
    before = len(handlers.history_entries())
    page.locator("#e-go").click()
    wait_until(lambda: len(handlers.history_entries()) > before, timeout=300)
    after = page.locator("#e-clip-after video").first
    wait_until(lambda: (after.get_attribute("src") or "").endswith(".mp4"), timeout=60)
    wait_until(lambda: page.locator("#e-status").inner_text().startswith("instruct: sealed clip"), timeout=30)
    shot(page, "instruct-clip-01-before-after")

    entry = handlers.history_entries()[0]
    assert entry["mode"] == "instruct" and entry["modality"] == "video" and entry["model"] == "mini-instruct"
    assert entry["request"]["frames"] == 2 and entry["request"]["steps"] == 2
    sealed = Path(entry["file"])
    # before: the upload as it arrived; after: the sealed file itself, and chromium can play it
    assert served(page, page.locator("#e-clip-before video").first) == upload.read_bytes()
    assert served(page, after) == sealed.read_bytes()
    wait_until(lambda: page.evaluate("document.querySelector('#e-clip-after video').readyState") >= 1, timeout=30)
    assert not page.locator("#e-before-after").is_visible()  # the image slider is for images
    with page.expect_download() as info:
        page.locator("#e-files a").first.click()
    got = tmp_path / "downloaded.mp4"
    info.value.save_as(str(got))
    assert got.read_bytes() == sealed.read_bytes()
    report = studio.verify(got).to_dict()
    assert report["state"] == "trusted", report
    assert [i["relationship"] for i in report["manifest"]["ingredients"]] == ["parentOf"]  # the uploaded clip
    assert report["video"]["frames"] == 2
    assert page.external_requests == []
