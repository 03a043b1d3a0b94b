"""Music modes on tiny random-weight backends: clip count/shape/rate/range, seeds, batch == single runs, extension
keeps the input, inpainting keeps the audio outside the span, audio2audio strength, one-line refusals."""
import warnings

import numpy as np
import pytest
import torch

from pipelines import (AUDIO_FAMILIES, AUDIO_MODES, audio_family_for, check_audio_request, from_pipeline, run_audio,
                       tiny_audio)
from pipelines.audio import CROSSFADE_S

# torchsde's Brownian interval warns on float rounding at the schedule's end (sigma_min); harmless
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
K = dict(prompt="slow piano with soft drums", steps=2, guidance=3.0)


@pytest.fixture(scope="module")
def musicgen():
    return from_pipeline(tiny_audio.tiny_musicgen())


@pytest.fixture(scope="module")
def melody():
    return from_pipeline(tiny_audio.tiny_musicgen_melody())


@pytest.fixture(scope="module")
def stable_audio():
    return from_pipeline(tiny_audio.tiny_stable_audio())


@pytest.fixture(scope="module")
def models(musicgen, melody, stable_audio):
    return {"musicgen": musicgen, "musicgen-melody": melody, "stable-audio": stable_audio}


def tone(seconds: float, rate: int, channels: int = 1, freq: float = 220.0) -> np.ndarray:
    t = np.arange(int(round(seconds * rate))) / rate
    x = (0.5 * np.sin(2 * np.pi * freq * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 2 * t))).astype(np.float32)
    return x if channels == 1 else np.stack([x, 0.8 * x], axis=1)


def snr_db(ref: np.ndarray, got: np.ndarray) -> float:
    err = float(np.sum((ref.astype(np.float64) - got) ** 2))
    return float("inf") if err == 0 else 10 * np.log10(float(np.sum(ref.astype(np.float64) ** 2)) / err)


def check_clip(clip, rate: int, n: int, channels: int):
    samples, sr = clip
    assert sr == rate
    assert samples.dtype == np.float32
    assert samples.shape == ((n,) if channels == 1 else (n, channels))
    assert np.isfinite(samples).all() and samples.min() >= -1.0 and samples.max() <= 1.0
    assert samples.std() > 0


@pytest.mark.parametrize("key", ["musicgen", "musicgen-melody", "stable-audio"])
def test_txt2audio_clips_seeds_and_batch(models, key):
    m = models[key]
    spec = audio_family_for(m)
    clips = run_audio(m, mode="txt2audio", duration=1.0, seeds=[3, 4], **K)
    assert len(clips) == 2
    for c in clips:
        check_clip(c, spec.sample_rate, spec.sample_rate, spec.channels)
    assert not np.array_equal(clips[0][0], clips[1][0])  # different seeds differ
    again = run_audio(m, mode="txt2audio", duration=1.0, seeds=[4], **K)[0]
    np.testing.assert_array_equal(again[0], clips[1][0])  # batch clip i == a single run of seeds[i]


def test_rates_and_channels_of_the_tiny_models(musicgen, stable_audio):
    assert (audio_family_for(musicgen).sample_rate, audio_family_for(musicgen).channels) == (32000, 1)
    sa = audio_family_for(stable_audio)
    assert (sa.sample_rate, sa.channels, sa.max_duration) == (4000, 2, 2.048)
    assert sa.modes == AUDIO_MODES  # extension and inpainting through the latent frame mask (audio_masked.py)


def test_musicgen_seed_does_not_leak_into_the_global_rng(musicgen):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    run_audio(musicgen, mode="txt2audio", duration=0.5, seeds=[7], **K)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("key", ["musicgen", "stable-audio"])
def test_callback_counts_steps_over_the_batch(models, key):
    seen = []
    run_audio(models[key], mode="txt2audio", duration=0.5, seeds=[1, 2], callback=lambda i, n, lat: seen.append((i, n)),
              **K)
    total = seen[-1][1]
    assert [i for i, _ in seen] == list(range(1, total + 1)) and all(n == total for _, n in seen)


