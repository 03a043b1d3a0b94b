"""Instruction edits of a clip ("make the circle blue" on every frame): a video request (`init_video`,
`instruct=True`) run on an image instruction editor, frame by frame through `pipelines.run_instruct_frames`
(every frame seeded alike, so the frames stay consistent), sealed as a clip with the source clip as its C2PA
ingredient like any other video output.

It is the `("video", "instruct")` row of `studio.modalities.CAPABILITIES`: the engine, the writer and the front
doors find it there; reading the clip, the frames and fps defaults, the seal and the decode are the video
modality's.
"""
from __future__ import annotations

from typing import Optional, Sequence

from ..errors import RequestError
from .base import Inputs
from .video import VideoModality


def _editor(family: Optional[str]):
    """The `pipelines.InstructFamily` of `family`, or None when the family has no instruction mode."""
    import pipelines

    return pipelines.INSTRUCT_FAMILIES.get(family)


class InstructVideoModality(VideoModality):
    # an image instruction editor (its registry modality is "image") runs this video request
    runs_on = ("image",)

    def decide(self, request, family, base_source=None):
        from ..control import IMAGE_GUIDANCE_FAMILIES
        from ..schema import GenerationRequest

        if family in IMAGE_GUIDANCE_FAMILIES and request.image_guidance is None:
            return GenerationRequest.build(**{**request.model_dump(exclude_unset=True),
                                              "image_guidance": IMAGE_GUIDANCE_FAMILIES[family]})
        return request

    def adopts(self, request, family=None):
        # as an instruct model given an init image edits it (studio.control.decide): given a clip, it edits that
        return bool(request.init_video) and not request.instruct and (family is None or _editor(family) is not None)

    def adopt(self, request):
        from ..schema import GenerationRequest

        return GenerationRequest.build(**{**request.model_dump(exclude_unset=True), "instruct": True})

    def _frames(self, request, entry, spec, inputs: Inputs) -> int:
        # the whole clip: an edit keeps the source's length (a longer one than the editor takes is refused)
        return request.frames or len(inputs.frames)

    def check(self, request, entry, source, inputs: Inputs, *, scale: int) -> None:
        family = getattr(source, "family", None) or entry.family
        if family is None:
            return  # decided by the load; checked again after it
        name = entry.name
        spec = _editor(family)
        if spec is None:
            raise RequestError(f"model {name} ({family}) has no instruction mode: an instruction edit of a clip "
                               "runs on an InstructPix2Pix model (e.g. --model mini-instruct)")
        if not spec.max_frames:
            raise RequestError(f"model {name} ({spec.what}) edits single images, not clips: an instruction edit "
                               "of a clip runs on an InstructPix2Pix model (e.g. --model mini-instruct)")
        if inputs.frames is None:
            raise RequestError("an instruction edit of a video request needs the clip to edit (init_video)")
        if request.frames is not None and request.frames > len(inputs.frames):
            raise RequestError(f"init video has {len(inputs.frames)} frames but {request.frames} were asked for: "
                               f"an edit keeps the source's frames (use --frames {len(inputs.frames)} or fewer)")
        frames = self._frames(request, entry, None, inputs)
        if frames > spec.max_frames:
            raise RequestError(f"init video has {frames} frames: model {name} edits at most {spec.max_frames} "
                               f"frames of a clip by instruction (use --frames {spec.max_frames} to edit the "
                               "first ones)")

    def sampler_family(self, family):
        spec = _editor(family)
        return spec.base if spec is not None else None

    def resolve(self, fields: dict, request, entry, family: str, inputs: Inputs) -> None:
        fields["frames"] = self._frames(request, entry, None, inputs)
        fields["fps"] = request.fps or inputs.fps or 8.0  # a clip with no rate in its header: 8, as mini-video

    def run(self, model, request, inputs: Inputs, seeds: Sequence[int], callback) -> list:
        import pipelines

        try:
            return pipelines.run_instruct_frames(
                model, prompt=request.prompt, frames=inputs.frames[: request.frames], width=request.width,
                height=request.height, steps=request.steps, guidance=request.guidance,
                image_guidance=request.image_guidance, negative_prompt=request.negative_prompt,
                sampler=request.sampler, seeds=list(seeds), callback=callback)
        except ValueError as exc:  # the checks above say the same before the load; a custom family may not
            raise RequestError(f"model {model.family}: {exc}") from None


INSTRUCT_VIDEO = InstructVideoModality()
