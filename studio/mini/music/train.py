"""Train the mini music model's DiT on the procedural world, frozen hand-made text conditioning, closed-form codec.

    python -m studio.mini.music.train --work /tmp/mm_work --out /tmp/mm_out --seed 0 --threads 1 \
        --layers 2 --width 128 --heads 4 --batch 8 --time-budget-min 25 [--resume]

Data: every step renders ``--batch`` fresh ``split="train"`` melodies (seeds fixed by the step, so a resumed
run sees the same stream) and takes their latents with ``codec.mdct`` (no VAE in the loop; identical to the
Oobleck encoder to 4e-6).  Objective: the EDM preconditioning ``CosineDPMSolverMultistepScheduler`` samples with
(v-prediction, unit weight on the network output), sigma log-uniform, 70% in [SIGMA_MIN, 8] where the melody
is decided and 30% in [8, SIGMA_MAX] (model.py: 0.02, 80); ``--cfg-drop`` of the captions zeroes the whole cross-attention sequence, as the
pipeline's unconditional branch does.  Only the DiT and the projection model's seconds embeddings learn.

``--work`` holds ``ckpt.pt`` (model, EMA, optimiser, step) and ``log.jsonl``; ``--resume`` continues from it
(the architecture must match).  ``--out`` receives a ``StableAudioPipeline`` folder (EMA weights, fp16) at every
``--export-every`` steps and at the end, loadable with ``StableAudioPipeline.from_pretrained``.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from pathlib import Path

import numpy as np

from . import codec as C
from . import model as M
from . import text as T
from . import world as W

HPARAMS = ("layers", "width", "heads", "duration", "patch", "envelope", "level", "gate", "oracle")


def hparams_of(ck: dict) -> dict:
    """A checkpoint's hyperparameters; checkpoints from before ``--patch`` existed had one frame a token."""
    return {"patch": 1, "envelope": False, "level": False, "gate": False, "oracle": False, **ck["hparams"]}


def level_normalise(z: np.ndarray) -> np.ndarray:
    """Each clip's latent scaled to unit rms (a gain on its audio: the codec is linear; the judge reads no level).
    The world's clips span 16 dB of latent level (plucked ~0.15, square ~1.4), so one noise level is a
    different SNR per instrument; normalised, every clip crosses the same SNRs at the same sigma."""
    rms = np.sqrt((np.asarray(z, np.float64) ** 2).mean(axis=(-2, -1), keepdims=True))
    return (z / np.maximum(rms, 1e-4)).astype(np.float32)


def log(msg: str) -> None:
    print(time.strftime("%H:%M:%S"), msg, flush=True)


def melody_latent(m) -> np.ndarray:
    """A melody's latent in closed form (the Oobleck encoder's, to 4e-6), without a VAE."""
    return (C.mdct(W.render(m)) * C.GAIN).astype(np.float32)


def model_input(z: np.ndarray, hp: dict) -> np.ndarray:
    """Latents as a checkpoint with hyperparameters ``hp`` sees them: level-normalised (``level``), with the
    envelope channels appended (``envelope``), bins from GATE_FIRST on replaced by the gate channels (``gate``),
    ``patch`` frames a token."""
    if hp.get("gate"):  # the level counts the coefficients only (bins 58-63 become gate channels), as in the pipeline
        z = np.array(z, np.float32, copy=True)
        z[..., C.GATE_FIRST:, :] = 0.0
    z = level_normalise(z) if hp["level"] else z
    z = C.with_gate(z) if hp.get("gate") else z
    z = np.concatenate([z, C.envelope(z)], axis=1) if hp["envelope"] else z
    z = np.concatenate([z, C.sounding(z)], axis=1) if hp.get("oracle") else z
    return C.patchify(z, hp["patch"])


def extra_channels(hp: dict) -> int:
    """Channels a probe appends to the latent: the envelope (generated with it) and the oracle (given, clean)."""
    return (C.ENV_BINS if hp.get("envelope") else 0) + (1 if hp.get("oracle") else 0)


def _latent(job) -> tuple[str, np.ndarray]:
    seed, duration, fixed = job
    m = W.sample_melody(int(seed), "any" if fixed else "train", duration=duration, **fixed)
    return m.caption, melody_latent(m)


def parse_fixed(text: str) -> dict:
    """"plucked,fast,high,rising,major" -> the attributes it fixes (empty: the whole train split)."""
    if not text:
        return {}
    vals = [v.strip() for v in text.split(",")]
    if len(vals) != len(W.ATTRS):
        raise ValueError(f"--fixed needs {len(W.ATTRS)} values ({','.join(W.ATTRS)}), got {text!r}")
    return dict(zip(W.ATTRS, vals))


