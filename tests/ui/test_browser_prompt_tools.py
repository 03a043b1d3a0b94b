"""Variation seeds and prompt tools in chromium: a variation seed and strength from the Generate tab's accordion
(recorded, replayed to the same pixels, brought back by "reuse settings"); the token counter under the prompt
(the model's own tokenizer, red past its limit), the over-limit warning after a render, a style saved from the
form and applied, and (word:1.2) weighting detected and recorded. Screenshots: artifacts/ui/20-variation.png and
artifacts/ui/20-prompt-tools.png."""
from __future__ import annotations

import pytest

from ui_testutil import generate_and_wait as run, open_tab, pick, shot, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.timeout(400)]


def form(page, model, prompt, seed, negative=""):
    page.locator("#g-prompt textarea").fill(prompt)
    page.locator("#g-negative textarea").fill(negative)
    pick(page, "g-model", model)
    page.wait_for_timeout(300)  # the model's defaults fill steps/size; then ours
    page.locator("#g-seed input").fill(str(seed))
    page.locator("#g-seed input").press("Tab")
    page.locator("#g-steps input[type=number]").fill("3")
    page.locator("#g-steps input[type=number]").press("Enter")


def test_variation_seed_recorded_replayed_and_reused(page, ui_server):
    import studio

    _, handlers, model = ui_server
    form(page, model, "a large red circle in the center on a white background", seed=31)
    page.locator("#g-variation-box").get_by_text("Variation seed").first.click()
    page.locator("#g-var-seed input").fill("77")
    page.locator("#g-var-seed input").press("Tab")
    page.locator("#g-var-strength input[type=number]").fill("0.4")
    page.locator("#g-var-strength input[type=number]").press("Enter")
    entry = run(page, handlers)
    assert entry["request"]["variation_seed"] == 77 and entry["request"]["variation_strength"] == 0.4
    assert entry["seed"] == 31
    assert "variation seed 77 at 0.4" in page.locator("#g-status").inner_text()
    page.locator("#g-variation-box").scroll_into_view_if_needed()
    shot(page, "20-variation")

    # the record the UI wrote replays to the same pixels through the API
    info = studio.info(entry["file"])
    again = handlers.studio.generate(studio.GenerationRequest.model_validate(info["request"]))
    from studio.modalities.image import pixel_sha256

    assert again.outputs[0].record.pixel_sha256 == pixel_sha256(open(entry["file"], "rb").read())

    # clear the accordion, then "reuse settings" from the Gallery brings the variation back
    page.locator("#g-var-seed input").fill("-1")
    page.locator("#g-var-seed input").press("Tab")
    open_tab(page, "Gallery")
    page.locator("#h-gallery img").first.wait_for()
    page.locator("#h-gallery button").first.click()
    page.locator("#verdict-text").wait_for()
    page.locator("#h-reuse").click()
    wait_until(lambda: page.locator("#g-var-seed input").input_value() == "77", timeout=15)
    assert page.locator("#g-var-strength input[type=number]").input_value() == "0.4"
    assert page.external_requests == []


def pick_style(page, name):
    page.locator("#g-styles input").click()
    page.get_by_role("option", name=name, exact=True).click()
    page.keyboard.press("Escape")


def test_token_counter_warning_styles_and_weighting(page, ui_server):
    _, handlers, model = ui_server
    form(page, model, "a red circle", seed=5)
    tokens = page.locator("#g-tokens .ds-tokens")  # the span itself: the block around it may show a timer
    wait_until(lambda: "/" in tokens.inner_text() and "tokens" in tokens.inner_text(), timeout=15)
    used, cap = (int(x) for x in tokens.inner_text().split(" ")[0].split("/"))
    assert used < cap and "over" not in (tokens.get_attribute("class") or "")

    # "save current as style": the form's prompt (with {prompt}) and negative become a style in the picker
    page.locator("#g-prompt textarea").fill("{prompt}, thick black outline")
    page.locator("#g-negative textarea").fill("blurry")
    page.locator("#g-styles-box").get_by_text("Styles").first.click()
    page.locator("#g-style-name input, #g-style-name textarea").first.fill("outlined")
    page.locator("#g-style-save").click()
    wait_until(lambda: "Saved style" in page.locator("#g-style-note").inner_text(), timeout=15)

    # a prompt past the encoder's limit: the counter turns red as it is typed, and the render says it was cut
    long_prompt = "a red circle on a white background, " + "with a thin blue outline and a soft shadow, " * 8
    page.locator("#g-prompt textarea").fill(long_prompt)
    page.locator("#g-negative textarea").fill("")
    wait_until(lambda: "over" in (tokens.get_attribute("class") or ""), timeout=15)
    assert "over the limit" in tokens.inner_text()
    over = int(tokens.inner_text().split("/")[0])
    assert over > cap
    pick_style(page, "outlined")
    wait_until(lambda: int(tokens.inner_text().split("/")[0]) > over, timeout=15)  # counts the style too
    over = int(tokens.inner_text().split("/")[0])
    entry = run(page, handlers)
    status = page.locator("#g-status").inner_text()
    assert f"warning: prompt is {over} tokens" in status and f"reads {cap}" in status and "styles outlined" in status
    assert entry["warnings"] and entry["warnings"][0].startswith(f"prompt is {over} tokens")
    assert entry["request"]["prompt"] == long_prompt + ", thick black outline"  # the style, applied and cut
    assert entry["request"]["negative_prompt"] == "blurry" and entry["styles"]["names"] == ["outlined"]
    page.locator("#g-prompt").scroll_into_view_if_needed()
    shot(page, "20-prompt-tools")

    # (word:1.2) weighting is detected and recorded; a prompt within the limit renders without a warning
    page.locator("#g-prompt textarea").fill("a (red:1.3) circle on a white background")
    wait_until(lambda: "over" not in (tokens.get_attribute("class") or ""), timeout=15)
    entry = run(page, handlers)
    req = entry["request"]
    assert req["prompt"] == "a (red:1.3) circle on a white background, thick black outline"
    assert req["prompt_weighting"] is True
    status = page.locator("#g-status").inner_text()
    assert "styles outlined" in status and "weighted prompt" in status and "warning" not in status
    assert page.external_requests == []
