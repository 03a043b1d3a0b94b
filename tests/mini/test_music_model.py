"""The mini music model's conditioning, training objective and trainer, on tiny configurations: the hand-made
T5 carries every caption attribute, training computes what the stock StableAudioPipeline samples with, and a
trained folder loads with the stock class, renders, and resumes."""

import json
import random

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from studio.mini.music import codec as C  # noqa: E402
from studio.mini.music import model as M  # noqa: E402
from studio.mini.music import text as T  # noqa: E402
from studio.mini.music import train as TR  # noqa: E402
from studio.mini.music import world as W  # noqa: E402


@pytest.fixture(scope="module")
def tok_te():
    torch.set_num_threads(1)
    tok = T.build_tokenizer()
    return tok, T.build_text_encoder(tok)


def test_every_phrasing_encodes_exactly_its_attributes(tok_te):
    tok, te = tok_te
    rng = random.Random(0)
    prompts, want = [], []
    for i in range(40):
        m = W.sample_melody(i, "any")
        prompts += [W.caption(m), W.caption(m, rng), W.caption(m, rng).capitalize()]
        want += [m.attrs()] * 3
    hidden = T.encode(tok, te, prompts).numpy()
    assert hidden.shape == (len(prompts), T.MAX_LEN, T.DIM)
    for h, w, p in zip(hidden, want, prompts):
        assert T.read_concepts(h) == w, p
        assert int((np.abs(h).max(1) > 1e-3).sum()) == len(W.ATTRS), p  # one token per attribute, the rest zero


def test_synonyms_share_a_vector_and_unknown_words_add_nothing(tok_te):
    tok, te = tok_te
    hs = T.encode(tok, te, ["a medium sine melody", "A moderate sine tune", "a medium sine melody, jazzy!"]).numpy()
    nz = [h[np.abs(h).max(1) > 1e-3] for h in hs]
    assert all(x.shape[0] == 2 for x in nz)
    np.testing.assert_allclose(nz[0], nz[1])
    np.testing.assert_allclose(nz[0], nz[2])
    assert T.read_concepts(hs[1]) == {"tempo": "medium", "instrument": "sine"}


def test_text_components_round_trip_with_stock_classes(tok_te, tmp_path):
    from transformers import T5EncoderModel, T5Tokenizer

    tok, te = tok_te
    tok.save_pretrained(tmp_path / "tok")
    te.save_pretrained(tmp_path / "te")
    tok2 = T5Tokenizer.from_pretrained(tmp_path / "tok")
    te2 = T5EncoderModel.from_pretrained(tmp_path / "te")
    p = ["a fast plucked melody rising in a high register, minor"]
    assert tok2(p).input_ids == tok(p).input_ids
    torch.testing.assert_close(T.encode(tok2, te2, p), T.encode(tok, te, p))


