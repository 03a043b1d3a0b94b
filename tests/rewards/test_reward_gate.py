"""The eval gate for a new learned reward (issue 18: "a new reward is enabled only if the gate passes"): on
held-out rated pairs its accuracy must not fall below the current reward's, and the outputs it prefers must
not be less prompt-faithful (the mini judge) than the current reward's picks; a failed reward is not saved,
so the current one stays in use; the figures are stored with the reward and shown by `studio tune` and
`studio rewards --train` (whose --no-gate is the explicit override).

The data: mini-world prompts that say "on a black background", each rendered faithfully (black) and
unfaithfully (the same objects on white). A rater who prefers the white ones is a taste that fights the
prompt: a reward learned from it is accurate on its ratings and fails the independent check."""
from __future__ import annotations

import dataclasses
import functools
import hashlib

import pytest

from studio import rewards
from studio.cli import main
from studio.rewards import RatingStore
from studio.rewards import gate as G


def scenes(n: int):
    from studio.mini import world as W

    out, seed = [], 0
    while len(out) < n:
        s = W.sample_scene(seed, "train", n_objects=1)
        seed += 1
        o = s.objects[0]
        if o.color in ("black", "white", "gray"):
            continue
        faithful = dataclasses.replace(s, background="black")
        prompt = f"a {o.color} {o.shape} {W.POSITION_PHRASES[o.position][-1]} on a black background"
        out.append((W.render(faithful), W.render(dataclasses.replace(s, background="white")), prompt))
    return out


@pytest.fixture(scope="module")
def data():
    return scenes(20)


class Luma(rewards.Reward):
    """+/- the mean luma: `bright` prefers the white (unfaithful) renders, its opposite the faithful ones."""

    differentiable = False

    def __init__(self, sign: float):
        self.name, self.sign = f"luma{sign:+g}", sign
        self.luma = rewards.get("brightness")

    @property
    def hash(self):
        return self.name

    def score(self, media, prompts):
        return self.sign * self.luma.score(media, prompts)


bright, dark = Luma(1.0), Luma(-1.0)


def test_a_reward_that_fights_the_prompt_is_refused_even_when_it_fits_the_ratings(data):
    white_wins = [(w, b, p) for b, w, p in data[:6]]
    g = G.gate_reward(bright, white_wins, current=dark)
    assert (g["accuracy"]["new"], g["accuracy"]["current"], g["accuracy"]["gain"]) == (1.0, 0.0, 1.0)
    assert (g["check"]["name"], g["check"]["current"], g["check"]["new"], g["check"]["pairs"]) == \
        (G.MINI_CHECK, 100.0, 0.0, 6)
    assert not g["passed"] and not g["enabled"] and g["judged"]
    assert g["reasons"] == ["mini-fidelity of the outputs it prefers dropped by 100 (allowed 2)"]
    assert "not enabled: the current learned reward stays" in G.reward_summary(g)


def test_a_better_reward_passes_and_one_that_is_less_accurate_fails(data):
    black_wins = list(data[:6])
    g = G.gate_reward(dark, black_wins, current=bright)
    assert g["passed"] and g["enabled"] and g["reasons"] == [] and g["check"]["drop"] == -100.0
    assert G.reward_summary(g).startswith("reward gate passed -- held-out accuracy 1 (current 0) on 6 pairs")
    worse = G.gate_reward(bright, black_wins, current=dark)
    assert "held-out accuracy fell (1.000 -> 0.000)" in worse["reasons"] and not worse["enabled"]
    # a second reward as the check, in its own units (allowed 0): dark's picks are darker than a coin flip's
    g = G.gate_reward(dark, black_wins, check="brightness")
    assert g["check"]["name"] == "brightness" and g["check"]["hash"] and g["check"]["drop"] > 0
    assert not g["passed"] and "brightness of the outputs it prefers dropped" in g["reasons"][0]


def test_the_first_reward_is_judged_against_a_coin_flip_and_enabled_unjudged_only_with_nothing_to_protect(data):
    g = G.gate_reward(bright, [(w, b, p) for b, w, p in data[:4]])  # no current reward: a coin flip is the base
    assert g["check"]["current"] == 50.0 and g["check"]["new"] == 0.0 and not g["enabled"]
    g = G.gate_reward(None, [])
    assert not g["passed"] and not g["judged"] and g["enabled"]
    assert "no held-out rated pairs" in g["reasons"][0] and "enabled unjudged" in G.reward_summary(g)
    assert not G.gate_reward(None, [], current=dark)["enabled"]  # a reward in use is never replaced unjudged
    g = G.gate_reward(dark, [(b, w, "a photo of a cat") for b, w, _ in data[:3]], current=bright)
    assert not g["enabled"] and "none of the held-out prompts is one mini-fidelity can check" in g["reasons"]


