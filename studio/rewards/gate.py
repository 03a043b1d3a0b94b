"""The eval gate: a tuned LoRA is enabled only if, on held-out prompts, the learned reward improves AND an
independent check does not get worse. On the mini model the check is the analytic judge's prompt fidelity
(colour, shape, position and background all right, as the prompt says); on other models it is a second
reward named with `check=` (e.g. `clip`). A reward-hacking LoRA (one that pleases the reward by drifting
from the prompt) raises the first and fails the second.

Both arms (base and base + LoRA) render the same prompts with the same seeds, through the same loader the
engine uses (`pipelines.apply_loras`), so the difference is the LoRA's. Only scores leave this module: the
images are never written or shown. The figures go into the LoRA's provenance JSON, bound to its sha256, and
`check_tuned_lora` (called by the engine for every LoRA a request names) refuses a studio-tuned LoRA that
failed the gate, was never gated or changed since, unless the request overrides it explicitly.
"""
from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path
from typing import Callable, Optional, Sequence

from ..errors import RequestError
from .tune import load_base, read_provenance, write_provenance

MINI_CHECK = "mini-fidelity"
DEFAULT_TOLERANCE = 2.0  # points of fidelity (issue 18: prompt fidelity may drop by <= 2 points)
OVERRIDE_HINT = "allow_failed_gate=True on the LoRA (CLI --allow-failed-lora) uses it anyway"


# -- the mini model's independent check: what the prompt asks for vs what the analytic judge sees ---------------
def mini_expected(prompt: str) -> Optional[dict]:
    """The colour, shape, position and background a one-object mini-world prompt asks for (size may be left
    unstated), or None when the prompt is not of that form. Read with the mini text encoder's caption parser,
    the one its training labels come from."""
    from ..mini.text_encoder import parse_caption

    parsed = parse_caption(prompt.lower().replace(",", " , ").split())
    objects, bg = parsed["objects"], parsed["background"]
    if len(objects) != 1 or bg is None or "position" not in objects[0]:
        return None
    o = objects[0]
    return {"color": o["color"][0], "shape": o["shape"][0], "position": o["position"][0], "background": bg[0]}


def mini_fidelity(image, prompt: str) -> Optional[bool]:
    """All four of the prompt's stated attributes right, per the analytic judge (None: prompt not checkable)."""
    from ..mini.judge import judge

    want = mini_expected(prompt)
    if want is None:
        return None
    v = judge(image)
    got = v.objects[0].attrs() if v.objects else {}
    return v.background == want["background"] and all(got.get(k) == want[k] for k in ("color", "shape", "position"))


# -- the mini music world's independent check: the analytic music judge on what the prompt states ---------------
MUSIC_CHECK = "mini-music-fidelity"


def music_expected(prompt: str) -> Optional[dict]:
    """The instrument, tempo, register, contour and mode a mini music-world prompt states ("a fast plucked
    melody rising in a high register, minor"), read with the words of the mini music text encoder; None when the
    prompt does not state all five or contradicts itself."""
    from ..mini.music.text import CONCEPT_WORDS
    from ..mini.music.world import ATTRS

    want: dict = {}
    for w in prompt.lower().replace(",", " ").split():
        if w in CONCEPT_WORDS:
            attr, value = CONCEPT_WORDS[w]
            if want.setdefault(attr, value) != value:
                return None
    return want if set(want) == set(ATTRS) else None


def music_fidelity(audio, prompt: str) -> Optional[bool]:
    """All five stated attributes right, per the mini music judge (None: prompt not checkable)."""
    from ..mini.music.judge import judge, score
    from .base import audio_mono

    want = music_expected(prompt)
    if want is None:
        return None
    samples, rate = audio_mono(audio)
    return bool(score(want, judge(samples.numpy(), rate))["all"])


# the check a learned reward of each modality gets when none is named: (expected, fidelity) functions
DEFAULT_CHECKS = {"image": MINI_CHECK, "audio": MUSIC_CHECK}


def _analytic_check(name: str):
    return {MINI_CHECK: (mini_expected, mini_fidelity), MUSIC_CHECK: (music_expected, music_fidelity)}.get(name)


# -- rendering and scoring ---------------------------------------------------------------------------------------
def _render(loaded, prompts: Sequence[str], seeds: Sequence[int], *, steps: int, guidance: float, width: int,
            height: int, batch: int = 8, progress: Optional[Callable[[], None]] = None) -> list:
    import torch

    jobs = [(p, s) for p in prompts for s in seeds]
    images = []
    for i in range(0, len(jobs), batch):
        chunk = jobs[i:i + batch]
        with torch.no_grad():
            out = loaded.pipe([p for p, _ in chunk], num_inference_steps=steps, guidance_scale=guidance,
                              generator=[torch.Generator().manual_seed(s) for _, s in chunk], width=width,
                              height=height)
        images.extend(out.images)
        if progress:
            progress(len(chunk))
    return images


