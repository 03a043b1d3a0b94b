"""Ratings in chromium: generate, click 👍 under the result and see "ratings so far" go up (the rating in the
store, for that sealed file); then best-of-2 ranked by a reward, each candidate's rank and score on the grid,
select one and "pick the best" (one pick, one pair). Screenshot: artifacts/ui/21-ratings.png."""
from __future__ import annotations

import re

import pytest

from ui_testutil import generate_and_wait as run, pick, set_slider, shot, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.timeout(1200)]  # the app builds in seconds, or minutes on a loaded machine


def so_far(page) -> int:
    m = re.search(r"Ratings so far: (\d+)", page.locator("#g-ratings-count").inner_text())
    return int(m.group(1)) if m else -1


def test_thumbs_up_and_pick_the_best_change_the_count(page, ui_server):
    from studio.rewards import RatingStore

    _, handlers, model = ui_server
    page.locator("#g-prompt textarea").fill("a large red circle in the center on a white background")
    pick(page, "g-model", model)
    page.wait_for_timeout(300)  # the model's defaults fill steps/size; then ours
    page.locator("#g-seed input").fill("41")
    page.locator("#g-seed input").press("Tab")
    page.locator("#g-steps input[type=number]").fill("3")
    page.locator("#g-steps input[type=number]").press("Enter")
    start = wait_until(lambda: so_far(page) + 1, timeout=30) - 1  # the count is on the page from the start
    store = RatingStore()
    assert start == store.count()["total"]

    entry = run(page, handlers)
    page.locator("#g-rate-up").click()
    wait_until(lambda: so_far(page) == start + 1, timeout=30)
    assert "thumbs up recorded for seed 41" in page.locator("#g-ratings-count").inner_text()
    last = store.ratings(limit=1)[0]
    assert last["kind"] == "like" and last["item"]["sha256"] == entry["sha256"]
    assert last["item"]["record"]["request"]["prompt"] == entry["request"]["prompt"]  # from the verified seal

    # best-of-2 by saturation: the grid shows each candidate's rank and score; pick the second as the best
    page.locator("#bo-box").get_by_text("Best of N").first.click()
    set_slider(page, "bo-n", 2)
    pick(page, "bo-reward", "saturation")
    page.keyboard.press("Escape")
    page.locator("#bo-go").click()
    wait_until(lambda: "sealed candidates" in page.locator("#bo-status").inner_text(), timeout=240)
    status = page.locator("#bo-status").inner_text()
    assert "best of 2 by reward saturation" in status
    grid = page.locator("#bo-grid").inner_text()
    assert "#1 · score" in grid and "#2 · score" in grid
    page.locator("#bo-grid .thumbnail-item").nth(1).click()
    page.wait_for_timeout(500)  # the select event stores the index; then the pick reads it
    page.locator("#bo-pick").click()
    wait_until(lambda: so_far(page) == start + 2, timeout=30)
    assert "★ best recorded" in page.locator("#g-ratings-count").inner_text()
    last = store.ratings(limit=1)[0]
    assert last["kind"] == "pick" and len(last["others"]) == 1 and last["item"]["record"]["reward"]["rank"] == 2
    page.locator("#bo-box").scroll_into_view_if_needed()
    shot(page, "21-ratings")
    assert page.external_requests == []
