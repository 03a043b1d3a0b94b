"""Train the mini text-to-image model from scratch (CPU-friendly) and export a diffusers folder.

    python -m studio.mini.train --out studio/mini/weights --seed 0

Stages (each cached under --work, so a rerun with the same work dir resumes after a finished stage):
  1. tokenizer: word-level CLIPTokenizer built offline from the world's vocabulary;
  2. VAE: AutoencoderKL, 16x downsampling, 4 latent channels, trained on random crops (MSE + L1 + small KL);
  3. latents: the frozen VAE encodes --n-images training scenes (held-out colour-shape pairs excluded);
  4. UNet + text encoder: trained jointly, epsilon prediction, scaled_linear betas, min-SNR-5 weights,
     10% caption dropout (for classifier-free guidance), EMA; the EMA weights are exported (fp16)
     every --export-every steps, so an interrupted run still leaves usable weights in --out.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import random
import time
from pathlib import Path

import numpy as np

from . import world as W
from .tokenizer import MAX_LEN, build_tokenizer

GUIDANCE = 5.0
STEPS = 30


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---------------------------------------------------------------- components
def make_vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3, out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 5, up_block_types=("UpDecoderBlock2D",) * 5,
        block_out_channels=(16, 32, 64, 64, 128), layers_per_block=1, latent_channels=4,
        # 4 channels per group at the top level: per-channel (instance-style) norms erase flat colours
        norm_num_groups=4, sample_size=256, mid_block_add_attention=False, force_upcast=False,
    )


def make_unet():
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(32, 64, 128), layers_per_block=1, cross_attention_dim=128,
        attention_head_dim=(1, 2, 4), norm_num_groups=8,  # attention_head_dim = heads per level (diffusers naming): head dim 32
    )


def make_text_encoder(vocab_size: int):
    from transformers import CLIPTextConfig, CLIPTextModel

    cfg = CLIPTextConfig(
        vocab_size=vocab_size, hidden_size=128, intermediate_size=256, num_hidden_layers=3,
        num_attention_heads=4, max_position_embeddings=MAX_LEN, projection_dim=128,
        bos_token_id=0, eos_token_id=1, pad_token_id=1,
    )
    return CLIPTextModel(cfg)


def make_scheduler_train():
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")


def make_scheduler_infer():
    from diffusers import DPMSolverMultistepScheduler

    return DPMSolverMultistepScheduler(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        algorithm_type="dpmsolver++", solver_order=2, timestep_spacing="trailing", steps_offset=1,
    )


# ---------------------------------------------------------------- data
def scene_images(n: int, seed: int, split: str = "train") -> tuple[list[W.Scene], np.ndarray]:
    scenes = [W.sample_scene(seed * 1_000_003 + i, split) for i in range(n)]
    imgs = np.stack([W.scene_array(s) for s in scenes])
    return scenes, imgs


def to_tensor(imgs: np.ndarray):
    import torch

    return torch.from_numpy(imgs).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


# ---------------------------------------------------------------- stage 2: VAE
_OPP = None


def _opponent():
    import torch

    # phase A rows: luminance, red-green x3, yellow-blue x3 (chroma-heavy)
    return torch.tensor([[1 / 3, 1 / 3, 1 / 3], [3.0, -3.0, 0.0], [1.5, 1.5, -3.0]])


def _balanced():
    import torch

    # phase B: orthonormal opponent basis, chroma x2 (luminance as in RGB MSE)
    r3, r2, r6 = 3**-0.5, 2**-0.5, 6**-0.5
    return torch.tensor([[r3, r3, r3], [2 * r2, -2 * r2, 0.0], [2 * r6, 2 * r6, -4 * r6]])


def train_vae(args, work: Path):
    import torch

    path = work / "vae"
    if (path / "config.json").exists():
        from diffusers import AutoencoderKL

        log("VAE: cached")
        return AutoencoderKL.from_pretrained(path)
    global _OPP
    _OPP = _opponent()
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    vae = make_vae()
    phase_a = work / "vae_phaseA"
    t_off, step0 = 0.0, 0
    if (phase_a / "config.json").exists():  # resume at the phase switch
        from diffusers import AutoencoderKL

        vae = AutoencoderKL.from_pretrained(phase_a)
        info = json.loads((work / "vae_phaseA.json").read_text())
        t_off, step0 = info["seconds"], info["steps"]
        log(f"VAE: resuming phase B from cached phase A ({step0} steps)")
    # Start with a near-deterministic posterior (std ~ e^-5): with the default logvar 0 the sampling
    # noise swamps the latent and the decoder learns to ignore it (grey, colourless reconstructions).
    if not step0:
        with torch.no_grad():
            vae.quant_conv.bias[4:].fill_(-10.0)
    scenes, imgs = scene_images(args.vae_images, args.seed + 1)
    x_all = to_tensor(imgs)
    # object pixels (not background) get 5x weight: they are a small fraction of each image
    bg = np.array([W.BACKGROUNDS[s.background] for s in scenes], dtype=np.uint8)[:, None, None, :]
    w_all = torch.from_numpy(1.0 + 4.0 * (imgs != bg).any(-1).astype(np.float32))[:, None]
    centers = [[o.center for o in s.objects] for s in scenes]
    opt = torch.optim.AdamW(vae.parameters(), lr=args.vae_lr, weight_decay=0.0)
    t0 = time.time() - t_off
    steps = args.vae_steps
    phase_b = bool(step0)
    if phase_b:
        _OPP = _balanced()
    for step in range(step0, steps):
        if not phase_b and time.time() - t0 > 60 * args.vae_phase_a_min:
            # phase B: balanced colour loss, fresh optimizer, milder object weighting
            vae.save_pretrained(phase_a)
            (work / "vae_phaseA.json").write_text(json.dumps({"seconds": time.time() - t0, "steps": step}))
            phase_b = True
            _OPP = _balanced()
            opt = torch.optim.AdamW(vae.parameters(), lr=args.vae_lr, weight_decay=0.0)
            log(f"VAE phase B from step {step}")
        # whole images: GroupNorm statistics then match inference (crops shift the colours)
        crop, bs = 256, 2
        idx = rng.integers(0, len(x_all), bs)
        xs, ws = [], []
        for i in idx:
            # 75% of crops contain (part of) an object; crops aligned to the 16-px latent grid
            if rng.random() < 0.75:
                cx, cy = centers[i][rng.integers(len(centers[i]))]
                cx, cy = cx + rng.uniform(-crop / 3, crop / 3), cy + rng.uniform(-crop / 3, crop / 3)
                ox = int(np.clip(round((cx - crop / 2) / 16) * 16, 0, 256 - crop))
                oy = int(np.clip(round((cy - crop / 2) / 16) * 16, 0, 256 - crop))
            else:
                ox, oy = (int(v) * 16 for v in rng.integers(0, (256 - crop) // 16 + 1, 2))
            xs.append(x_all[i, :, oy : oy + crop, ox : ox + crop])
            ws.append(w_all[i, :, oy : oy + crop, ox : ox + crop])
        x, wt = torch.stack(xs), torch.stack(ws)
        if phase_b:
            wt = 1.0 + (wt - 1.0) / 4.0  # object pixels 2x
        post = vae.encode(x).latent_dist
        z = post.sample()
        y = vae.decode(z).sample
        # loss in an opponent colour space with chroma amplified: plain RGB MSE learns luminance
        # first and chroma far too slowly for a CPU budget (grey reconstructions)
        e = torch.einsum("bchw,dc->bdhw", y - x, _OPP)
        rec = ((e.pow(2) + 0.5 * e.abs()) * wt).mean() / wt.mean()
        kl = post.kl().mean() / z[0].numel()
        loss = rec + args.vae_kl * kl
        prog = step / steps
        if args.vae_time_min:
            prog = max(prog, (time.time() - t0) / (60 * args.vae_time_min))
        if prog >= 1.0:
            log(f"VAE time budget reached at step {step}")
            break
        lr = args.vae_lr * min(1.0, (step + 1 - step0) / 50) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * prog)))
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        if step % 300 == 299:
            vae.save_pretrained(work / "vae_partial")
        if step % 100 == 0 or step == steps - 1:
            log(f"VAE step {step}/{steps} crop {crop} rec {rec.item():.4f} kl {kl.item():.2f} ({time.time() - t0:.0f}s)")
    vae.save_pretrained(path)
    (work / "vae_time.json").write_text(json.dumps({"seconds": time.time() - t0, "steps": step}))
    return vae


# ---------------------------------------------------------------- stage 3: latents
def encode_latents(args, work: Path, vae):
    import torch

    path = work / f"latents_{args.n_images}.pt"
    if path.exists():
        log("latents: cached")
        return torch.load(path, weights_only=False)
    t0 = time.time()
    scenes = [W.sample_scene(args.seed * 7919 + i, "train") for i in range(args.n_images)]
    lat = []
    vae.eval()
    with torch.no_grad():
        for i in range(0, len(scenes), 32):
            x = to_tensor(np.stack([W.scene_array(s) for s in scenes[i : i + 32]]))
            lat.append(vae.encode(x).latent_dist.mean)
            if i % 640 == 0:
                log(f"encoded {i}/{len(scenes)} ({time.time() - t0:.0f}s)")
    lat = torch.cat(lat)
    data = {"latents": lat, "scenes": scenes, "std": lat.std().item(), "mean": lat.mean().item()}
    torch.save(data, path)
    log(f"latents {tuple(lat.shape)} std {data['std']:.4f} mean {data['mean']:.4f} ({time.time() - t0:.0f}s)")
    return data


# ---------------------------------------------------------------- stage 4: UNet + text encoder
def export(out: Path, vae, unet, te, tok, scaling: float, meta: dict) -> None:
    import torch
    from diffusers import StableDiffusionPipeline

    vae = copy.deepcopy(vae).to(torch.float16)
    vae.register_to_config(scaling_factor=scaling)
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=copy.deepcopy(te).to(torch.float16), tokenizer=tok,
        unet=copy.deepcopy(unet).to(torch.float16), scheduler=make_scheduler_infer(),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    out.mkdir(parents=True, exist_ok=True)
    pipe.save_pretrained(out, safe_serialization=True)
    # Weights stay fp16 on disk, but a plain from_pretrained(path) must load the text encoder in
    # float32 like the diffusers models (transformers 5 would otherwise keep fp16 -> dtype mismatch on CPU).
    cfg_path = out / "text_encoder" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["dtype"] = "float32"
    cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    (out / "training.json").write_text(json.dumps(meta, indent=2))
    from .card import write_card

    write_card(out, meta)


def train_unet(args, work: Path, vae, data, tok):
    import torch
    import torch.nn.functional as F

    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    lat = data["latents"]
    scaling = 1.0 / data["std"]
    lat = lat * scaling
    scenes = data["scenes"]
    unet = make_unet()
    te = make_text_encoder(len(tok))
    params = list(unet.parameters()) + list(te.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)
    ema_u, ema_t = copy.deepcopy(unet).eval(), copy.deepcopy(te).eval()
    for p in list(ema_u.parameters()) + list(ema_t.parameters()):
        p.requires_grad_(False)
    sched = make_scheduler_train()
    abar = sched.alphas_cumprod
    snr = abar / (1 - abar)
    weight = torch.clamp(snr, max=5.0) / snr
    empty = tok([""], padding="max_length", max_length=MAX_LEN, return_tensors="pt").input_ids
    t0 = time.time()
    vae_t = json.loads((work / "vae_time.json").read_text()) if (work / "vae_time.json").exists() else {}
    step = 0
    budget = args.time_budget_min * 60 if args.time_budget_min else None

    def meta(final: bool) -> dict:
        return {
            "seed": args.seed, "unet_steps_done": step, "unet_steps_planned": args.unet_steps,
            "batch_size": args.batch_size, "lr": args.lr, "n_images": args.n_images,
            "vae_steps": vae_t.get("steps", args.vae_steps), "vae_seconds": round(vae_t.get("seconds", 0)),
            "unet_seconds": round(time.time() - t0), "final": final, "ema_decay": args.ema,
            "guidance_scale": GUIDANCE, "num_inference_steps": STEPS,
            "latent_std": data["std"], "scaling_factor": scaling,
            "hardware": f"CPU only ({platform.processor() or platform.machine()}), torch threads {torch.get_num_threads()}",
            "command": args.command, "holdout": sorted(map(list, W.HOLDOUT)),
        }

    while step < args.unet_steps:
        idx = [rng.randrange(len(scenes)) for _ in range(args.batch_size)]
        x0 = lat[idx]
        caps = [W.caption(scenes[i], rng) if rng.random() >= 0.1 else "" for i in idx]
        ids = tok(caps, padding="max_length", max_length=MAX_LEN, truncation=True, return_tensors="pt").input_ids
        noise = torch.randn_like(x0)
        t = torch.randint(0, 1000, (len(idx),))
        xt = sched.add_noise(x0, noise, t)
        cond = te(ids).last_hidden_state
        pred = unet(xt, t, cond).sample
        loss = (F.mse_loss(pred, noise, reduction="none").mean((1, 2, 3)) * weight[t]).mean()
        # cosine decay over whichever ends first: the planned steps or the time budget
        prog = step / args.unet_steps
        if budget:
            prog = max(prog, (time.time() - t0) / budget)
        lr = args.lr * min(1.0, (step + 1) / 200) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(prog, 1.0))))
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        d = min(args.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for e, p in zip(list(ema_u.parameters()) + list(ema_t.parameters()), params):
                e.lerp_(p, 1 - d)
        step += 1
        if step % 50 == 0:
            log(f"UNet step {step}/{args.unet_steps} loss {loss.item():.4f} lr {lr:.2e} ({time.time() - t0:.0f}s)")
        over = budget is not None and time.time() - t0 > budget
        if step % args.export_every == 0 or step == args.unet_steps or over:
            export(Path(args.out), vae, ema_u, ema_t, tok, scaling, meta(step == args.unet_steps or over))
            torch.save({"unet": unet.state_dict(), "te": te.state_dict(), "step": step}, work / "unet_ckpt.pt")
            log(f"exported EMA weights at step {step} -> {args.out}")
        if over:
            log("time budget reached; stopping")
            break
    return step


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(Path(__file__).parent / "weights"))
    p.add_argument("--work", default="/tmp/mini_work", help="cache dir for the VAE, latents and checkpoints")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="1 is faster than 2 on a shared, oversubscribed CPU")
    p.add_argument("--vae-steps", type=int, default=4000)
    p.add_argument("--vae-time-min", type=float, default=17, help="stop VAE training after this many minutes")
    p.add_argument("--vae-phase-a-min", type=float, default=10, help="minutes of chroma-heavy loss before phase B")
    p.add_argument("--vae-images", type=int, default=600)
    p.add_argument("--vae-lr", type=float, default=2e-3)
    p.add_argument("--vae-kl", type=float, default=2e-4)
    p.add_argument("--n-images", type=int, default=2000)
    p.add_argument("--unet-steps", type=int, default=6000)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--ema", type=float, default=0.998)
    p.add_argument("--export-every", type=int, default=500)
    p.add_argument("--time-budget-min", type=float, default=20, help="stop UNet training after this many minutes")
    args = p.parse_args(argv)
    import sys

    args.command = "python -m studio.mini.train " + " ".join(argv if argv is not None else sys.argv[1:])
    import torch

    torch.set_num_threads(args.threads)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    tok = build_tokenizer()
    vae = train_vae(args, work)
    vae.requires_grad_(False)
    data = encode_latents(args, work, vae)
    train_unet(args, work, vae, data, tok)
    log("done")


if __name__ == "__main__":
    main()
