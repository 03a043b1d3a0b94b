"""Video backends: every family/mode renders the requested clips reproducibly per seed, refuses what it cannot
do with one-line messages naming the allowed values, and loads offline like image models."""
import numpy as np
import pytest
import torch
from _pl_helpers import pattern

import pipelines
from pipelines import (VIDEO_FAMILIES, VIDEO_MODES, check_video_request, from_pipeline, latent_preview, run_video,
                       tiny, tiny_video, video_family_for)

K = dict(prompt="a red fox running", negative_prompt="blurry", steps=2, guidance=5.0)
# (builder, kwargs, size, frames) per tiny model; sizes are each family's smallest legal size
BUILDERS = {
    "animatediff": (tiny_video.tiny_animatediff, {}, 32, 8),
    "svd": (tiny_video.tiny_svd, {}, 32, 4),
    "cogvideox": (tiny_video.tiny_cogvideox, {}, 16, 9),
    "cogvideox-i2v": (tiny_video.tiny_cogvideox, {"i2v": True}, 16, 9),
    "ltx": (tiny_video.tiny_ltx, {}, 32, 9),
    "wan": (tiny_video.tiny_wan, {}, 16, 9),
    "wan-i2v": (tiny_video.tiny_wan, {"i2v": True}, 16, 9),
}
CASES = [("animatediff", "txt2vid"), ("animatediff", "img2vid"), ("animatediff", "vid2vid"), ("svd", "img2vid"), ("cogvideox", "txt2vid"),
         ("cogvideox", "vid2vid"), ("cogvideox-i2v", "img2vid"), ("ltx", "txt2vid"), ("ltx", "img2vid"),
         ("wan", "txt2vid"), ("wan", "vid2vid"), ("wan-i2v", "img2vid")]
_MODELS: dict = {}


def model_of(key):
    if key not in _MODELS:
        build, kw, _, _ = BUILDERS[key]
        _MODELS[key] = from_pipeline(build(**kw))
    return _MODELS[key]


def clip_px(clip):
    return np.stack([np.asarray(f, dtype=np.int16) for f in clip])


def source_clip(n, size, seed=0):
    return [pattern(size, seed + i) for i in range(n)]


def inputs(mode, size, frames):
    if mode == "img2vid":
        return {"init_image": pattern(size)}
    if mode == "vid2vid":
        return {"init_video": source_clip(frames, size)}
    return {}


def render(key, mode, seeds, **kw):
    _, _, size, frames = BUILDERS[key]
    args = dict(K, mode=mode, width=size, height=size, frames=frames, fps=8, seeds=seeds, **inputs(mode, size, frames))
    args.update(kw)
    return run_video(model_of(key), **args)


# ----------------------------------------------------------------------------------------------- every mode
@pytest.mark.parametrize("key,mode", CASES, ids=[f"{k}-{m}" for k, m in CASES])
def test_mode_renders_one_reproducible_clip_per_seed(key, mode):
    _, _, size, frames = BUILDERS[key]
    batch = render(key, mode, [3, 4])
    assert len(batch) == 2
    for clip in batch:
        assert len(clip) == frames
        assert all(f.size == (size, size) and f.mode == "RGB" for f in clip)
    single = render(key, mode, [4])
    assert np.array_equal(clip_px(batch[1]), clip_px(single[0]))  # clip i of a batch == a single run of seeds[i]
    assert not np.array_equal(clip_px(batch[0]), clip_px(batch[1]))  # different seeds, different clips
    again = render(key, mode, [3])
    assert np.array_equal(clip_px(batch[0]), clip_px(again[0]))  # same seed, same clip


# ----------------------------------------------------------------------------------------------- refusals
def test_families_and_modes_table():
    assert VIDEO_MODES == ("txt2vid", "img2vid", "vid2vid")
    assert set(VIDEO_FAMILIES) == {"animatediff", "svd", "cogvideox", "ltx", "wan"}
    assert VIDEO_FAMILIES["svd"].modes == ("img2vid",)
    assert VIDEO_FAMILIES["animatediff"].modes == VIDEO_MODES  # img2vid: frame 0 held (animatediff_i2v)
    assert "vid2vid" not in VIDEO_FAMILIES["ltx"].modes
    with pytest.raises(Exception):
        VIDEO_FAMILIES["ltx"].max_frames = 1  # frozen
    for fam in VIDEO_FAMILIES.values():
        fam.check_frames(fam.default_frames)
        fam.check_size(fam.default_width, fam.default_height)


