"""Issue 13 in a real browser (Debian chromium via Playwright): a failed Edit and a refused model show their
reason in the page (not a bare "Error"), and while a generation runs the live preview is visible, outside the
one progress bar of the run, and the status says step i/N, elapsed and ETA."""
from __future__ import annotations

import pytest

from ui_testutil import open_tab, pick, shot, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]


def test_edit_without_a_source_says_why(page, ui_server):
    url, handlers, model = ui_server
    open_tab(page, "Edit")
    page.locator("#e-prompt textarea").fill("a yellow star")
    page.locator("#e-go").click()
    wait_until(lambda: "upload a source image" in page.locator("#e-status").inner_text(), timeout=60)
    shot(page, "13-edit-error")
    text = page.locator("#e-status").inner_text()
    assert text.startswith("Error:") and "Traceback" not in text


def test_models_tab_refusals_say_why(page, ui_server):
    url, handlers, model = ui_server
    before = set(handlers.registry.entries)
    open_tab(page, "Models")
    short = handlers.models_dir / "cut.safetensors"  # the Models tab adds only from the models folder
    short.parent.mkdir(parents=True, exist_ok=True)
    short.write_bytes((10_000).to_bytes(8, "little") + b'{"w": {"dtype": "F32", "shape": [4], ')
    for name, path, needle in [("mini", str(short), "built-in model name"),
                               ("bad1", "/nonexistent/x.safetensors", "inside the server's models folder"),
                               ("bad3", "nope.safetensors", "does not exist"),
                               ("bad2", str(short), "truncated")]:
        page.locator("#m-name textarea, #m-name input").first.fill(name)
        page.locator("#m-path textarea, #m-path input").first.fill(path)
        page.locator("#m-add").click()
        wait_until(lambda: needle in page.locator("#m-status").inner_text(), timeout=30)
        status = page.locator("#m-status").inner_text()
        assert status.startswith("Error:") and "/nonexistent" not in status and str(handlers.models_dir) not in status
    shot(page, "13-models-error")
    assert set(handlers.registry.entries) == before and handlers.registry.resolve("mini").builtin


def test_live_preview_shows_during_sampling_with_one_progress_bar(page, ui_server):
    url, handlers, model = ui_server
    page.locator("#g-prompt textarea").fill("a long one")
    pick(page, "g-model", model)
    page.wait_for_timeout(300)
    page.locator("#g-steps input[type=number]").fill("150")
    page.locator("#g-steps input[type=number]").press("Enter")
    page.locator("#g-go").click()
    live = page.locator("#g-live img").first
    live.wait_for(timeout=90_000)
    wait_until(lambda: "ETA" in page.locator("#g-status").inner_text(), timeout=120)
    status = page.locator("#g-status").inner_text()
    shot(page, "13-live-preview")
    try:
        assert "step " in status and "/150" in status and "elapsed" in status, status
        assert live.is_visible()
        # The preview carries no progress overlay of its own, and the run has exactly one bar (on the results).
        assert page.locator("#g-live .wrap.full:not(.hide)").count() == 0
        # the two counts are read together, a few times if need be: on a loaded machine the bar is re-rendered
        # between step updates, and a read in that gap finds it nowhere (CI: 1 visible bar, then 0 in the gallery)
        wait_until(lambda: page.locator(".progress-bar:visible").count() == 1
                   and page.locator("#g-gallery .progress-bar").count() == 1, timeout=15)
    finally:
        page.locator("#g-cancel").click()
        wait_until(lambda: "Cancelled" in page.locator("#g-status").inner_text(), timeout=30)


def test_typed_zero_steps_is_refused_not_run_as_one(page, ui_server):
    url, handlers, model = ui_server
    before = len(handlers.history_entries())
    page.locator("#g-prompt textarea").fill("a red circle")
    pick(page, "g-model", model)
    page.wait_for_timeout(300)
    page.locator("#g-steps input[type=number]").fill("0")
    page.locator("#g-steps input[type=number]").press("Enter")
    page.locator("#g-go").click()
    wait_until(lambda: "steps must be at least 1" in page.locator("#g-status").inner_text(), timeout=60)
    assert len(handlers.history_entries()) == before
