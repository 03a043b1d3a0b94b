"""One request/result schema for every modality and every front door (API, CLI, batch files, UI, manifests).

A request's `modality` (image, video or audio) decides its mode, its output formats and which fields apply; what
each modality does with a request lives in `studio.modalities`, one module per modality, chosen from a table.
"""
from __future__ import annotations

import math
import re
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import RequestError

Modality = Literal["image", "video", "audio"]
ImageFormat = Literal["png", "jpeg", "webp"]
VideoFormat = Literal["mp4", "gif"]  # not WebM: C2PA (c2pa-python) cannot sign it, and nothing leaves unsigned
AudioFormat = Literal["wav", "flac", "mp3"]
OutputFormat = Literal["png", "jpeg", "webp", "mp4", "gif", "wav", "flac", "mp3"]
Mode = Literal["txt2img", "img2img", "inpaint", "outpaint", "instruct", "txt2vid", "img2vid", "vid2vid",
               "txt2audio", "audio_extend", "audio_inpaint", "audio2audio"]
# Which output formats belong to which modality; the first is the default.
FORMATS: dict[str, tuple[str, ...]] = {"image": ("png", "jpeg", "webp"), "video": ("mp4", "gif"),
                                       "audio": ("wav", "flac", "mp3")}
# Fields that only one modality reads: giving one decides the modality, giving it to another is an error.
OWN_FIELDS: dict[str, tuple[str, ...]] = {
    "image": ("mask", "outpaint", "inpaint"),  # image_guidance: images and instruct clip edits (see below)
    "video": ("frames", "fps", "init_video", "motion_adapter"),
    "audio": ("duration", "init_audio", "extend", "span"),
}
VIDEO_ONLY_FIELDS = OWN_FIELDS["video"]
MAX_FRAMES = 257
MAX_AUDIO_SECONDS = 300.0
MAX_FPS = 120.0
MAX_SIDE = 4096
MAX_BATCH = 64
MAX_CONTROLS = 8  # ControlNet units per request (A1111 offers 3 by default, diffusers any number)
MAX_STYLES = 16  # saved styles applied to one request
MAX_OUTPAINT = 2048
LORA_WEIGHT_MIN, LORA_WEIGHT_MAX = -4.0, 4.0


def _multiple_of_8(name: str, value: Optional[int]) -> Optional[int]:
    if value is None:
        return value
    if value % 8:
        raise ValueError(f"{name} {value} is not a multiple of 8 (try {max(8, round(value / 8) * 8)})")
    return value


def _finite(name: str, value: Any) -> Any:
    """NaN compares false with every bound, so pydantic would report it as out of range ("should be <= 50");
    say what is wrong instead. Runs before the bounds, on the raw input (text from CSV/JSON included)."""
    try:
        number = float(value) if isinstance(value, (int, float, str)) and not isinstance(value, bool) else None
    except ValueError:
        return value  # not numeric at all: pydantic's own "should be a valid number" says so
    if number is not None and math.isnan(number):
        raise ValueError(f"{name} is not a number (got {value!r})")
    if number is not None and math.isinf(number):
        raise ValueError(f"{name} must be a finite number (got {value!r})")
    return value


def _a(word: str) -> str:
    """The article for `word` ("an image", "a video", "an audio request")."""
    return f"an {word}" if word[:1] in "aeiou" else f"a {word}"


def _build(cls, _prefix: str = "invalid request: ", _loc: bool = True, **fields: Any):
    try:
        return cls(**fields)
    except ValidationError as exc:
        raise RequestError(format_validation_error(exc, prefix=_prefix, loc=_loc)) from None


