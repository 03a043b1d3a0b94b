"""Run one video request (txt2vid / img2vid / vid2vid) on a LoadedModel of a video family.

Families and their rules come from what the diffusers pipelines impose (``check_inputs``, the VAE's temporal
compression, the motion adapter's sequence length), refused up front with one-line messages instead of
diffusers' silent rounding (Wan) or shape errors deep in a transformer (LTX, CogVideoX).
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import importlib
import inspect
import math
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Callable, Sequence

import torch
from PIL import Image

from schedulers import SAMPLERS, IncompatibleSampler, make_scheduler, resolve_sampler

from .image import _generators, _rgb
from .loading import VIDEO_FAMILY_NAMES, VIDEO_MODES, LoadedModel, apply_clip_skip_shim, clip_skip_supported
from .motion_loras import motion_lora_applied

# diffusers' video-to-video pipelines default to 0.8, which keeps little of the source's layout at the usual
# 25-50 steps; 0.6 keeps the motion and composition and still restyles.
DEFAULT_VID2VID_STRENGTH = 0.6


@dataclass(frozen=True)
class VideoFamily:
    """What a video family accepts. The entries of ``VIDEO_FAMILIES`` hold the rules of the released
    checkpoints; :func:`video_family_for` narrows them to one loaded model (its VAE, adapter, transformer)."""

    name: str
    modes: tuple[str, ...]
    size_multiple: int
    default_frames: int
    default_fps: int
    default_width: int
    default_height: int
    max_frames: int
    frame_step: int = 1  # frames must be frame_step * k + frame_offset (the VAE's temporal compression)
    frame_offset: int = 0
    min_frames: int = 2
    pipelines: tuple[tuple[str, str], ...] = ()  # (mode, diffusers pipeline class)
    frames_why: str = ""  # where the frame limit comes from, for the error message
    exact_size: tuple[int, int] | None = None  # learned positional embeddings: only the trained size works

    def pipeline_class(self, mode: str) -> str:
        return dict(self.pipelines)[mode]

    def allowed_frames(self) -> range:
        first = self.min_frames
        if self.frame_step > 1:
            first = next(n for n in range(self.min_frames, self.min_frames + self.frame_step)
                         if n % self.frame_step == self.frame_offset % self.frame_step)
        return range(first, self.max_frames + 1, self.frame_step)

    def _frames_text(self) -> str:
        allowed = self.allowed_frames()
        if self.frame_step == 1:
            return f"{allowed.start} to {allowed.stop - 1} frames"
        shown = ", ".join(str(n) for n in list(allowed)[:3])
        return f"{self.frame_step}k+{self.frame_offset} frames ({shown}, ..., {allowed[-1]})"

    def check_frames(self, n: int) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n not in self.allowed_frames():
            why = f" ({self.frames_why})" if self.frames_why else ""
            raise ValueError(f"{self.name} needs {self._frames_text()}{why}; got {n!r}")

    def check_size(self, width: int, height: int) -> None:
        m = self.size_multiple
        if self.exact_size is not None and (width, height) != self.exact_size:
            w, h = self.exact_size
            raise ValueError(f"this {self.name} checkpoint only renders {w}x{h} (learned positional embeddings); "
                             f"got {width}x{height}")
        ok = all(isinstance(v, int) and not isinstance(v, bool) and v > 0 and v % m == 0 for v in (width, height))
        if not ok:
            raise ValueError(f"{self.name} needs width and height that are positive multiples of {m} "
                             f"(e.g. {self.default_width}x{self.default_height}); got {width}x{height}")

    def check_mode(self, mode: str) -> None:
        if mode not in VIDEO_MODES:
            raise ValueError(f"unknown video mode {mode!r}; expected one of {', '.join(VIDEO_MODES)}")
        if mode not in self.modes:
            raise ValueError(_unsupported_mode(self, mode))


def _unsupported_mode(fam: VideoFamily, mode: str) -> str:
    does = " and ".join(fam.modes)
    if mode == "txt2vid" and fam.modes == ("img2vid",):
        return f"{fam.name} does not do txt2vid; it animates an image: pass an init image (mode img2vid)"
    if mode == "img2vid" and "img2vid" not in fam.modes:
        return f"{fam.name} does not do img2vid with this checkpoint (it does {does}); use an image-to-video checkpoint"
    return f"{fam.name} does not do {mode} with this checkpoint; it does {does}"


VIDEO_FAMILIES: dict[str, VideoFamily] = {
    # SD1.5 UNet + motion modules: any size the SD VAE takes, up to the adapter's positional table (32 for the
    # released v1-5-2/v1-5-3 adapters); trained at 16 frames, 8 fps.
    # img2vid is the stock AnimateDiffPipeline with frame 0 held to the given image (pipelines.animatediff_i2v).
    "animatediff": VideoFamily(
        "animatediff", ("txt2vid", "img2vid", "vid2vid"), 8, 16, 8, 512, 512, 32,
        pipelines=(("txt2vid", "AnimateDiffPipeline"), ("img2vid", "AnimateDiffPipeline"),
                   ("vid2vid", "AnimateDiffVideoToVideoPipeline")),
        frames_why="the motion adapter's motion_max_seq_length"),
    # Image-only conditioning; diffusers sets no frame limit: 25 is the longest a released checkpoint
    # (svd-xt) was trained on, 14 the default of svd.
    "svd": VideoFamily(
        "svd", ("img2vid",), 8, 14, 7, 1024, 576, 25,
        pipelines=(("img2vid", "StableVideoDiffusionPipeline"),),
        frames_why="the longest released SVD checkpoint (svd-xt) was trained on 25"),
    # VAE: 8x spatial, 4x temporal -> 4k+1 frames; the transformer patchifies 2x2 -> multiples of 16.
    # 2b/5b were trained on 49 frames at 8 fps, CogVideoX1.5 on 81 at 16 fps.
    "cogvideox": VideoFamily(
        "cogvideox", ("txt2vid", "img2vid", "vid2vid"), 16, 49, 8, 720, 480, 81, frame_step=4, frame_offset=1,
        pipelines=(("txt2vid", "CogVideoXPipeline"), ("img2vid", "CogVideoXImageToVideoPipeline"),
                   ("vid2vid", "CogVideoXVideoToVideoPipeline"))),
    # VAE: 32x spatial (check_inputs), 8x temporal -> 8k+1 frames, up to 257; 25 fps.
    "ltx": VideoFamily(
        "ltx", ("txt2vid", "img2vid"), 32, 161, 25, 704, 480, 257, frame_step=8, frame_offset=1,
        pipelines=(("txt2vid", "LTXPipeline"), ("img2vid", "LTXImageToVideoPipeline"))),
    # VAE: 8x spatial (16x for Wan2.2-TI2V-5B) x 2x2 patches, 4x temporal -> 4k+1 frames; 2.1 trained on 81
    # frames at 16 fps, 2.2 on up to 121 at 24 fps.
    "wan": VideoFamily(
        "wan", ("txt2vid", "img2vid", "vid2vid"), 16, 81, 16, 832, 480, 121, frame_step=4, frame_offset=1,
        pipelines=(("txt2vid", "WanPipeline"), ("img2vid", "WanImageToVideoPipeline"),
                   ("vid2vid", "WanVideoToVideoPipeline"))),
}
assert tuple(VIDEO_FAMILIES) == VIDEO_FAMILY_NAMES


def _family(name: str) -> VideoFamily:
    if name not in VIDEO_FAMILIES:
        raise ValueError(f"unknown video family {name!r}; expected one of {', '.join(VIDEO_FAMILIES)}")
    return VIDEO_FAMILIES[name]


def check_video_request(family: str, mode: str, *, frames: int, width: int, height: int) -> None:
    """Refuse, with a one-line ValueError, a request no checkpoint of ``family`` can run (no model needed)."""
    fam = _family(family)
    fam.check_mode(mode)
    fam.check_frames(frames)
    fam.check_size(width, height)


# ----------------------------------------------------------------------------------------------- per model
def _lcm(a: int, b: int) -> int:
    return a * b // math.gcd(a, b)


def _cfg(module, key, default=None):
    return getattr(getattr(module, "config", None), key, default) if module is not None else default


def _animatediff_spec(fam: VideoFamily, pipe) -> VideoFamily:
    adapter = getattr(pipe, "motion_adapter", None)
    max_len = _cfg(adapter, "motion_max_seq_length") or _cfg(pipe.unet, "motion_max_seq_length") or fam.max_frames
    return dataclasses.replace(fam, max_frames=int(max_len),
                               size_multiple=_lcm(8, int(getattr(pipe, "vae_scale_factor", 8))))


def _svd_spec(fam: VideoFamily, pipe) -> VideoFamily:
    trained = int(_cfg(pipe.unet, "num_frames", fam.default_frames))
    return dataclasses.replace(fam, default_frames=trained, max_frames=max(fam.max_frames, trained),
                               size_multiple=_lcm(8, int(getattr(pipe, "vae_scale_factor", 8))))


def _cogvideox_spec(fam: VideoFamily, pipe) -> VideoFamily:
    tr, vae = pipe.transformer, pipe.vae
    spatial = 2 ** (len(vae.config.block_out_channels) - 1)
    image_conditioned = tr.config.in_channels == 2 * vae.config.latent_channels
    spec = dataclasses.replace(
        fam, modes=("img2vid",) if image_conditioned else ("txt2vid", "vid2vid"),
        frame_step=int(vae.config.temporal_compression_ratio), size_multiple=_lcm(8, spatial * tr.config.patch_size))
    if tr.config.use_learned_positional_embeddings:
        # the embedding table is sized for the trained video; diffusers refuses any other size deep in the model
        spec = dataclasses.replace(spec, exact_size=(tr.config.sample_width * spatial,
                                                     tr.config.sample_height * spatial),
                                   max_frames=int(tr.config.sample_frames), frames_why="learned positional embeddings")
    return spec


def _ltx_spec(fam: VideoFamily, pipe) -> VideoFamily:
    spatial = pipe.vae_spatial_compression_ratio * pipe.transformer_spatial_patch_size
    temporal = pipe.vae_temporal_compression_ratio * pipe.transformer_temporal_patch_size
    return dataclasses.replace(fam, frame_step=int(temporal), size_multiple=_lcm(32, int(spatial)))


def _wan_spec(fam: VideoFamily, pipe) -> VideoFamily:
    tr = pipe.transformer if pipe.transformer is not None else pipe.transformer_2
    z = pipe.vae.config.z_dim
    if tr.config.in_channels > z:
        modes = ("img2vid",)  # 2.1/2.2 I2V: image latents + mask go in as extra channels
    elif getattr(pipe.config, "expand_timesteps", False):
        modes = ("txt2vid", "img2vid")  # 2.2 TI2V-5B: one model, the first frame kept by timestep masking
    else:
        modes = ("txt2vid", "vid2vid")
    spatial = pipe.vae_scale_factor_spatial * tr.config.patch_size[1]
    return dataclasses.replace(fam, modes=modes, frame_step=int(pipe.vae_scale_factor_temporal),
                               size_multiple=_lcm(16, int(spatial)))


_SPECS = {"animatediff": _animatediff_spec, "svd": _svd_spec, "cogvideox": _cogvideox_spec, "ltx": _ltx_spec,
          "wan": _wan_spec}


def video_family_for(model: LoadedModel) -> VideoFamily:
    """The family's rules narrowed to this model: its modes, frame step/limit and size multiple."""
    if model.family not in VIDEO_FAMILIES:
        raise ValueError(f"{model.source} is a {model.family} image model, not a video model "
                         f"(video families: {', '.join(VIDEO_FAMILIES)})")
    return _SPECS[model.family](VIDEO_FAMILIES[model.family], model.pipe)