def _mean(v) -> Optional[float]:
    v = [float(x) for x in v if x is not None]
    return sum(v) / len(v) if v else None


def run_gate(lora: os.PathLike | str, *, model: Optional[str] = None, prompts: Sequence[str] = (),
             seeds: Sequence[int] = (0, 1), reward: str = "learned", check: Optional[str] = None,
             tolerance: Optional[float] = None, min_gain: float = 0.0, steps: Optional[int] = None,
             guidance: Optional[float] = None, also: Sequence[str] = (), progress=None,
             write: bool = True) -> dict:
    """Render `prompts` x `seeds` with the base model and with the LoRA, score both with `reward` (must
    improve by more than `min_gain`) and with the independent `check` (default: the mini judge's fidelity
    on the mini model; must not drop by more than `tolerance`: 2 fidelity points, or 0 in a check reward's
    units), store the figures in the LoRA's provenance JSON (`write`). `also`: more rewards to report on the
    same images (figures only, no say in the verdict). Returns the gate dict, with the whole
    provenance under "provenance"."""
    import pipelines

    from . import get

    lora = Path(lora).expanduser()
    meta = read_provenance(lora)
    if meta is None:
        raise RequestError(f"{lora} has no studio tune provenance ({lora.with_suffix('.json').name}): only LoRAs "
                           "made by `studio tune` are gated")
    prompts = list(prompts)
    if not prompts:
        raise RequestError("the eval gate needs held-out prompts (rate outputs of more prompts, or pass some)")
    entry, loaded = load_base(model or meta["base_model"]["name"])
    if entry.sampler:  # render as the engine does for this model (mini: Euler), not with the pipeline's default
        import schedulers

        loaded.pipe.scheduler = schedulers.make_scheduler(entry.sampler, loaded.base_scheduler_config,
                                                          loaded.family)
    if loaded.content_hash != meta["base_model"]["hash"]:
        raise RequestError(f"{lora.name} was tuned on model hash {meta['base_model']['hash'][:12]}, not "
                           f"{entry.name} ({loaded.content_hash[:12]})")
    check = check or (MINI_CHECK if entry.name.startswith("mini") else None)
    if check is None:
        raise RequestError(f"the eval gate needs an independent check for {entry.name}: a second reward "
                           "(check=NAME, CLI --check NAME)")
    judged = [p for p in prompts if mini_expected(p) is not None] if check == MINI_CHECK else prompts
    if not judged:
        raise RequestError(f"none of the {len(prompts)} held-out prompts is a one-object mini-world prompt the "
                           "judge can check")
    tol = DEFAULT_TOLERANCE if tolerance is None and check == MINI_CHECK else float(tolerance or 0.0)
    scorer = get(reward, "image")
    second = None if check == MINI_CHECK else get(check, "image")
    width, height = meta.get("size") or (entry.width, entry.height)  # where it was trained
    opts = dict(steps=steps or entry.steps, guidance=entry.guidance if guidance is None else guidance,
                width=width, height=height)
    total = 2 * len(judged) * len(seeds)
    done = [0]

    def tick(n):
        done[0] += n
        if progress:
            progress(done[0], total, "gate")

    arms = {}
    for arm, loras in (("base", []), ("tuned", [(lora, 1.0)])):
        hashes = pipelines.apply_loras(loaded, loras)
        try:
            images = _render(loaded, judged, seeds, progress=tick, **opts)
        finally:
            pipelines.apply_loras(loaded, [])
        ps = [p for p in judged for _ in seeds]
        r = scorer.score(images, ps).flatten().tolist()
        c = [100.0 * bool(mini_fidelity(im, p)) for im, p in zip(images, ps)] if second is None else \
            second.score(images, ps).flatten().tolist()
        arms[arm] = {"reward": _mean(r), "check": _mean(c), "lora_hashes": hashes,
                     "also": {n: _mean(get(n, "image").score(images, ps).flatten().tolist()) for n in also}}
    gain = arms["tuned"]["reward"] - arms["base"]["reward"]
    drop = arms["base"]["check"] - arms["tuned"]["check"]
    reasons = []
    if not gain > min_gain:
        reasons.append(f"reward {reward} did not improve ({gain:+.4g})")
    if drop > tol:
        reasons.append(f"{check} dropped by {drop:.4g} (allowed {tol:g})")
    result = {
        "passed": not reasons, "reasons": reasons, "lora_sha256": pipelines.file_sha256(lora),
        "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "reward": {"name": reward, "hash": scorer.hash, "base": arms["base"]["reward"],
                   "tuned": arms["tuned"]["reward"], "gain": gain, "min_gain": min_gain},
        "check": {"name": check, "hash": None if second is None else second.hash, "base": arms["base"]["check"],
                  "tuned": arms["tuned"]["check"], "drop": drop, "tolerance": tol},
        "also": {n: {"base": arms["base"]["also"][n], "tuned": arms["tuned"]["also"][n]} for n in also},
        "prompts": len(judged), "seeds": list(seeds), "images_per_arm": len(judged) * len(seeds),
        "steps": opts["steps"], "guidance": opts["guidance"], "sampler": type(loaded.pipe.scheduler).__name__,
    }
    meta["gate"] = result
    meta["enabled"] = result["passed"]
    if write:
        write_provenance(lora, meta)
    return {**result, "provenance": meta}