class LoraRef(BaseModel):
    """A LoRA file and the weight it is applied with."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    path: str = Field(min_length=1)
    weight: float = 1.0
    allow_failed_gate: bool = False  # use a studio-tuned LoRA that failed (or skipped) its eval gate anyway

    @field_validator("weight", mode="before")
    @classmethod
    def _weight_finite(cls, v: Any) -> Any:
        return _finite("weight", v)

    @field_validator("weight")
    @classmethod
    def _weight_range(cls, v: float) -> float:
        # Checked here rather than with Field(ge, le) so the message states the range, not one bound.
        if not LORA_WEIGHT_MIN <= v <= LORA_WEIGHT_MAX:
            raise ValueError(f"weight must be in [{LORA_WEIGHT_MIN:g}, {LORA_WEIGHT_MAX:g}] (got {v:g})")
        return v

    @classmethod
    def parse(cls, text: str) -> "LoraRef":
        """Parse the CLI form `PATH[:WEIGHT]`."""
        path, sep, weight = text.rpartition(":")
        if not sep or not path:
            return _build(cls, path=text)
        try:
            value = float(weight)
        except ValueError:
            # A colon that is part of the path (C:\...) rather than a weight.
            return _build(cls, path=text)
        return _build(cls, _prefix=f"LoRA {path!r}: ", _loc=False, path=path, weight=value)


class Outpaint(BaseModel):
    """Pixels to add on each side of the init image; each a multiple of 8."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    left: int = 0
    top: int = 0
    right: int = 0
    bottom: int = 0

    @field_validator("left", "top", "right", "bottom")
    @classmethod
    def _eight(cls, v: int, info) -> int:
        # The bounds are checked here, not with Field(ge, le), so every message names its side.
        if not 0 <= v <= MAX_OUTPAINT:
            raise ValueError(f"outpaint {info.field_name} margin {v} must be in [0, {MAX_OUTPAINT}]")
        return _multiple_of_8(f"outpaint {info.field_name} margin", v)

    @model_validator(mode="after")
    def _some_side(self) -> "Outpaint":
        if not any(self.as_tuple()):
            raise ValueError("outpaint needs at least one side > 0")
        return self

    def as_tuple(self) -> tuple[int, int, int, int]:
        return (self.left, self.top, self.right, self.bottom)

    @classmethod
    def parse(cls, text: str) -> "Outpaint":
        """Parse the CLI form `LEFT,TOP,RIGHT,BOTTOM`."""
        parts = [p.strip() for p in text.split(",")]
        if len(parts) != 4:
            raise RequestError(f"outpaint must be LEFT,TOP,RIGHT,BOTTOM (4 numbers), got {text!r}")
        try:
            left, top, right, bottom = (int(p) for p in parts)
        except ValueError:
            raise RequestError(f"outpaint margins must be integers, got {text!r}") from None
        return _build(cls, _prefix=f"outpaint {text!r}: ", _loc=False, left=left, top=top, right=right,
                      bottom=bottom)