def video_pipeline_for(model: LoadedModel, mode: str):
    """The diffusers pipeline for ``mode`` (the loaded one, or built with ``from_pipe``: shared components)."""
    spec = video_family_for(model)
    spec.check_mode(mode)
    if mode in model._pipes:
        return model._pipes[mode]
    import diffusers

    cls_name = spec.pipeline_class(mode)
    if type(model.pipe).__name__ == cls_name:
        p = model.pipe
    else:
        try:
            p = getattr(diffusers, cls_name).from_pipe(model.pipe)
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"{type(model.pipe).__name__} ({model.family}) cannot run {mode}: {e}") from e
    apply_clip_skip_shim(p)
    _ftfy_shim(p)
    model._pipes[mode] = p
    return p


def _ftfy_shim(pipe) -> None:
    """diffusers 0.42.1's Wan image/video-to-video modules call ``ftfy.fix_text`` unguarded while importing ftfy
    only when it is installed (WanPipeline guards the call); without ftfy they raise NameError. Give those modules
    the fallback WanPipeline itself uses: fix_text skipped (the html unescape and whitespace cleanup still run)."""
    mod = importlib.import_module(type(pipe).__module__)
    if hasattr(mod, "basic_clean") and not hasattr(mod, "ftfy"):
        try:
            import ftfy  # noqa: F401

            mod.ftfy = ftfy
        except ImportError:
            mod.ftfy = SimpleNamespace(fix_text=lambda text: text)