def rerun_gate(lora: os.PathLike | str, *, model: Optional[str] = None, progress=None, **options) -> dict:
    """The eval gate again on a tuned LoRA, on the held-out prompts its provenance names (e.g. after new ratings
    refreshed the learned reward): the verdict replaces the stored one, so the engine follows it. `options` go
    to `run_gate` (seeds, check, tolerance, steps...). `studio tune --gate LORA` and the Tune tab call this."""
    meta = read_provenance(lora)
    if meta is None:
        raise RequestError(f"{Path(lora).name} is not a LoRA made by `studio tune` (no provenance JSON next to it)")
    held = (meta.get("ratings") or {}).get("heldout_prompts") or []
    return run_gate(lora, model=model, prompts=held, progress=progress, **options)


# -- the gate for a new learned reward ---------------------------------------------------------------------------
def _preferred(reward, pairs: Sequence) -> list[bool]:
    """Per pair (preferred, other, prompt): does `reward` score the preferred one higher (a tie is not)."""
    prompts = [p for _, _, p in pairs]
    won = reward.score([w for w, _, _ in pairs], prompts).flatten()
    lost = reward.score([o for _, o, _ in pairs], prompts).flatten()
    return (won > lost).tolist()


def gate_reward(candidate, pairs: Sequence, *, current=None, modality: str = "image", check: Optional[str] = None,
                tolerance: Optional[float] = None) -> dict:
    """The eval gate for a new learned reward: on held-out rated pairs (preferred, other, prompt), which
    `candidate` (the fit that did not see them) was not trained on, its pairwise accuracy must not fall below the
    `current` reward's (the one in use; None: no reward yet, then it must beat chance), and an independent
    check of the outputs each reward prefers must not get worse: the mini judge's prompt fidelity (points, 2
    allowed) on prompts it can read (audio: the mini music judge's), or a second reward `check` (0 allowed, in
    its units); with no current
    reward the baseline is a coin flip between the two. Returns the verdict and figures; `enabled`: passed, or
    (nothing to protect) no current reward and nothing to judge the first one on."""
    from . import get

    pairs = list(pairs)
    reasons = []
    acc = {"new": None, "current": None}
    picks = {}
    for arm, reward in (("new", candidate), ("current", current)):
        if reward is not None and pairs:
            picks[arm] = _preferred(reward, pairs)
            acc[arm] = sum(picks[arm]) / len(pairs)
    if acc["new"] is None:
        reasons.append("no held-out rated pairs to judge it on (rate more outputs)")
    elif acc["current"] is not None and acc["new"] < acc["current"]:
        reasons.append(f"held-out accuracy fell ({acc['current']:.3f} -> {acc['new']:.3f})")
    elif acc["current"] is None and not acc["new"] > 0.5:
        reasons.append(f"held-out accuracy {acc['new']:.3f} is no better than chance")

    name = check or DEFAULT_CHECKS.get(modality)
    analytic = _analytic_check(name)
    tol = DEFAULT_TOLERANCE if tolerance is None and analytic else float(tolerance or 0.0)
    fig = {"name": name, "hash": None, "current": None, "new": None, "drop": None, "tolerance": tol, "pairs": 0}
    rows = [i for i, (_, _, p) in enumerate(pairs) if not analytic or analytic[0](p) is not None]
    if name is None:
        reasons.append(f"no independent check for {modality} rewards: name a second reward (check=NAME)")
    elif not rows or acc["new"] is None:
        reasons.append(f"none of the held-out prompts is one {name} can check")
    else:
        if analytic:
            def values(items):
                return [100.0 * bool(analytic[1](im, p)) for im, p in items]
        else:
            second = get(name, modality)
            fig["hash"] = second.hash

            def values(items):
                return second.score([im for im, _ in items], [p for _, p in items]).flatten().tolist()
        w = values([(pairs[i][0], pairs[i][2]) for i in rows])
        o = values([(pairs[i][1], pairs[i][2]) for i in rows])

        def mean_pick(arm):  # the check's mean over the outputs `arm` prefers; no reward: a coin flip
            if arm not in picks:
                return sum(w + o) / (2 * len(rows))
            return sum(w[k] if picks[arm][i] else o[k] for k, i in enumerate(rows)) / len(rows)

        fig.update(current=mean_pick("current"), new=mean_pick("new"), pairs=len(rows))
        fig["drop"] = fig["current"] - fig["new"]
        if fig["drop"] > tol:
            reasons.append(f"{name} of the outputs it prefers dropped by {fig['drop']:.4g} (allowed {tol:g})")
    judged = acc["new"] is not None and fig["drop"] is not None
    passed = not reasons
    return {"passed": passed, "enabled": passed or (current is None and not judged), "judged": judged,
            "reasons": reasons, "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "accuracy": {**acc, "gain": None if None in acc.values() else acc["new"] - acc["current"]},
            "current_hash": None if current is None else current.hash, "check": fig, "heldout_pairs": len(pairs)}