class Span(BaseModel):
    """A time span [start, end) in seconds of an init audio clip: the part audio inpainting regenerates."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    start: float = Field(ge=0.0)
    end: float = Field(gt=0.0)

    @model_validator(mode="after")
    def _ordered(self) -> "Span":
        if self.end <= self.start:
            raise ValueError(f"span end {self.end:g} s must be after its start {self.start:g} s")
        return self

    def as_tuple(self) -> tuple[float, float]:
        return (self.start, self.end)

    @classmethod
    def parse(cls, text: str) -> "Span":
        """Parse the CLI form `START:END` (seconds)."""
        start, sep, end = text.partition(":")
        try:
            if not sep:
                raise ValueError
            a, b = float(start), float(end)
        except ValueError:
            raise RequestError(f"span must be START:END in seconds (e.g. 2:4), got {text!r}") from None
        return _build(cls, _prefix=f"span {text!r}: ", _loc=False, start=a, end=b)


# = pipelines.control_preprocess.PREPROCESSORS (tested); named here so a request validates without torch
CONTROL_PREPROCESSORS = ("none", "canny", "layout", "shuffle", "lineart_standard", "hed", "scribble", "pidinet",
                         "mlsd", "lineart", "lineart_anime", "depth", "normal", "openpose")
CONTROL_WEIGHT_MAX = 2.0


class ControlUnit(BaseModel):
    """One ControlNet unit: a source image, the preprocessor that turns it into a control map (`none`: it is
    one already), the ControlNet (`model`: a ControlNet name from `studio.control`, a folder or a hub id; None:
    the default for the base model's family and the preprocessor, recorded resolved), its weight (conditioning
    scale) and the fraction of the steps it acts in, [start, end]."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    image: str = Field(min_length=1)
    preprocessor: str = "none"
    model: Optional[str] = None
    weight: float = 1.0
    start: float = 0.0
    end: float = 1.0

    @field_validator("weight", "start", "end", mode="before")
    @classmethod
    def _numbers(cls, v: Any, info) -> Any:
        return _finite(f"control {info.field_name}", v)

    @field_validator("preprocessor")
    @classmethod
    def _known(cls, v: str) -> str:
        v = v.strip().lower()
        if v not in CONTROL_PREPROCESSORS:
            raise ValueError(f"unknown preprocessor {v!r} (one of {', '.join(CONTROL_PREPROCESSORS)})")
        return v

    @field_validator("weight")
    @classmethod
    def _weight(cls, v: float) -> float:
        if not 0.0 <= v <= CONTROL_WEIGHT_MAX:
            raise ValueError(f"control weight must be in [0, {CONTROL_WEIGHT_MAX:g}] (got {v:g})")
        return v

    @model_validator(mode="after")
    def _window(self) -> "ControlUnit":
        if not 0.0 <= self.start < self.end <= 1.0:
            raise ValueError(f"control start {self.start:g} and end {self.end:g} must satisfy 0 <= start < end <= 1")
        return self

    @classmethod
    def parse(cls, text: str) -> "ControlUnit":
        """Parse the CLI form `PREPROCESSOR:IMAGE[:WEIGHT[:START:END]]` (the ControlNet follows the model's
        family) or `MODEL:IMAGE[:PREPROCESSOR[:WEIGHT[:START:END]]]`."""
        parts = [p.strip() for p in str(text).split(":")]
        usage = ("control must be PREPROCESSOR:IMAGE[:WEIGHT[:START:END]] or "
                 f"MODEL:IMAGE[:PREPROCESSOR[:WEIGHT[:START:END]]], got {text!r}")
        if len(parts) < 2 or not parts[0] or not parts[1]:
            raise RequestError(usage)
        fields: dict[str, Any] = {"image": parts[1]}
        rest = parts[2:]
        if parts[0].lower() in CONTROL_PREPROCESSORS:
            fields["preprocessor"] = parts[0]
        else:
            fields["model"] = parts[0]
            if rest and rest[0] and not _is_number(rest[0]):
                fields["preprocessor"] = rest.pop(0)
        if len(rest) not in (0, 1, 3) or not all(_is_number(x) for x in rest):
            raise RequestError(usage)
        for key, value in zip(("weight", "start", "end"), rest):
            fields[key] = float(value)
        return _build(cls, _prefix=f"control {text!r}: ", _loc=False, **fields)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


HIRES_BUILTIN_UPSCALERS = ("latent", "pixel-lanczos")
HIRES_SCALE_MAX = 4.0


def hires_size(width: int, height: int, scale: float) -> tuple[int, int]:
    """The size a hires pass renders at: each side times `scale`, which must land on a multiple of 8 within
    MAX_SIDE (RequestError naming the side and the nearest scale that fits otherwise)."""
    out = []
    for side, value in (("width", width), ("height", height)):
        target = value * scale
        if abs(target - round(target)) > 1e-6 or round(target) % 8:
            near = max(8, round(target / 8) * 8)
            raise RequestError(f"hires {side} {value} x {scale:g} = {target:g} is not a multiple of 8 (try scale "
                               f"{near / value:g} for {near})")
        if round(target) > MAX_SIDE:
            raise RequestError(f"hires {side} {value} x {scale:g} = {round(target)} is over the largest side "
                               f"{MAX_SIDE}: use a smaller scale or size")
        out.append(int(round(target)))
    return out[0], out[1]


