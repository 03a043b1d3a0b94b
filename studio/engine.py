"""The engine behind every front door: resolve a request, run the pipeline, seal and deliver the outputs."""
from __future__ import annotations

import hashlib
import io
import logging
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Union

from .errors import RequestError, StudioError
from .metadata import package_versions
from .registry import ModelEntry, Registry
from .schema import GenerationRecord, GenerationRequest
from .writer import Output, check_output_targets, seal_derived, seal_outputs

log = logging.getLogger(__name__)
ImageInput = Union[str, Path, bytes, "PIL.Image.Image"]  # noqa: F821
ProgressFn = Callable[[int, int], None]
PreviewFn = Callable[[int, int, Output], None]


@dataclass
class Result:
    """What a generation delivered: the resolved record and the sealed outputs."""

    record: GenerationRecord
    outputs: list[Output]

    @property
    def images(self):
        """Images decoded from the sealed outputs (watermarked, like the files)."""
        return [o.image for o in self.outputs]

    @property
    def paths(self) -> list[Path]:
        return [o.path for o in self.outputs if o.path is not None]


@dataclass
class _Input:
    image: "PIL.Image.Image"  # noqa: F821
    data: bytes  # the original bytes, kept so a re-edited studio output keeps its manifest as the ingredient
    fmt: Optional[str]
    label: str


def _read_input(value: ImageInput, what: str, mode: str) -> _Input:
    from PIL import Image, UnidentifiedImageError

    if isinstance(value, (str, Path)):
        path = Path(value).expanduser()
        if not path.is_file():
            raise RequestError(f"{what} {str(value)!r} does not exist or is not a file")
        data, label = path.read_bytes(), str(path)
    elif isinstance(value, (bytes, bytearray)):
        data, label = bytes(value), "<bytes>"
    elif isinstance(value, Image.Image):
        buf = io.BytesIO()
        value.save(buf, format="PNG")
        data, label = buf.getvalue(), "<PIL image>"
    else:
        raise RequestError(f"{what} must be a path, bytes or a PIL image, not {type(value).__name__}")
    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except (UnidentifiedImageError, OSError) as exc:
        raise RequestError(f"{what} {label!r} is not a readable image ({exc})") from None
    fmt = (img.format or "").lower() or None
    return _Input(img.convert(mode), data, {"jpg": "jpeg"}.get(fmt, fmt), label)