@pytest.mark.parametrize("family,mode,needle", [
    ("svd", "txt2vid", "svd does not do txt2vid; it animates an image: pass an init image"),
    ("svd", "vid2vid", "svd does not do vid2vid"),
    ("ltx", "vid2vid", "it does txt2vid and img2vid"),
    ("wan", "txt2img", "unknown video mode 'txt2img'; expected one of txt2vid, img2vid, vid2vid"),
])
def test_unsupported_mode_is_refused(family, mode, needle):
    fam = VIDEO_FAMILIES[family]
    with pytest.raises(ValueError) as ei:
        check_video_request(family, mode, frames=fam.default_frames, width=fam.default_width,
                            height=fam.default_height)
    assert needle in str(ei.value) and "\n" not in str(ei.value)


@pytest.mark.parametrize("family,frames,needle", [
    ("ltx", 16, "ltx needs 8k+1 frames (9, 17, 25, ..., 257); got 16"),
    ("ltx", 265, "got 265"),
    ("wan", 10, "wan needs 4k+1 frames (5, 9, 13, ..., 121); got 10"),
    ("cogvideox", 48, "cogvideox needs 4k+1 frames (5, 9, 13, ..., 81); got 48"),
    ("animatediff", 33, "animatediff needs 2 to 32 frames (the motion adapter's motion_max_seq_length); got 33"),
    ("svd", 26, "svd needs 2 to 25 frames"),
])
def test_bad_frame_count_names_the_allowed_values(family, frames, needle):
    fam = VIDEO_FAMILIES[family]
    with pytest.raises(ValueError) as ei:
        check_video_request(family, fam.modes[0], frames=frames, width=fam.default_width, height=fam.default_height)
    assert needle in str(ei.value)


@pytest.mark.parametrize("family,w,h,m", [("ltx", 704, 500, 32), ("wan", 840, 480, 16), ("animatediff", 516, 512, 8),
                                         ("cogvideox", 720, 488, 16), ("svd", 0, 576, 8)])
def test_bad_size_names_the_multiple(family, w, h, m):
    fam = VIDEO_FAMILIES[family]
    with pytest.raises(ValueError, match=rf"multiples of {m} .*got {w}x{h}$"):
        check_video_request(family, fam.modes[0], frames=fam.default_frames, width=w, height=h)


def test_loaded_model_modes_follow_the_checkpoint():
    # the I2V transformers take image latents as extra channels: those checkpoints do img2vid only
    assert video_family_for(model_of("cogvideox")).modes == ("txt2vid", "vid2vid")
    assert video_family_for(model_of("cogvideox-i2v")).modes == ("img2vid",)
    assert video_family_for(model_of("wan")).modes == ("txt2vid", "vid2vid")
    assert video_family_for(model_of("wan-i2v")).modes == ("img2vid",)
    for key, mode in [("cogvideox-i2v", "txt2vid"), ("wan-i2v", "vid2vid"), ("wan", "img2vid"),
                      ("svd", "txt2vid")]:
        m = model_of(key)
        assert not m.supports(mode)
        with pytest.raises(ValueError, match="does not do"):
            m.pipeline_for(mode)
        with pytest.raises(ValueError, match="does not do"):
            render(key, mode, [0], init_image=pattern(BUILDERS[key][2]))
    assert model_of("ltx").supports("img2vid") and model_of("wan").supports("vid2vid")


def test_model_specific_limits():
    m = model_of("ltx")
    with pytest.raises(ValueError, match=r"8k\+1 frames"):
        render("ltx", "txt2vid", [0], frames=8)
    with pytest.raises(ValueError, match="multiples of 32"):
        render("ltx", "txt2vid", [0], width=48)
    from diffusers import AnimateDiffPipeline

    short = from_pipeline(AnimateDiffPipeline.from_pipe(
        tiny.tiny_sd(), motion_adapter=tiny_video.tiny_motion_adapter(max_seq_length=12)))
    assert video_family_for(short).max_frames == 12
    with pytest.raises(ValueError, match="2 to 12 frames"):
        run_video(short, mode="txt2vid", width=32, height=32, frames=13, fps=8, seeds=[0], **K)
    assert m.modality == "video"


def test_image_and_video_modes_do_not_mix(sd_model):
    assert sd_model.modality == "image"
    with pytest.raises(ValueError, match="needs a video model"):
        sd_model.pipeline_for("txt2vid")
    with pytest.raises(ValueError, match="image model, not a video model"):
        run_video(sd_model, mode="txt2vid", width=32, height=32, frames=8, fps=8, seeds=[0], **K)
    with pytest.raises(ValueError, match="image mode"):
        model_of("animatediff").pipeline_for("txt2img")


def test_inputs_are_checked():
    with pytest.raises(ValueError, match="img2vid needs init_image"):
        render("svd", "img2vid", [0], init_image=None)
    with pytest.raises(ValueError, match="init_video has 3 frames; the request needs 8"):
        render("animatediff", "vid2vid", [0], init_video=source_clip(3, 32))
    with pytest.raises(ValueError, match="strength must be in"):
        render("animatediff", "vid2vid", [0], strength=1.5)
    with pytest.raises(ValueError, match="seed"):
        render("animatediff", "txt2vid", [])


