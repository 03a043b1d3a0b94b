"""The Edit tab's instruction mode and the Generate tab's ControlNet panel in chromium, on tiny random-weight
models added to the served app: an instruction edit shows the source and the sealed result side by side; the
ControlNet panel shows the sealed canny map of an uploaded image, and the generation it steers records that map.
A model with no instruct counterpart offline says so in one line."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from ui_testutil import SIZE, generate_and_wait, open_tab, pick, shot, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.timeout(1200)]  # setup alone takes minutes on a busy CPU


@pytest.fixture(scope="module")
def tiny_models(ui_server, tmp_path_factory):
    """`tiny-ctl-sd` and `tiny-ctl-ip2p` in the served registry, `tiny-ctl-cn` (fits tiny-ctl-sd) in its models
    folder, and a reference image; the menus list them after the Models tab's Refresh."""
    from pipelines.tiny import save_tiny, tiny_sd
    from pipelines.tiny_control import tiny_controlnet, tiny_ip2p

    url, handlers, _ = ui_server
    root = tmp_path_factory.mktemp("ui-ctl-browser")
    sd = tiny_sd(vae_scale=8)
    tiny_controlnet(sd).save_pretrained(handlers.models_dir / "tiny-ctl-cn")
    handlers.registry.add("tiny-ctl-sd", str(save_tiny(sd, root / "sd")), "sd1", width=SIZE, height=SIZE, steps=2,
                          sampler="Euler")
    handlers.registry.add("tiny-ctl-ip2p", str(save_tiny(tiny_ip2p(vae_scale=8), root / "ip2p")), "ip2p",
                          width=SIZE, height=SIZE, steps=2)
    ref = Image.new("RGB", (SIZE, SIZE), "white")
    ImageDraw.Draw(ref).ellipse((40, 40, 160, 160), fill="red")
    ref.save(root / "ref.png")
    return str(root / "ref.png")


def refresh_menus(page):
    open_tab(page, "Models")
    page.locator("#m-refresh").click()
    page.wait_for_timeout(800)


def served_bytes(page, img_locator) -> bytes:
    """What the browser was given for an <img>: fetched again from its src, through the same server."""
    from urllib.parse import urljoin

    return page.request.get(urljoin(page.url, img_locator.get_attribute("src"))).body()


def test_instruction_edit_shows_before_and_after(page, ui_server, tiny_models):
    import studio

    url, handlers, _ = ui_server
    refresh_menus(page)
    open_tab(page, "Edit")
    page.locator("#e-source input[type=file]").set_input_files(tiny_models)
    page.locator("#e-mode").get_by_text("instruct").click()
    wait_until(lambda: not page.locator("#e-strength").is_visible(), timeout=20)  # the instruction says what changes
    # a plain model whose counterpart (instruct-pix2pix) is not downloaded: said in one line (`mini` has one now:
    # mini-instruct)
    pick(page, "e-model", "tiny-ctl-sd")
    wait_until(lambda: "Cannot edit by instruction" in page.locator("#e-instruct-note").inner_text(), timeout=20)
    assert "not an instruction-editing model" in page.locator("#e-instruct-note").inner_text()
    pick(page, "e-model", "tiny-ctl-ip2p")
    wait_until(lambda: "Edits with tiny-ctl-ip2p" in page.locator("#e-instruct-note").inner_text(), timeout=20)
    guidance = page.locator("#e-image-guidance input[type=number]")
    guidance.fill("2.5")
    guidance.press("Enter")
    page.locator("#e-prompt textarea").fill("make the circle blue")
    page.locator("#e-seed input").fill("3")
    before = len(handlers.history_entries())
    page.locator("#e-go").click()
    wait_until(lambda: len(handlers.history_entries()) > before, timeout=240)
    view = page.locator("#e-before-after")
    view.locator("img").nth(1).wait_for(timeout=60_000)
    shot(page, "control-instruct-01-before-after")
    wait_until(lambda: page.locator("#e-status").inner_text().startswith("instruct: sealed image"), timeout=30)
    entry = handlers.history_entries()[0]
    assert entry["mode"] == "instruct" and entry["request"]["image_guidance"] == 2.5
    # before: the upload as it arrived; after: the sealed file itself, byte for byte
    shown = {served_bytes(page, view.locator("img").nth(i)) for i in range(2)}
    assert shown == {Path(tiny_models).read_bytes(), Path(entry["file"]).read_bytes()}
    assert studio.verify(entry["file"]).state in ("trusted", "valid")
    assert page.external_requests == []


@pytest.mark.skipif(importlib.util.find_spec("controlnet_aux") is None, reason="controlnet-aux not installed")
def test_control_panel_shows_the_sealed_canny_map_and_generates_with_it(page, ui_server, tiny_models):
    import studio

    url, handlers, _ = ui_server
    refresh_menus(page)
    open_tab(page, "Generate")
    page.locator("#g-prompt textarea").fill("a red circle")
    pick(page, "g-model", "tiny-ctl-sd")
    wait_until(lambda: page.locator("#g-width input").input_value() == str(SIZE), timeout=20)
    page.locator("#g-seed input").fill("4")
    page.get_by_text("ControlNet: steer the layout").click()
    page.locator("#cn-upload input[type=file]").set_input_files(tiny_models)
    pick(page, "cn-net", "tiny-ctl-cn (local)")
    page.locator("#cn-show").click()
    page.locator("#cn-map img").wait_for(timeout=60_000)
    wait_until(lambda: "canny map" in page.locator("#cn-status").inner_text(), timeout=30)
    assert f"{SIZE}×{SIZE} (sealed" in page.locator("#cn-status").inner_text()
    shown = studio.verify(served_bytes(page, page.locator("#cn-map img"))).to_dict()
    assert shown["state"] == "trusted" and shown["manifest"]["params"]["preprocessor"] == "canny"
    shot(page, "control-instruct-02-canny-map")

    page.locator("#cn-on input").check()
    entry = generate_and_wait(page, handlers)
    shot(page, "control-instruct-03-controlled")
    assert "ControlNet tiny-ctl-cn (canny, weight 1)" in page.locator("#g-status").inner_text()
    assert entry["request"]["controls"][0]["model"] == "tiny-ctl-cn"
    info = studio.info(entry["file"])
    assert info["input_hashes"]["control_0"] == shown["manifest"]["params"]["map_sha256"]  # the map shown steered
    report = studio.verify(entry["file"]).to_dict()
    assert report["state"] == "trusted" and [i["relationship"] for i in report["manifest"]["ingredients"]] == \
        ["componentOf"]
    assert page.external_requests == []
