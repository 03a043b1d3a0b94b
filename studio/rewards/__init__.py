"""Rewards: the registry of named rewards (the one place that says which exist and where their weights
come from), the ratings store and the learned reward's training from it.

    from studio import rewards
    r = rewards.get("learned")                 # a `Reward`: r.score(images, prompts) -> tensor
    rewards.rate(result.outputs[0], "like")   # into ratings.db (SQLite) in the config folder
    rewards.train_learned()                    # refit the learned reward from the stored ratings

Real reward models load from local folders only: `DIFFUSION_STUDIO_REWARD_<NAME>` (a folder, or the
aesthetic head's file) or `<config dir>/rewards/<name>/`. Nothing is downloaded.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from ..config import config_dir
from ..errors import RequestError
from .base import Reward, RewardError
from .modalities import REWARD_MODALITIES, RewardModality, framed, learned_name, scored_as
from .ratings import RatingStore, rate

__all__ = ["Reward", "RewardError", "RatingStore", "rate", "get", "available", "register", "REWARDS",
           "train_learned", "learned_path", "rewards_dir", "REWARD_MODALITIES", "RewardModality"]
ENV_PREFIX = "DIFFUSION_STUDIO_REWARD_"


def rewards_dir() -> Path:
    return config_dir() / "rewards"


def learned_path(modality: str = "image") -> Path:
    return rewards_dir() / f"learned-{modality}.safetensors"


def _location(name: str, suffix: str = "") -> Path:
    env = os.environ.get(ENV_PREFIX + (name + suffix).upper().replace("-", "_"))
    return Path(env).expanduser() if env else rewards_dir() / (name + suffix.lower().replace("_", "-"))


@dataclass
class RewardSpec:
    name: str
    modalities: tuple[str, ...]  # "image" also serves "video" (REWARD_MODALITIES: video is scored as frames)
    summary: str
    where: Callable[[], str]  # where its weights come from (shown by `studio rewards`)
    build: Callable[[], Reward]  # the reward for its first modality
    key: Callable[[], object] = lambda: None  # changes when the weights change (rebuild, not the cache)


def _learned(modality: str) -> Callable[[], Reward]:
    def build() -> Reward:
        from .learned import LearnedReward

        path = learned_path(modality)
        if not path.is_file():
            raise RequestError(f"reward {learned_name(modality)} has no weights yet ({path}): rate some outputs, "
                               f"then train it (`studio rewards train`, or studio.rewards.train_learned())")
        try:
            return LearnedReward.load(path, name=learned_name(modality))
        except RewardError as exc:
            raise RequestError(str(exc)) from None
    return build


def _mtime(path: Path):
    try:
        return (str(path), path.stat().st_mtime_ns)
    except OSError:
        return (str(path), None)


def _clip(kind: str) -> Callable[[], Reward]:
    def build() -> Reward:
        from .clip import ClipScore

        proc = os.environ.get(ENV_PREFIX + kind.upper() + "_PROCESSOR")
        return ClipScore(_need(kind, _location(kind)), kind=kind, processor_folder=proc)
    return build


def _need(name: str, path: Path) -> Path:
    if not path.exists():
        raise RequestError(f"reward {name} needs local weights: put them in {path} or set "
                           f"{ENV_PREFIX}{name.upper()} (nothing is downloaded)")
    return path


def _aesthetic() -> Reward:
    from .clip import Aesthetic

    head = _location("aesthetic")
    if head.is_dir():  # <rewards>/aesthetic/ holding the head file
        files = sorted(p for p in head.iterdir() if p.suffix in (".safetensors", ".pth", ".pt"))
        head = files[0] if files else head / "head.safetensors"
    clip = _location("aesthetic", "_CLIP")
    if not clip.exists() and _location("clip").exists():
        clip = _location("clip")
    return Aesthetic(_need("aesthetic", head), _need("aesthetic_clip", clip))


def _clap() -> Reward:
    from .clip import ClapScore

    return ClapScore(_need("clap", _location("clap")))


def _analytic(cls_name: str) -> Callable[[], Reward]:
    def build() -> Reward:
        from . import analytic

        return getattr(analytic, cls_name)()
    return build


def _mini_clip_folder() -> Path:
    """The shipped mini-clip weights, unless DIFFUSION_STUDIO_REWARD_MINI_CLIP names another folder."""
    env = os.environ.get(ENV_PREFIX + "MINI_CLIP")
    if env:
        return Path(env).expanduser()
    from ..mini.clip import WEIGHTS

    return WEIGHTS


def _mini_clip() -> Reward:
    from ..mini import weights_path
    from .mini_clip import MiniClip

    mini = weights_path()  # its text encoder and tokenizer are mini's own, frozen
    return MiniClip(_mini_clip_folder(), mini / "text_encoder", mini / "tokenizer")


def _hps() -> Reward:
    raise RequestError("reward hpsv2.1 is not available: it needs open_clip_torch, whose torchvision dependency "
                       "would replace this install's torch (see docs/rewards.md)")


REWARDS: dict[str, RewardSpec] = {}


def register(spec: RewardSpec) -> None:
    """Add (or replace) a named reward; a script or a test can register its own."""
    REWARDS[spec.name] = spec
    _cache.clear()


def _learned_spec(m: RewardModality) -> RewardSpec:
    return RewardSpec(m.learned_name, (m.name,), m.learned_summary, lambda: str(learned_path(m.name)),
                      _learned(m.name), lambda: _mtime(learned_path(m.name)))


for _spec in (
    *(_learned_spec(m) for m in REWARD_MODALITIES.values() if m.features is not None),
    RewardSpec("clip", ("image",), "CLIP score: 100 x cos(prompt, image), transformers CLIPModel",
               lambda: str(_location("clip")), _clip("clip"), lambda: _mtime(_location("clip"))),
    RewardSpec("pickscore", ("image",), "PickScore (a CLIPModel checkpoint; processor from "
               f"{ENV_PREFIX}PICKSCORE_PROCESSOR if the folder has none)",
               lambda: str(_location("pickscore")), _clip("pickscore"), lambda: _mtime(_location("pickscore"))),
    RewardSpec("aesthetic", ("image",), "LAION aesthetic head (state dict) on CLIP ViT-L/14 image embeddings",
               lambda: f"{_location('aesthetic')} + {_location('aesthetic', '_CLIP')}", _aesthetic,
               lambda: _mtime(_location("aesthetic"))),
    RewardSpec("clap", ("audio",), "CLAP score: 100 x cos(prompt, audio), transformers ClapModel",
               lambda: str(_location("clap")), _clap, lambda: _mtime(_location("clap"))),
    RewardSpec("hpsv2.1", ("image",), "HPSv2.1 (open-clip): not available in this install", lambda: "-", _hps),
    RewardSpec("saturation", ("image",), "mean HSV saturation (analytic)", lambda: "built in",
               _analytic("Saturation")),
    RewardSpec("brightness", ("image",), "mean luma (analytic; a deliberately bad taste, for gate tests)",
               lambda: "built in", _analytic("Brightness")),
    RewardSpec("loudness", ("audio",), "RMS level in dBFS (analytic)", lambda: "built in", _analytic("Loudness")),
    RewardSpec("mini-clip", ("image",), "mini world prompt fidelity: 100 x cos(prompt, image) of the mini CLIP "
               "(studio/mini/clip)", lambda: str(_mini_clip_folder()), _mini_clip,
               lambda: _mtime(_mini_clip_folder() / "model.safetensors")),
):
    REWARDS[_spec.name] = _spec

_cache: dict[tuple, Reward] = {}


def get(name: str, modality: str = "image") -> Reward:
    """The named reward for `modality` (a video gets the image reward's per-frame mean minus the temporal
    term); RequestError, one line, for an unknown name, a wrong modality or missing weights."""
    spec = REWARDS.get(name)
    if spec is None:
        raise RequestError(f"unknown reward {name!r} (known: {', '.join(REWARDS)})")
    base = scored_as(modality)
    if base not in spec.modalities:
        fits = [n for n, s in REWARDS.items() if base in s.modalities]
        raise RequestError(f"reward {name} scores {'/'.join(spec.modalities)}, not {modality} "
                           f"(for {modality}: {', '.join(fits)})")
    key = (name, modality, spec.key())
    if key not in _cache:
        try:
            reward = spec.build()
        except RewardError as exc:
            raise RequestError(str(exc)) from None
        if base != modality:  # scored as frames of `base`: per-frame mean minus the temporal term
            from .video import VideoReward

            reward = VideoReward(reward)
        _cache[key] = reward
    return _cache[key]


def available() -> list[dict]:
    """Every registered reward: name, modalities, what it is, where its weights come from, whether it loads."""
    out = []
    for name, spec in REWARDS.items():
        row = {"name": name, "modalities": list(spec.modalities) + framed(spec.modalities),
               "summary": spec.summary, "weights": spec.where()}
        row["ready"] = row["weights"] == "built in" or (
            row["weights"] != "-" and all(Path(p).exists() for p in row["weights"].split(" + ")))
        out.append(row)
    return out


def _modality(ref: dict) -> str:
    """What a rated item is: as its record says, else as its format or file name says (a file rated by path
    that carries no studio record)."""
    from ..modalities import WRITABLE_SUFFIXES, for_format

    if ref.get("modality"):
        return ref["modality"]
    fmt = ref.get("format") or WRITABLE_SUFFIXES.get(Path(ref.get("path") or "").suffix.lower())
    return for_format(fmt).name if fmt else "image"


def _read_media(ref: dict):
    """A rated item's media from its file (sha256-checked): PIL image, a clip's middle frame, or audio."""
    import hashlib

    from ..modalities import for_format, WRITABLE_SUFFIXES

    path = ref.get("path")
    if not path or not Path(path).is_file():
        return None
    data = Path(path).read_bytes()
    if hashlib.sha256(data).hexdigest() != ref.get("sha256"):
        return None
    fmt = ref.get("format") or WRITABLE_SUFFIXES.get(Path(path).suffix.lower())
    if fmt is None:
        return None
    media = for_format(fmt).decode(data)
    if isinstance(media, list):  # a clip: the learned image reward is trained on its middle frame
        media = media[len(media) // 2]
    return media


def train_learned(modality: str = "image", *, store: Optional[RatingStore] = None, save: bool = True,
                  holdout: float = 0.2, seed: int = 0, gate: Optional[dict] = None):
    """Refit the learned reward (`modality` image, which also rates clips, or audio) from the stored ratings;
    saves it where `get("learned")` finds it. Returns (reward, TrainReport). `gate` (options of
    `gate.gate_reward`: check, tolerance; {} for the defaults): the new reward replaces the current one only if
    the eval gate passes (`report.gate` has the verdict and figures, stored with the reward too)."""
    from .learned import train

    store = store or RatingStore()
    want = (modality, *framed((modality,)))  # image: also the ratings of clips (their middle frame)

    def fits(ref: dict) -> bool:
        return _modality(ref) in want

    cache: dict[str, object] = {}
    skipped = 0

    def media(ref: dict):
        nonlocal skipped
        if ref["sha256"] not in cache:
            cache[ref["sha256"]] = _read_media(ref)
            if cache[ref["sha256"]] is None:
                skipped += 1
        return cache[ref["sha256"]]

    pairs, groups = [], []
    for win, lose, prompt, rid in store.pairs():
        if fits(win) and fits(lose):
            a, b = media(win), media(lose)
            if a is not None and b is not None:
                pairs.append((a, b, prompt))
                groups.append(rid)
    likes = []
    for ref, prompt, liked in store.likes():
        if fits(ref) and media(ref) is not None:
            likes.append((media(ref), prompt, liked))
    try:
        reward, report = train(pairs, likes, modality=modality, holdout=holdout, groups=groups, seed=seed,
                               name=learned_name(modality), keep_heldout=gate is not None)
    except RewardError as exc:
        raise RequestError(str(exc)) from None
    report.skipped = skipped
    if gate is not None:
        from .gate import gate_reward

        try:
            current = get(learned_name(modality), modality)
        except RequestError:  # no learned reward yet (or one this studio cannot read): nothing to compare with
            current = None
        held = reward.heldout
        report.gate = gate_reward(held["reward"], [pairs[i] for i in held["pairs"]], current=current,
                                  modality=modality, **gate)
        reward.info["gate"] = report.gate
    if save and (report.gate is None or report.gate["enabled"]):
        reward.save(learned_path(modality))
        report.path = str(learned_path(modality))
        _cache.clear()
    return reward, report
