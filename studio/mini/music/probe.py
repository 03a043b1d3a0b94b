"""Measurements behind docs/mini-music-plan.md: the closed-form codec, and what training would cost.

    python -m studio.mini.music.probe codec   # round-trip SNR, judge after decode, latent statistics, perturbations
    python -m studio.mini.music.probe dit     # StableAudioDiTModel step time (train / sample), 1 thread
    python -m studio.mini.music.probe vocoder # SpeechT5HifiGan step time: what AudioLDM2's layout would need

Each prints one JSON object.  Threads: OMP_NUM_THREADS / torch.set_num_threads(--threads, default 1).
"""

from __future__ import annotations

import argparse
import itertools
import json
import time

import numpy as np

from . import codec as C
from . import judge as J
from . import world as W


def _combos(n: int, duration: float) -> list:
    combos = list(itertools.product(W.INSTRUMENTS, W.TEMPI, W.REGISTERS, W.CONTOURS, W.MODES))
    # 37 is prime to 96: any n consecutive picks spread over every instrument, tempo, register, ...
    return [W.make_melody(*combos[(37 * i) % len(combos)], seed=1000 + i, duration=duration) for i in range(n)]


def _judge_acc(melodies, audios) -> dict:
    s = [J.score(m, J.judge(a, W.SR)) for m, a in zip(melodies, audios)]
    return {a: round(100 * float(np.mean([x[a] for x in s])), 1) for a in W.ATTRS + ("all",)}


def probe_codec(n: int, duration: float, oobleck_encode: int) -> dict:
    vae = C.build_vae()
    vae16 = C.build_vae().half()
    ms = _combos(n, duration)
    xs = np.stack([W.render(m) for m in ms])
    out: dict = {"n": n, "duration_s": duration, "latent_shape_8s": None,
                 "vae_params": sum(p.numel() for p in vae.parameters())}
    # the Oobleck's own encoder against the numpy closed form, on a few clips (it costs seconds a clip)
    t = time.time()
    z_vae = C.encode(vae, xs[:oobleck_encode])
    out["oobleck_encode_s_per_clip"] = round((time.time() - t) / oobleck_encode, 2)
    z = np.stack([C.mdct(x) * C.GAIN for x in xs]).astype(np.float32)
    out["oobleck_vs_numpy_latent_maxdiff"] = float(np.abs(z_vae - z[:oobleck_encode]).max())
    out["latent_shape_8s"] = list(C.encode(vae, np.zeros(int(8 * W.SR), np.float32)).shape[1:])
    t = time.time()
    ys = np.concatenate([C.decode(vae, z[i:i + 8]) for i in range(0, n, 8)])
    out["oobleck_decode_s_per_clip"] = round((time.time() - t) / n, 3)
    ys16 = C.decode(vae16, z[:8])
    snr = [C.snr_db(x, y) for x, y in zip(xs, ys)]
    out["snr_db_median_min"] = [round(float(np.median(snr)), 2), round(float(np.min(snr)), 2)]
    out["snr_db_fp16_weights_median"] = round(float(np.median([C.snr_db(x, y) for x, y in zip(xs[:8], ys16)])), 2)
    out["snr_db_by_instrument"] = {
        i: round(float(np.median([s for s, m in zip(snr, ms) if m.instrument == i])), 2) for i in W.INSTRUMENTS}
    out["judge_ground_truth"] = _judge_acc(ms, xs)
    out["judge_after_round_trip"] = _judge_acc(ms, ys)

    # latent statistics: scale, how concentrated a frame is, and how much of it is phase
    e = z**2
    out["latent_std"] = round(float(z.std()), 3)
    ch = z.std(axis=(0, 2))
    out["channel_std_max_median"] = [round(float(ch.max()), 3), round(float(np.median(ch)), 3)]
    frame_e = e.sum(1)
    top4 = np.sort(e, axis=1)[:, -4:, :].sum(1)
    loud = frame_e > 1e-3 * frame_e.max()
    out["frame_energy_in_top4_channels"] = round(float((top4[loud] / frame_e[loud]).mean()), 3)
    a, b = z[:, :, :-1].ravel(), z[:, :, 1:].ravel()
    out["lag1_corr_signed"] = round(float(np.corrcoef(a, b)[0, 1]), 3)
    out["lag1_corr_magnitude"] = round(float(np.corrcoef(np.abs(a), np.abs(b))[0, 1]), 3)

    # what a sampler's errors would do: judge after decoding perturbed latents
    rng = np.random.default_rng(0)
    pert = {}
    for snr_db in (20, 10, 5):
        noise = rng.standard_normal(z.shape).astype(np.float32) * z.std() * 10 ** (-snr_db / 20)
        pert[f"gaussian_{snr_db}dB"] = z + noise
    pert["random_signs"] = np.abs(z) * rng.choice([-1.0, 1.0], z.shape).astype(np.float32)
    # magnitude right, phase rotation lost only above 1 kHz (channels >= 16): is low-band phase enough?
    hi = np.abs(z) * rng.choice([-1.0, 1.0], z.shape).astype(np.float32)
    hi[:, :16] = z[:, :16]
    pert["random_signs_above_1kHz"] = hi
    out["judge_after_perturbation"] = {}
    for k, zp in pert.items():
        yp = np.concatenate([C.decode(vae, zp[i:i + 8]) for i in range(0, n, 8)])
        out["judge_after_perturbation"][k] = _judge_acc(ms, yp)
    return out


