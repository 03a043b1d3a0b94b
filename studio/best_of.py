"""Best-of-N for every modality: render N candidates (seeds seed..seed+N-1, one batch on the device), score
each with a named reward before the seal, rank them, then seal all N with the reward's name and hash, N,
their score and rank in each output's record and C2PA manifest; deliver the best (or all N).

Each candidate is sealed like the single render of its seed (same watermark ID), so any one of them replays
with `seed=<its seed>` and no best_of; pixels are equal within the batch-vs-single rounding the engine
documents for batches. Scores are read from the unsealed media (the seal's watermark would otherwise enter
the ranking); only numbers leave that step (`Generated.score`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from .engine import Result
from .errors import RequestError
from .schema import GenerationRequest, RewardRecord
from .writer import Output, check_output_targets, output_paths, write_atomic


@dataclass
class BestOfResult(Result):
    """An engine `Result` whose `outputs` are what was kept, best first (one, or all N with keep_all);
    `candidates`: all N sealed outputs in seed order; `ranking`: candidate indices best first; `scores`: one
    per candidate."""

    candidates: list[Output] = field(default_factory=list)
    ranking: list[int] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    reward: dict = field(default_factory=dict)

    @property
    def best(self) -> Output:
        return self.candidates[self.ranking[0]]


def rank(scores: list[float]) -> tuple[list[int], list[int]]:
    """(indices best first, rank of each index with 1 = best); ties keep the lower seed first."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    ranks = [0] * len(scores)
    for pos, i in enumerate(order):
        ranks[i] = pos + 1
    return order, ranks


class PendingBestOf:
    """Scored and ranked, not yet sealed (`deliver=False`, e.g. a batch job's seal thread): `finish()` seals
    all N and writes the kept ones."""

    def __init__(self, generated, reward, scores, *, out, keep_all, overwrite):
        self._generated, self._reward, self._scores = generated, reward, scores
        self._out, self._keep_all, self._overwrite = out, keep_all, overwrite
        self.record = generated.record
        self._result: Optional[BestOfResult] = None

    def finish(self) -> BestOfResult:
        if self._result is not None:
            return self._result
        order, ranks = rank(self._scores)
        result = self._generated.finish()  # seals all N with the reward in their params; writes nothing
        candidates = result.outputs
        for i, o in enumerate(candidates):
            o.record.reward_score, o.record.reward_rank = self._scores[i], ranks[i]
        kept = [candidates[i] for i in order] if self._keep_all else [candidates[order[0]]]
        if self._out is not None:
            fmt = self.record.request.output_format
            seeds = [o.record.seed for o in candidates]
            if self._keep_all:
                targets = dict(zip(range(len(candidates)), output_paths(self._out, fmt, seeds)))
            else:
                targets = {order[0]: output_paths(self._out, fmt, [seeds[order[0]]])[0]}
            for i, path in targets.items():
                write_atomic(path, candidates[i].data, overwrite=self._overwrite)
                candidates[i].record.path = str(path)
        self.record.outputs = [o.record for o in candidates]
        self._result = BestOfResult(record=self.record, outputs=kept, candidates=candidates, ranking=order,
                                    scores=list(self._scores), reward=self._reward.describe())
        if getattr(result, "controls", None):  # the control maps that steered every candidate
            self._result.controls = list(result.controls)
        return self._result


def check_reward(request: GenerationRequest, entry, allow_pickle: bool = False):
    """(the N-candidate request the engine renders, the reward, the request with its modality decided):
    an unknown reward, one for another modality or one without weights is refused here, before any load."""
    from . import rewards
    from .engine import _decide_modality

    decided = _decide_modality(request, entry, allow_pickle)
    reward = rewards.get(request.reward, decided.modality)
    inner = request.model_copy(update={"best_of": None, "reward": None, "batch": request.best_of})
    return inner, reward, decided


def generate_best_of(studio, request: GenerationRequest, *, out=None, keep_all: bool = False,
                     deliver: bool = True, init_image=None, mask=None, init_video=None, init_audio=None,
                     progress=None, preview=None, preview_every: int = 5, allow_pickle: bool = False,
                     overwrite: bool = False):
    """`Studio.generate` for a request with `best_of`: see the module docstring."""
    from . import rewards

    n = request.best_of
    inner, reward, decided = check_reward(request, studio.registry.resolve(request.model), allow_pickle)
    target = None
    if out is not None:
        target = Path(out)
        if str(out).endswith(("/", os.sep)):
            check_output_targets(target, names=[])
        check_output_targets(target, decided.output_format, n if keep_all else 1,
                             seed=request.seed if keep_all else None, overwrite=overwrite,
                             inputs={"init image": init_image if init_image is not None else request.init_image,
                                     "mask": mask if mask is not None else request.mask,
                                     "init video": init_video if init_video is not None else request.init_video,
                                     "init audio": init_audio if init_audio is not None else request.init_audio})
    generated = studio.generate(inner, deliver=False, init_image=init_image, mask=mask, init_video=init_video,
                                init_audio=init_audio, progress=progress, preview=preview,
                                preview_every=preview_every, allow_pickle=allow_pickle, overwrite=overwrite)
    record = generated.record
    prompt = record.request.prompt  # as rendered (styles applied)
    try:
        scores = generated.score(lambda media: reward.score(media, prompt).detach().flatten().tolist())
    except rewards.RewardError as exc:
        raise RequestError(f"reward {reward.name}: {exc}") from None
    if len(scores) != n or any(s != s for s in scores):  # NaN never ranks
        raise RequestError(f"reward {reward.name} gave {len(scores)} scores for {n} candidates, or a NaN")
    order, ranks = rank(scores)
    # recorded as asked (batch 1, best_of N): replaying the record re-runs the whole best-of-N
    record.request = record.request.model_copy(update={"best_of": n, "reward": request.reward, "batch": 1})
    record.reward = RewardRecord(name=reward.name, hash=reward.hash, n=n, scores=scores, ranks=ranks)
    pending = PendingBestOf(generated, reward, scores, out=target, keep_all=keep_all, overwrite=overwrite)
    return pending.finish() if deliver else pending


def ranking_line(result: BestOfResult) -> str:
    """One line for a front door: which reward ranked the N candidates, and each seed's score, best first."""
    r = result.record.reward
    seeds = [o.record.seed for o in result.candidates]
    ranked = ", ".join(f"seed {seeds[i]}: {r.scores[i]:.4g}" for i in result.ranking)
    return f"best of {r.n} by reward {r.name} ({r.hash[:12]}): {ranked}"