def test_training_target_is_what_the_scheduler_denoises_with():
    sched = M.make_scheduler()
    z = torch.randn(3, 4, 10)
    sigma = torch.tensor([0.3, 2.0, 300.0])
    noise = torch.randn_like(z)
    c_skip, c_out, c_in, t = M.precondition(sigma)
    x = z + sigma[:, None, None] * noise
    target = (z - c_skip[:, None, None] * x) / c_out[:, None, None]
    for i in range(3):  # a network that outputs the target makes the scheduler return the clean latent
        den = sched.precondition_outputs(x[i], target[i], sigma[i])
        torch.testing.assert_close(den, z[i], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(sched.precondition_inputs(x[i], sigma[i]), x[i] * c_in[i])
        torch.testing.assert_close(sched.precondition_noise(sigma[i]).reshape(()), t[i])


def test_training_conditioning_matches_the_pipeline(tok_te):
    tok, te = tok_te
    torch.manual_seed(0)
    pipe = M.build_pipeline(M.make_dit(1, 32, 2, sample_size=125), M.make_projection(), text_encoder=te, tokenizer=tok)
    prompts = ["a slow square melody falling in a low register, major", "a fast sine melody"]
    want = pipe.encode_prompt(prompts, "cpu", False)
    start, end = pipe.encode_duration(0.0, 1.0, "cpu", False, 2)
    cross, glob = M.conditioning(pipe.projection_model, T.encode(tok, te, prompts), seconds_end=1.0)
    torch.testing.assert_close(cross, torch.cat([want, start, end], dim=1))
    torch.testing.assert_close(glob, torch.cat([start, end], dim=2))


def test_parallel_rendering_gives_the_same_batch():
    import multiprocessing as mp

    want = TR.batch_latents([3, 4], duration=1.0)
    with mp.get_context("spawn").Pool(2) as pool:
        got = TR.batch_latents([3, 4], duration=1.0, pool=pool)
    assert got[0] == want[0] and got[1].shape == (2, 64, 125)
    np.testing.assert_array_equal(got[1], want[1])
    assert len(set(want[0])) == 2  # two different melodies


def _args(work, out, *extra):
    return ["--work", str(work), "--out", str(out), "--layers", "1", "--width", "32", "--heads", "2", "--batch", "2",
            "--duration", "1", "--log-every", "1", *extra]


def test_train_exports_a_stock_pipeline_and_resumes(tmp_path, capsys):
    from diffusers import StableAudioPipeline

    work, out = tmp_path / "w", tmp_path / "o"
    TR.main(_args(work, out, "--steps", "2"))
    pipe = StableAudioPipeline.from_pretrained(out, local_files_only=True, torch_dtype=torch.float32)
    assert pipe.transformer.dtype == torch.float32 and pipe.transformer.config.sample_size == 125
    meta = json.loads((out / "training.json").read_text())
    assert meta["step"] == 2 and meta["final"]
    pipe.set_progress_bar_config(disable=True)
    audio = pipe("a fast sine melody", num_inference_steps=2, audio_end_in_s=1.0,
                 generator=torch.Generator().manual_seed(0)).audios
    assert audio.shape == (1, 1, W.SR) and torch.isfinite(audio).all()

    with pytest.raises(SystemExit, match="--resume"):
        TR.main(_args(work, out, "--steps", "3"))
    with pytest.raises(SystemExit, match="checkpoint is"):
        TR.main(_args(work, out, "--steps", "3", "--resume", "--width", "64"))
    TR.main(_args(work, out, "--steps", "3", "--resume"))
    assert json.loads((out / "training.json").read_text())["step"] == 3
    lines = (work / "log.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [1, 2, 3]

    # curriculum: a longer window starts from the shorter run's EMA weights (lr 0: they arrive unchanged)
    TR.main(_args(tmp_path / "w2", tmp_path / "o2", "--steps", "1", "--duration", "2", "--lr", "0",
                  "--init-from", str(work)))
    src = torch.load(work / "ckpt.pt", weights_only=False)["ema_dit"]
    pipe2 = StableAudioPipeline.from_pretrained(tmp_path / "o2", local_files_only=True, torch_dtype=torch.float32)
    assert pipe2.transformer.config.sample_size == 250
    assert json.loads((tmp_path / "o2" / "training.json").read_text())["step"] == 1
    for k, v in pipe2.transformer.state_dict().items():
        torch.testing.assert_close(v, src[k].half().float(), msg=k)
    assert json.loads((tmp_path / "o2" / "training.json").read_text())["steps_total"] == 4  # 3 before, 1 here

    # a fine-tune starts from an exported folder (the committed weights are one): its weights, its step count
    TR.main(_args(tmp_path / "w3", tmp_path / "o3", "--steps", "1", "--duration", "2", "--lr", "0",
                  "--init-from", str(tmp_path / "o2")))
    pipe3 = StableAudioPipeline.from_pretrained(tmp_path / "o3", local_files_only=True, torch_dtype=torch.float32)
    for k, v in pipe3.transformer.state_dict().items():
        torch.testing.assert_close(v, pipe2.transformer.state_dict()[k], msg=k)
    assert json.loads((tmp_path / "o3" / "training.json").read_text())["steps_total"] == 5
    with pytest.raises(SystemExit, match="neither a ckpt.pt nor an exported pipeline"):
        TR.main(_args(tmp_path / "w4", "", "--steps", "1", "--init-from", str(tmp_path / "missing")))


def test_cosine_rate_warms_up_then_falls_to_a_tenth():
    import argparse

    a = argparse.Namespace(lr=1e-3, warmup=10, steps=100, cosine=True)
    assert TR.lr_at(0, a) == pytest.approx(1e-4)  # a tenth of the way up the warm-up
    rates = [TR.lr_at(s, a) for s in range(100)]
    assert max(rates) == pytest.approx(rates[9], rel=0.01) and rates[9] > 9e-4  # warm-up done at step 9
    assert all(x >= y for x, y in zip(rates[9:], rates[10:]))  # then only falls
    assert TR.lr_at(100, a) == pytest.approx(1e-4)
    a.cosine = False
    assert TR.lr_at(50, a) == 1e-3


def test_the_samplers_last_sigma_leaves_every_instrument_above_its_noise():
    # the defect of the Phase 2 probe: sigma_min 0.3 (Stable Audio's) lay above the plucked clips' whole
    # latent (rms ~0.15, -6 dB), so their notes were drowned at the last step and never trained cleaner
    from studio.mini.music import codec as C

    sched = M.make_scheduler()
    sched.set_timesteps(20)
    last = float(sched.sigmas[-2])
    assert sched.sigmas[-1] == 0 and last == pytest.approx(M.SIGMA_MIN, rel=1e-3)
    for instrument in W.INSTRUMENTS:
        for register in W.REGISTERS:
            m = W.sample_melody(1, "any", duration=1.0, instrument=instrument, register=register)
            rms = float(np.sqrt(np.mean((C.mdct(W.render(m)) * C.GAIN) ** 2)))
            assert 20 * np.log10(rms / last) >= 12, (instrument, register, rms)
    sig = TR.sample_sigma(20000, torch.Generator().manual_seed(0))
    assert sig.min() >= M.SIGMA_MIN and sig.max() <= M.SIGMA_MAX and (sig < 0.1).float().mean() > 0.1


def test_patches_round_trip_and_a_fixed_combination_trains_alone(tok_te, tmp_path):
    from studio.mini.music import codec as C

    z = np.random.default_rng(0).standard_normal((2, C.LATENT, 12)).astype(np.float32)
    p = C.patchify(z, 4)
    assert p.shape == (2, 4 * C.LATENT, 3) and p[1, 2 * C.LATENT + 5, 1] == z[1, 5, 4 * 1 + 2]
    np.testing.assert_array_equal(C.unpatchify(p, 4), z)
    torch.testing.assert_close(C.unpatchify(C.patchify(torch.from_numpy(z), 4), 4), torch.from_numpy(z))
    fixed = TR.parse_fixed("plucked,fast,high,falling,minor")  # a held-out combination: --fixed may name one
    caps, _ = TR.batch_latents([1, 2], duration=1.0, fixed=fixed)
    assert all(T.read_concepts(h) == fixed for h in T.encode(*tok_te, caps).numpy())
    with pytest.raises(ValueError, match="--fixed needs 5"):
        TR.parse_fixed("plucked,fast")
    with pytest.raises(SystemExit):
        TR.main(_args(tmp_path / "w", tmp_path / "o", "--steps", "1", "--patch", "4"))
    TR.main(["--work", str(tmp_path / "w"), "--layers", "1", "--width", "32", "--heads", "2", "--batch", "2",
             "--duration", "1", "--steps", "1", "--patch", "5", "--fixed", "sine,slow,low,rising,major"])
    ck = torch.load(tmp_path / "w" / "ckpt.pt", weights_only=False)
    assert TR.hparams_of(ck)["patch"] == 5 and ck["dit"]["proj_in.weight"].shape[1] == 5 * C.LATENT
    # checkpoints from before --patch / --envelope / --level
    assert TR.hparams_of({"hparams": {"layers": 2}}) == {"patch": 1, "envelope": False, "level": False,
                                                        "gate": False, "oracle": False, "layers": 2}
    zl = TR.level_normalise(np.stack([z[0] * 0.1, z[1] * 3.0]))
    np.testing.assert_allclose(np.sqrt((zl**2).mean(axis=(1, 2))), 1.0, rtol=1e-5)
    env = C.envelope(z)
    assert env.shape == (2, C.ENV_BINS, 12) and np.isfinite(env).all()


def test_a_level_model_is_fed_its_source_at_the_level_it_was_trained_at(tmp_path):
    """The mini music model learnt unit-rms latents (``--level``): a quiet source must reach it at that level, or it
    reads as near-silence and is regenerated. Its codec is linear, so a source and the same source 4x louder must
    then come out as the same clip, 4x louder; at its own level (no declaration) they differ."""
    import dataclasses

    from diffusers import StableAudioPipeline

    from pipelines import from_pipeline, run_audio
    from pipelines.audio import LATENT_LEVEL_KEY, _latent_level_gain

    TR.main(_args(tmp_path / "w", tmp_path / "o", "--steps", "1", "--level"))
    assert json.loads((tmp_path / "o" / "scheduler" / "scheduler_config.json").read_text())[LATENT_LEVEL_KEY] == "unit_rms"

    folder = TR.Path(TR.__file__).parent / "weights"
    pipe = StableAudioPipeline.from_pretrained(folder, local_files_only=True, torch_dtype=torch.float32)
    model = from_pipeline(pipe)
    assert model.base_scheduler_config[LATENT_LEVEL_KEY] == "unit_rms"
    rate = W.SR
    t = np.arange(2 * rate) / rate
    quiet = (0.03 * np.sin(2 * np.pi * 330 * t)).astype(np.float32)
    gain = _latent_level_gain(model, pipe, quiet[:, None])
    with torch.inference_mode():
        z = pipe.vae.encode(torch.from_numpy(gain * quiet)[None, None]).latent_dist.mean
    assert float(z.pow(2).mean().sqrt()) == pytest.approx(1.0, rel=1e-3)

    def a2a(m, x):
        return run_audio(m, mode="audio2audio", prompt="a slow plucked melody", duration=2.0, steps=4, guidance=1.5,
                         seeds=[3], init_audio=(x, rate), strength=0.3)[0][0]

    soft, loud = a2a(model, quiet), a2a(model, 4 * quiet)
    np.testing.assert_allclose(loud, 4 * soft, atol=2e-4)
    undeclared = dataclasses.replace(model, base_scheduler_config={
        k: v for k, v in model.base_scheduler_config.items() if k != LATENT_LEVEL_KEY})
    soft, loud = a2a(undeclared, quiet), a2a(undeclared, 4 * quiet)
    assert np.abs(loud - 4 * soft).max() > 10 * 2e-4


def test_a_gated_model_exports_its_gate_vae_and_the_level_counts_the_coefficients_only(tmp_path):
    """``--gate``: the trainer sees bins 58-63 replaced by gate channels computed from the level-normalised
    coefficients; the export's VAE encodes exactly that, and the pipeline's level gain ignores the gate channels
    (counting them would scale every source by their energy)."""
    from diffusers import StableAudioPipeline

    from pipelines import from_pipeline
    from pipelines.audio import LATENT_LEVEL_CHANNELS_KEY, _latent_level_gain

    m = W.sample_melody(3, "train", duration=1.0)
    x = W.render(m).astype(np.float32)
    z = TR.melody_latent(m)[None]
    hp = {"patch": 1, "envelope": False, "level": True, "gate": True}
    seen = TR.model_input(z, hp)
    coef = seen[:, : C.GATE_FIRST]
    rms = np.sqrt((coef.astype(np.float64) ** 2).sum() / (C.LATENT * z.shape[-1]))
    assert float(rms) == pytest.approx(1.0, rel=1e-4)
    padded = np.pad(coef, ((0, 0), (0, C.LATENT - C.GATE_FIRST), (0, 0)))
    np.testing.assert_allclose(seen, C.with_gate(padded), atol=1e-6)

    TR.main(_args(tmp_path / "w", tmp_path / "o", "--steps", "1", "--level", "--gate"))
    assert json.loads((tmp_path / "o" / "training.json").read_text())["hparams"]["gate"] is True
    pipe = StableAudioPipeline.from_pretrained(tmp_path / "o", local_files_only=True, torch_dtype=torch.float32)
    model = from_pipeline(pipe)
    assert model.base_scheduler_config[LATENT_LEVEL_CHANNELS_KEY] == C.GATE_FIRST
    gain = _latent_level_gain(model, pipe, 0.25 * x[:, None])
    with torch.inference_mode():
        enc = pipe.vae.encode(torch.from_numpy(gain * 0.25 * x)[None, None]).latent_dist.mean.numpy()
    # what the model is fed at an edit is what it was trained on, to the fp16 rounding of the saved VAE's weights
    np.testing.assert_allclose(enc, seen, rtol=2e-3, atol=2e-3)


def test_the_oracle_probe_is_given_where_notes_sound_and_is_not_scored_on_it(tmp_path):
    """``--oracle`` (a probe): one extra channel, +1 where the notes sound (``codec.sounding``: one segment per
    note), passed to the DiT clean at every sigma and left out of the loss; its export is refused."""
    m = W.sample_melody(0, "train", duration=4.0)
    s = C.sounding(TR.level_normalise(TR.melody_latent(m)))[0]
    assert int(((s[1:] > 0) & (s[:-1] < 0)).sum() + (s[0] > 0)) == len(m.notes)
    with pytest.raises(SystemExit):
        TR.main(_args(tmp_path / "w0", tmp_path / "o", "--steps", "1", "--oracle"))
    TR.main(["--work", str(tmp_path / "w"), "--layers", "1", "--width", "32", "--heads", "2", "--batch", "2",
             "--duration", "1", "--steps", "1", "--level", "--oracle"])
    ck = torch.load(tmp_path / "w" / "ckpt.pt", weights_only=False)
    assert TR.hparams_of(ck)["oracle"] and ck["dit"]["proj_in.weight"].shape[1] == C.LATENT + 1

    torch.manual_seed(0)
    dit = M.make_dit(1, 32, 2, sample_size=16, extra=1)
    proj = M.make_projection()
    z = torch.randn(2, C.LATENT + 1, 16)
    text = torch.zeros(2, 4, T.DIM)
    sigma, drop = torch.tensor([0.5, 5.0]), torch.tensor([False, False])
    noise = torch.randn(z.shape)
    other = noise.clone()
    other[:, -1] = torch.randn(2, 16)  # noise on the oracle channel must not reach the network
    args = (dit, proj, z, text, sigma)
    with torch.no_grad():
        base = TR.loss_fn(*args, noise, drop, 1.0, clean=1)
        assert TR.loss_fn(*args, other, drop, 1.0, clean=1) == base
        flipped = z.clone()
        flipped[:, -1] = -z[:, -1]  # the oracle itself does reach it
        assert TR.loss_fn(dit, proj, flipped, text, sigma, noise, drop, 1.0, clean=1) != base
