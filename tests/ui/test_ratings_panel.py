"""The web app's rating buttons and best-of-N pick, below the browser: a click rates the sealed file the page
shows (its verified record stored), a pick of N is N-1 pairs, and a bad click (nothing generated yet, a stale
index, a file that is not sealed) answers one line in the count line and leaves the app serving."""
from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from studio import RequestError
from studio.rewards import RatingStore

from test_handlers import FakeStudio, app_fn  # noqa: E402
from ui import ratings_panel as rp


def sealed_entry(path: Path, rgb, seed: int) -> dict:
    from studio.writer import seal_derived

    seal_derived(Image.new("RGB", (256, 256), rgb), path, model_name="m",
                 params={"request": {"prompt": "a red field", "modality": "image"}, "seed": seed,
                         "model_hash": "h" * 64})
    return {"file": str(path), "seed": seed}


@pytest.fixture()
def entries(tmp_path):
    return [sealed_entry(tmp_path / f"{i}.png", (60 * i, 10, 10), seed=i) for i in range(3)]


def test_thumbs_and_pick_go_to_the_store_with_the_sealed_record(entries, tmp_path):
    store = RatingStore(tmp_path / "r.db")
    line = rp.rate_entry(store, "like", entries, 1)
    assert line.startswith("👍 thumbs up recorded for seed 1") and "Ratings so far: 1" in line
    line = rp.pick_best(store, entries, 2)
    assert "seed 2 over 2 other(s)" in line and "1 best-of picks = 2 pairs" in line
    r = store.ratings()
    assert r[0]["item"]["seed"] == 1 and r[0]["item"]["record"]["model_hash"] == "h" * 64
    assert [(w["seed"], l["seed"]) for w, l, _, _ in store.pairs()] == [(2, 0), (2, 1)]


def test_bad_clicks_are_one_line(entries, tmp_path):
    store = RatingStore(tmp_path / "r.db")
    with pytest.raises(RequestError, match="generate an image first"):
        rp.rate_entry(store, "like", [], 0)
    with pytest.raises(RequestError, match="select an image in the results first"):
        rp.rate_entry(store, "dislike", entries, 7)
    with pytest.raises(RequestError, match="select an image"):
        rp.pick_best(store, entries, None)
    with pytest.raises(RequestError, match="at least two candidates"):
        rp.pick_best(store, entries[:1], 0)
    with pytest.raises(RequestError, match="best-of-N takes 2 to 8"):
        rp.run_best_of(None, {}, 1, "saturation")
    assert store.count()["total"] == 0


def test_a_bad_click_in_the_app_answers_in_the_count_line(registry, tmp_path):
    """Through the app's own event functions: an unsealed output (the fake studio writes plain PNGs) is refused
    in one line, nothing generated yet says so, and a good rating after them still lands."""
    from ui.app import build_app

    demo = build_app(FakeStudio(registry), tmp_path / "out", verify_on_write=False)
    h = demo.ui_handlers
    plain = h.generate(h.request_fields(prompt="a red circle", model="fake", seed=3))
    line = app_fn(demo, "rate_up")(plain, 0)
    assert line.startswith("**Error:**") and "carries no content credentials" in line and "\n" not in line
    assert "generate an image first" in app_fn(demo, "rate_down")([], 0)
    assert "run best-of-N first" in app_fn(demo, "best_of_pick")([], None)
    good = [sealed_entry(tmp_path / "good.png", (200, 0, 0), seed=5)]
    before = RatingStore().count()["like"]
    assert "thumbs up recorded for seed 5" in app_fn(demo, "rate_up")(good, 0)
    assert RatingStore().count()["like"] == before + 1


def test_best_of_reports_progress_and_stops_at_cancel(tmp_path):
    """Best-of-N shares Generate's step callback: the page's bar reads 'rendering N candidates', and Cancel
    pressed during a step stops the render at the next one."""
    import threading
    from types import SimpleNamespace

    from ui.errors import Cancelled

    seen, cancel = [], threading.Event()

    class TwoSteps:
        def generate(self, request, out, keep_all, progress):
            assert request.best_of == 3 and keep_all
            for step in (1, 2):
                progress(step, 2)
            raise AssertionError("Cancel was ignored")

    def progress(done, total, desc):
        seen.append((done, total, desc))
        cancel.set()  # the user presses Cancel during the first step

    h = SimpleNamespace(studio=TwoSteps(), out_dir=tmp_path)
    with pytest.raises(Cancelled, match="cancelled at step 2/2"):
        rp.run_best_of(h, {"prompt": "a red circle", "model": "fake"}, 3, "saturation", progress=progress,
                       cancel=cancel)
    assert seen == [(1, 2, "rendering 3 candidates")]