class HiresOptions(BaseModel):
    """Hires fix: render, seal that first pass, upscale it by `scale` (latents, Lanczos pixels, or an upscaler
    model) and refine it with img2img at `strength` for `steps` (None: the first pass's steps). The first pass
    is the output's C2PA ingredient."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    scale: float = 2.0
    # "latent", "pixel-lanczos", an upscaler name (`studio.addons`) or a local diffusers upscaler folder
    upscaler: str = Field(default="latent", min_length=1, max_length=500)
    strength: float = 0.5
    steps: Optional[int] = Field(default=None, gt=0, le=1000)

    @field_validator("scale", "strength", mode="before")
    @classmethod
    def _finite_numbers(cls, v: Any, info) -> Any:
        return _finite(f"hires {info.field_name}", v)

    @field_validator("scale")
    @classmethod
    def _scale_range(cls, v: float) -> float:
        if not 1.0 < v <= HIRES_SCALE_MAX:
            raise ValueError(f"hires scale must be above 1 and at most {HIRES_SCALE_MAX:g} (got {v:g})")
        return v

    @field_validator("strength")
    @classmethod
    def _strength_range(cls, v: float) -> float:
        if not 0.0 < v <= 1.0:
            raise ValueError(f"hires strength must be above 0 and at most 1 (got {v:g})")
        return v

    @field_validator("upscaler")
    @classmethod
    def _upscaler_name(cls, v: str) -> str:
        v = v.strip()
        if not v:
            raise ValueError("hires upscaler is empty")
        return {"lanczos": "pixel-lanczos", "pixel": "pixel-lanczos"}.get(v.lower(), v)

    @classmethod
    def parse(cls, text: str) -> "HiresOptions":
        """Parse the text form `SCALE[:STRENGTH[:UPSCALER]]` (batch files' text cells)."""
        parts = str(text).strip().split(":", 2)
        keys = ("scale", "strength", "upscaler")
        fields = {k: p.strip() for k, p in zip(keys, parts) if p.strip()}
        return _build(cls, _prefix=f"hires {text!r}: ", _loc=False, **fields)


class InpaintOptions(BaseModel):
    """How an inpaint runs (A1111's inpaint options): `mask_blur` px feathers the mask outwards; `masked_content`
    is what the masked area starts from (the original pixels, a fill from around it, or noise); `only_masked`
    inpaints the mask's box plus `padding` px at the full working size and pastes it back (`pipelines.
    inpaint_canvas`). Pixels the blurred mask does not reach are kept exactly."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    mask_blur: int = Field(default=4, ge=0, le=64)
    masked_content: Literal["original", "fill", "latent_noise"] = "original"
    only_masked: bool = False
    padding: int = Field(default=32, ge=0, le=512)


class MemoryOptions(BaseModel):
    """Trade speed for memory: offloading (CUDA only), VAE tiling/slicing, attention slicing."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    offload: Optional[Literal["model", "sequential"]] = None
    vae_tiling: bool = False
    vae_slicing: bool = False
    attention_slicing: bool = False
    # video: frames the VAE decodes at once (AnimateDiff, SVD); None: the pipeline's default
    decode_chunk: Optional[int] = Field(default=None, ge=1, le=64)


class RewardGuidance(BaseModel):
    """Gradient guidance by a differentiable reward on x0-hat (`pipelines.reward_guidance`): each step in the
    window [start, end] (fractions of the schedule) moves the latents along the reward's normalised gradient by
    `strength` x their std, capped at `max_step` x their std."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    reward: str = Field(min_length=1, max_length=100)
    strength: float = Field(ge=0.0, le=100.0)
    start: float = 0.0
    end: float = 0.8
    max_step: float = Field(default=0.1, gt=0.0, le=1.0)

    @field_validator("strength", "start", "end", "max_step", mode="before")
    @classmethod
    def _numbers(cls, v: Any, info) -> Any:
        return _finite(f"reward guidance {info.field_name}", v)

    @model_validator(mode="after")
    def _window(self) -> "RewardGuidance":
        if not 0.0 <= self.start <= self.end <= 1.0:
            raise ValueError(f"reward guidance start {self.start:g} and end {self.end:g} must satisfy "
                             "0 <= start <= end <= 1")
        return self


class GenerationRequest(BaseModel):
    """Everything that determines an output. Fields left None are resolved from the model's defaults and
    recorded resolved, so a stored request replays to the same pixels."""

    model_config = ConfigDict(extra="forbid")

    # None: decided by a modality's own fields or the output format when they are given, else by the model
    # (`with_modality`); always recorded resolved.
    modality: Optional[Modality] = None
    prompt: str = Field(min_length=1, max_length=4000)
    negative_prompt: str = Field(default="", max_length=4000)
    model: Optional[str] = None
    width: Optional[int] = Field(default=None, ge=64, le=MAX_SIDE)
    height: Optional[int] = Field(default=None, ge=64, le=MAX_SIDE)
    steps: Optional[int] = Field(default=None, gt=0, le=1000)
    guidance: Optional[float] = Field(default=None, ge=0.0, le=50.0)
    sampler: Optional[str] = None
    seed: Optional[int] = Field(default=None, ge=0, lt=2**63)
    batch: int = Field(default=1, ge=1, le=MAX_BATCH)
    loras: list[LoraRef] = Field(default_factory=list)
    init_image: Optional[str] = None
    strength: Optional[float] = Field(default=None, ge=0.0, le=1.0)
    mask: Optional[str] = None
    outpaint: Optional[Outpaint] = None
    inpaint: Optional[InpaintOptions] = None  # mask blur, masked content, only-masked (needs a mask)
    # video: clip length and rate, a source clip for video-to-video, an AnimateDiff motion adapter override
    frames: Optional[int] = Field(default=None, ge=1, le=MAX_FRAMES)
    fps: Optional[float] = Field(default=None, gt=0.0, le=MAX_FPS)
    init_video: Optional[str] = None
    motion_adapter: Optional[str] = None
    # audio: clip length; a source clip to extend (by `extend` s), inpaint (`span`) or vary (`strength`)
    duration: Optional[float] = Field(default=None, gt=0.0, le=MAX_AUDIO_SECONDS)
    init_audio: Optional[str] = None
    extend: Optional[float] = Field(default=None, gt=0.0, le=MAX_AUDIO_SECONDS)
    span: Optional[Span] = None
    # images, instruction editing (the prompt is the instruction): None lets the model decide (an instruct model
    # given an init image edits it); image_guidance weighs the source image next to text guidance
    instruct: Optional[bool] = None
    image_guidance: Optional[float] = Field(default=None, ge=0.0, le=50.0)
    # images: ControlNet units, and guess mode (SD/SDXL: the ControlNet reads the map without the prompt)
    # each unit reads a source image and loads a ControlNet: bounded before any of that happens
    controls: list[ControlUnit] = Field(default_factory=list, max_length=MAX_CONTROLS)
    guess_mode: bool = False
    # images (txt2img): A1111 variation seeds; the initial noise is slerp(noise(seed), noise(variation_seed),
    # variation_strength), so strength 0 is the plain seed and 1 the variation seed's noise
    variation_seed: Optional[int] = Field(default=None, ge=0, lt=2**63)
    variation_strength: float = Field(default=0.0, ge=0.0, le=1.0)
    # saved prompt snippets (`studio.styles`), applied in order; the resolved request carries the styled prompt
    styles: list[str] = Field(default_factory=list, max_length=MAX_STYLES)
    # (word:1.2) weighting through compel: None detects A1111 weights in the prompts; recorded resolved
    prompt_weighting: Optional[bool] = None
    # images: upscale the sealed first pass and refine it (txt2img, img2img)
    hires: Optional[HiresOptions] = None
    # best-of-N (`studio.best_of`): `best_of` candidates seeded seed..seed+N-1, ranked by the named `reward`
    best_of: Optional[int] = Field(default=None, ge=1, le=MAX_BATCH)
    reward: Optional[str] = Field(default=None, min_length=1, max_length=100)
    # images: steer sampling by a differentiable reward's gradient (`pipelines.reward_guidance`)
    reward_guidance: Optional[RewardGuidance] = None
    memory: MemoryOptions = Field(default_factory=MemoryOptions)
    output_format: Optional[OutputFormat] = None  # None: the modality's first format (png, mp4, wav)
    accelerate: Literal["off", "safe", "max"] = "off"
    device: Optional[str] = None
    dtype: Optional[Literal["fp32", "fp16", "bf16"]] = None

    @field_validator("prompt")
    @classmethod
    def _prompt_not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("prompt is empty")
        return v

    @field_validator("styles", mode="before")
    @classmethod
    def _style_names(cls, v: Any) -> Any:
        # "cinematic, film" from a CLI flag, a CSV cell or a txt override means two styles
        if isinstance(v, str):
            v = [s for s in (p.strip() for p in re.split(r"[,;]", v)) if s]
        return v

    @field_validator("guidance", "strength", "variation_strength", "fps", "duration", "extend", mode="before")
    @classmethod
    def _number(cls, v: Any, info) -> Any:
        return _finite(info.field_name, v)

    @field_validator("hires", mode="before")
    @classmethod
    def _hires_short(cls, v: Any) -> Any:
        # `hires=2` (API, a jsonl number) and "2:0.5" (a CSV cell) mean the scale (and strength, upscaler)
        if isinstance(v, (int, float, str)) and not isinstance(v, bool):
            return HiresOptions.parse(str(v)).model_dump()
        return v

    @field_validator("width", "height")
    @classmethod
    def _size(cls, v: Optional[int], info) -> Optional[int]:
        return _multiple_of_8(info.field_name, v)

    @field_validator("sampler")
    @classmethod
    def _known_sampler(cls, v: Optional[str]) -> Optional[str]:
        if v is None:
            return v
        from schedulers import resolve_sampler

        return resolve_sampler(v)  # UnknownSampler is a ValueError: pydantic reports its message

    @model_validator(mode="after")
    def _modality_fields(self) -> "GenerationRequest":
        given = {m: [f for f in fields if getattr(self, f) is not None] for m, fields in OWN_FIELDS.items()}
        claimed = [m for m, fields in given.items() if fields]
        fmt_modality = next((m for m, fmts in FORMATS.items() if self.output_format in fmts), None)
        modality = self.modality or (claimed[0] if len(claimed) == 1 else None) or fmt_modality
        for other in claimed:
            if modality is not None and other != modality:
                raise ValueError(f"{', '.join(given[other])} given for {_a(modality)} request: "
                                 f"{'it applies' if len(given[other]) == 1 else 'they apply'} to {other}")
        if len(claimed) > 1 and modality is None:
            raise ValueError(f"{', '.join(given[claimed[0]])} ({claimed[0]}) and {', '.join(given[claimed[1]])} "
                             f"({claimed[1]}) cannot be in one request")
        if modality == "audio" and self.init_image:
            raise ValueError("init_image given for an audio request: audio edits take init_audio")
        if modality == "video" and self.init_video and self.init_image:
            raise ValueError("init_image and init_video are exclusive: animate a still (init_image) or "
                             "restyle a clip (init_video)")
        if modality == "audio":
            if (self.extend or self.span) and not self.init_audio:
                raise ValueError(f"{'extend' if self.extend else 'span'} given without init_audio: it edits a clip")
            if self.extend and self.span:
                raise ValueError("extend and span are exclusive: continue a clip, or regenerate a span inside it")
            if self.strength is not None and (self.extend or self.span):
                raise ValueError("strength applies to audio-to-audio (init_audio alone), not to extend/span")
        if modality is not None and self.output_format is not None and self.output_format not in FORMATS[modality]:
            raise ValueError(f"output format {self.output_format} is not {_a(modality)} format (use "
                             f"{', '.join(FORMATS[modality])})")
        if modality is not None:
            self.modality = modality
            if self.output_format is None:
                self.output_format = FORMATS[modality][0]
        return self

    @field_validator("controls", mode="before")
    @classmethod
    def _control_text(cls, v: Any) -> Any:
        # "canny:ref.png:0.8" (a CSV cell, a --set value), several joined with ";"
        if isinstance(v, str):
            v = [p for p in (x.strip() for x in v.split(";")) if p]
        if isinstance(v, (list, tuple)):
            v = [ControlUnit.parse(x) if isinstance(x, str) else x for x in v]
        return v

    @model_validator(mode="after")
    def _instruct_and_controls(self) -> "GenerationRequest":
        if self.image_guidance is not None and not (self.init_image or (self.instruct and self.init_video)):
            raise ValueError("image_guidance given without init_image: it weighs the image an instruction edits "
                             "(or, with instruct, the clip)")
        if self.instruct and not (self.init_image or self.init_video):
            raise ValueError("instruct given without init_image or init_video: an instruction edits an image "
                             "(--init) or a clip (`studio edit CLIP INSTRUCTION`)")
        if self.image_guidance is not None and self.modality in ("video", "audio") and not self.instruct:
            raise ValueError(f"image_guidance given for {_a(self.modality)} request: it applies to instruction "
                             "edits (instruct)")
        if self.instruct or self.image_guidance is not None:
            extra = [f for f in ("mask", "outpaint", "strength") if getattr(self, f) is not None]
            if extra:
                raise ValueError(f"{', '.join(extra)} given for an instruction edit: the instruction says what "
                                 "changes")
        if self.controls and self.modality in ("video", "audio"):
            raise ValueError(f"controls given for {_a(self.modality)} request: ControlNet applies to images")
        if self.controls and (self.instruct or self.image_guidance is not None):
            raise ValueError("controls do not apply to instruction edits")
        if self.guess_mode and not self.controls:
            raise ValueError("guess_mode given without controls: it changes how a ControlNet reads its map")
        return self

    @model_validator(mode="after")
    def _edit_inputs(self) -> "GenerationRequest":
        if self.variation_strength > 0 and self.variation_seed is None:
            raise ValueError("variation_strength given without variation_seed: it interpolates towards that "
                             "seed's noise")
        if self.variation_seed is not None and (self.init_image or self.modality in ("video", "audio")):
            raise ValueError("variation_seed applies to text-to-image (no init_image, an image model)")
        if self.mask and not self.init_image:
            raise ValueError("mask given without init_image: inpainting needs the image to paint into")
        if self.outpaint and not self.init_image:
            raise ValueError("outpaint given without init_image: outpainting extends an existing image")
        if self.inpaint is not None and not self.mask:
            raise ValueError("inpaint options given without mask: they shape an inpaint")
        if self.outpaint and self.mask:
            raise ValueError("outpaint and mask are exclusive: outpainting makes its own mask of the new border")
        if self.hires is not None:
            if self.modality in ("video", "audio"):
                raise ValueError(f"hires given for {_a(self.modality)} request: it upscales images")
            if self.mask or self.outpaint or self.instruct:
                raise ValueError("hires applies to txt2img and img2img, not to inpaint, outpaint or instruction "
                                 "edits")
            if self.width and self.height:
                hires_size(self.width, self.height, self.hires.scale)
        if self.strength is not None and not (self.init_image or self.init_video or self.init_audio):
            raise ValueError("strength given without init_image, init_video or init_audio: strength applies to "
                             "edits")
        if self.best_of is not None and self.batch > 1:
            raise ValueError("best_of and batch are exclusive: best_of renders its N candidates as one batch")
        if self.best_of is not None and not self.reward:
            raise ValueError("best_of needs a reward to rank its candidates (studio rewards lists them)")
        if self.reward and self.best_of is None:
            raise ValueError("reward given without best_of: it ranks best-of-N candidates")
        if self.reward_guidance is not None:
            if self.modality in ("video", "audio"):
                raise ValueError(f"reward_guidance given for {_a(self.modality)} request: it steers images for now")
            if self.hires is not None or self.controls or self.mask or self.outpaint or self.instruct:
                raise ValueError("reward_guidance applies to txt2img and img2img without hires or controls, for now")
        return self

    def with_modality(self, modality: str) -> "GenerationRequest":
        """This request for a model of `modality`: fills an undecided modality (and its default format), and
        refuses one that disagrees with the model (`RequestError`)."""
        if self.modality == modality:
            return self
        if self.modality is not None:
            raise RequestError(f"this is {_a(self.modality)} request but the model makes {modality}: choose "
                               f"{_a(modality)} model or drop the {self.modality} options")
        return GenerationRequest.build(**{**self.model_dump(exclude_unset=True), "modality": modality})

    @property
    def mode(self) -> Mode:
        if self.modality == "video":
            if self.instruct:  # a clip edited frame by frame (studio.modalities.instruct_video)
                return "instruct"
            return "vid2vid" if self.init_video else "img2vid" if self.init_image else "txt2vid"
        if self.modality == "audio":
            if not self.init_audio:
                return "txt2audio"
            return "audio_extend" if self.extend else "audio_inpaint" if self.span else "audio2audio"
        if self.instruct:
            return "instruct"
        if self.outpaint:
            return "outpaint"
        if self.mask:
            return "inpaint"
        if self.init_image:
            return "img2img"
        return "txt2img"

    @classmethod
    def build(cls, **fields: Any) -> "GenerationRequest":
        """Validate and raise `RequestError` with one readable line instead of pydantic's report."""
        return _build(cls, **fields)


def format_validation_error(exc: ValidationError, prefix: str = "invalid request: ", loc: bool = True) -> str:
    """pydantic's report as one line: `field: message` per error, without its URLs or input dumps. `loc=False`
    drops the field names (for a one-field text form like `--outpaint`, whose messages name the side)."""
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "__root__") if loc else ""
        msg = err.get("msg", "invalid")
        msg = msg.removeprefix("Value error, ")
        if err.get("type") == "extra_forbidden":
            msg = "unknown field"
        if where and "." not in where and msg.split(" ", 1)[0] == where:
            where = ""  # "width 250 is not a multiple of 8" already names its field
        parts.append(f"{where}: {msg}" if where else msg)
    return prefix + " ".join("; ".join(parts).split())  # one line even when a message has line breaks


