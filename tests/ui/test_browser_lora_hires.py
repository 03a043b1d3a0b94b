"""The LoRA picker and the Hires fix accordion in chromium: pick a LoRA from the server's LoRA folder with a
weight, hires-fix an image (first pass sealed and recorded as the C2PA ingredient, size doubled), see both in
the parameters, and have "reuse settings" bring them back. Screenshots: artifacts/ui/20-lora-picker.png and
artifacts/ui/20-hires.png."""
from __future__ import annotations

from pathlib import Path

import pytest

from ui_testutil import generate_and_wait as run, open_tab, pick, shot, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.timeout(400)]
FIRST = 128  # first pass side: hires x2 renders 256, where the watermark fits


@pytest.fixture()
def lora_file(ui_server):
    from pipelines.tiny import make_tiny_lora

    _, handlers, model = ui_server
    loaded = handlers.studio.load(handlers.registry.resolve(model))
    path = handlers.loras_dir / "ink-style.safetensors"
    if not path.exists():
        make_tiny_lora(loaded.pipe, path, seed=3)
    return path


def small_form(page, model, prompt, seed):
    page.locator("#g-prompt textarea").fill(prompt)
    pick(page, "g-model", model)
    page.wait_for_timeout(300)  # the model's defaults fill steps/size; then ours
    for box, value in (("#g-width input", FIRST), ("#g-height input", FIRST), ("#g-seed input", seed)):
        page.locator(box).fill(str(value))
        page.locator(box).press("Tab")
    page.locator("#g-steps input[type=number]").fill("3")
    page.locator("#g-steps input[type=number]").press("Enter")


def test_lora_picker_and_hires_fix_with_reuse(page, ui_server, lora_file, tmp_path):
    import studio

    _, handlers, model = ui_server
    small_form(page, model, "a large red circle in the center on a white background", seed=21)

    # LoRA picker: the file put in the LoRA folder shows up after a refresh, with its own weight slider
    page.locator("#g-loras-refresh").click()
    page.locator("#g-loras input").click()
    page.get_by_role("option", name="ink-style (ink-style.safetensors)").click()
    page.keyboard.press("Escape")
    page.locator("#g-lora-w0").wait_for(state="visible")
    assert "ink-style" in page.locator("#g-lora-w0").inner_text()
    assert not page.locator("#g-lora-w1").is_visible()
    page.locator("#g-lora-w0 input[type=number]").fill("0.7")
    page.locator("#g-lora-w0 input[type=number]").press("Enter")
    entry = run(page, handlers)
    assert entry["request"]["loras"] == [{"path": "ink-style.safetensors", "weight": 0.7}]
    assert str(handlers.loras_dir) not in page.content()  # the browser sees the picker's name only
    params = page.locator("#tab-generate").inner_text()
    assert "ink-style" in params
    page.locator("#g-loras").scroll_into_view_if_needed()
    shot(page, "20-lora-picker")

    # Hires fix: the same form, upscaled x2 by latents and refined at 0.5
    page.locator("#g-hires-box").get_by_text("Hires fix").first.click()
    page.locator("#g-hires-on input").check()
    wait_until(lambda: f"{2 * FIRST}×{2 * FIRST}" in page.locator("#g-hires-note").inner_text(), timeout=10)
    hires = run(page, handlers)
    assert (hires["width"], hires["height"]) == (2 * FIRST, 2 * FIRST)
    assert hires["request"]["hires"]["scale"] == 2 and hires["request"]["hires"]["upscaler"] == "latent"
    assert hires["request"]["width"] == FIRST and hires["request"]["loras"][0]["weight"] == 0.7
    status = page.locator("#g-status").inner_text()
    assert "hires ×2" in status and "C2PA ingredient" in status and f"{2 * FIRST}×{2 * FIRST}" in status
    report = studio.verify(hires["file"]).to_dict()
    assert report["state"] in ("trusted", "valid")
    (parent,) = report["manifest"]["ingredients"]  # the sealed first pass
    assert parent["relationship"] == "parentOf" and parent["has_manifest"]
    page.locator("#g-hires-box").scroll_into_view_if_needed()
    shot(page, "20-hires")

    # clear both, then reuse the hires output's settings from the Gallery: LoRA, weight and hires come back
    page.locator("#g-hires-on input").uncheck()
    page.locator("#g-loras button[aria-label='Remove ink-style (ink-style.safetensors)'], "
                 "#g-loras .token-remove").first.click()
    wait_until(lambda: not page.locator("#g-lora-w0").is_visible(), timeout=10)
    open_tab(page, "Gallery")
    page.locator("#h-gallery img").first.wait_for()
    page.locator("#h-gallery button").first.click()
    page.locator("#verdict-text").wait_for()
    page.locator("#h-reuse").click()
    wait_until(lambda: page.locator("#g-hires-on input").is_checked(), timeout=15)
    wait_until(lambda: page.locator("#g-lora-w0").is_visible(), timeout=15)
    assert page.locator("#g-lora-w0 input[type=number]").input_value() == "0.7"
    assert "ink-style" in page.locator("#g-loras").inner_text()
    assert page.locator("#g-width input").input_value() == str(FIRST)  # the first pass's size, as recorded
    assert page.external_requests == []