def _dit(layers: int, width: int, heads: int, tokens: int):
    from diffusers import StableAudioDiTModel

    return StableAudioDiTModel(sample_size=tokens, in_channels=C.LATENT, num_layers=layers,
                               attention_head_dim=width // heads, num_attention_heads=heads,
                               num_key_value_attention_heads=max(1, heads // 2), out_channels=C.LATENT,
                               cross_attention_dim=width, time_proj_dim=256, global_states_input_dim=2 * width,
                               cross_attention_input_dim=width)


def probe_dit(configs, batch: int, steps: int, tokens: int, text_len: int) -> dict:
    import torch
    from diffusers.models.embeddings import get_1d_rotary_pos_embed

    res = []
    for layers, width, heads in configs:
        model = _dit(layers, width, heads, tokens)
        params = sum(p.numel() for p in model.parameters())
        rot = get_1d_rotary_pos_embed((width // heads) // 2, tokens + 1, use_real=True, repeat_interleave_real=False)
        opt = torch.optim.AdamW(model.parameters(), 1e-4)

        def inputs(b):
            return dict(hidden_states=torch.randn(b, C.LATENT, tokens), timestep=torch.rand(b) * 0.9 + 0.05,
                        encoder_hidden_states=torch.randn(b, text_len + 2, width),
                        global_hidden_states=torch.randn(b, 1, 2 * width), rotary_embedding=rot, return_dict=False)

        times = []
        for i in range(steps + 1):
            t = time.time()
            x = inputs(batch)
            loss = (model(**x)[0] - x["hidden_states"]).pow(2).mean()
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            if i:  # the first step pays allocation and kernel warm-up
                times.append(time.time() - t)
        model.eval()
        with torch.no_grad():
            x = inputs(2)  # classifier-free guidance: two rows per sampling step
            model(**x)
            t = time.time()
            for _ in range(3):
                model(**x)
            fwd = (time.time() - t) / 3
        res.append({"layers": layers, "width": width, "heads": heads, "params_M": round(params / 1e6, 2),
                    "fp16_MB": round(2 * params / 2**20, 1), "tokens": tokens, "batch": batch,
                    "train_s_per_step": round(float(np.median(times)), 2),
                    "sample_forward_cfg_s": round(fwd, 3), "sample_30_steps_s": round(30 * fwd, 1)})
    return {"threads": torch.get_num_threads(), "dit": res}


def probe_vocoder(batch: int, seconds: float, steps: int) -> dict:
    """AudioLDM2 decodes a mel spectrogram with SpeechT5HifiGan, which must be trained: time one
    L1-on-waveform step of a small one (the adversarial and mel losses a usable vocoder needs only add)."""
    import torch
    from transformers import SpeechT5HifiGan, SpeechT5HifiGanConfig

    cfg = SpeechT5HifiGanConfig(model_in_dim=64, sampling_rate=W.SR, upsample_initial_channel=128,
                                upsample_rates=[4, 4, 2, 2], upsample_kernel_sizes=[8, 8, 4, 4],
                                resblock_kernel_sizes=[3, 7, 11], resblock_dilation_sizes=[[1, 3, 5]] * 3,
                                normalize_before=False)
    voc = SpeechT5HifiGan(cfg)
    frames = int(seconds * W.SR / 64)
    opt = torch.optim.AdamW(voc.parameters(), 2e-4)
    times = []
    for i in range(steps + 1):
        t = time.time()
        mel = torch.randn(batch, frames, 64)
        wav = voc(mel)
        loss = wav.abs().mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i:
            times.append(time.time() - t)
    with torch.no_grad():
        t = time.time()
        voc(torch.randn(1, int(8 * W.SR / 64), 64))
        dec8 = time.time() - t
    return {"params_M": round(sum(p.numel() for p in voc.parameters()) / 1e6, 2), "batch": batch,
            "segment_s": seconds, "train_s_per_step": round(float(np.median(times)), 2), "decode_8s_s": round(dec8, 2)}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m studio.mini.music.probe")
    ap.add_argument("what", choices=("codec", "dit", "vocoder"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("-n", type=int, default=48)
    ap.add_argument("--duration", type=float, default=8.0)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=8)
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    if args.what == "codec":
        out = probe_codec(args.n, args.duration, oobleck_encode=2)
    elif args.what == "dit":
        out = probe_dit([(6, 256, 8), (8, 384, 8)], args.batch, args.steps, tokens=int(8 * W.SR / C.HOP),
                        text_len=16)
    else:
        out = probe_vocoder(args.batch, 1.0, args.steps)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
