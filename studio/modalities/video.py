"""Video: text-to-video, image-to-video and video-to-video through `pipelines.run_video`, sealed clip by clip by
`safety.seal_video` (the mark in every frame, then the container, then the C2PA manifest)."""
from __future__ import annotations

import hashlib
from typing import Optional, Sequence

import numpy as np

from ..errors import RequestError
from ..inputs import read_image, read_video
from .base import Inputs, MediaModality, SealedMedia, family_rules

VID2VID_STRENGTH = 0.6
DECODE_CHUNK = 16  # restyle by default; 0.3 keeps the layout of every frame


def frames_sha256(frames) -> str:
    """Hash of a clip's frames (count, size and RGB bytes), the video counterpart of an image's pixel hash."""
    arr = np.stack([np.asarray(f.convert("RGB")) if hasattr(f, "convert") else np.asarray(f) for f in frames])
    h = hashlib.sha256(f"RGB:{arr.shape[0]}x{arr.shape[2]}x{arr.shape[1]}:".encode())
    h.update(np.ascontiguousarray(arr, dtype=np.uint8).tobytes())
    return h.hexdigest()


def _family(name: str):
    import pipelines

    return family_rules(pipelines.VIDEO_FAMILIES, name, "video")


class VideoModality(MediaModality):
    name = "video"
    noun = "clip"
    folder = "clips"
    extensions = {"mp4": ".mp4", "gif": ".gif"}
    suffixes = {".mp4": "mp4", ".gif": "gif"}

    def read_inputs(self, request, *, init_value=None, mask_value=None, video_value=None, audio_value=None) -> Inputs:
        hashes: dict = {}
        if request.init_video:
            clip = read_video(video_value if video_value is not None else request.init_video)
            hashes["init_video"] = hashlib.sha256(clip.data).hexdigest()
            return Inputs(frames=clip.frames, fps=clip.fps, parent=clip.data, parent_format=clip.fmt,
                          hashes=hashes, size=clip.frames[0].size)
        if request.init_image:
            still = read_image(init_value if init_value is not None else request.init_image, "init image", "RGB")
            hashes["init_image"] = hashlib.sha256(still.data).hexdigest()
            return Inputs(image=still.image, parent=still.data, parent_format=still.fmt, hashes=hashes,
                          size=still.image.size)
        return Inputs()

    def _frames(self, request, entry, spec, inputs: Inputs) -> int:
        if request.frames is not None:
            return request.frames
        if inputs.frames is not None:  # restyling a clip keeps its length, as far as the family allows
            return min(len(inputs.frames), spec.max_frames)
        return getattr(entry, "frames", None) or spec.default_frames

    def decide(self, request, family, base_source=None):
        from . import adopt  # a clip given to an instruction editor is an instruction edit (the capability's)

        return adopt(request, family, base_source)

    def check(self, request, entry, source, inputs: Inputs, *, scale: int) -> None:
        import pipelines

        from . import modality

        own = modality(request.modality, request.mode)
        if own is not self:  # `decide` made it a capability's request after the engine picked this module
            return own.check(request, entry, source, inputs, scale=scale)
        family = getattr(source, "family", None) or entry.family
        if family is None:
            return  # decided by the load; checked again after it
        spec = _family(family)
        width = request.width or (inputs.size[0] // scale * scale if inputs.size else None) or entry.width
        height = request.height or (inputs.size[1] // scale * scale if inputs.size else None) or entry.height
        frames = self._frames(request, entry, spec, inputs)
        try:
            if hasattr(source, "pipe"):  # after the load: the rules of this checkpoint (its adapter, its VAE)
                rules = pipelines.video_family_for(source)
                rules.check_mode(request.mode)
                rules.check_frames(frames)
                rules.check_size(width, height)
            else:
                pipelines.check_video_request(family, request.mode, frames=frames, width=width, height=height)
        except ValueError as exc:
            raise RequestError(f"model {entry.name}: {exc}") from None
        if inputs.frames is not None and request.frames is not None and request.frames > len(inputs.frames):
            raise RequestError(f"init video has {len(inputs.frames)} frames but {request.frames} were asked for: "
                               f"video-to-video keeps the source's frames (use --frames {len(inputs.frames)} "
                               "or fewer)")

    def sampler_family(self, family: Optional[str]) -> Optional[str]:
        # AnimateDiff runs an SD1.5 UNet, so every SD sampler applies; the other video families are flow
        # matching / EDM models that run their own scheduler (pipelines.run_video refuses a foreign one).
        return "sd1" if family == "animatediff" else None

    def pixels(self, request, width: int, height: int) -> int:
        # The peak is the VAE decode, and video VAEs decode a clip in chunks of at most 16 frames
        # (AnimateDiff/SVD's decode_chunk_size, the 3-D VAEs' temporal tiling), not all frames at once.
        return width * height * request.batch * min(request.frames or DECODE_CHUNK, DECODE_CHUNK)

    def resolve(self, fields: dict, request, entry, family: str, inputs: Inputs) -> None:
        spec = _family(family)
        fields["frames"] = self._frames(request, entry, spec, inputs)
        fields["fps"] = request.fps or inputs.fps or getattr(entry, "fps", None) or spec.default_fps
        if getattr(entry, "motion_adapter", None) and not request.motion_adapter and family == "animatediff":
            fields["motion_adapter"] = entry.motion_adapter
        if request.mode == "vid2vid" and fields["strength"] is None:
            fields["strength"] = VID2VID_STRENGTH

    def run(self, model, request, inputs: Inputs, seeds: Sequence[int], callback) -> list:
        import pipelines

        init_video = inputs.frames[: request.frames] if inputs.frames is not None else None
        return pipelines.run_video(
            model, mode=request.mode, prompt=request.prompt, negative_prompt=request.negative_prompt,
            width=request.width, height=request.height, frames=request.frames, fps=request.fps,
            steps=request.steps, guidance=request.guidance, sampler=request.sampler, seeds=list(seeds),
            init_image=inputs.image, init_video=init_video, strength=request.strength, callback=callback,
            decode_chunk_size=request.memory.decode_chunk)

    def seal(self, media, *, fmt, params, claim_generator, parent, parent_format, png_text, config,
             watermark_id) -> SealedMedia:
        import safety
        from safety.media import decode_video

        fps = float(params["request"]["fps"])
        sealed = safety.seal_video(media, fps=fps, fmt=fmt, params=params, claim_generator=claim_generator,
                                   parent=parent, parent_format=parent_format, config=config,
                                   watermark_id=watermark_id)
        delivered, _ = decode_video(sealed.data, max_frames=len(media) + 1)
        first = media[0]
        return SealedMedia(data=sealed.data, manifest=sealed.manifest, watermark_id=sealed.watermark_id,
                           watermark_status=sealed.watermark_status, pixel_sha256=frames_sha256(delivered),
                           generated_sha256=frames_sha256(media), width=first.width, height=first.height,
                           frames=len(media), fps=fps)

    def decode(self, data: bytes):
        from PIL import Image

        from safety.media import decode_video

        frames, _ = decode_video(data)
        return [Image.fromarray(f) for f in frames]


VIDEO = VideoModality()