# ----------------------------------------------------------------------------------------------- behaviour
def _vae_round_trip(pipe, clip):
    """The input as the VAE reproduces it: the closest any latent-space edit can stay (a random tiny VAE is far
    from lossless, so closeness is measured against this, not against the raw pixels)."""
    x = torch.stack([torch.from_numpy(np.asarray(f)).permute(2, 0, 1).float() / 127.5 - 1 for f in clip])
    with torch.no_grad():
        rec = pipe.vae.decode(pipe.vae.encode(x).latent_dist.mode()).sample
    return ((rec.clamp(-1, 1) + 1) * 127.5).round().permute(0, 2, 3, 1).numpy().astype(np.int16)


def test_vid2vid_strength_keeps_the_input():
    src = source_clip(8, 32, seed=5)
    same = render("animatediff", "vid2vid", [1], init_video=src, strength=0.0)[0]
    assert np.array_equal(clip_px(same), clip_px(src))  # strength 0 = the input unchanged
    rec = _vae_round_trip(model_of("animatediff").pipe, src)
    low = clip_px(render("animatediff", "vid2vid", [1], init_video=src, strength=0.1, steps=10)[0])
    full = clip_px(render("animatediff", "vid2vid", [1], init_video=src, strength=1.0, steps=10)[0])
    d_low, d_full = np.abs(low - rec).mean(), np.abs(full - rec).mean()
    assert d_low < 0.85 * d_full  # little noise added: the source survives; full strength starts from pure noise


def test_default_strength_is_used_for_vid2vid():
    assert pipelines.DEFAULT_VID2VID_STRENGTH == 0.6
    # 10 steps: strengths start at int(steps * strength), so at 2 steps 0.6 and 0.9 are the same start
    default = clip_px(render("wan", "vid2vid", [2], steps=10)[0])
    explicit = clip_px(render("wan", "vid2vid", [2], strength=0.6, steps=10)[0])
    other = clip_px(render("wan", "vid2vid", [2], strength=0.9, steps=10)[0])
    assert np.array_equal(default, explicit) and not np.array_equal(default, other)
    with pytest.raises(ValueError, match="strength applies to vid2vid only"):
        render("wan", "txt2vid", [2], strength=0.5)


def test_fps_conditions_svd_and_ltx_only():
    a, b = clip_px(render("svd", "img2vid", [1], fps=6)[0]), clip_px(render("svd", "img2vid", [1], fps=24)[0])
    assert not np.array_equal(a, b)  # SVD is micro-conditioned on fps
    a, b = clip_px(render("ltx", "txt2vid", [1], fps=8)[0]), clip_px(render("ltx", "txt2vid", [1], fps=24)[0])
    assert not np.array_equal(a, b)  # LTX scales its temporal RoPE by frame_rate
    a, b = clip_px(render("wan", "txt2vid", [1], fps=8)[0]), clip_px(render("wan", "txt2vid", [1], fps=24)[0])
    assert np.array_equal(a, b)  # elsewhere only the container uses it


def test_samplers():
    base = clip_px(render("animatediff", "txt2vid", [1])[0])
    euler = clip_px(render("animatediff", "txt2vid", [1], sampler="euler")[0])
    assert not np.array_equal(base, euler)  # SD samplers drive AnimateDiff's SD1.5 UNet
    assert np.array_equal(euler, clip_px(render("animatediff", "txt2vid", [1], sampler="Euler")[0]))
    with pytest.raises(ValueError, match="needs a flow-matching model"):
        render("animatediff", "txt2vid", [1], sampler="Flow-match Euler")
    # flow-matching / EDM families: only their own scheduler under its catalog name
    assert np.array_equal(clip_px(render("ltx", "txt2vid", [1], sampler="Flow-match Euler")[0]),
                          clip_px(render("ltx", "txt2vid", [1])[0]))
    with pytest.raises(ValueError, match=r"runs only its own scheduler \(FlowMatchEulerDiscreteScheduler\); "
                                         r"use 'Flow-match Euler' or no sampler"):
        render("ltx", "txt2vid", [1], sampler="DPM++ 2M")
    with pytest.raises(ValueError, match="Flow-match Heun cannot drive wan"):
        render("wan", "txt2vid", [1], sampler="Flow-match Heun")
    with pytest.raises(ValueError, match=r"EulerDiscreteScheduler\); pass no sampler"):
        render("svd", "img2vid", [1], sampler="Euler")  # Euler without SVD's Karras sigmas is another schedule
    with pytest.raises(ValueError, match="CogVideoXDDIMScheduler"):
        render("cogvideox", "txt2vid", [1], sampler="DDIM")