def batch_latents(seeds, duration: float = W.DURATION, pool=None, fixed: dict | None = None):
    """Captions and latents of the train melodies ``seeds`` (or of one combination, ``fixed``); ``pool`` (a
    multiprocessing pool) renders them in parallel, which a GPU run needs (30 ms a clip on one core)."""
    jobs = [(s, duration, fixed or {}) for s in seeds]
    got = pool.map(_latent, jobs) if pool is not None else [_latent(j) for j in jobs]
    return [c for c, _ in got], np.stack([z for _, z in got])


def sample_sigma(n: int, gen):
    import torch

    lo = torch.where(torch.rand(n, generator=gen) < 0.7, math.log(M.SIGMA_MIN), math.log(8.0))
    hi = torch.where(lo < math.log(1.0), math.log(8.0), math.log(M.SIGMA_MAX))
    return (lo + (hi - lo) * torch.rand(n, generator=gen)).exp()


def loss_fn(dit, projection, z, text_hidden, sigma, noise, drop, seconds: float = W.DURATION, clean: int = 0):
    """Mean squared error of the network output against its v-prediction target (EDM unit weighting). The last
    ``clean`` channels are an input given without noise (the oracle probe), not scored."""
    c_skip, c_out, c_in, t = M.precondition(sigma)
    x = z + sigma[:, None, None] * noise
    cross, glob = M.conditioning(projection, text_hidden, seconds)
    cross = cross * (~drop).to(cross.dtype)[:, None, None]
    inp = x * c_in[:, None, None]
    if clean:
        import torch

        inp = torch.cat([inp[:, :-clean], z[:, -clean:]], dim=1)
    out = dit(inp, t, encoder_hidden_states=cross, global_hidden_states=glob,
              rotary_embedding=[r.to(z.device) for r in M.rotary(dit, z.shape[-1])], return_dict=False)[0]
    target = (z - c_skip[:, None, None] * x) / c_out[:, None, None]
    if clean:
        out, target = out[:, :-clean], target[:, :-clean]
    return (out - target).pow(2).mean()


def init_checkpoint(path) -> dict:
    """What ``--init-from`` starts from: a ``--work`` folder's ``ckpt.pt``, or an exported pipeline folder (e.g. the
    committed weights, whose ``training.json`` names their hyperparameters), read as EMA weights in fp32."""
    import torch

    path = Path(path)
    if (path / "ckpt.pt").exists():
        return torch.load(path / "ckpt.pt", map_location="cpu", weights_only=False)
    if not (path / "model_index.json").exists() or not (path / "training.json").exists():
        raise SystemExit(f"--init-from: {path} holds neither a ckpt.pt nor an exported pipeline with training.json")
    from diffusers import StableAudioDiTModel, StableAudioProjectionModel

    meta = json.loads((path / "training.json").read_text())
    dit = StableAudioDiTModel.from_pretrained(path / "transformer", local_files_only=True, torch_dtype=torch.float32)
    proj = StableAudioProjectionModel.from_pretrained(path / "projection_model", local_files_only=True,
                                                      torch_dtype=torch.float32)
    # records from before steps_total existed: the earlier stages sit beside it as training_stage*.json
    total = meta.get("steps_total") or meta["step"] + sum(
        json.loads(f.read_text())["step"] for f in sorted(path.glob("training_stage*.json")))
    return {"ema_dit": dit.state_dict(), "ema_proj": proj.state_dict(), "hparams": meta["hparams"],
            "step": meta["step"], "steps_total": total}


def lr_at(step: int, args) -> float:
    """Linear warm-up, then constant, or with ``--cosine`` a half cosine from ``--lr`` down to a tenth of it at
    ``--steps`` (the end of a fine-tune, where a lower rate lets the weights settle into the minimum)."""
    warm = min(1.0, (step + 1) / args.warmup)
    if not args.cosine:
        return args.lr * warm
    frac = min(1.0, step / max(1, args.steps))
    return args.lr * warm * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))


def export(out: Path, dit, projection, meta: dict) -> None:
    import torch

    from pipelines.audio import LATENT_LEVEL_CHANNELS_KEY, LATENT_LEVEL_KEY

    gate = bool(meta.get("hparams", {}).get("gate"))
    pipe = M.build_pipeline(copy.deepcopy(dit).cpu().eval(), copy.deepcopy(projection).cpu().eval(),
                            vae=C.build_vae(gate=gate))
    pipe.to(torch.float16)
    out.mkdir(parents=True, exist_ok=True)
    if meta.get("hparams", {}).get("level"):
        # tell the pipeline the latent level this model expects, so a source clip is brought to it (audio-to-audio,
        # continuation, inpainting); see pipelines.audio._latent_level_gain
        pipe.scheduler.register_to_config(**{LATENT_LEVEL_KEY: "unit_rms"})
        if gate:  # the level counts the coefficients only, not the gate channels the encoder appends
            pipe.scheduler.register_to_config(**{LATENT_LEVEL_CHANNELS_KEY: C.GATE_FIRST})
    pipe.save_pretrained(str(out))
    (out / "training.json").write_text(json.dumps(meta, indent=1) + "\n")


