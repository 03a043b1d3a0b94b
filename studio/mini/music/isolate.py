"""Isolation probes for the mini music DiT: which part keeps notes from forming (docs/mini-music-plan.md, 2026-12-02).

    python -m studio.mini.music.isolate noise    [-n 24 --duration 4]         # true latents + sigma noise, decoded, judged
    python -m studio.mini.music.isolate schedule                              # training sigmas vs the sampler's
    python -m studio.mini.music.isolate denoise  --work W [-n 24]             # a checkpoint's one-step D(z + sigma n), judged
    python -m studio.mini.music.isolate sample   --work W [-n 8 --steps 20]   # a checkpoint sampled with the stock scheduler
    python -m studio.mini.music.isolate partial  --work W [-n 8 --steps 20]   # Euler from true latents noised to sigma s0

Each prints one JSON object.  ``denoise`` separates the denoiser (does D at sigma keep notes that are in its
input?) from the sampler (do notes appear from pure noise?); ``noise`` says at which sigma the notes are
still in the input at all.  The judge figures count ``voiced``: the share of clips where the judge finds >= 2
notes, the "no notes" symptom of the Phase 2 probe.
"""

from __future__ import annotations

import argparse
import functools
import json
import math

import numpy as np

from . import codec as C
from . import judge as J
from . import world as W

SIGMAS = (0.03, 0.1, 0.3, 1.0, 3.0)


SPLIT = "train"  # --split: the probes' melodies (train, or the held-out combinations the evaluation scores)


def _melodies(n: int, duration: float, fixed: str = "") -> list:
    if fixed:
        from .train import parse_fixed

        attrs = parse_fixed(fixed)
        return [W.sample_melody(7000 + i, "any", duration=duration, **attrs) for i in range(n)]
    return [W.sample_melody(6_000_000 + i, SPLIT, duration=duration) for i in range(n)]


def judged(melodies, audios) -> dict:
    vs = [J.judge(a, W.SR) for a in audios]
    s = [J.score(m, v) for m, v in zip(melodies, vs)]
    out = {a: round(100 * float(np.mean([x[a] for x in s])), 1) for a in W.ATTRS + ("all",)}
    out["voiced"] = round(100 * float(np.mean([len(v.notes) >= 2 for v in vs])), 1)
    out["notes_median"] = float(np.median([len(v.notes) for v in vs]))
    return out


def latents(melodies) -> np.ndarray:
    from .train import melody_latent

    return np.stack([melody_latent(m) for m in melodies])


def model_latents(melodies, hp: dict) -> np.ndarray:
    """What a checkpoint with hyperparameters ``hp`` is trained on (``train.model_input``)."""
    from .train import model_input

    return model_input(latents(melodies), hp)


def decode_model(vae, y: np.ndarray, hp: dict) -> np.ndarray:
    return C.decode(vae, C.unpatchify(y, hp["patch"])[:, : C.LATENT])


def latent_snr_db(z: np.ndarray, est: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(z.astype(np.float64) ** 2) / np.sum((z - est).astype(np.float64) ** 2)))


def probe_noise(n: int, duration: float) -> dict:
    ms = _melodies(n, duration)
    z = latents(ms)
    vae = C.build_vae()
    ch = z.std(axis=(0, 2))
    rng = np.random.default_rng(0)
    out = {"n": n, "duration_s": duration, "latent_std": round(float(z.std()), 3),
           "channel_std_quantiles_10_50_90_max": [round(float(q), 3) for q in np.quantile(ch, [0.1, 0.5, 0.9, 1])],
           # where the world's energy is: share of the latent's energy in the top channels
           "energy_share_top8_channels": round(float(np.sort(ch**2)[-8:].sum() / (ch**2).sum()), 3),
           "truth": judged(ms, C.decode(vae, z)), "noised": {}}
    for s in SIGMAS:
        zn = z + s * rng.standard_normal(z.shape).astype(np.float32)
        out["noised"][str(s)] = dict(judged(ms, C.decode(vae, zn)), latent_snr_db=round(latent_snr_db(z, zn), 1),
                                     channels_above_sigma=int((ch > s).sum()))
    return out


