"""The engine behind every front door: resolve a request, run the pipeline, seal and deliver the outputs."""
from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

from . import limits
from .errors import RequestError, StudioError
from .inputs import ImageInput, side_for, size_from_source
from .metadata import package_versions
from .modalities import modality as modality_of
from .modalities.base import Inputs
from .registry import ModelEntry, Registry
from .prompt_tools import review as review_prompt
from .schema import GenerationRecord, GenerationRequest
from .styles import apply_styles
from .writer import Output, check_output_targets, seal_derived, seal_outputs

log = logging.getLogger(__name__)
MediaInput = Union[str, Path, bytes]  # a clip or a sound: a path or its bytes
ProgressFn = Callable[[int, int], None]
PreviewFn = Callable[[int, int, Output], None]


@dataclass
class Result:
    """What a generation delivered: the resolved record and the sealed outputs."""

    record: GenerationRecord
    outputs: list[Output]
    controls: list[Output] = field(default_factory=list)  # the sealed control maps that steered the outputs

    @property
    def images(self):
        """Images decoded from the sealed outputs (watermarked, like the files); a clip's first frame."""
        return [o.image for o in self.outputs]

    @property
    def clips(self) -> list[list]:
        """Each sealed clip's frames (PIL, watermarked), decoded from the sealed bytes."""
        return [o.frames for o in self.outputs]

    @property
    def paths(self) -> list[Path]:
        return [o.path for o in self.outputs if o.path is not None]


class Generated:
    """A generation whose pixels are made but not yet delivered (`Studio.generate(..., deliver=False)`):
    `finish()` seals them through `writer.seal_outputs` (and writes them when `out` was given) and returns the
    `Result`. It needs no model and no studio lock, so a job seals item i while item i+1 generates. The
    unsealed images stay private: nothing but `finish()` hands them on."""

    def __init__(self, record: GenerationRecord, images, seeds, *, out, overwrite, parent, parent_format,
                 controls=()):
        self.record = record
        self._images, self._seeds = list(images), list(seeds)
        self._out, self._overwrite = out, overwrite
        self._parent, self._parent_format = parent, parent_format
        self._controls = list(controls)  # studio.control.ControlMap: sealed here, then the outputs' ingredients
        self._result: Optional[Result] = None

    def score(self, reward_fn: Callable[[list], object]) -> list[float]:
        """`reward_fn(media)` over the unsealed media (best-of-N ranks them before the seal, so the seal can
        record the scores): only the numbers come back, never the media."""
        if self._images is None:
            raise StudioError("this generation is already sealed; score it before finish()")
        return [float(s) for s in reward_fn(list(self._images))]

    def finish(self) -> Result:
        if self._result is None:
            if self._images is None:
                raise StudioError("this generation's seal failed; it cannot be finished again")
            images, self._images = self._images, None  # once: the pixels are dropped whatever happens
            from .control import seal_maps

            controls = seal_maps(self._controls, model_name=self.record.model_name) if self._controls else []
            outputs = seal_outputs(images, self.record, seeds=self._seeds, out=self._out,
                                   components=[(c.data, "png") for c in controls],
                                   overwrite=self._overwrite, parent=self._parent,
                                   parent_format=self._parent_format)
            self.record.outputs = [o.record for o in outputs]
            self._result = Result(record=self.record, outputs=outputs, controls=controls)
        return self._result


@dataclass
class _Checked:
    """What the pre-flight learned, reused by the generation that follows it."""

    request: GenerationRequest  # with its modality decided by the model
    entry: ModelEntry
    inputs: Inputs
    source: object  # pipelines.SourceInfo


@dataclass
class _Prepared:
    """A request resolved against its loaded model, ready for the pipeline call (`Studio._run`)."""

    request: GenerationRequest
    entry: ModelEntry
    model: object  # pipelines.LoadedModel
    inputs: Inputs
    styled: Optional[dict]
    prompt_notes: list
    started: float
    out: Optional[Path]
    overwrite: bool


def _dtype_name(dtype) -> str:
    return {"float16": "fp16", "bfloat16": "bf16"}.get(str(dtype).replace("torch.", ""), "fp32")