class Studio:
    """Holds the registry and the loaded model (one at a time: models are large) and runs requests.

    Thread-safe: requests are serialised on one lock per studio, because a diffusers pipeline is not
    re-entrant (schedulers and LoRA adapters are per-pipeline state).
    """

    def __init__(self, registry: Optional[Registry] = None, quiet: bool = False):
        self.registry = registry or Registry()
        self.quiet = quiet  # front doors with their own progress display silence diffusers' tqdm bars
        self._loaded: Optional[tuple[tuple, ModelEntry, object]] = None
        self._lock = threading.RLock()

    # -- models ---------------------------------------------------------------------------------------------
    def load(self, entry: ModelEntry, *, device=None, dtype=None, allow_pickle=False):
        import pipelines

        key = (entry.source, entry.family, device, dtype)
        if self._loaded and self._loaded[0] == key:
            return self._loaded[2]
        self._loaded = None  # drop the old model before loading the next one
        model = pipelines.load_model(entry.source, family=entry.family, device=device, dtype=dtype,
                                     allow_pickle=allow_pickle)
        self._loaded = (key, entry, model)
        return model

    # -- requests -------------------------------------------------------------------------------------------
    def resolve(self, request: GenerationRequest, entry: ModelEntry, family: str,
                init: Optional[_Input], mask: Optional[_Input], scale: int = 8,
                scheduler_config: Optional[dict] = None) -> GenerationRequest:
        """Fill every None with the model's default, so the recorded request replays exactly."""
        import schedulers

        fields = request.model_dump()
        # Registry names replay through the registry; direct paths are recorded resolved.
        fields["model"] = entry.source if entry.origin == "path" else entry.name
        if init is not None and (request.width is None or request.height is None):
            w, h = init.image.size
            if request.outpaint:
                o = request.outpaint
                w, h = w + o.left + o.right, h + o.top + o.bottom
            fields["width"] = request.width or max(scale, w // scale * scale)
            fields["height"] = request.height or max(scale, h // scale * scale)
        fields["width"] = fields["width"] or entry.width
        fields["height"] = fields["height"] or entry.height
        for side in ("width", "height"):
            if fields[side] % scale:
                raise RequestError(f"{side} {fields[side]} must be a multiple of {scale} for model {entry.name}")
        fields["steps"] = request.steps or entry.steps
        fields["guidance"] = entry.guidance if request.guidance is None else request.guidance
        fields["sampler"] = request.sampler or entry.sampler or schedulers.default_sampler(family, scheduler_config)
        if fields["seed"] is None:
            fields["seed"] = secrets.randbelow(2**32)
        if request.mode in ("img2img", "inpaint") and fields["strength"] is None:
            fields["strength"] = 0.75 if request.mode == "img2img" else 1.0
        if mask is not None and init is not None and mask.image.size != init.image.size:
            raise RequestError(
                f"mask is {mask.image.width}x{mask.image.height} but init image is "
                f"{init.image.width}x{init.image.height}: they must be the same size")
        return GenerationRequest.build(**fields)

    def generate(
        self,
        request: Optional[GenerationRequest] = None,
        *,
        out: Optional[Union[str, Path]] = None,
        init_image: Optional[ImageInput] = None,
        mask: Optional[ImageInput] = None,
        progress: Optional[ProgressFn] = None,
        preview: Optional[PreviewFn] = None,
        preview_every: int = 5,
        allow_pickle: bool = False,
        overwrite: bool = False,
        **fields,
    ) -> Result:
        """Run one request. `init_image`/`mask` may be paths, bytes or PIL images (the request then records
        their hashes); `out` is a file or directory to write the sealed outputs to. `preview(step, total,
        output)` receives a sealed low-cost preview of the first image every `preview_every` steps. An existing
        output file is refused before anything is loaded unless `overwrite`."""
        if request is None:
            if init_image is not None and not isinstance(init_image, (str, Path)):
                fields["init_image"] = "<in-memory>"
            if mask is not None and not isinstance(mask, (str, Path)):
                fields["mask"] = "<in-memory>"
            if isinstance(init_image, (str, Path)):
                fields["init_image"] = str(init_image)
            if isinstance(mask, (str, Path)):
                fields["mask"] = str(mask)
            request = GenerationRequest.build(**fields)
        elif fields:
            raise TypeError("pass either a request or fields, not both")
        with self._lock:
            return self._generate(request, out=Path(out) if out else None, init_value=init_image,
                                  mask_value=mask, progress=progress, preview=preview,
                                  preview_every=max(1, preview_every), allow_pickle=allow_pickle,
                                  overwrite=overwrite)

    def _generate(self, request, *, out, init_value, mask_value, progress, preview, preview_every,
                  allow_pickle, overwrite=False) -> Result:
        import pipelines
        import schedulers

        started = time.perf_counter()
        entry = self.registry.resolve(request.model)
        # Before the model loads: a bad output target should cost nothing, not a whole render.
        check_output_targets(out, request.output_format, request.batch, seed=request.seed, overwrite=overwrite,
                             inputs={"init image": init_value if init_value is not None else request.init_image,
                                     "mask": mask_value if mask_value is not None else request.mask})
        init = _read_input(init_value if init_value is not None else request.init_image, "init image", "RGB") \
            if request.init_image else None
        mask = _read_input(mask_value if mask_value is not None else request.mask, "mask", "L") \
            if request.mask else None

        try:
            model = self.load(entry, device=request.device, dtype=request.dtype, allow_pickle=allow_pickle)
        except pipelines.ModelLoadError as exc:
            raise StudioError(str(exc)) from None
        if not model.supports(request.mode):
            raise RequestError(f"model {entry.name} ({model.family}) does not support {request.mode}")
        scale = int(getattr(model.pipe, "vae_scale_factor", 8) or 8)
        scheduler_config = dict(model.pipe.scheduler.config)
        request = self.resolve(request, entry, model.family, init, mask, scale=max(8, scale),
                               scheduler_config=scheduler_config)
        try:
            schedulers.make_scheduler(request.sampler, scheduler_config, model.family)
        except ValueError as exc:  # IncompatibleSampler / UnknownSampler
            raise RequestError(str(exc)) from None

        lora_hashes = pipelines.apply_loras(model, [(l.path, l.weight) for l in request.loras])
        pipelines.apply_memory_options(model, **request.memory.model_dump())
        handle = None
        if request.accelerate != "off":
            import fused_ops

            handle = fused_ops.accelerate(model.pipe, mode=request.accelerate)
        seeds = [request.seed + i for i in range(request.batch)]
        # 9-channel inpaint models run every mode through their inpaint pipeline.
        as_inpaint = request.mode == "outpaint" or getattr(model, "inpaint_unet", False)
        pipe_for_mode = model.pipeline_for("inpaint" if as_inpaint else request.mode)
        pipe_for_mode.set_progress_bar_config(disable=self.quiet)

        def callback(step: int, total: int, latents) -> None:
            if progress is not None:
                progress(step, total)
            if preview is not None and step % preview_every == 0 and step < total:
                image = pipelines.latent_preview(pipe_for_mode, latents)
                if image is not None:
                    preview(step, total, seal_derived(image, model_name=entry.name, params={
                        "kind": "preview", "step": step, "steps": total, "prompt": request.prompt}))

        try:
            images = pipelines.run_image(
                model, mode=request.mode, prompt=request.prompt, negative_prompt=request.negative_prompt,
                width=request.width, height=request.height, steps=request.steps, guidance=request.guidance,
                sampler=request.sampler, seeds=seeds, init_image=init.image if init else None,
                strength=request.strength, mask=mask.image if mask else None,
                outpaint=request.outpaint.as_tuple() if request.outpaint else None,
                callback=callback if (progress or preview) else None,
            )
        finally:
            if handle is not None:
                handle.undo()
            if request.loras:
                pipelines.apply_loras(model, [])

        inputs = {}
        if init is not None:
            inputs["init_image"] = hashlib.sha256(init.data).hexdigest()
        if mask is not None:
            inputs["mask"] = hashlib.sha256(mask.data).hexdigest()
        record = GenerationRecord(
            request=request, mode=request.mode, model_name=entry.name, model_source=str(model.source),
            model_family=model.family, model_hash=model.content_hash, lora_hashes=list(lora_hashes),
            sampler=request.sampler, device=str(model.device), dtype=str(model.dtype).replace("torch.", ""),
            versions=package_versions(), elapsed_s=round(time.perf_counter() - started, 3), input_hashes=inputs,
        )
        outputs = seal_outputs(images, record, seeds=seeds, out=out, overwrite=overwrite,
                               parent=init.data if init else None, parent_format=init.fmt if init else None)
        record.outputs = [o.record for o in outputs]
        return Result(record=record, outputs=outputs)


_default: Optional[Studio] = None


def default_studio() -> Studio:
    global _default
    if _default is None:
        _default = Studio()
    return _default


def generate(prompt: Optional[str] = None, **kwargs) -> Result:
    """`studio.generate("a red circle", seed=1, out="red.png")`: text-to-image, or an edit when
    `init_image` (img2img), `mask` (inpaint) or `outpaint` is given."""
    if prompt is not None:
        kwargs["prompt"] = prompt
    return default_studio().generate(**kwargs)