def test_callback_counts_steps_over_the_batch():
    calls = []
    render("animatediff", "txt2vid", [1, 2], callback=lambda s, t, lat: calls.append((s, t, tuple(lat.shape))))
    assert [c[:2] for c in calls] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert calls[0][2] == (1, 4, 8, 16, 16)  # (B, C, F, H, W)


def test_latent_preview_of_video_latents():
    lat = []
    render("animatediff", "txt2vid", [1], callback=lambda s, t, x: lat.append(x.clone()))
    img = latent_preview(model_of("animatediff").pipe, lat[-1])
    assert img is not None and img.size == (32, 32)  # the tiny VAE decodes 2x
    svd_lat = torch.zeros(1, 4, 4, 16, 16)  # SVD's (B, F, C, H, W): no faithful cheap preview
    assert latent_preview(model_of("svd").pipe, svd_lat) is None
    assert latent_preview(model_of("wan").pipe, torch.zeros(1, 16, 3, 2, 2)) is None


def test_decode_chunk_size_reaches_the_vae(monkeypatch):
    seen = []
    for key in ("animatediff", "svd"):
        cls = type(model_of(key).pipe)
        orig = cls.decode_latents
        monkeypatch.setattr(cls, "decode_latents",
                            lambda self, *a, _o=orig, **kw: seen.append(a[-1]) or _o(self, *a, **kw))
    a = render("animatediff", "txt2vid", [1], decode_chunk_size=3)
    render("svd", "img2vid", [1], decode_chunk_size=2)
    render("svd", "img2vid", [1])
    assert seen == [3, 2, 4]  # SVD's default: the whole clip in one decode
    monkeypatch.undo()
    # AnimateDiff's SD VAE decodes frame by frame: chunking only bounds memory (SVD's temporal decoder mixes
    # the frames of a chunk, so there it trades memory for temporal consistency)
    assert np.array_equal(clip_px(a[0]), clip_px(render("animatediff", "txt2vid", [1])[0]))


def test_memory_options_on_video_vaes():
    wan = from_pipeline(tiny_video.tiny_wan())
    applied = pipelines.apply_memory_options(wan, vae_tiling=True, vae_slicing=True)
    assert applied["vae_tiling"] and applied["vae_slicing"] and wan.pipe.vae.use_tiling
    assert len(run_video(wan, mode="txt2vid", width=16, height=16, frames=9, fps=16, seeds=[0], **K)[0]) == 9
    svd = from_pipeline(tiny_video.tiny_svd())
    with pytest.warns(RuntimeWarning, match="AutoencoderKLTemporalDecoder does not support VAE tiling"):
        applied = pipelines.apply_memory_options(svd, vae_tiling=True, attention_slicing=True)
    # SVD's temporal VAE has no tiling (decode_chunk_size bounds its memory); nor do its attention blocks slice
    assert applied["vae_tiling"] is False and applied["attention_slicing"] is False
    with pytest.warns(RuntimeWarning, match="does not support attention slicing"):
        assert pipelines.apply_memory_options(wan, attention_slicing=True)["attention_slicing"] is False
    assert len(run_video(svd, mode="img2vid", width=32, height=32, frames=4, fps=7, seeds=[0],
                         init_image=pattern(32), **K)[0]) == 4
    with pytest.warns(RuntimeWarning, match="needs CUDA"):
        pipelines.apply_memory_options(wan, offload="model")


def test_lora_changes_animatediff(tiny_sd_pipe, tmp_path):
    lora = tiny.make_tiny_lora(tiny_sd_pipe, tmp_path / "style.safetensors", seed=1, scale=0.5)
    m = from_pipeline(tiny_video.tiny_animatediff())
    base = clip_px(run_video(m, mode="txt2vid", width=32, height=32, frames=8, fps=8, seeds=[1], **K)[0])
    with pipelines.loras_applied(m, [(lora, 1.0)]):
        styled = clip_px(run_video(m, mode="txt2vid", width=32, height=32, frames=8, fps=8, seeds=[1], **K)[0])
        v2v = run_video(m, mode="vid2vid", width=32, height=32, frames=8, fps=8, seeds=[1],
                        init_video=source_clip(8, 32), **K)
    assert np.abs(styled - base).mean() > 0.5
    after = clip_px(run_video(m, mode="txt2vid", width=32, height=32, frames=8, fps=8, seeds=[1], **K)[0])
    assert np.array_equal(after, base)  # removed again
    assert len(v2v[0]) == 8


def test_clip_skip_on_animatediff():
    a = clip_px(render("animatediff", "txt2vid", [1], clip_skip=2)[0])
    assert not np.array_equal(a, clip_px(render("animatediff", "txt2vid", [1])[0]))
    with pytest.raises(ValueError, match="clip_skip is not supported for ltx"):
        render("ltx", "txt2vid", [1], clip_skip=2)