def reward_summary(gate: dict) -> str:
    """One line: the new learned reward's verdict, its figures, and whether it is in use now."""
    a, c = gate["accuracy"], gate["check"]

    def f(v):
        return "-" if v is None else f"{v:.4g}"

    verdict = "passed" if gate["passed"] else "FAILED: " + "; ".join(gate["reasons"])
    state = ("enabled" if gate["passed"] else "enabled unjudged: there was no learned reward yet"
             if gate["enabled"] else "not enabled: the current learned reward stays")
    return (f"reward gate {verdict} -- held-out accuracy {f(a['new'])} (current {f(a['current'])}) on "
            f"{gate['heldout_pairs']} pairs; {c['name'] or 'check'} of the preferred outputs {f(c['current'])} -> "
            f"{f(c['new'])} (drop {f(c['drop'])}, allowed {c['tolerance']:g}); {state}")


def summary(gate: dict) -> str:
    """One line: the verdict and the figures behind it."""
    r, c = gate["reward"], gate["check"]
    verdict = "passed" if gate["passed"] else "FAILED: " + "; ".join(gate["reasons"])
    return (f"eval gate {verdict} -- reward {r['name']} {r['base']:.4g} -> {r['tuned']:.4g} ({r['gain']:+.4g}); "
            f"{c['name']} {c['base']:.4g} -> {c['tuned']:.4g} (drop {c['drop']:.4g}, allowed {c['tolerance']:g}); "
            f"{gate['images_per_arm']} images per arm")


def gate_state(path: os.PathLike | str, meta: Optional[dict] = None) -> Optional[str]:
    """"PASSED", "FAILED", "not gated" or "changed since its gate" for a studio-tuned LoRA; None for one the
    studio did not tune. The one reading of the gate's verdict that the engine's refusal and the UI share."""
    meta = read_provenance(path) if meta is None else meta
    if meta is None:
        return None
    import pipelines

    gate = meta.get("gate")
    if not gate:
        return "not gated"
    if gate.get("lora_sha256") != pipelines.file_sha256(path):
        return "changed since its gate"
    return "PASSED" if gate.get("passed") else "FAILED"


def check_tuned_lora(path: os.PathLike | str, *, allow_failed: bool = False) -> None:
    """RequestError (one line) for a studio-tuned LoRA that is not enabled: gate failed, never run, or the file
    changed since. LoRAs the studio did not tune (no provenance JSON) are not the gate's business."""
    meta = read_provenance(path)
    if meta is None or allow_failed:
        return
    name = Path(path).name
    gate = meta.get("gate")
    state = gate_state(path, meta)
    if state == "not gated":
        raise RequestError(f"LoRA {name} was tuned by the studio but has not been through the eval gate "
                           f"(`studio tune --gate {path}`); {OVERRIDE_HINT}")
    if state == "changed since its gate":
        raise RequestError(f"LoRA {name} changed since its eval gate ran (sha256 differs): gate it again; "
                           f"{OVERRIDE_HINT}")
    if state == "FAILED":
        raise RequestError(f"LoRA {name} failed the eval gate ({'; '.join(gate.get('reasons') or ['failed'])}); "
                           f"{OVERRIDE_HINT}")