def train(args) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    ck_path = work / "ckpt.pt"
    hp = {k: getattr(args, k) for k in HPARAMS}
    fixed = parse_fixed(args.fixed)
    frames = int(round(args.duration * W.SR / C.HOP))
    dev = torch.device(args.device)
    dit = M.make_dit(args.layers, args.width, args.heads, frames, args.patch, extra_channels(hp)).to(dev)
    proj = M.make_projection().to(dev)
    tok = T.build_tokenizer()
    te = T.build_text_encoder(tok)
    params = list(dit.parameters()) + list(proj.parameters())
    opt = torch.optim.AdamW([p for p in params if p.requires_grad], lr=args.lr, weight_decay=0.01)
    ema_dit, ema_proj = copy.deepcopy(dit).requires_grad_(False), copy.deepcopy(proj).requires_grad_(False)
    step, spent = 0, 0.0
    start_total = 0  # steps before this run's: a fine-tune's record counts its whole history (steps_total)
    if args.resume:
        if not ck_path.exists():
            raise SystemExit(f"--resume: no checkpoint at {ck_path}")
        ck = torch.load(ck_path, map_location="cpu", weights_only=False)
        if hparams_of(ck) != hp:
            raise SystemExit(f"--resume: checkpoint is {hparams_of(ck)}, arguments ask {hp}")
        dit.load_state_dict(ck["dit"])
        proj.load_state_dict(ck["proj"])
        ema_dit.load_state_dict(ck["ema_dit"])
        ema_proj.load_state_dict(ck["ema_proj"])
        opt.load_state_dict(ck["opt"])
        step, spent = ck["step"], ck["seconds"]
        start_total = ck.get("start_total", 0)
        log(f"resumed at step {step} ({spent / 60:.1f} min trained)")
    elif ck_path.exists():
        raise SystemExit(f"{ck_path} exists: pass --resume to continue it, or another --work")
    elif args.init_from:
        # a curriculum: the DiT's weights do not depend on its window (rotary positions), so a model trained on
        # short clips starts a longer-window run; the optimiser and step count start afresh
        ck = init_checkpoint(args.init_from)
        start_total = int(ck.get("steps_total", ck.get("step", 0)))
        # the window and the data's level do not shape the weights; the rest does
        same = {k: hparams_of(ck)[k] for k in HPARAMS if k not in ("duration", "level")}
        if same != {k: hp[k] for k in same}:
            raise SystemExit(f"--init-from: checkpoint is {hparams_of(ck)}, arguments ask {hp}")
        for mod, key in ((dit, "ema_dit"), (ema_dit, "ema_dit"), (proj, "ema_proj"), (ema_proj, "ema_proj")):
            mod.load_state_dict(ck[key])
        log(f"initialised from {args.init_from} (step {ck['step']}, {ck['hparams']})")
    n_params = sum(p.numel() for p in dit.parameters())
    log(f"DiT {hp}: {n_params / 1e6:.2f} M parameters; batch {args.batch}, lr {args.lr}, {args.threads} thread(s)")

    def meta(final: bool) -> dict:
        return {"step": step, "train_seconds": round(spent, 1), "hparams": hp, "batch": args.batch, "lr": args.lr,
                "cfg_drop": args.cfg_drop, "ema": args.ema, "fixed": fixed or None, "seed": args.seed, "threads": args.threads,
                "dit_params": n_params, "final": final, "init_from": args.init_from or None,
                "steps_total": start_total + step, "cosine": args.cosine,
                "text_encoder": "hand-made T5 (studio/mini/music/text.py)",
                "command": "python -m studio.mini.music.train " + " ".join(args.argv)}

    def save() -> None:
        tmp = ck_path.with_suffix(".tmp")
        torch.save({"dit": dit.state_dict(), "proj": proj.state_dict(), "ema_dit": ema_dit.state_dict(),
                    "ema_proj": ema_proj.state_dict(), "opt": opt.state_dict(), "step": step, "seconds": spent,
                    "hparams": hp, "start_total": start_total, "steps_total": start_total + step}, tmp)
        tmp.replace(ck_path)

    start = time.time()
    budget = args.time_budget_min * 60
    losses: list[float] = []
    import multiprocessing as mp

    pool = mp.get_context("spawn").Pool(args.workers) if args.workers > 1 else None
    with (work / "log.jsonl").open("a") as logf:
        while step < args.steps and time.time() - start < budget:
            t0 = time.time()
            gen = torch.Generator().manual_seed(args.seed * 1_000_003 + step)
            captions, z = batch_latents(range(args.seed * 10_000_000 + step * args.batch,
                                              args.seed * 10_000_000 + (step + 1) * args.batch),
                                          args.duration, pool, fixed)
            z = model_input(z, hp)
            text_hidden = T.encode(tok, te, captions).to(dev)
            sigma = sample_sigma(len(z), gen)
            noise = torch.randn(z.shape, generator=gen)
            drop = torch.rand(len(z), generator=gen) < args.cfg_drop
            z, sigma, noise, drop = (torch.as_tensor(v).to(dev) for v in (z, sigma, noise, drop))
            lr = lr_at(step, args)
            for g in opt.param_groups:
                g["lr"] = lr
            loss = loss_fn(dit, proj, z, text_hidden, sigma, noise, drop, args.duration, int(args.oracle))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            decay = min(args.ema, (1 + step) / (10 + step))
            with torch.no_grad():
                for src, dst in ((dit, ema_dit), (proj, ema_proj)):
                    for p, e in zip(src.parameters(), dst.parameters()):
                        e.lerp_(p, 1 - decay)
            step += 1
            spent += time.time() - t0
            losses.append(float(loss))
            rec = {"step": step, "loss": round(float(loss), 5), "sigma": [round(float(x), 3) for x in sigma],
                   "s": round(time.time() - t0, 2)}
            logf.write(json.dumps(rec) + "\n")
            if step % args.log_every == 0:
                logf.flush()
                log(f"step {step}: loss {np.mean(losses[-args.log_every:]):.4f} ({(time.time() - t0):.1f} s/step)")
            if step % args.save_every == 0:
                save()
            if args.out and args.export_every and step % args.export_every == 0:
                export(Path(args.out), ema_dit, ema_proj, meta(False))
    if pool is not None:
        pool.close()
    save()
    if args.out:
        export(Path(args.out), ema_dit, ema_proj, meta(True))
        log(f"exported {args.out} at step {step}")
    return meta(True)