def _pixel_budget(device, dtype) -> tuple[int, str]:
    """(pixels, what the budget is) for width x height x batch on ``device``."""
    import torch

    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        # blocks torch has cached but not handed out are as good as free for this process
        free += torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        per_pixel = limits.CUDA_BYTES_PER_PIXEL[_dtype_name(dtype)]
        return free // per_pixel, (f"the budget of {device} ({free / 2**30:.1f} GiB free at ~{per_pixel} bytes "
                                   f"per pixel in {_dtype_name(dtype)})")
    return limits.CPU_PIXEL_BUDGET, f"the {device.type.upper()} budget"


def _check_size(request: GenerationRequest, entry: ModelEntry, inputs: Inputs, scale: int, device, dtype) -> None:
    """The output size as resolve() will fill it in, against the schema's bounds and the device's budget."""
    w, h, where = request.width, request.height, ""
    if inputs.size is not None and (w is None or h is None):
        iw, ih = inputs.size
        if request.outpaint:
            where = f" (the init image {inputs.image.width}x{inputs.image.height} plus the outpaint margins)"
        else:
            source = "init video's" if inputs.frames is not None else "init image's"
            where = f" (the {source} size; pass --width/--height to choose another)"
        w, h = w or max(scale, iw // scale * scale), h or max(scale, ih // scale * scale)
    w, h = w or entry.width, h or entry.height
    for side, value in (("width", w), ("height", h)):
        if not 64 <= value <= limits.MAX_SIDE:
            raise RequestError(f"{side} {value}{where} must be in [64, {limits.MAX_SIDE}]")
        if value % scale:
            raise RequestError(f"{side} {value} must be a multiple of {scale} for model {entry.name}")
    if device is None:
        return
    budget, what = _pixel_budget(device, dtype)
    kind = modality_of(request.modality, request.mode)
    total = kind.pixels(request, w, h)
    if total > budget:
        fit = side_for(budget)
        hint = ", or a CUDA device" if device.type != "cuda" else ""
        frames = f" x {min(request.frames or 16, 16)} frames decoded at once" if kind.name == "video" else ""
        raise RequestError(
            f"{w}x{h} x batch {request.batch}{frames} = {total / 1e6:.1f} megapixels is over {what} of "
            f"{budget / 1e6:.1f} megapixels (about {fit}x{fit} x 1): use a smaller size, batch or clip{hint}")


def _preflight(request: GenerationRequest, entry: ModelEntry, *, init_value=None, mask_value=None,
               video_value=None, audio_value=None, allow_pickle: bool = False,
               check_device: bool = True) -> _Checked:
    import warnings

    import pipelines

    try:
        source = pipelines.inspect_source(entry.source, family=entry.family, allow_pickle=allow_pickle)
    except (pipelines.ModelLoadError, ValueError) as exc:
        raise RequestError(str(exc)) from None
    request = request.with_modality(_entry_modality(entry, source, request))
    kind = modality_of(request.modality, request.mode)
    request = kind.decide(request, source.family, base_source=entry.source)
    device = dtype = None
    if check_device:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # fp16-on-CPU advice: the load gives it, once
                device = pipelines.resolve_device(request.device)
                dtype = pipelines.resolve_dtype(request.dtype, device, source.family)
        except ValueError as exc:
            raise RequestError(str(exc)) from None
    for lora in request.loras:
        try:
            pipelines.check_lora_file(lora.path, allow_pickle=allow_pickle)
        except (pipelines.ModelLoadError, ValueError) as exc:
            raise RequestError(str(exc)) from None
        from .rewards.gate import check_tuned_lora  # a studio-tuned LoRA must have passed its eval gate

        check_tuned_lora(lora.path, allow_failed=lora.allow_failed_gate)
    inputs = kind.read_inputs(request, init_value=init_value, mask_value=mask_value, video_value=video_value,
                              audio_value=audio_value)
    scale = max(8, source.vae_scale_factor or 8)
    if kind.sized:
        _check_size(request, entry, inputs, scale, device, dtype)
    kind.check(request, entry, source, inputs, scale=scale)
    if request.reward_guidance is not None:  # the reward exists and has gradients; the family can be steered
        from .guidance import check_guidance

        check_guidance(request, source.family)
    # Last: the only check that imports diffusers (for its scheduler classes), seconds that a cheaper
    # refusal above should not wait for.
    sampler = request.sampler or entry.sampler
    sampler_family = kind.sampler_family(source.family)
    if sampler and (sampler_family or source.family is None):
        check_sampler(sampler, sampler_family, source.scheduler_config)
    return _Checked(request, entry, inputs, source)


def _decide_modality(request: GenerationRequest, entry: ModelEntry, allow_pickle: bool) -> GenerationRequest:
    """The request with the model's modality (RequestError when they disagree); a path's is read from disk."""
    import pipelines

    if entry.modality:
        return request.with_modality(_entry_modality(entry, None, request))
    try:
        source = pipelines.inspect_source(entry.source, family=entry.family, allow_pickle=allow_pickle)
    except (pipelines.ModelLoadError, ValueError) as exc:
        raise RequestError(str(exc)) from None
    return request.with_modality(_entry_modality(entry, source, request))


def _entry_modality(entry: ModelEntry, source, request: Optional[GenerationRequest] = None) -> str:
    """What the model makes: the registry says for named models, the files say for paths. The request's own
    modality when the module that runs it runs on such models (`MediaModality.runs_on`: an image instruction
    editor edits a clip frame by frame)."""
    from .registry import family_modality

    from .modalities import runs_as

    made = entry.modality or family_modality(getattr(source, "family", None)) or "image"
    family = getattr(entry, "family", None) or getattr(source, "family", None)
    return runs_as(request, made, family) if request is not None else made


def check_sampler(sampler: str, family: Optional[str], scheduler_config: Optional[dict]) -> None:
    """RequestError when `sampler` cannot run on a model of `family` with this scheduler config, judged from
    what the disk tells before loading (the preflight, and the job validator through it): an unknown family
    is left to the load."""
    import schedulers

    try:
        if scheduler_config is not None and family:
            schedulers.make_scheduler(sampler, scheduler_config, family)
        elif family not in (None, "other"):
            # without the model's config only its family is known: enough for flow vs epsilon
            schedulers.check_compatible(sampler, None, family)
    except ValueError as exc:  # IncompatibleSampler / UnknownSampler
        raise RequestError(str(exc)) from None


def preflight(request: GenerationRequest, registry: Optional[Registry] = None, *,
              init_image: Optional[ImageInput] = None, mask: Optional[ImageInput] = None,
              init_video: Optional[MediaInput] = None, init_audio: Optional[MediaInput] = None,
              allow_pickle: bool = False, check_device: bool = True) -> None:
    """Check everything about ``request`` that can be checked without loading its model, in milliseconds:
    the model source (exists, not a refused pickle, readable header), device and dtype, LoRA files, the
    sampler against the model's scheduler config (read from disk), init image and mask (readable, within
    `studio.limits`, same size) and the output size against the device's pixel budget.

    Raises `RequestError` with one line. `init_image`/`mask` are the in-memory inputs when the request only
    names them. `check_device=False` skips device, dtype and budget (a validator on a machine other than
    the one that renders)."""
    registry = registry or Registry()
    request = apply_styles(request)[0]  # an unknown style is a bad request
    if request.best_of is not None:  # the reward exists for this modality; the N candidates fit the budget
        from .best_of import check_reward

        request = check_reward(request, registry.resolve(request.model), allow_pickle)[0]
    if request.hires is not None:
        from .hires import check_hires

        check_hires(request, registry.resolve(request.model), registry, init_value=init_image, mask_value=mask,
                    allow_pickle=allow_pickle, check_device=check_device)
        return
    _preflight(request, registry.resolve(request.model), init_value=init_image, mask_value=mask,
               video_value=init_video, audio_value=init_audio, allow_pickle=allow_pickle,
               check_device=check_device)


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
    def load(self, entry: ModelEntry, *, device=None, dtype=None, allow_pickle=False, motion_adapter=None):
        import pipelines

        motion_adapter = motion_adapter or entry.motion_adapter
        key = (entry.source, entry.family, device, dtype, motion_adapter)
        if self._loaded and self._loaded[0] == key:
            return self._loaded[2]
        if self.quiet:  # the front door shows its own progress: no weight-loading bars from diffusers
            import diffusers

            diffusers.utils.logging.disable_progress_bar()
        self._loaded = None  # drop the old model before loading the next one
        extra = {"motion_adapter": motion_adapter} if motion_adapter else {}
        model = pipelines.load_model(entry.source, family=entry.family, device=device, dtype=dtype,
                                     allow_pickle=allow_pickle, **extra)
        self._loaded = (key, entry, model)
        return model

    # -- requests -------------------------------------------------------------------------------------------
    def check(self, request: GenerationRequest, *, init_image: Optional[ImageInput] = None,
              mask: Optional[ImageInput] = None, init_video: Optional[MediaInput] = None,
              init_audio: Optional[MediaInput] = None, allow_pickle: bool = False) -> None:
        """`preflight` against this studio's registry: raises `RequestError` without loading anything."""
        preflight(request, self.registry, init_image=init_image, mask=mask, init_video=init_video,
                  init_audio=init_audio, allow_pickle=allow_pickle)

    def resolve(self, request: GenerationRequest, entry: ModelEntry, family: str, inputs: Inputs,
                scale: int = 8, scheduler_config: Optional[dict] = None) -> GenerationRequest:
        """Fill every None with the model's default, so the recorded request replays exactly."""
        import schedulers

        fields = request.model_dump()
        # Registry names replay through the registry; direct paths are recorded resolved.
        fields["model"] = entry.source if entry.origin == "path" else entry.name
        if inputs.size is not None and (request.width is None or request.height is None):
            w, h = size_from_source(*inputs.size, scale)
            fields["width"] = request.width or w
            fields["height"] = request.height or h
        fields["width"] = fields["width"] or entry.width
        fields["height"] = fields["height"] or entry.height
        for side in ("width", "height"):
            if fields[side] % scale:
                raise RequestError(f"{side} {fields[side]} must be a multiple of {scale} for model {entry.name}")
        fields["steps"] = request.steps or entry.steps
        fields["guidance"] = entry.guidance if request.guidance is None else request.guidance
        kind = modality_of(request.modality, request.mode)
        sampler_family = kind.sampler_family(family)
        fields["sampler"] = request.sampler or entry.sampler or (
            schedulers.default_sampler(sampler_family, scheduler_config) if sampler_family else None)
        if fields["seed"] is None:
            fields["seed"] = secrets.randbelow(2**32)
        kind.resolve(fields, request, entry, family, inputs)
        return GenerationRequest.build(**fields)

    def generate(
        self,
        request: Optional[GenerationRequest] = None,
        *,
        out: Optional[Union[str, Path]] = None,
        init_image: Optional[ImageInput] = None,
        mask: Optional[ImageInput] = None,
        init_video: Optional[MediaInput] = None,
        init_audio: Optional[MediaInput] = None,
        progress: Optional[ProgressFn] = None,
        preview: Optional[PreviewFn] = None,
        preview_every: int = 5,
        allow_pickle: bool = False,
        overwrite: bool = False,
        deliver: bool = True,
        keep_all: bool = False,
        **fields,
    ) -> Union[Result, "Generated"]:
        """Run one request. `init_image`/`mask` may be paths, bytes or PIL images, `init_video`/`init_audio` a
        path or bytes (the request then records their hashes); `out` is a file or directory to write the sealed
        outputs to. `preview(step, total, output)` receives a sealed low-cost preview of the first image (a clip's
        middle frame) every `preview_every` steps, at least once. An existing
        output file is refused before anything is loaded unless `overwrite`. `deliver=False` returns a `Generated`
        once the pixels exist, without sealing them: its `finish()` seals (and writes) and returns the `Result`,
        outside this studio's lock, so the next request can generate meanwhile. `best_of=N, reward=NAME` renders N
        candidates and returns a `studio.best_of.BestOfResult` (the best, or all N ranked with `keep_all`)."""
        if request is None:
            if init_image is not None and not isinstance(init_image, (str, Path)):
                fields["init_image"] = "<in-memory>"
            if mask is not None and not isinstance(mask, (str, Path)):
                fields["mask"] = "<in-memory>"
            if isinstance(init_image, (str, Path)):
                fields["init_image"] = str(init_image)
            if isinstance(mask, (str, Path)):
                fields["mask"] = str(mask)
            if init_video is not None:
                fields["init_video"] = str(init_video) if isinstance(init_video, (str, Path)) else "<in-memory>"
            if init_audio is not None:
                fields["init_audio"] = str(init_audio) if isinstance(init_audio, (str, Path)) else "<in-memory>"
            if out is not None and fields.get("output_format") is None:
                from .modalities import WRITABLE_SUFFIXES

                # `out="clip.gif"` asks for a GIF as plainly as output_format="gif" does
                fields["output_format"] = WRITABLE_SUFFIXES.get(Path(out).suffix.lower())
            request = GenerationRequest.build(**fields)
        elif fields:
            raise TypeError("pass either a request or fields, not both")
        if request.best_of is not None:  # N candidates ranked by a reward (`keep_all`: deliver all N)
            from .best_of import generate_best_of

            return generate_best_of(self, request, out=out, keep_all=keep_all, deliver=deliver,
                                    init_image=init_image, mask=mask, init_video=init_video, init_audio=init_audio,
                                    progress=progress, preview=preview, preview_every=preview_every,
                                    allow_pickle=allow_pickle, overwrite=overwrite)
        if out is not None and str(out).endswith(("/", os.sep)):
            # a folder that does not exist yet: Path() would drop the slash that says "folder"
            check_output_targets(Path(out), names=[])
        with self._lock:
            generated = self._generate(request, out=Path(out) if out else None, init_value=init_image,
                                       mask_value=mask, video_value=init_video, audio_value=init_audio,
                                       progress=progress, preview=preview,
                                       preview_every=max(1, preview_every), allow_pickle=allow_pickle,
                                       overwrite=overwrite)
            return generated.finish() if deliver else generated

    def generate_batch(self, requests: Sequence[GenerationRequest], *, keys: Optional[Sequence[str]] = None,
                       progress: Optional[ProgressFn] = None, allow_pickle: bool = False,
                       deliver: bool = True) -> list[Union[Result, "Generated"]]:
        """Run several txt2img requests that differ only in prompt, negative prompt and seed (see
        `studio.batching`) as ONE pipeline call: each image keeps its own seed's generator and each request its
        own record (with the call's composition in `record.batch`, `keys` naming the members) and its own seal.
        A request the batch cannot take raises `RequestError` before the pipeline runs; `deliver=False` returns
        one `Generated` per request, as `generate` does."""
        from .batching import batch_problem, batch_key

        requests = list(requests)
        if not requests:
            raise RequestError("generate_batch needs at least one request")
        with self._lock:
            jobs: list = []
            for request in requests:
                # as written (a hires pass must not start), then as resolved (e.g. the weighting decided)
                problem = batch_problem(request) if len(requests) > 1 else None
                job = None
                if problem is None:
                    job = self._prepare(request, out=None, init_value=None, mask_value=None, video_value=None,
                                        audio_value=None, allow_pickle=allow_pickle,
                                        hires=dict(progress=progress, preview=None, preview_every=1))
                    if len(requests) > 1:
                        problem = batch_problem(job.request)
                if problem is None and jobs and batch_key(job.request) != batch_key(jobs[0].request):
                    problem = "its settings differ from the first request's (only prompts and seeds may)"
                if problem:
                    raise RequestError(f"request {len(jobs) + 1} of the batch cannot join it: {problem}")
                jobs.append(job)
            if isinstance(jobs[0], Generated):  # one hires request: it ran whole
                generated = jobs
            else:
                if len(jobs) > 1:  # the call's images together against the device's budget
                    lead = jobs[0]
                    _check_size(lead.request.model_copy(update={"batch": sum(j.request.batch for j in jobs)}),
                                lead.entry, lead.inputs, int(getattr(lead.model.pipe, "vae_scale_factor", 8) or 8),
                                lead.model.device, lead.model.dtype)
                generated = self._run(jobs, progress=progress, preview=None, preview_every=1,
                                      allow_pickle=allow_pickle, keys=keys)
            return [g.finish() for g in generated] if deliver else generated

    def _generate(self, request, *, out, init_value, mask_value, video_value, audio_value, progress, preview,
                  preview_every, allow_pickle, overwrite=False, upscale: Optional[str] = None) -> Generated:
        job = self._prepare(request, out=out, init_value=init_value, mask_value=mask_value,
                            video_value=video_value, audio_value=audio_value, allow_pickle=allow_pickle,
                            overwrite=overwrite, upscale=upscale, hires=dict(progress=progress, preview=preview,
                                                                             preview_every=preview_every))
        if isinstance(job, Generated):  # hires: both of its passes ran through this path already
            return job
        return self._run([job], progress=progress, preview=preview, preview_every=preview_every,
                         allow_pickle=allow_pickle)[0]

    def _prepare(self, request, *, out, init_value, mask_value, video_value, audio_value, allow_pickle,
                 overwrite=False, upscale: Optional[str] = None,
                 hires: Optional[dict] = None) -> Union[_Prepared, Generated]:
        """Everything before the pipeline call: checks, the model loaded, the request resolved against it.
        A hires request runs whole here (`hires`: its progress/preview arguments) and returns its `Generated`."""
        import pipelines

        started = time.perf_counter()
        entry = self.registry.resolve(request.model)
        request, styled = apply_styles(request)  # before anything reads the prompt; recorded below
        request = _decide_modality(request, entry, allow_pickle)
        # Before the model loads: a bad output target should cost nothing, not a whole render.
        check_output_targets(out, request.output_format, request.batch, seed=request.seed, overwrite=overwrite,
                             inputs={"init image": init_value if init_value is not None else request.init_image,
                                     "mask": mask_value if mask_value is not None else request.mask,
                                     "init video": video_value if video_value is not None else request.init_video,
                                     "init audio": audio_value if audio_value is not None else request.init_audio})
        if request.hires is not None:  # a first pass, sealed, then an img2img refine: two requests of this path
            from .hires import run_hires

            return run_hires(self, request, entry, out=out, init_value=init_value, mask_value=mask_value,
                             allow_pickle=allow_pickle, overwrite=overwrite, styled=styled, **(hires or {}))
        # Everything checkable without the model, so a bad request fails in milliseconds, not after a load.
        checked = _preflight(request, entry, init_value=init_value, mask_value=mask_value,
                             video_value=video_value, audio_value=audio_value, allow_pickle=allow_pickle)
        inputs = checked.inputs
        request = checked.request  # with what the model's family decided (instruct, ControlNet names)
        inputs.upscale = upscale  # hires' refine pass: how its init image reaches the output size
        kind = modality_of(request.modality, request.mode)

        try:
            model = self.load(entry, device=request.device, dtype=request.dtype, allow_pickle=allow_pickle,
                              motion_adapter=request.motion_adapter)
        except pipelines.ModelLoadError as exc:
            raise StudioError(str(exc)) from None
        if not model.supports(request.mode):
            raise RequestError(f"model {entry.name} ({model.family}) does not support {request.mode}")
        scale = int(getattr(model.pipe, "vae_scale_factor", 8) or 8)
        scheduler = getattr(model.pipe, "scheduler", None)  # MusicGen samples tokens: no scheduler
        scheduler_config = dict(scheduler.config) if scheduler is not None else {}
        request = self.resolve(request, entry, model.family, inputs, scale=max(8, scale),
                               scheduler_config=scheduler_config)
        kind.check(request, entry, model, inputs, scale=max(8, scale))  # the family the load found, too
        request, prompt_notes = review_prompt(request, model, entry)  # weighting resolved; prompts past the limit
        if kind.sampler_family(model.family):
            check_sampler(request.sampler, kind.sampler_family(model.family), scheduler_config)  # the default too
        return _Prepared(request, entry, model, inputs, styled, prompt_notes, started, out, overwrite)

    def _run(self, jobs: list[_Prepared], *, progress, preview, preview_every, allow_pickle,
             keys: Optional[Sequence[str]] = None) -> list[Generated]:
        """One pipeline call for `jobs`: one request, or several that `generate_batch` found compatible (the
        first one's settings, LoRAs and inputs serve all) -> one `Generated` per job."""
        import pipelines
        import torch

        first = jobs[0]
        request, entry, model, inputs = first.request, first.entry, first.model, first.inputs
        kind = modality_of(request.modality, request.mode)
        scheduler = getattr(model.pipe, "scheduler", None)  # MusicGen samples tokens: no scheduler
        try:
            # the pickle opt-in is one decision per request: it covers the LoRAs the message names too
            lora_hashes = pipelines.apply_loras(model, [(l.path, l.weight) for l in request.loras],
                                                allow_pickle=allow_pickle)
        except Exception as exc:  # noqa: BLE001 - diffusers/peft raise ValueError, KeyError, RuntimeError...
            if isinstance(exc, torch.OutOfMemoryError):
                raise
            # peft's report lists every module it could not match, diffusers' is a bare KeyError: log them
            log.info("LoRA load failed: %r", exc)
            names = ", ".join(Path(l.path).name for l in request.loras)
            raise RequestError(f"LoRA {names} could not be applied to model {entry.name} ({model.family}): made "
                               "for another model family, or not a LoRA") from None
        pipelines.apply_memory_options(model, **request.memory.model_dump(exclude={"decode_chunk"}))
        handle = None
        if request.accelerate != "off":
            import fused_ops

            handle = fused_ops.accelerate(model.pipe, mode=request.accelerate)
        per_job = [[j.request.seed + i for i in range(j.request.batch)] for j in jobs]
        seeds = [s for group in per_job for s in group]
        # 9-channel inpaint models run every mode through their inpaint pipeline.
        as_inpaint = request.mode == "outpaint" or getattr(model, "inpaint_unet", False)
        pipe_for_mode = model.pipeline_for("inpaint" if as_inpaint else request.mode)
        if hasattr(pipe_for_mode, "set_progress_bar_config"):
            pipe_for_mode.set_progress_bar_config(disable=self.quiet)
        frames_note = {"frames": request.frames} if request.frames else {}

        def callback(step: int, total: int, latents) -> None:
            if progress is not None:
                progress(step, total)
            # a run no longer than the preview interval still shows one preview, halfway
            due = step % preview_every == 0 or (total <= preview_every and step == max(1, total // 2))
            if preview is not None and kind.sized and due and step < total:
                image = pipelines.latent_preview(pipe_for_mode, latents)
                if image is not None:
                    preview(step, total, seal_derived(image, model_name=entry.name, params={
                        "kind": "preview", "step": step, "steps": total, "prompt": request.prompt,
                        **frames_note}))

        guide = guide_reward = None
        if request.reward_guidance is not None:  # a plain score callable for pipelines.reward_guidance
            from .guidance import guidance_spec

            guide, guide_reward = guidance_spec(request, model.family)
            inputs.guidance = guide
        try:
            step_fn = callback if (progress or preview) else None
            media = (kind.run(model, request, inputs, seeds, step_fn) if len(jobs) == 1
                     else kind.run_batch(model, [j.request for j in jobs], seeds, step_fn))
        except RuntimeError as exc:  # torch.OutOfMemoryError is one; so is the CPU allocator's failure
            if not (isinstance(exc, torch.OutOfMemoryError) or "can't allocate memory" in str(exc)):
                raise
            raise StudioError(
                f"out of memory on {model.device} rendering {request.width}x{request.height} x batch "
                f"{len(seeds)}{f' x {request.frames} frames' if request.frames else ''}: use a smaller size "
                "or batch, or --vae-tiling / --offload model") from None
        finally:
            if handle is not None:
                handle.undo()
            if request.loras:
                pipelines.apply_loras(model, [])

        composition = None
        if len(jobs) > 1:
            from .batching import batch_record

            composition = batch_record([j.request for j in jobs], keys)
        generated, at = [], 0
        for job, group in zip(jobs, per_job):
            record = GenerationRecord(
                request=job.request, mode=job.request.mode, model_name=entry.name, model_source=str(model.source),
                model_family=model.family, model_hash=model.content_hash, lora_hashes=list(lora_hashes),
                sampler=job.request.sampler or (type(scheduler).__name__ if scheduler is not None
                                                else "token sampling"),
                device=str(model.device), dtype=str(model.dtype).replace("torch.", ""),
                versions=package_versions(), elapsed_s=round(time.perf_counter() - job.started, 3),
                input_hashes=dict(job.inputs.hashes), warnings=job.prompt_notes, styles=job.styled,
            )
            if composition is not None:
                record.batch = composition.model_copy(update={"index": at})
            if guide_reward is not None:
                from .guidance import guidance_record

                record.reward_guidance = guidance_record(request, guide_reward, guide)
            generated.append(Generated(record, media[at:at + len(group)], group, out=job.out,
                                       overwrite=job.overwrite, parent=job.inputs.parent,
                                       parent_format=job.inputs.parent_format, controls=job.inputs.control_maps))
            at += len(group)
        return generated


_default: Optional[Studio] = None


def default_studio() -> Studio:
    global _default
    if _default is None:
        _default = Studio()
    return _default


def generate(prompt: Optional[str] = None, **kwargs) -> Result:
    """`studio.generate("a red circle", seed=1, out="red.png")`: text-to-image, or an edit when
    `init_image` (img2img), `mask` (inpaint) or `outpaint` is given; a clip with a video model
    (`model="mini-video"`, `frames=16, fps=8, out="clip.mp4"`; `init_image` animates a still, `init_video`
    restyles a clip at `strength`)."""
    if prompt is not None:
        kwargs["prompt"] = prompt
    return default_studio().generate(**kwargs)
