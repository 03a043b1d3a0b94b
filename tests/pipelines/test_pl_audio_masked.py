"""Stable Audio Open continuation and span inpainting through the latent frame mask (pipelines/audio_masked.py) on
the tiny random StableAudioPipeline: the contract of each mode, seeds, progress, the one-line refusals, and that the
known frames really reach the sampler at every step and steer what it generates."""
import copy

import numpy as np
import pytest
import torch

from pipelines import AUDIO_MODES, audio_family_for, from_pipeline, run_audio, tiny_audio
from pipelines.audio import CROSSFADE_S
from pipelines.audio_masked import EDGE_FRAMES, encode_known, frame_mask, masked_sample

# torchsde's Brownian interval warns on float rounding at the schedule's end (sigma_min); harmless
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
K = dict(prompt="slow piano with soft drums", steps=3, guidance=3.0)
RATE = 4000  # the tiny model: 4 kHz stereo, hop 32, a 256-frame (2.048 s) window
HOP, FRAMES = 32, 256


@pytest.fixture(scope="module")
def sa():
    model = from_pipeline(tiny_audio.tiny_stable_audio())
    model.pipe.set_progress_bar_config(disable=True)
    return model


def tone(seconds: float, freq: float = 220.0) -> np.ndarray:
    t = np.arange(int(round(seconds * RATE))) / RATE
    x = (0.5 * np.sin(2 * np.pi * freq * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    return np.stack([x, 0.8 * x], axis=1)


def snr_db(ref: np.ndarray, got: np.ndarray) -> float:
    err = float(np.sum((ref.astype(np.float64) - got) ** 2))
    return float("inf") if err == 0 else 10 * np.log10(float(np.sum(ref.astype(np.float64) ** 2)) / err)


def test_stable_audio_open_offers_every_mode(sa):
    assert set(audio_family_for(sa).modes) == set(AUDIO_MODES)


def test_extend_returns_the_input_then_the_new_seconds(sa):
    src = tone(1.0)
    (out, rate), = run_audio(sa, mode="audio_extend", duration=1.0, extend=0.5, init_audio=(src, RATE), seeds=[4], **K)
    assert rate == RATE and out.shape == (1500 * RATE // 1000, 2) and out.dtype == np.float32
    keep = RATE - int(round(CROSSFADE_S * RATE))  # the last fade samples blend into the continuation
    np.testing.assert_array_equal(out[:keep], src[:keep])
    new = out[RATE:]
    assert np.isfinite(new).all() and new.std() > 1e-3 and snr_db(src[-len(new):], new) < 10


@pytest.mark.parametrize("span", [(0.3, 0.6), (0.0, 0.25), (0.7, 1.0)])
def test_inpaint_keeps_the_outside_and_changes_the_span(sa, span):
    src = tone(1.0)
    (out, _), = run_audio(sa, mode="audio_inpaint", duration=1.0, span=span, init_audio=(src, RATE), seeds=[2], **K)
    assert out.shape == src.shape
    a, b = int(span[0] * RATE), int(span[1] * RATE)
    assert snr_db(np.concatenate([src[:a], src[b:]]), np.concatenate([out[:a], out[b:]])) > 30
    assert snr_db(src[a:b], out[a:b]) < 10  # the span itself was regenerated


@pytest.mark.parametrize("mode,kw", [("audio_extend", dict(extend=0.5)), ("audio_inpaint", dict(span=(0.3, 0.6)))])
def test_seeds_are_reproducible_and_batches_equal_single_runs(sa, mode, kw):
    src = (tone(1.0), RATE)
    a, b = run_audio(sa, mode=mode, duration=1.0, init_audio=src, seeds=[7, 8], **kw, **K)
    (again, _), = run_audio(sa, mode=mode, duration=1.0, init_audio=src, seeds=[7], **kw, **K)
    (single_b, _), = run_audio(sa, mode=mode, duration=1.0, init_audio=src, seeds=[8], **kw, **K)
    np.testing.assert_array_equal(again, a[0])
    np.testing.assert_array_equal(single_b, b[0])
    assert not np.array_equal(a[0], b[0])


def test_progress_counts_steps_over_the_batch(sa):
    seen = []
    run_audio(sa, mode="audio_extend", duration=1.0, extend=0.5, init_audio=(tone(1.0), RATE), seeds=[1, 2],
              callback=lambda i, n, lat: seen.append((i, n)), **K)
    assert seen == [(i, 2 * K["steps"]) for i in range(1, 2 * K["steps"] + 1)]


def test_refusals_are_one_line(sa):
    src = (tone(2.0), RATE)
    cases = [
        (dict(mode="audio_extend", duration=1.5, extend=1.0),
         r"renders at most 2.048 seconds; 1.5 s \+ 1 s extension is 2.5 \(the DiT's latent window\)"),
        (dict(mode="audio_extend", duration=1.0, extend=0.0), "extend must be a positive number"),
        (dict(mode="audio_inpaint", duration=1.0, span=(0.6, 0.4)), r"span must satisfy 0 <= start < end"),
        (dict(mode="audio_inpaint", duration=1.0, span=(0.2, 1.5)), r"<= duration \(1 s\)"),
        (dict(mode="audio_inpaint", duration=3.0, span=(0.2, 0.5)), "renders .* to 2.048 seconds"),
    ]
    for kw, needle in cases:
        with pytest.raises(ValueError, match=needle) as err:
            run_audio(sa, init_audio=src, seeds=[1], **kw, **K)
        assert "\n" not in str(err.value)


def test_frame_mask_ramps_over_the_known_side_of_each_edge():
    m = frame_mask(FRAMES, HOP, 100 * HOP + 5, 150 * HOP)  # starts inside frame 100, ends on a frame boundary
    assert m[100:150].eq(1).all() and m[:100 - EDGE_FRAMES].eq(0).all() and m[150 + EDGE_FRAMES:].eq(0).all()
    ramp = m[100 - EDGE_FRAMES:100]
    assert (ramp.diff() > 0).all() and 0 < ramp.min() and ramp.max() < 1
    assert torch.equal(m[150:150 + EDGE_FRAMES], ramp.flip(0))
    assert frame_mask(FRAMES, HOP, 0, FRAMES * HOP).eq(1).all()
    with pytest.raises(ValueError, match="past the 8192-sample latent window"):
        frame_mask(FRAMES, HOP, FRAMES * HOP, FRAMES * HOP + 10)


def _masked(model, wave, start, end, seed, steps=4, **kw):
    pipe = copy.copy(model.pipe)
    pipe.scheduler = type(model.pipe.scheduler).from_config(model.pipe.scheduler.config)
    with torch.inference_mode():
        return masked_sample(pipe, wave, start, end, prompt=K["prompt"], negative_prompt=None, audio_end_in_s=1.5,
                             num_inference_steps=steps, guidance_scale=K["guidance"],
                             generator=torch.Generator().manual_seed(seed), output_type="latent", **kw), pipe


def test_the_sampler_sees_the_known_frames_at_every_step(sa):
    """The DiT's input on the known frames is the source latent noised to that step's sigma with the seed's noise
    draw (then preconditioned), at every step; the final latents hold the clean source latent there."""
    wave = np.pad(tone(1.0), ((0, 2048), (0, 0)))
    pipe_t = sa.pipe.transformer
    seen = []
    hook = pipe_t.register_forward_pre_hook(lambda mod, args: seen.append(args[0][-1:].clone()))  # the prompt half
    try:
        lat, pipe = _masked(sa, wave, RATE, 6000, seed=3)
    finally:
        hook.remove()
    with torch.inference_mode():
        known = encode_known(sa.pipe, wave)
    noise = torch.randn((1, 4, FRAMES), generator=torch.Generator().manual_seed(3))
    keep = frame_mask(FRAMES, HOP, RATE, 6000) == 0
    sched = pipe.scheduler
    assert len(seen) == len(sched.timesteps) == 4
    for i, x in enumerate(seen):
        sigma = sched.sigmas[i]
        want = sched.precondition_inputs(known + sigma * noise, sigma)
        torch.testing.assert_close(x[..., keep], want[..., keep], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(lat[..., keep], known[..., keep], rtol=0, atol=1e-6)


def test_the_known_frames_steer_the_generated_part(sa):
    """Same seed, two sources: the generated frames differ (a no-op blend, or one applied only after the last step,
    would give the prompt's txt2audio frames both times, exactly), and neither is the unmasked txt2audio result.
    The tiny random DiT couples frames weakly (about 0.5% of the frames' size between these two sources, measured
    at 4 and 8 steps), hence the small but far-above-rounding threshold."""
    a = np.zeros((RATE + 2048, 2), np.float32)
    square = np.sign(np.sin(2 * np.pi * 50 * np.arange(RATE) / RATE)).astype(np.float32)
    b = np.pad(np.stack([square, square], axis=1), ((0, 2048), (0, 0)))
    gen = frame_mask(FRAMES, HOP, RATE, 6000) == 1
    lat_a, _ = _masked(sa, a, RATE, 6000, seed=5)
    lat_b, _ = _masked(sa, b, RATE, 6000, seed=5)
    free, _ = _masked(sa, a, 0, FRAMES * HOP, seed=5)  # an all-generate mask: the pipeline's own txt2audio
    pipe = copy.copy(sa.pipe)
    pipe.scheduler = type(sa.pipe.scheduler).from_config(sa.pipe.scheduler.config)
    with torch.inference_mode():
        own = pipe(prompt=K["prompt"], audio_end_in_s=1.5, num_inference_steps=4, guidance_scale=K["guidance"],
                   generator=torch.Generator().manual_seed(5), output_type="latent").audios
    torch.testing.assert_close(free, own)
    scale = free[..., gen].abs().mean()
    assert (lat_a[..., gen] - lat_b[..., gen]).abs().mean() > 1e-3 * scale
    assert (lat_a[..., gen] - free[..., gen]).abs().mean() > 1e-3 * scale


@pytest.fixture(scope="module")
def closed_form():
    """A StableAudioPipeline on the mini music model's closed-form MDCT Oobleck VAE (16 kHz mono, hop 128, exact
    round trip) with a small random DiT on a 2 s window: unlike the random tiny VAE, its decoded known frames are
    the input, so the loop's own fidelity outside the span is measurable before the paste."""
    from studio.mini.music import model as mini

    torch.manual_seed(0)
    pipe = mini.build_pipeline(mini.make_dit(layers=1, width=16, heads=2, sample_size=250), mini.make_projection())
    pipe.set_progress_bar_config(disable=True)
    return from_pipeline(pipe)


def test_the_known_frames_decode_to_the_input_before_the_paste(closed_form):
    """The issue's figure, on the latent loop alone: outside the span (and its edge frames) the decoded clip is the
    input within 30 dB SNR; an all-generate mask (no known frames) is nowhere near it."""
    rate = 16000
    t = np.arange(2 * rate) / rate
    src = (0.4 * np.sin(2 * np.pi * 330 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 2 * t))).astype(np.float32)[:, None]
    a, b = rate // 2, rate
    keep = np.ones(len(src), bool)
    keep[a - 2 * EDGE_FRAMES * 128:b + 2 * EDGE_FRAMES * 128] = False

    def decoded(start, end):
        pipe = copy.copy(closed_form.pipe)
        pipe.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config)
        with torch.inference_mode():
            audio = masked_sample(pipe, src, start, end, prompt="a slow sine melody", negative_prompt=None,
                                  audio_end_in_s=2.0, num_inference_steps=3, guidance_scale=1.0,
                                  generator=torch.Generator().manual_seed(1))
        return audio[0].T.float().numpy()

    assert snr_db(src[keep], decoded(a, b)[keep]) > 30
    assert snr_db(src[keep], decoded(0, len(src))[keep]) < 10
    assert audio_family_for(closed_form).channels == 1
    (out, rate_out), = run_audio(closed_form, mode="audio_extend", prompt="a slow sine melody", duration=1.5,
                                 extend=0.5, steps=2, guidance=1.0, seeds=[3], init_audio=(src[:, 0], rate))
    assert rate_out == rate and out.shape == (2 * rate,)  # mono in, mono out
    np.testing.assert_array_equal(out[:rate], src[:rate, 0])