# ----------------------------------------------------------------------------------------------- samplers
def _scheduler(model: LoadedModel, spec: VideoFamily, sampler: str | None, seed: int):
    base = model.base_scheduler_config
    own = type(model.pipe.scheduler)
    if sampler is None:
        sch = own.from_config(base)
    elif spec.name == "animatediff":
        sch = make_scheduler(resolve_sampler(sampler), base, "sd1")  # an SD1.5 UNet: every SD sampler applies
    else:
        sch = _own_sampler(spec, own, base, resolve_sampler(sampler))
    if hasattr(sch, "noise_sampler_seed"):
        sch.noise_sampler_seed = int(seed)  # SDE samplers' Brownian noise: reproducible per seed
    return sch


def _is_own(spec_name: str, own, base: dict) -> bool:
    s = SAMPLERS[spec_name]
    return s.cls == own.__name__ and all(base.get(k, v) == v for k, v in s.overrides.items())


def _own_sampler(spec: VideoFamily, own, base: dict, name: str):
    """Flow-matching / EDM video models run their own scheduler: a catalog sampler is accepted only when it
    *is* that scheduler with the model's settings (e.g. "Flow-match Euler" on LTX, "UniPC" on Wan2.1)."""
    if _is_own(name, own, base):
        # an in-memory pipeline's config has no _class_name; the catalog reads flow matching from it
        return make_scheduler(name, {**base, "_class_name": own.__name__}, "other")
    ok = [n for n in SAMPLERS if _is_own(n, own, base)]
    alt = f"use {' or '.join(repr(n) for n in ok)} or no sampler" if ok else "pass no sampler"
    raise IncompatibleSampler(f"{name} cannot drive {spec.name}: it runs only its own scheduler "
                              f"({own.__name__}); {alt}")