def test_musicgen_extend_keeps_the_input_and_adds_the_extension(musicgen):
    rate = 32000
    src = tone(1.0, 16000)  # another rate: resampled to the model's
    out = run_audio(musicgen, mode="audio_extend", duration=1.0, extend=0.5, init_audio=(src, 16000), seeds=[5], **K)
    check_clip(out[0], rate, int(1.5 * rate), 1)
    samples = out[0][0]
    from pipelines.audio import resample

    ref = resample(src, 16000, rate)
    keep = rate - int(CROSSFADE_S * rate)  # the last CROSSFADE_S of the input blends into the continuation
    np.testing.assert_array_equal(samples[:keep], np.clip(ref[:keep], -1, 1))
    assert np.abs(samples[rate:]).max() > 0  # the extension is generated audio, not padding


def test_musicgen_extend_of_a_longer_input_uses_duration_seconds_of_it(musicgen):
    src = tone(2.0, 32000)
    out = run_audio(musicgen, mode="audio_extend", duration=1.0, extend=0.5, init_audio=(src, 32000), seeds=[5], **K)
    assert out[0][0].shape == (48000,)


@pytest.mark.parametrize("span", [(0.3, 0.6), (0.0, 0.4)])
def test_musicgen_inpaint_keeps_the_audio_outside_the_span(musicgen, span):
    rate = 32000
    src = tone(1.0, rate)
    out = run_audio(musicgen, mode="audio_inpaint", duration=1.0, span=span, init_audio=(src, rate), seeds=[2], **K)
    samples = out[0][0]
    check_clip(out[0], rate, rate, 1)
    a, b = int(span[0] * rate), int(span[1] * rate)
    outside = np.concatenate([samples[:a], samples[b:]])
    assert snr_db(np.concatenate([src[:a], src[b:]]), outside) > 30
    assert snr_db(src[a:b], samples[a:b]) < 10  # the span itself was regenerated


def test_stable_audio_audio2audio_strength(stable_audio):
    """The tiny VAE is random (its round trip is not the input), so closeness is measured to the input's VAE
    reconstruction: a low strength stays near it, a high one does not."""
    rate = 4000
    src = tone(1.0, rate, 2)
    vae = stable_audio.pipe.vae
    with torch.no_grad():
        z = vae.encode(torch.from_numpy(src.T.copy())[None]).latent_dist.mean
        rec = vae.decode(z).sample[0].T.numpy()[:rate]

    def dist(strength):
        clips = run_audio(stable_audio, mode="audio2audio", duration=1.0, init_audio=(src, rate), strength=strength,
                          seeds=[1, 2], **{**K, "steps": 8})
        for c in clips:
            check_clip(c, rate, rate, 2)
        return np.mean([np.abs(c[0] - rec).mean() for c in clips])

    assert dist(0.1) < dist(1.0)
    same = run_audio(stable_audio, mode="audio2audio", duration=1.0, init_audio=(src, rate), strength=0.0, seeds=[1],
                     **K)
    np.testing.assert_allclose(same[0][0], src, atol=1e-6)


def test_melody_audio2audio_follows_the_melody(melody):
    rate = 32000
    a = run_audio(melody, mode="audio2audio", duration=1.0, init_audio=(tone(1.0, rate, freq=220), rate), seeds=[1],
                  **K)
    b = run_audio(melody, mode="audio2audio", duration=1.0, init_audio=(tone(1.0, rate, freq=330), rate), seeds=[1],
                  **K)
    check_clip(a[0], rate, rate, 1)
    assert not np.array_equal(a[0][0], b[0][0])  # the chroma prompt reaches the model
    again = run_audio(melody, mode="audio2audio", duration=1.0, init_audio=(tone(1.0, rate, freq=220), rate),
                      seeds=[1], **K)
    np.testing.assert_array_equal(again[0][0], a[0][0])