def probe_schedule(steps: int = 20) -> dict:
    import torch

    from . import model as M
    from .train import sample_sigma

    sch = M.make_scheduler()
    sch.set_timesteps(steps)
    sig = [round(float(s), 3) for s in sch.sigmas]
    tr = sample_sigma(100_000, torch.Generator().manual_seed(0)).numpy()
    return {"sampler_sigmas": sig, "sampler_steps_below_1": int(sum(0 < s < 1 for s in sig)),
            "sampler_steps_below_8": int(sum(0 < s < 8 for s in sig)),
            "train_sigma_quantiles_1_10_50_90_99": [round(float(q), 3) for q in np.quantile(tr, [.01, .1, .5, .9, .99])],
            "train_share_below_1": round(float((tr < 1).mean()), 3),
            "train_share_below_0.5": round(float((tr < 0.5).mean()), 3)}


def load_work(work: str):
    """(dit, projection, hparams, step) from a train.py ``--work`` checkpoint's EMA weights."""
    import torch

    from . import model as M

    from .train import extra_channels, hparams_of

    ck = torch.load(f"{work}/ckpt.pt", map_location="cpu", weights_only=False)
    hp = hparams_of(ck)
    frames = int(round(hp["duration"] * W.SR / C.HOP))
    dit = M.make_dit(hp["layers"], hp["width"], hp["heads"], frames, hp["patch"], extra_channels(hp))
    dit.load_state_dict(ck["ema_dit"])
    proj = M.make_projection()
    proj.load_state_dict(ck["ema_proj"])
    return dit.eval(), proj.eval(), hp, ck["step"]


@functools.lru_cache(maxsize=1)
def _text_encoder():
    """The hand-made T5 (deterministic), built once for all the probes' denoiser calls."""
    from . import text as T

    tok = T.build_tokenizer()
    return tok, T.build_text_encoder(tok)


def denoise(dit, proj, x, sigma, captions, seconds: float, clean=None):
    """The EDM denoiser D(x; sigma) exactly as the scheduler forms it from the network's v output; ``clean``: the
    oracle channels, given to the network as they are (train.loss_fn's ``clean``)."""
    import torch

    from . import model as M
    from . import text as T

    tok, te = _text_encoder()
    c_skip, c_out, c_in, t = M.precondition(sigma)
    with torch.no_grad():
        cross, glob = M.conditioning(proj, T.encode(tok, te, captions), seconds)
        inp = x * c_in[:, None, None]
        if clean is not None:
            inp = torch.cat([inp[:, : -clean.shape[1]], clean], dim=1)
        out = dit(inp, t, encoder_hidden_states=cross, global_hidden_states=glob,
                  rotary_embedding=M.rotary(dit, x.shape[-1]), return_dict=False)[0]
    return c_skip[:, None, None] * x + c_out[:, None, None] * out


def probe_denoise(work: str, n: int, fixed: str = "") -> dict:
    import torch

    dit, proj, hp, step = load_work(work)
    if hp["oracle"]:
        raise SystemExit("denoise: not written for the oracle probe; use partial")
    ms = _melodies(n, hp["duration"], fixed)
    z = torch.as_tensor(model_latents(ms, hp))
    vae = C.build_vae(gate=hp["gate"])
    caps = [m.caption for m in ms]
    gen = torch.Generator().manual_seed(0)
    out = {"work": work, "step": step, "hparams": hp, "n": n, "fixed": fixed or None, "one_step": {}}
    for s in SIGMAS + (8.0,):
        sigma = torch.full((n,), float(s))
        x = z + s * torch.randn(z.shape, generator=gen)
        d = torch.cat([denoise(dit, proj, x[i:i + 4], sigma[i:i + 4], caps[i:i + 4], hp["duration"])
                       for i in range(0, n, 4)])
        out["one_step"][str(s)] = dict(judged(ms, decode_model(vae, d.numpy(), hp)),
                                       latent_snr_db_in=round(latent_snr_db(z.numpy(), x.numpy()), 1),
                                       latent_snr_db_out=round(latent_snr_db(z.numpy(), d.numpy()), 1))
    return out


def probe_sample(work: str, n: int, steps: int, guidance: float, fixed: str = "") -> dict:
    import torch

    from . import model as M
    from . import text as T

    dit, proj, hp, step = load_work(work)
    if hp["patch"] != 1 or hp["oracle"]:
        raise SystemExit("sample: the stock pipeline cannot take this probe's latent (patches or an oracle channel); "
                         "use partial (from sigma 80)")
    ms = _melodies(n, hp["duration"], fixed)
    caps = [W.caption(m) for m in ms]
    pipe = M.build_pipeline(dit, proj, vae=C.build_vae(gate=hp["gate"]), tokenizer=T.build_tokenizer())
    pipe.set_progress_bar_config(disable=True)
    gens = [torch.Generator().manual_seed(i) for i in range(n)]
    lat = pipe(caps, num_inference_steps=steps, guidance_scale=guidance, audio_end_in_s=hp["duration"],
               generator=gens, output_type="latent").audios
    audio = C.decode(pipe.vae, lat.float().numpy())[:, : int(hp["duration"] * W.SR)]
    zt = latents(ms)
    return {"work": work, "step": step, "n": n, "steps": steps, "guidance": guidance, "fixed": fixed or None,
            "judge": judged(ms, audio),
            "sample_std": round(float(lat.std()), 3), "truth_std": round(float(zt.std()), 3),
            "sample_channel_std_top4": [round(float(v), 2) for v in np.sort(lat.std(dim=(0, 2)).numpy())[-4:]],
            "truth_channel_std_top4": [round(float(v), 2) for v in np.sort(zt.std(axis=(0, 2)))[-4:]]}


