"""The Tune tab's functions below the browser: the ratings summary and when it is enough, the form's checks
(each refused in one line before anything loads), the gate verdict's PASSED / FAILED, the tuned-LoRA table and
"Use it in Generate" (refused for a failed, ungated or changed LoRA, as the engine would), the app's events
answering a bad click in the status line; and the Gallery's thumbs through the app's own event functions."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from studio import RequestError
from studio.rewards import RatingStore

from test_handlers import FakeStudio, app_fn  # noqa: E402
from test_ratings_panel import sealed_entry  # noqa: E402
from ui import tune_panel as tp


def rate(store, n_prompts: int, *, picks=True, thumbs=True) -> None:
    for k in range(n_prompts):
        a, b = ({"sha256": f"{k}{j}" * 32, "prompt": f"prompt {k}", "modality": "image"} for j in "ab")
        if picks:
            store.pick(a, [b])
        if thumbs:
            store.like(a)
            store.dislike(b)
    store.like({"sha256": "c" * 64, "prompt": "a song", "modality": "audio"})  # not an image: tune skips it


def test_the_summary_counts_image_ratings_and_says_when_they_are_enough(tmp_path):
    store = RatingStore(tmp_path / "r.db")
    s = tp.ratings_summary(store)
    assert not s["enough"] and "no image ratings yet" in s["why"]
    rate(store, 4)
    s = tp.ratings_summary(store)
    assert (s["pairs"], s["likes"], s["dislikes"], s["prompts"]) == (4, 4, 4, 4)
    assert not s["enough"] and "at least 5 different prompts" in s["why"] and "you have 4" in s["why"]
    assert "Not enough to tune" in tp.summary_line(s)
    rate(store, 5)
    s = tp.ratings_summary(store)
    assert s["enough"] and s["prompts"] == 5 and s["pairs"] == 9
    assert tp.summary_line(s).startswith("**Image ratings: 9 pairs, 9 👍, 9 👎 on 5 prompt(s).**")


@pytest.fixture()
def h(registry, tmp_path):
    from ui.handlers import Handlers

    registry.add("mini-fake", str(tmp_path / "fake-model"), "sd1", width=64, height=64, steps=2)
    return Handlers(FakeStudio(registry), tmp_path / "out", verify_on_write=False, loras_dir=tmp_path / "loras")


@pytest.mark.parametrize("change, message", [
    ({"model": "/etc/models/x"}, "is not a model in this server's registry"),
    ({"method": "ppo"}, "method must be one of auto, dpo, kto"),
    ({"steps": 0}, "steps must be at least 1"),
    ({"steps": 2.5}, "steps must be a whole number"),
    ({"steps": 10 ** 6}, "steps must be 1 to 5000"),
    ({"rank": "x"}, "rank must be a number"),
    ({"lr": 0}, "learning rate must be in (0, 1]"),
    ({"gate_seeds": 0}, "gate seeds must be at least 1"),
    ({"model": "fake"}, "pick an independent check for the gate"),
    ({"check": "no-such-reward"}, "is not a reward ready for images"),
])
def test_the_form_is_checked_in_one_line(h, change, message):
    form = dict(model="mini-fake", method="auto", steps=3, rank=4, lr=1e-3, check="auto", gate_seeds=1,
                gate_steps=0)
    form.update(change)
    with pytest.raises(RequestError) as exc:
        tp.tune_settings(h, **form)
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_good_settings_and_a_second_reward_as_check(h):
    got = tp.tune_settings(h, "fake", "kto", "3", 4, "0.01", "brightness", 1, 0)
    assert got == {"model": "fake", "method": "kto", "steps": 3, "rank": 4, "lr": 0.01, "check": "brightness",
                   "gate_seeds": 1, "gate_steps": None}
    assert tp.tune_settings(h, "mini-fake", "auto", 3, 4, 1e-3, "auto", 2, 5)["check"] is None  # the judge


def test_too_few_ratings_or_the_wrong_kind_are_refused_before_any_load(h, tmp_path, no_load):
    store = RatingStore(tmp_path / "r.db")
    rate(store, 3)
    with pytest.raises(RequestError, match="at least 5 different prompts"):
        tp.run_tune(h, "mini-fake", store=store)
    thumbs = RatingStore(tmp_path / "t.db")
    rate(thumbs, 5, picks=False)
    with pytest.raises(RequestError, match="DPO trains on best-of-N picks and there are none"):
        tp.run_tune(h, "mini-fake", "dpo", store=thumbs)
    picks = RatingStore(tmp_path / "p.db")
    rate(picks, 5, thumbs=False)
    with pytest.raises(RequestError, match="KTO trains on thumbs"):
        tp.run_tune(h, "mini-fake", "kto", store=picks)
    assert not (tmp_path / "loras").exists() or not list((tmp_path / "loras").iterdir())


def gate(passed: bool) -> dict:
    return {"passed": passed, "reasons": [] if passed else ["mini-fidelity dropped by 50 (allowed 2)"],
            "reward": {"name": "learned", "base": 0.5, "tuned": 0.6, "gain": 0.1},
            "check": {"name": "mini-fidelity", "base": 100.0, "tuned": 50.0 if not passed else 100.0,
                      "drop": 50.0 if not passed else 0.0, "tolerance": 2.0},
            "images_per_arm": 2, "seeds": [0]}


def test_the_verdict_says_passed_or_failed_with_the_gate_summary():
    ok, bad = tp.verdict_html(gate(True)), tp.verdict_html(gate(False))
    assert "PASSED" in ok and "verdict-good" in ok and "eval gate passed" in ok and "0.5 -&gt; 0.6" in ok
    assert "FAILED" in bad and "verdict-bad" in bad and "<li>mini-fidelity dropped by 50 (allowed 2)</li>" in bad
    assert "Not gated" in tp.verdict_html(None)


def tuned_file(h, name: str, gate_dict) -> Path:
    import pipelines
    from studio.rewards.tune import LORA_FORMAT, write_provenance

    path = h.loras_dir / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not really a LoRA " + name.encode())
    sha = pipelines.file_sha256(path)
    meta = {"format": LORA_FORMAT, "lora_sha256": sha, "created": name, "base_model": {"name": "mini"},
            "method": "auto", "steps": 3, "ratings": {"used": 12, "heldout_prompts": ["p1", "p2", "p3"]},
            "gate": gate_dict and {**gate_dict, "lora_sha256": sha}, "enabled": bool(gate_dict and gate_dict["passed"])}
    write_provenance(path, meta)
    return path


def test_the_table_and_use_in_generate_follow_the_gate(h):
    tuned_file(h, "tuned-a.safetensors", gate(True))
    tuned_file(h, "tuned-b.safetensors", gate(False))
    tuned_file(h, "tuned-c.safetensors", None)
    changed = tuned_file(h, "tuned-d.safetensors", gate(True))
    changed.write_bytes(b"edited")
    (h.loras_dir / "other.safetensors").write_bytes(b"a LoRA the studio did not tune")
    rows = {r[0]: r for r in tp.tuned_rows(h)}
    assert set(rows) == {"tuned-a.safetensors", "tuned-b.safetensors", "tuned-c.safetensors",
                         "tuned-d.safetensors"}
    assert [rows[f"tuned-{k}.safetensors"][5] for k in "abcd"] == ["PASSED", "FAILED", "not gated",
                                                                    "changed since its gate"]
    assert rows["tuned-a.safetensors"][6:] == ["+0.1", "+0"] and rows["tuned-b.safetensors"][7] == "+50"

    assert tp.use_in_generate(h, "tuned-a.safetensors", ["other.safetensors"]) == ["other.safetensors",
                                                                                  "tuned-a.safetensors"]
    for name, why in (("tuned-b.safetensors", "failed the eval gate"), ("tuned-c.safetensors", "has not been"),
                      ("tuned-d.safetensors", "changed since its eval gate")):
        with pytest.raises(RequestError, match=why):
            tp.use_in_generate(h, name, [])
    with pytest.raises(RequestError, match="tune a LoRA first"):
        tp.use_in_generate(h, None, [])
    with pytest.raises(Exception, match="LoRA folder"):
        tp.use_in_generate(h, "../../etc/x.safetensors", [])


def test_previews_render_base_and_tuned_with_the_gates_seed_through_the_engine(h):
    path = tuned_file(h, "tuned-a.safetensors", gate(False))
    meta = json.loads(path.with_suffix(".json").read_text())
    meta["gate"]["check"]["name"] = "brightness"  # any prompt is previewed; the mini judge's filter is off
    meta["gate"]["steps"], meta["gate"]["guidance"], meta["size"] = 3, 4.0, [64, 64]
    meta["base_model"]["name"] = "fake"
    got = tp.render_previews(h, path, meta)
    assert [e["arm"] for e in got] == ["base", "tuned"] * 2  # PREVIEW_PROMPTS held-out prompts of 3
    calls = [c["request"] for c in h.studio.calls]
    assert [c.prompt for c in calls] == ["p1", "p1", "p2", "p2"] and {c.seed for c in calls} == {0}
    assert {(c.steps, c.guidance, c.width, c.height) for c in calls} == {(3, 4.0, 64, 64)}
    assert [len(c.loras) for c in calls] == [0, 1, 0, 1]
    assert calls[1].loras[0].allow_failed_gate is True  # failed gate: previewed with the override, recorded
    assert all(e["source"] == "tune" for e in got) and got[1]["request"]["loras"][0]["path"] == "tuned-a.safetensors"
    assert "before: base model · seed 0 · p1" == tp.preview_gallery(got)[0][1]


def streamed_line(demo, *args, name: str = "do_tune"):
    """do_tune (and do_regate) stream: on a failure they yield the status line, then raise gr.Error for the
    toast."""
    import gradio as gr

    fn = next(f.fn for f in demo.fns.values() if f.name == name)
    out = None
    with pytest.raises(gr.Error):
        for out in fn(*args):
            pass
    return out


def test_bad_clicks_in_the_app_answer_in_the_status_line(registry, tmp_path, monkeypatch):
    from ui.app import build_app

    # a home of its own: the suite's shared one holds other tests' ratings, and then the ratings check passes
    monkeypatch.setenv("DIFFUSION_STUDIO_HOME", str(tmp_path / "home"))
    demo = build_app(FakeStudio(registry), tmp_path / "out", verify_on_write=False, loras_dir=tmp_path / "loras")
    line = streamed_line(demo, "fake", "auto", 2, 4, 1e-3, "brightness", 1, 0)
    assert line[0].startswith("**Error:**") and "\n" not in line[0]  # the test home has no ratings
    assert "no image ratings yet" in line[0] or "different prompts" in line[0]
    line = streamed_line(demo, "fake", "auto", -3, 4, 1e-3, "brightness", 1, 0)
    assert "steps must be at least 1" in line[0]
    assert "tune a LoRA first" in app_fn(demo, "tune_use")(None, [])[0]
    assert app_fn(demo, "tune_refresh")()[0].startswith("**Image ratings:")

    # the Gallery's thumbs: nothing selected, an unsealed file, then a sealed one that lands in the store
    assert "select an output in the gallery first" in app_fn(demo, "gallery_rate_up")(None)
    h = demo.ui_handlers
    plain = h.generate(h.request_fields(prompt="a red circle", model="fake", seed=3))[0]
    assert "carries no content credentials" in app_fn(demo, "gallery_rate_down")(plain)
    good = sealed_entry(tmp_path / "good.png", (200, 0, 0), seed=5)
    before = RatingStore().count()
    assert "thumbs down recorded for seed 5" in app_fn(demo, "gallery_rate_down")(good)
    assert RatingStore().count()["dislike"] == before["dislike"] + 1
    assert "thumbs up recorded for seed 5" in app_fn(demo, "rate_up")([good], 0)  # Generate's still work