# ----------------------------------------------------------------------------------------------- run
def _accepts(pipe, name: str) -> bool:
    return name in inspect.signature(type(pipe).__call__).parameters


def _input_clip(init_video, frames: int, size) -> list[Image.Image]:
    if not isinstance(init_video, (list, tuple)) or not init_video:
        raise ValueError("vid2vid needs init_video: a non-empty list of PIL images")
    if len(init_video) < frames:
        raise ValueError(f"init_video has {len(init_video)} frames; the request needs {frames}")
    return [_rgb(f, size) for f in init_video[:frames]]


def _family_kwargs(model: LoadedModel, spec: VideoFamily, mode: str, *, frames, fps, guidance, init, clip,
                   strength, extra: dict) -> dict:
    kw: dict[str, Any] = {}
    if mode == "img2vid":
        kw["image"] = init
    if mode == "vid2vid":
        kw.update(video=clip, strength=float(strength))
    else:
        kw["num_frames"] = frames
    if spec.name == "svd":
        # SVD guides frame by frame, linearly from min to max; `guidance` is the last frame's scale
        kw.update(min_guidance_scale=min(1.0, float(guidance)), max_guidance_scale=float(guidance), fps=int(fps),
                  motion_bucket_id=int(extra.get("motion_bucket_id") or 127))
        if extra.get("noise_aug_strength") is not None:
            kw["noise_aug_strength"] = float(extra["noise_aug_strength"])
    else:
        kw["guidance_scale"] = float(guidance)
    if spec.name == "ltx":
        kw["frame_rate"] = int(fps)  # LTX scales its temporal RoPE by the frame rate
    if spec.name == "cogvideox":
        # the transformer's text positions are a fixed table: prompts are padded to exactly that length
        kw["max_sequence_length"] = int(model.pipe.transformer.config.max_text_seq_length)
    elif extra.get("max_sequence_length"):
        kw["max_sequence_length"] = int(extra["max_sequence_length"])
    return kw


