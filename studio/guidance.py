"""The studio side of reward gradient guidance: resolve the request's reward, refuse what cannot be guided
(one line, before any load), hand the pipeline a plain score callable, record the reward's provenance.
The loop itself is `pipelines.reward_guidance` (pipelines never import the studio)."""
from __future__ import annotations

from typing import Optional

from .errors import RequestError
from .schema import GenerationRequest, RewardGuidanceRecord

GUIDED_MODES = ("txt2img", "img2img")


def check_guidance(request: GenerationRequest, family: Optional[str]):
    """The reward for a request with `reward_guidance` (None without): RequestError for a non-SD family, a
    mode or modality it does not steer, an unknown reward or one without gradients."""
    g = request.reward_guidance
    if g is None:
        return None
    from pipelines.reward_guidance import GUIDED_FAMILIES

    from . import rewards

    if request.modality in ("video", "audio"):
        raise RequestError(f"reward guidance steers images for now, not {request.modality}")
    if family is not None and family not in GUIDED_FAMILIES:
        raise RequestError(f"reward guidance runs on SD-family models ({', '.join(GUIDED_FAMILIES)}), not {family}")
    if request.mode not in GUIDED_MODES:
        raise RequestError(f"reward guidance applies to {' and '.join(GUIDED_MODES)}, not {request.mode}")
    reward = rewards.get(g.reward, "image")
    if not reward.differentiable:
        raise RequestError(f"reward {reward.name} is not differentiable: gradient guidance needs one that is "
                           "(learned, clip, pickscore, aesthetic, saturation, brightness)")
    return reward


def guidance_spec(request: GenerationRequest, family: Optional[str]):
    """(pipelines.reward_guidance.GuidanceSpec, the reward) for the pipeline, or (None, None)."""
    reward = check_guidance(request, family)
    if reward is None:
        return None, None
    from pipelines.reward_guidance import GuidanceSpec

    g = request.reward_guidance
    prompt = request.prompt  # as rendered (styles applied)
    spec = GuidanceSpec(score=lambda images: reward.score(images, prompt), strength=g.strength, start=g.start,
                        end=g.end, max_step=g.max_step)
    return spec, reward


def guidance_record(request: GenerationRequest, reward, spec) -> RewardGuidanceRecord:
    g = request.reward_guidance
    steps = sorted(set(spec.log.steps)) if spec is not None else []
    return RewardGuidanceRecord(name=reward.name, hash=reward.hash, strength=g.strength, start=g.start, end=g.end,
                                max_step=g.max_step, steps=steps)