class OutputRecord(BaseModel):
    """One delivered (sealed) file: what it is, where it is, and what made it."""

    model_config = ConfigDict(extra="forbid")
    index: int
    seed: int
    format: OutputFormat
    sha256: str  # of the sealed file
    pixel_sha256: str  # of the decoded pixels: equal across re-renders even though signatures differ
    # of the generated pixels before the seal (watermark): compares renders even when their watermarks differ
    generated_sha256: Optional[str] = None
    size_bytes: int
    path: Optional[str] = None
    width: Optional[int] = None  # images and clips
    height: Optional[int] = None
    frames: Optional[int] = None  # video
    fps: Optional[float] = None  # video
    duration_s: Optional[float] = None  # audio and video
    sample_rate: Optional[int] = None  # audio
    channels: Optional[int] = None  # audio
    watermark_id: Optional[str] = None
    watermark_status: str = "unknown"
    reward_score: Optional[float] = None  # best-of-N: this candidate's score and rank (1 = best)
    reward_rank: Optional[int] = None


class RewardRecord(BaseModel):
    """Which reward ranked a best-of-N group, and every candidate's score and rank (by candidate index)."""

    model_config = ConfigDict(extra="forbid")
    name: str
    hash: str
    n: int
    scores: list[float]
    ranks: list[int]  # 1 = best