def run_video(model: LoadedModel, *, mode: str, prompt: str, negative_prompt: str | None = None, width: int,
              height: int, frames: int, fps: int, steps: int, guidance: float, sampler: str | None = None,
              seeds: Sequence[int], init_image: Image.Image | None = None,
              init_video: list[Image.Image] | None = None, strength: float | None = None,
              callback: Callable[[int, int, torch.Tensor], None] | None = None,
              decode_chunk_size: int | None = None, clip_skip: int | None = None,
              motion_bucket_id: int | None = None, noise_aug_strength: float | None = None,
              max_sequence_length: int | None = None) -> list[list[Image.Image]]:
    """Generate one clip (``frames`` RGB PIL frames of ``width`` x ``height``) per seed.

    Clip i uses ``torch.Generator('cpu').manual_seed(seeds[i])`` and is rendered on its own, so it equals a
    single run of that seed (and a batch never holds more than one clip's latents). ``callback(step, total,
    latents)`` counts steps over the whole batch. ``sampler=None`` keeps the model's own scheduler.
    ``fps`` conditions SVD (``fps``) and LTX (``frame_rate``); elsewhere it only matters to the container.
    ``decode_chunk_size`` (frames per VAE decode) reaches SVD and AnimateDiff; the 3-D-VAE families decode
    whole clips (use ``apply_memory_options(vae_tiling=...)`` there).
    """
    spec = video_family_for(model)
    spec.check_mode(mode)
    spec.check_frames(frames)
    spec.check_size(width, height)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError("steps must be a positive int")
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or fps <= 0:
        raise ValueError(f"fps must be a positive number; got {fps!r}")
    gens = _generators(list(seeds))
    size = (width, height)

    init = clip = None
    if mode == "img2vid":
        if init_image is None:
            raise ValueError(f"img2vid needs init_image (the image {spec.name} animates)")
        init = _rgb(init_image, size)
    if mode == "vid2vid":
        clip = _input_clip(init_video, frames, size)
        strength = DEFAULT_VID2VID_STRENGTH if strength is None else float(strength)
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"strength must be in [0, 1]; got {strength}")
        if strength == 0.0:
            return [[f.copy() for f in clip] for _ in gens]  # strength 0 = the input unchanged
        if steps * strength < 1:
            steps = math.ceil(1 / strength)  # at least one denoising step
    elif strength is not None:
        raise ValueError(f"strength applies to vid2vid only (got strength with {mode})")

    pipe = copy.copy(video_pipeline_for(model, mode))  # shallow: shares modules, own scheduler per clip
    if clip_skip:
        if spec.name != "animatediff" or not clip_skip_supported(pipe):
            raise ValueError(f"clip_skip is not supported for {spec.name}")
    kw = dict(prompt=prompt, height=height, width=width, num_inference_steps=steps, output_type="pil")
    if spec.name == "svd":
        del kw["prompt"]  # SVD is conditioned on the image alone
    elif negative_prompt:
        kw["negative_prompt"] = negative_prompt
    if clip_skip:
        kw["clip_skip"] = int(clip_skip)
    if decode_chunk_size is not None and _accepts(pipe, "decode_chunk_size"):
        kw["decode_chunk_size"] = int(decode_chunk_size)
    kw.update(_family_kwargs(model, spec, mode, frames=frames, fps=fps, guidance=guidance, init=init, clip=clip,
                             strength=strength, extra=dict(motion_bucket_id=motion_bucket_id,
                                                           noise_aug_strength=noise_aug_strength,
                                                           max_sequence_length=max_sequence_length)))

    clips: list[list[Image.Image]] = []
    with _motion_lora(model, pipe, spec, kw):
        for i, (seed, gen) in enumerate(zip(seeds, gens)):
            pipe.scheduler = _scheduler(model, spec, sampler, int(seed))
            if callback is not None:
                kw["callback_on_step_end"] = _progress(callback, i, len(gens), steps)
                kw["callback_on_step_end_tensor_inputs"] = ["latents"]
            with torch.inference_mode():
                if spec.name == "animatediff" and mode == "img2vid":
                    out = _animate(pipe, kw, gen)
                else:
                    out = pipe(generator=gen, **kw).frames[0]
            clips.append(_as_clip(out, frames, size, spec.name))
    return clips


