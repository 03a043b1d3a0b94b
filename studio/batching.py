"""Cross-item batching (issue 19): requests that differ only in prompt, negative prompt and seed run as ONE
pipeline call (`Studio.generate_batch`), each image with its own seed's `torch.Generator` (diffusers takes a
list, one per image), each request with its own record and seal.

What may differ inside a batch is exactly `VARYING`; every other request field must be equal (model, size,
steps, sampler, guidance, LoRAs, device, dtype, batch ...). Features whose pipeline arguments are per request
and which `pipelines.run_image` does not take as lists (an init image, a mask, ControlNet maps, a reward's
gradients, a second hires pass, prompt weighting's embeddings) render alone: `batch_problem` says why.

Batched float math can differ from a lone render in the last bits (kernels block differently by batch), so
the call's composition goes into every member's record (`schema.BatchRecord`) and a replay reruns it.
"""
from __future__ import annotations

import json
from typing import Callable, Iterable, Optional, Sequence, TypeVar

from .schema import BatchMember, BatchRecord, GenerationRequest

VARYING = ("prompt", "negative_prompt", "seed")
T = TypeVar("T")


def batch_problem(request: GenerationRequest) -> Optional[str]:
    """Why `request` cannot share a pipeline call with others (None: it can)."""
    if (request.modality or "image") != "image":
        return f"{request.modality} requests render alone"
    if request.mode != "txt2img":
        return f"{request.mode} requests render alone (their init image or mask is per request)"
    for name, why in (("controls", "ControlNet maps"), ("hires", "a hires second pass"),
                      ("best_of", "best-of-N"), ("reward_guidance", "reward guidance"),
                      ("instruct", "an instruct edit")):
        if getattr(request, name, None):
            return f"{why} renders alone"
    if request.variation_seed is not None and request.variation_strength > 0:
        return "a variation seed renders alone"
    if request.prompt_weighting or (request.prompt_weighting is None and _weighted(request)):
        return "prompt weighting renders alone (its embeddings are per prompt)"
    return None


def _weighted(request: GenerationRequest) -> bool:
    """A1111 `(word:1.2)` in the prompts: the engine turns weighting on for it (`prompt_tools.weighting_for`)."""
    from pipelines.prompting import has_weights

    return has_weights(request.prompt) or has_weights(request.negative_prompt)


def batch_key(request: GenerationRequest) -> Optional[str]:
    """Requests with equal keys can share a call; None: this one renders alone."""
    if batch_problem(request) is not None:
        return None
    return json.dumps(request.model_dump(mode="json", exclude=set(VARYING)), sort_keys=True, default=str)


def group(items: Iterable[T], size: int, key: Callable[[T], Optional[str]]) -> list[list[T]]:
    """`items` in batches of at most `size` with equal `key` (None: alone), in order of first appearance."""
    open_: dict[str, list[T]] = {}
    out: list[list[T]] = []
    for item in items:
        k = key(item) if size > 1 else None
        if k is None:
            out.append([item])
            continue
        chunk = open_.get(k)
        if chunk is None or len(chunk) >= size:
            chunk = open_[k] = []
            out.append(chunk)
        chunk.append(item)
    return out


def batch_record(requests: Sequence[GenerationRequest], keys: Optional[Sequence[str]] = None) -> BatchRecord:
    """The composition of one call (`index` 0: the engine sets each member's own)."""
    keys = list(keys) if keys is not None else [None] * len(requests)
    return BatchRecord(size=sum(r.batch for r in requests), index=0,
                       members=[BatchMember(key=k, seed=r.seed, prompt=r.prompt, negative_prompt=r.negative_prompt)
                                for r, k in zip(requests, keys)])


def member_requests(request: GenerationRequest, batch: BatchRecord) -> list[GenerationRequest]:
    """The requests of a recorded call, rebuilt from one member's resolved request and the composition."""
    return [request.model_copy(update={"prompt": m.prompt, "negative_prompt": m.negative_prompt, "seed": m.seed})
            for m in batch.members]
