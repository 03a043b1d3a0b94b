"""AudioLDM2 and Stable Audio 3 on tiny random-weight backends: txt2audio clips (shape/rate/range, seeds, batch ==
single runs), SA3's audio2audio / inpaint / extend contracts, one-line refusals, and the saved folder round trip
through load_model with the right family."""
import numpy as np
import pytest
import torch

from pipelines import audio_family_for, from_pipeline, inspect_source, load_model, run_audio, tiny_audio
from pipelines.audio import CROSSFADE_S

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
K = dict(prompt="slow piano with soft drums", steps=2, guidance=3.0)
SA3_RATE = 4000


@pytest.fixture(scope="module")
def audioldm2():
    return from_pipeline(tiny_audio.tiny_audioldm2())


@pytest.fixture(scope="module")
def sa3():
    return from_pipeline(tiny_audio.tiny_stable_audio3())


@pytest.fixture(scope="module")
def models(audioldm2, sa3):
    return {"audioldm2": audioldm2, "sa3": sa3}


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
    assert samples.std() > 1e-4  # audible, not a constant the random model settled on


def test_rates_channels_and_modes_of_the_tiny_models(audioldm2, sa3):
    assert audioldm2.family == "audioldm2" and audioldm2.modality == "audio"
    spec = audio_family_for(audioldm2)
    assert (spec.sample_rate, spec.channels, spec.modes) == (16000, 1, ("txt2audio",))
    assert sa3.family == "stable-audio" and type(sa3.pipe).__name__ == "StableAudio3Pipeline"
    spec = audio_family_for(sa3)
    assert (spec.sample_rate, spec.channels) == (SA3_RATE, 2)
    # the DiT has the local (mask + masked latent) input: all four modes
    assert set(spec.modes) == {"txt2audio", "audio2audio", "audio_inpaint", "audio_extend"}


@pytest.mark.parametrize("key,duration", [("audioldm2", 1.0), ("audioldm2", 0.73), ("sa3", 1.0), ("sa3", 0.61)])
def test_txt2audio_clips_seeds_and_batch(models, key, duration):
    m = models[key]
    spec = audio_family_for(m)
    n = int(round(duration * spec.sample_rate))
    clips = run_audio(m, mode="txt2audio", duration=duration, seeds=[3, 4], **K)
    assert len(clips) == 2
    for c in clips:
        check_clip(c, spec.sample_rate, n, spec.channels)
    assert not np.array_equal(clips[0][0], clips[1][0])  # different seeds differ
    again = run_audio(m, mode="txt2audio", duration=duration, seeds=[4], **K)[0]
    np.testing.assert_array_equal(again[0], clips[1][0])  # batch clip i == a single run of seeds[i]


@pytest.mark.parametrize("key", ["audioldm2", "sa3"])
def test_the_prompt_reaches_the_audio(models, key):
    a = run_audio(models[key], mode="txt2audio", duration=1.0, seeds=[1], **K)[0][0]
    b = run_audio(models[key], mode="txt2audio", duration=1.0, seeds=[1], **{**K, "prompt": "loud metal guitar"})[0][0]
    assert not np.allclose(a, b)


def test_audioldm2_negative_prompt_changes_the_clip(audioldm2):
    a = run_audio(audioldm2, mode="txt2audio", duration=1.0, seeds=[1], **K)[0][0]
    b = run_audio(audioldm2, mode="txt2audio", duration=1.0, seeds=[1], negative_prompt="noise", **K)[0][0]
    assert not np.allclose(a, b)