@contextlib.contextmanager
def _motion_lora(model: LoadedModel, pipe, spec: VideoFamily, kw: dict):
    """An AnimateDiff folder with a motion-LoRA table gets the LoRA its prompt names (``motion_loras.py``),
    beside the request's own LoRAs; ``kw["prompt"]`` becomes the prompt the table says to use."""
    folder = model.source if spec.name == "animatediff" and model.kind == "folder" else None
    keep = list(zip(model._lora_names, model._lora_weights))
    with motion_lora_applied(pipe, folder, kw.get("prompt") or "", keep=keep) as (prompt, choice):
        if choice is not None:
            kw["prompt"] = prompt
        yield choice


def _animate(pipe, kw: dict, gen) -> list[Image.Image]:
    from .animatediff_i2v import animate_image

    step_end = kw.get("callback_on_step_end")
    progress = None
    if step_end is not None:
        def progress(i, t, latents):
            step_end(pipe, i, t, {"latents": latents})
    return animate_image(pipe, kw["image"], prompt=kw["prompt"], negative_prompt=kw.get("negative_prompt"),
                         num_frames=kw["num_frames"], width=kw["width"], height=kw["height"],
                         num_inference_steps=kw["num_inference_steps"], guidance_scale=kw["guidance_scale"],
                         generator=gen, callback=progress)


def _progress(callback, index: int, count: int, steps: int):
    def _cb(p, i, t, cbkw):
        per_clip = getattr(p, "_num_timesteps", None) or steps
        callback(index * per_clip + i + 1, count * per_clip, cbkw.get("latents"))
        return {}
    return _cb


def _as_clip(frames, n: int, size, family: str) -> list[Image.Image]:
    clip = [f.convert("RGB") for f in frames]
    if len(clip) != n or any(f.size != tuple(size) for f in clip):
        got = f"{len(clip)} frames of {clip[0].size[0]}x{clip[0].size[1]}" if clip else "no frames"
        raise RuntimeError(f"{family} returned {got}; expected {n} of {size[0]}x{size[1]}")
    return clip


__all__ = ["VIDEO_MODES", "VIDEO_FAMILIES", "DEFAULT_VID2VID_STRENGTH", "VideoFamily", "check_video_request",
           "run_video", "video_family_for", "video_pipeline_for"]