def rate_files(store: RatingStore, data, folder, *, white_wins: bool) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for k, (black, white, prompt) in enumerate(data):
        items = []
        for name, im in (("black", black), ("white", white)):
            path = folder / f"{k}-{name}.png"
            im.save(path)
            items.append({"sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "path": str(path),
                          "prompt": prompt, "format": "png", "modality": "image"})
        best, other = items[::-1] if white_wins else items
        store.pick(best, [other])


def test_a_refresh_is_saved_only_when_its_gate_passes_and_studio_tune_shows_the_verdict(data, tmp_path, monkeypatch,
                                                                                       capsys):
    from studio.rewards import learned

    monkeypatch.setenv("DIFFUSION_STUDIO_HOME", str(tmp_path / "home"))
    # 60 full-batch steps separate black from white; the default 400 only cost time here (3 refreshes x 2 fits)
    monkeypatch.setattr(learned, "train", functools.partial(learned.train, steps=60))
    faithful = RatingStore(tmp_path / "faithful.db")
    rate_files(faithful, data, tmp_path / "a", white_wins=False)
    _, rep = rewards.train_learned(store=faithful, gate={})
    assert rep.gate["passed"] and rep.gate["current_hash"] is None and rep.path == str(rewards.learned_path())
    first = rewards.learned_path().read_bytes()
    assert rewards.get("learned").info["gate"]["passed"]  # the figures are stored with the reward

    fighting = RatingStore()  # the default store: what `studio tune` refreshes from
    rate_files(fighting, data, tmp_path / "b", white_wins=True)
    _, rep = rewards.train_learned(store=fighting, gate={})
    assert not rep.gate["enabled"] and rep.path is None and rep.gate["current_hash"] == rewards.get("learned").hash
    assert rep.gate["accuracy"]["gain"] > 0 and "mini-fidelity of the outputs it prefers dropped" in rep.gate["reasons"][0]
    assert rewards.learned_path().read_bytes() == first  # the current reward stays in use

    assert main(["tune", "--reward-only"]) == 0
    out = capsys.readouterr().out
    assert "reward gate FAILED: mini-fidelity of the outputs it prefers dropped" in out
    assert "not enabled: the current learned reward stays" in out and rewards.learned_path().read_bytes() == first
    assert main(["rewards", "--train", "image"]) == 0  # gated there too
    out = capsys.readouterr().out
    assert "reward gate FAILED" in out and out.rstrip().endswith("not saved: the current learned reward stays")
    assert main(["rewards", "--train", "image", "--no-gate"]) == 0  # the explicit override replaces it
    assert "saved " in capsys.readouterr().out and rewards.learned_path().read_bytes() != first


def test_audio_rewards_are_checked_by_the_mini_music_judge_with_no_check_named():
    """A learned audio reward gets the mini music judge as its independent check (no --check needed): picks of
    the melody the prompt describes keep fidelity, picks of a louder melody in another instrument drop it."""
    import numpy as np

    from studio.mini.music import world as MW

    pairs = []
    for seed in range(3):
        m = MW.sample_melody(seed, duration=3.0)
        other = MW.make_melody(next(i for i in MW.INSTRUMENTS if i != m.instrument), m.tempo, m.register,
                               m.contour, m.mode, seed=seed, duration=3.0)
        faithful, louder = (0.4 * MW.render(m), MW.SR), (np.clip(3.0 * MW.render(other), -1, 1), MW.SR)
        pairs.append((faithful, louder, MW.caption(m, full=True)))
    assert G.music_expected(pairs[0][2]) == MW.sample_melody(0, duration=3.0).attrs()
    loud = rewards.get("loudness", "audio")

    class Quiet(rewards.Reward):
        name, modality = "quiet", "audio"

        def score(self, media, prompts):
            return -loud.score(media, prompts)

    quiet = Quiet()
    g = G.gate_reward(loud, [(b, a, p) for a, b, p in pairs], current=quiet, modality="audio")
    assert (g["check"]["name"], g["check"]["current"], g["check"]["new"]) == (G.MUSIC_CHECK, 100.0, 0.0)
    assert not g["enabled"] and g["reasons"] == ["mini-music-fidelity of the outputs it prefers dropped by 100 "
                                                 "(allowed 2)"]
    assert G.gate_reward(quiet, pairs, current=loud, modality="audio")["passed"]
    assert G.music_expected("a fast slow sine melody rising in a high register, minor") is None
    assert G.music_expected("a sine melody") is None