class RewardGuidanceRecord(BaseModel):
    """The reward that steered sampling (name and hash) and the dial: strength, window, cap, steps guided."""

    model_config = ConfigDict(extra="forbid")
    name: str
    hash: str
    strength: float
    start: float
    end: float
    max_step: float
    steps: list[int] = Field(default_factory=list)  # the loop steps that were guided


class BatchMember(BaseModel):
    """One request of a cross-item batch: what it alone sets (the rest of the request is the same for all)."""

    model_config = ConfigDict(extra="forbid")
    key: Optional[str] = None  # the job item's key, when a job batched it
    seed: int
    prompt: str
    negative_prompt: Optional[str] = None


class BatchRecord(BaseModel):
    """Requests rendered together in one pipeline call (studio.batching). Batched float math can differ from
    a lone render in the last bits, so a replay reruns this exact composition: members in order, each with
    `batch` images, and this record's request starts at image `index` of the `size` images of the call."""

    model_config = ConfigDict(extra="forbid")
    size: int
    index: int
    members: list[BatchMember]


class GenerationRecord(BaseModel):
    """The resolved request plus everything needed to reproduce and attribute it; stored in PNG text chunks,
    in the C2PA generation assertion, and (later) in batch manifests."""

    model_config = ConfigDict(extra="forbid")
    request: GenerationRequest
    mode: Mode
    model_name: str
    model_source: str
    model_family: str
    model_hash: str
    lora_hashes: list[str] = Field(default_factory=list)
    sampler: str
    device: str
    dtype: str
    versions: dict[str, str]
    elapsed_s: float
    input_hashes: dict[str, str] = Field(default_factory=dict)
    outputs: list[OutputRecord] = Field(default_factory=list)
    # what the user should know about how the request was read (e.g. a prompt past the text encoder's limit)
    warnings: list[str] = Field(default_factory=list)
    # the styles applied: {"names": [...], "prompt": ..., "negative_prompt": ...} (the prompts before styling);
    # request.prompt is the styled prompt, so the request replays without the styles file
    styles: Optional[dict[str, Any]] = None
    reward: Optional[RewardRecord] = None  # best-of-N: how the candidates were ranked
    reward_guidance: Optional[RewardGuidanceRecord] = None  # which reward steered sampling, and how hard
    batch: Optional[BatchRecord] = None  # rendered in one pipeline call with other requests (job batching)