def main(argv=None) -> None:
    import sys

    p = argparse.ArgumentParser(prog="python -m studio.mini.music.train")
    p.add_argument("--work", required=True)
    p.add_argument("--out", default="")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--duration", type=float, default=W.DURATION,
                   help="clip seconds: the DiT's window (8 for the shipped model; shorter for cheap probes)")
    p.add_argument("--patch", type=int, default=1, help="latent frames per DiT token (codec.patchify)")
    p.add_argument("--envelope", action="store_true",
                   help="probe: append codec.envelope's channels to the latent (not decodable by the stock VAE)")
    p.add_argument("--level", action="store_true", help="train on clips scaled to unit latent rms (level_normalise)")
    p.add_argument("--gate", action="store_true",
                   help="latent bins 58-63 carry band energies (codec.with_gate; the exported VAE encodes them)")
    p.add_argument("--oracle", action="store_true",
                   help="probe: give the DiT where the notes sound (codec.sounding) as a clean input channel")
    p.add_argument("--fixed", default="", help="train on one combination only, e.g. plucked,fast,high,rising,major")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--cosine", action="store_true", help="decay the rate to a tenth of --lr by --steps (lr_at)")
    p.add_argument("--ema", type=float, default=0.995)
    p.add_argument("--cfg-drop", type=float, default=0.1)
    p.add_argument("--steps", type=int, default=10**9, help="stop at this total step count")
    p.add_argument("--time-budget-min", type=float, default=60.0, help="stop after this many minutes of this run")
    p.add_argument("--save-every", type=int, default=25)
    p.add_argument("--export-every", type=int, default=0)
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--workers", type=int, default=1, help="processes rendering the training clips")
    p.add_argument("--device", default="cpu", help="torch device (cuda on a GPU machine: same stream, same checkpoint)")
    p.add_argument("--init-from", default="",
                   help="a --work folder whose EMA weights start this run (e.g. one trained at a shorter --duration), "
                   "or an exported pipeline folder such as studio/mini/music/weights")
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.batch < 1 or args.steps < 1:
        p.error("--batch and --steps must be positive")
    if (args.patch > 1 or args.envelope or args.oracle) and args.out:
        p.error("--patch > 1, --envelope and --oracle are for probes: the closed-form Oobleck decodes 64 channels, "
                "one frame a token, so the export would not decode (drop --out)")
    if args.cosine and args.steps >= 10**9:
        p.error("--cosine decays towards --steps: give --steps")
    if not 1.0 <= args.duration <= W.DURATION:
        p.error(f"--duration must be 1 to {W.DURATION:g} seconds (the projection model's range)")
    print(json.dumps(train(args)))


if __name__ == "__main__":
    main()