def test_audioldm2_language_model_step_matches_a_cached_gpt2(audioldm2):
    """The transformers-5 shim for AudioLDM2's GPT-2 loop re-reads the whole sequence each step: its 8 generated
    hidden states must equal GPT-2 run step by step with its own KV cache."""
    from pipelines.audio import _audioldm2_lm_step

    pipe = audioldm2.pipe
    _audioldm2_lm_step(pipe.language_model)
    g = torch.Generator().manual_seed(0)
    embeds = torch.randn(2, 5, 16, generator=g)
    mask = torch.ones(2, 5, dtype=torch.long)
    with torch.no_grad():
        got = pipe.generate_language_model(embeds, max_new_tokens=8, attention_mask=mask)
        seq, past, outs = embeds, None, []
        for _ in range(8):
            o = pipe.language_model(inputs_embeds=seq if past is None else seq[:, -1:], past_key_values=past,
                                    use_cache=True, output_hidden_states=True, return_dict=True)
            past = o.past_key_values
            seq = torch.cat([seq, o.hidden_states[-1][:, -1:]], dim=1)
    assert got.shape == (2, 8, 16)
    torch.testing.assert_close(got, seq[:, -8:], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("key", ["audioldm2", "sa3"])
def test_callback_counts_steps_over_the_batch(models, key):
    seen = []
    run_audio(models[key], mode="txt2audio", duration=0.5, seeds=[1, 2], callback=lambda i, n, lat: seen.append((i, n)),
              **K)
    total = seen[-1][1]
    assert total >= 4
    assert [i for i, _ in seen] == list(range(1, total + 1)) and all(n == total for _, n in seen)


@pytest.mark.parametrize("mode", ["audio2audio", "audio_inpaint", "audio_extend"])
def test_audioldm2_refuses_the_audio_input_modes(audioldm2, mode):
    with pytest.raises(ValueError, match="audioldm2 does not do .*; it does txt2audio$"):
        run_audio(audioldm2, mode=mode, duration=1.0, init_audio=(tone(1.0, 16000), 16000), seeds=[1],
                  extend=0.5 if mode == "audio_extend" else None, span=(0.2, 0.4) if mode == "audio_inpaint" else None,
                  **K)


# ---- Stable Audio 3's audio-input modes
def test_sa3_audio2audio_strength(sa3):
    """The tiny SAME VAE is random (its round trip is not the input), so closeness is measured to the input's VAE
    reconstruction: a low strength stays near it, a high one does not."""
    src = tone(1.0, SA3_RATE, 2)
    vae = sa3.pipe.vae
    with torch.no_grad():
        rec = vae.decode(vae.encode(torch.from_numpy(src.T.copy())[None]).latents).sample[0].T.numpy()[:SA3_RATE]

    def dist(strength):
        clips = run_audio(sa3, mode="audio2audio", duration=1.0, init_audio=(src, SA3_RATE), strength=strength,
                          seeds=[1, 2], **{**K, "steps": 4})
        for c in clips:
            check_clip(c, SA3_RATE, SA3_RATE, 2)
        assert not np.array_equal(clips[0][0], clips[1][0])
        return np.mean([np.abs(c[0] - rec).mean() for c in clips])

    assert dist(0.1) < dist(1.0)
    same = run_audio(sa3, mode="audio2audio", duration=1.0, init_audio=(src, SA3_RATE), strength=0.0, seeds=[1], **K)
    np.testing.assert_allclose(same[0][0], src, atol=1e-6)


def test_sa3_audio2audio_reads_the_input(sa3):
    a = run_audio(sa3, mode="audio2audio", duration=1.0, init_audio=(tone(1.0, SA3_RATE, 2), SA3_RATE),
                  strength=0.5, seeds=[1], **K)[0][0]
    b = run_audio(sa3, mode="audio2audio", duration=1.0, init_audio=(tone(1.0, SA3_RATE, 2, 440.0), SA3_RATE),
                  strength=0.5, seeds=[1], **K)[0][0]
    assert not np.allclose(a, b)


@pytest.mark.parametrize("span", [(0.3, 0.6), (0.0, 0.4), (0.5, 1.0)])
def test_sa3_inpaint_keeps_the_audio_outside_the_span(sa3, span):
    src = tone(1.0, SA3_RATE, 2)
    out = run_audio(sa3, mode="audio_inpaint", duration=1.0, span=span, init_audio=(src, SA3_RATE), seeds=[2, 3], **K)
    for c in out:
        check_clip(c, SA3_RATE, SA3_RATE, 2)
    samples = out[0][0]
    a, b = int(span[0] * SA3_RATE), int(span[1] * SA3_RATE)
    np.testing.assert_array_equal(np.concatenate([samples[:a], samples[b:]]), np.concatenate([src[:a], src[b:]]))
    assert snr_db(src[a:b], samples[a:b]) < 10  # the span itself was regenerated
    assert not np.array_equal(out[0][0][a:b], out[1][0][a:b])  # by the seed


def test_sa3_extend_keeps_the_input_and_adds_the_extension(sa3):
    src = tone(1.0, 16000, 1)  # another rate and mono: resampled and duplicated to the model's stereo
    out = run_audio(sa3, mode="audio_extend", duration=1.0, extend=0.5, init_audio=(src, 16000), seeds=[5], **K)
    check_clip(out[0], SA3_RATE, int(1.5 * SA3_RATE), 2)
    samples = out[0][0]
    from pipelines.audio import resample

    ref = resample(src, 16000, SA3_RATE)
    keep = SA3_RATE - int(CROSSFADE_S * SA3_RATE)
    np.testing.assert_array_equal(samples[:keep], np.clip(np.stack([ref[:keep]] * 2, axis=1), -1, 1))
    assert np.abs(samples[SA3_RATE:]).std() > 1e-3  # the extension is generated audio, not padding


def test_sa3_audio_modes_refuse_a_negative_prompt(sa3):
    with pytest.raises(ValueError, match="takes no negative_prompt"):
        run_audio(sa3, mode="audio_inpaint", duration=1.0, span=(0.2, 0.4), init_audio=(tone(1.0, SA3_RATE), SA3_RATE),
                  negative_prompt="noise", seeds=[1], **K)


# ---- save / load
@pytest.mark.parametrize("key", ["audioldm2", "sa3"])
def test_saved_folder_round_trips_offline(key, tmp_path):
    builder = {"audioldm2": tiny_audio.tiny_audioldm2, "sa3": tiny_audio.tiny_stable_audio3}[key]
    family = {"audioldm2": "audioldm2", "sa3": "stable-audio"}[key]
    pipe = builder()
    mem = from_pipeline(pipe)
    expected = run_audio(mem, mode="txt2audio", duration=1.0, seeds=[3], **K)[0][0]
    folder = tiny_audio.save_tiny_audio(pipe, tmp_path / key)
    info = inspect_source(folder)
    assert info.kind == "folder" and info.family == family
    m = load_model(folder)
    assert m.family == family and m.modality == "audio" and m.kind == "folder"
    assert m.supports("txt2audio") and not m.supports("txt2img")
    assert m.supports("audio_inpaint") == (key == "sa3")
    got = run_audio(m, mode="txt2audio", duration=1.0, seeds=[3], **K)[0][0]
    # AudioLDM2's reloaded transformers modules differ from the built ones by float rounding (~1e-7)
    np.testing.assert_allclose(got, expected, atol=1e-5 if key == "audioldm2" else 0, rtol=0)
    if key == "sa3":
        src = tone(1.0, SA3_RATE, 2)
        kw = dict(mode="audio_inpaint", duration=1.0, span=(0.2, 0.5), init_audio=(src, SA3_RATE), seeds=[2], **K)
        np.testing.assert_allclose(run_audio(m, **kw)[0][0], run_audio(mem, **kw)[0][0], atol=1e-5, rtol=0)
    assert m.content_hash == load_model(folder).content_hash