def test_melody_chroma_marks_the_dominant_pitch_class(melody):
    feats = melody.pipe.chroma(tone(2.0, 32000, freq=440.0))  # A4
    assert feats.shape[-1] == 12 and feats.sum(-1).eq(1).all()
    # chroma bins start at C (A is bin 9); the extractor pads to its chunk, so only the tone's frames (hop 4096) count
    assert feats[0, : 2 * 32000 // 4096, 9].all()


@pytest.mark.parametrize("key,mode", [("musicgen", "audio2audio")])  # Stable Audio Open does all four
def test_unsupported_mode_names_what_the_model_does(models, key, mode):
    with pytest.raises(ValueError, match="does not do .*; it does txt2audio"):
        run_audio(models[key], mode=mode, duration=1.0, init_audio=(tone(1.0, 32000), 32000), seeds=[1],
                  extend=0.5 if mode == "audio_extend" else None, span=(0.2, 0.4) if mode == "audio_inpaint" else None,
                  **K)


def test_check_audio_request_refusals():
    for fam in AUDIO_FAMILIES:
        check_audio_request(fam, "txt2audio", duration=AUDIO_FAMILIES[fam].default_duration)
    with pytest.raises(ValueError, match="expected one of " + ", ".join(AUDIO_MODES)):
        check_audio_request("musicgen", "txt2img", duration=5)
    with pytest.raises(ValueError, match="expected one of stable-audio, audioldm2, musicgen"):
        check_audio_request("jukebox", "txt2audio", duration=5)
    with pytest.raises(ValueError, match=r"musicgen renders 0.5 to 30 seconds .*got 31"):
        check_audio_request("musicgen", "txt2audio", duration=31)
    with pytest.raises(ValueError, match="audioldm2 does not do audio_extend .*it does txt2audio$"):
        check_audio_request("audioldm2", "audio_extend", duration=5, extend=2)
    with pytest.raises(ValueError, match="at most 30 seconds; 25 s \\+ 10 s extension is 35"):
        check_audio_request("musicgen", "audio_extend", duration=25, extend=10)
    with pytest.raises(ValueError, match="audio_extend needs extend"):
        check_audio_request("musicgen", "audio_extend", duration=5)
    with pytest.raises(ValueError, match=r"0 <= start < end <= duration \(5 s\)"):
        check_audio_request("musicgen", "audio_inpaint", duration=5, span=(4, 6))
    with pytest.raises(ValueError, match="span applies to audio_inpaint only"):
        check_audio_request("musicgen", "txt2audio", duration=5, span=(1, 2))


def test_run_audio_refusals(musicgen, stable_audio):
    with pytest.raises(ValueError, match="renders .* seconds"):
        run_audio(stable_audio, mode="txt2audio", duration=3.0, seeds=[1], **K)  # past the 2.048 s window
    with pytest.raises(ValueError, match="needs init_audio"):
        run_audio(musicgen, mode="audio_extend", duration=1.0, extend=1.0, seeds=[1], **K)
    with pytest.raises(ValueError, match="init_audio is 0.500 s; the request uses 1 s"):
        run_audio(musicgen, mode="audio_extend", duration=1.0, extend=1.0, init_audio=(tone(0.5, 32000), 32000),
                  seeds=[1], **K)
    with pytest.raises(ValueError, match="takes no sampler"):
        run_audio(musicgen, mode="txt2audio", duration=1.0, seeds=[1], sampler="Euler", **K)
    with pytest.raises(ValueError, match="strength must be in"):
        run_audio(stable_audio, mode="audio2audio", duration=1.0, init_audio=(tone(1.0, 4000), 4000), strength=1.5,
                  seeds=[1], **K)
    with pytest.raises(ValueError, match="strength does not apply"):
        run_audio(musicgen, mode="txt2audio", duration=1.0, strength=0.5, seeds=[1], **K)
    with pytest.raises(ValueError, match="cannot drive stable-audio"):
        run_audio(stable_audio, mode="txt2audio", duration=1.0, sampler="Euler a", seeds=[1], **K)