def euler(dit, proj, x, captions, seconds: float, sigmas, guidance: float = 1.0, clean=None):
    """Deterministic EDM Euler from ``sigmas[0]`` (x already carries that noise) down the list, then to 0: a
    sampler with none of the stock scheduler's SDE noise, to tell its part from the denoiser's."""
    import torch

    n = len(x)
    for i, s in enumerate(sigmas):
        sig = torch.full((n,), float(s))
        d = denoise(dit, proj, x, sig, captions, seconds, clean)
        if guidance != 1.0:
            u = denoise(dit, proj, x, sig, [""] * n, seconds, clean)
            d = u + guidance * (d - u)
        nxt = sigmas[i + 1] if i + 1 < len(sigmas) else 0.0
        x = d if nxt == 0 else x + (nxt - s) * (x - d) / s
    return x


def probe_partial(work: str, n: int, steps: int, guidance: float, fixed: str = "",
                  starts=(500.0, 20.0, 8.0, 3.0, 1.0)) -> dict:
    """Noise true latents to sigma s0, sample down from there: at which s0 does the sampler stop finding notes?"""
    import torch

    from . import model as M

    dit, proj, hp, step = load_work(work)
    ms = _melodies(n, hp["duration"], fixed)
    caps = [W.caption(m) for m in ms]
    z = torch.as_tensor(model_latents(ms, hp))
    vae = C.build_vae(gate=hp["gate"])
    out = {"work": work, "step": step, "n": n, "steps": steps, "guidance": guidance, "fixed": fixed or None,
           "from_sigma": {}}
    for s0 in starts:
        sig = np.exp(np.linspace(math.log(s0), math.log(M.SIGMA_MIN), steps)) if s0 > M.SIGMA_MIN else [s0]
        gen = torch.Generator().manual_seed(1)
        x = z + s0 * torch.randn(z.shape, generator=gen)
        with torch.no_grad():
            o = z[:, -1:] if hp["oracle"] else None
            y = torch.cat([euler(dit, proj, x[i:i + 4], caps[i:i + 4], hp["duration"], sig, guidance,
                                 None if o is None else o[i:i + 4]) for i in range(0, n, 4)])
        out["from_sigma"][str(s0)] = dict(judged(ms, decode_model(vae, y.numpy(), hp)),
                                          std=round(float(y.std()), 3))
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m studio.mini.music.isolate")
    ap.add_argument("what", choices=("noise", "schedule", "denoise", "sample", "partial"))
    ap.add_argument("--work", default="")
    ap.add_argument("-n", type=int, default=24)
    ap.add_argument("--duration", type=float, default=4.0)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--guidance", type=float, default=4.0)
    ap.add_argument("--fixed", default="", help="instrument,tempo,register,contour,mode: one combination only")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--split", choices=("train", "holdout"), default="train",
                    help="melodies of the train combinations (seeds the trainer never draws) or the held-out ones")
    ap.add_argument("--starts", default="500,20,8,3,1", help="partial: the sigmas sampling starts from")
    args = ap.parse_args(argv)
    import torch

    global SPLIT
    SPLIT = args.split

    torch.set_num_threads(args.threads)
    if args.what in ("denoise", "sample", "partial") and not args.work:
        ap.error(f"{args.what} needs --work (a train.py work folder)")
    if args.what == "noise":
        out = probe_noise(args.n, args.duration)
    elif args.what == "schedule":
        out = probe_schedule(args.steps)
    elif args.what == "denoise":
        out = probe_denoise(args.work, args.n, args.fixed)
    elif args.what == "partial":
        out = probe_partial(args.work, args.n, args.steps, args.guidance, args.fixed,
                            tuple(float(v) for v in args.starts.split(",")))
    else:
        out = probe_sample(args.work, args.n, args.steps, args.guidance, args.fixed)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
