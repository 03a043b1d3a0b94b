"""Images: txt2img, img2img, inpaint, outpaint through `pipelines.run_image`, sealed by `safety.seal_image`."""
from __future__ import annotations

import hashlib
import io
from typing import Optional, Sequence

from ..errors import RequestError
from ..inputs import read_image
from .base import Inputs, MediaModality, SealedMedia


def image_sha256(image) -> str:
    """Hash of a PIL image's pixels (RGB/RGBA as the seal encodes them)."""
    im = image if image.mode in ("RGB", "RGBA") else image.convert("RGB")
    h = hashlib.sha256(f"{im.mode}:{im.width}x{im.height}:".encode())
    h.update(im.tobytes())
    return h.hexdigest()


def pixel_sha256(data: bytes) -> str:
    """Hash of the decoded pixels (mode + size + bytes) of an encoded image."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        im.load()
        h = hashlib.sha256(f"{im.mode}:{im.width}x{im.height}:".encode())
        h.update(im.tobytes())
    return h.hexdigest()


def _prompt_options(request) -> dict:
    """run_image's variation-seed and weighting arguments, only when they are in use."""
    opts = {}
    if request.variation_seed is not None and request.variation_strength > 0:
        opts.update(variation_seed=request.variation_seed, variation_strength=request.variation_strength)
    if request.prompt_weighting:
        opts["prompt_weighting"] = True
    return opts


class ImageModality(MediaModality):
    name = "image"
    noun = "image"
    folder = "images"
    extensions = {"png": ".png", "jpeg": ".jpg", "webp": ".webp"}
    suffixes = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".webp": "webp"}

    def read_inputs(self, request, *, init_value=None, mask_value=None, video_value=None, audio_value=None) -> Inputs:
        init = read_image(init_value if init_value is not None else request.init_image, "init image", "RGB") \
            if request.init_image else None
        mask = read_image(mask_value if mask_value is not None else request.mask, "mask", "L") \
            if request.mask else None
        if mask is not None and init is not None and mask.image.size != init.image.size:
            raise RequestError(
                f"mask is {mask.image.width}x{mask.image.height} but init image is "
                f"{init.image.width}x{init.image.height}: they must be the same size")
        hashes = {}
        if init is not None:
            hashes["init_image"] = hashlib.sha256(init.data).hexdigest()
        if mask is not None:
            hashes["mask"] = hashlib.sha256(mask.data).hexdigest()
        size = None
        if init is not None:
            size = init.image.size
            if request.outpaint:
                o = request.outpaint
                size = (size[0] + o.left + o.right, size[1] + o.top + o.bottom)
        inputs = Inputs(image=init.image if init else None, mask=mask.image if mask else None,
                        parent=init.data if init else None, parent_format=init.fmt if init else None,
                        hashes=hashes, size=size)
        if request.controls:
            from ..control import read_sources

            inputs.controls = read_sources(request)
        return inputs

    def decide(self, request, family, base_source=None):
        from ..control import decide  # instruct edits and ControlNets are decided by the model's family

        return decide(request, family, base_source)

    def check(self, request, entry, source, inputs: Inputs, *, scale: int) -> None:
        from ..control import check_request

        check_request(request, getattr(source, "family", None), base_source=getattr(entry, "source", None))

    def sampler_family(self, family):
        from ..control import INSTRUCT_BASE

        return INSTRUCT_BASE.get(family, family)  # an instruct family runs its base family's samplers

    def resolve(self, fields: dict, request, entry, family: str, inputs: Inputs) -> None:
        if request.mode in ("img2img", "inpaint") and fields["strength"] is None:
            fields["strength"] = 0.75 if request.mode == "img2img" else 1.0

    def run(self, model, request, inputs: Inputs, seeds: Sequence[int], callback) -> list:
        import pipelines

        if request.mode == "instruct":
            return pipelines.run_instruct(
                model, prompt=request.prompt, init_image=inputs.image, width=request.width, height=request.height,
                steps=request.steps, guidance=request.guidance, image_guidance=request.image_guidance,
                negative_prompt=request.negative_prompt, sampler=request.sampler, seeds=list(seeds),
                callback=callback)
        controls = {}
        if request.controls:
            from .. import control

            inputs.control_maps = control.make_maps(request, inputs.controls, width=request.width,
                                                    height=request.height)
            inputs.hashes.update(control.record_hashes(inputs.control_maps))
            specs = control.load_units(model, request, inputs.control_maps)
            inputs.hashes.update(control.net_hashes(specs))
            controls = {"controls": specs, "guess_mode": request.guess_mode}
        if request.mode == "inpaint" and request.inpaint is not None:  # mask blur, masked content, only masked
            from pipelines.inpaint_canvas import run_inpaint

            o = request.inpaint
            return run_inpaint(
                model, init_image=inputs.image, mask=inputs.mask, width=request.width, height=request.height,
                seeds=list(seeds), mask_blur=o.mask_blur, masked_content=o.masked_content, only_masked=o.only_masked,
                padding=o.padding, prompt=request.prompt, negative_prompt=request.negative_prompt,
                steps=request.steps, guidance=request.guidance, sampler=request.sampler, strength=request.strength,
                callback=callback, **_prompt_options(request), **controls)
        return pipelines.run_image(
            model, mode=request.mode, prompt=request.prompt, negative_prompt=request.negative_prompt,
            width=request.width, height=request.height, steps=request.steps, guidance=request.guidance,
            sampler=request.sampler, seeds=list(seeds), init_image=inputs.image, strength=request.strength,
            mask=inputs.mask, outpaint=request.outpaint.as_tuple() if request.outpaint else None,
            callback=callback, **({"latent_upscale": True} if inputs.upscale == "latent" else {}),
            **({"reward_guidance": inputs.guidance} if inputs.guidance is not None else {}),
            **_prompt_options(request), **controls)

    def run_batch(self, model, requests, seeds: Sequence[int], callback) -> list:
        """Several txt2img requests `studio.batching` found compatible, as one call: the first one's settings,
        each image its own prompt (a request of batch b repeats it b times) and seed."""
        import pipelines

        r = requests[0]
        prompts = [q.prompt for q in requests for _ in range(q.batch)]
        negatives = [q.negative_prompt or "" for q in requests for _ in range(q.batch)]
        return pipelines.run_image(
            model, mode="txt2img", prompt=prompts, negative_prompt=negatives if any(negatives) else None,
            width=r.width, height=r.height, steps=r.steps, guidance=r.guidance, sampler=r.sampler,
            seeds=list(seeds), callback=callback)

    def seal(self, media, *, fmt, params, claim_generator, parent, parent_format, png_text, config,
             watermark_id, components=()) -> SealedMedia:
        import safety

        sealed = safety.seal_image(media, fmt=fmt, params=params, claim_generator=claim_generator, parent=parent,
                                   parent_format=parent_format, png_text=png_text if fmt == "png" else None,
                                   config=config, watermark_id=watermark_id, components=components)
        return SealedMedia(data=sealed.data, manifest=sealed.manifest, watermark_id=sealed.watermark_id,
                           watermark_status=sealed.watermark_status,
                           pixel_sha256=sealed.pixel_sha256 or pixel_sha256(sealed.data),  # the seal's, no re-decode
                           generated_sha256=image_sha256(media), width=media.width, height=media.height)

    def decode(self, data: bytes):
        from PIL import Image

        im = Image.open(io.BytesIO(data))
        im.load()
        return im


IMAGE = ImageModality()
