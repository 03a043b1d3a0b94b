"""Train the mini text-to-image model from scratch (CPU-friendly) and export a diffusers folder.

    python -m studio.mini.train --out studio/mini/weights --seed 0

Stages (``--stage all`` runs vae, unet and export in order; ``vae`` and ``unet`` are independent and may
run at the same time in two processes, then ``export`` joins them):
  text    (mini v3) the CLIP text encoder alone, with linear heads on every token state that predict each
          object's colour, shape, size and position and the background (``studio/mini/text_encoder.py``);
          writes ``--work``/text_encoder, which ``--stage unet --text-encoder PATH`` loads frozen.
  vae     AutoencoderKL (8x, 4 latent channels) initialised to the closed-form latent of
          ``studio/mini/latent.py`` (cell-mean colour + object coverage), then trained: the decoder to
          paint sharp scenes from (slightly noised) target latents, the encoder to regress the targets.
  unet    UNet2DConditionModel + CLIP text encoder, trained jointly (or, with ``--text-encoder PATH``, the
          UNet alone on that frozen encoder) on target latents computed straight
          from freshly rendered training scenes (no VAE in the loop, every batch new): v-prediction
          on scaled_linear betas rescaled to zero terminal SNR (``--prediction``, ``--zero-snr``: with
          signal left at t=999 the UNet copies the background from it instead of reading the caption),
          min-SNR-5 weights, 10% caption dropout for classifier-free guidance, EMA.  EMA checkpoints go to --work every --export-every steps (and are exported to
          --out when a VAE is available), so an interrupted run still leaves usable weights.
  export  the trained VAE + the EMA UNet/text encoder as an fp16 diffusers folder with its model card.
  unpack  turn a shipped model folder (``--from``, default the committed weights) back into a --work
          folder (fp32 VAE, EMA checkpoint, step count, time and command history), so that ``--stage
          unet --resume`` continues training the shipped model on any machine.

Held-out colour-shape pairs (``world.HOLDOUT``) are never rendered for training.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import platform
import random
import sys
import time
from pathlib import Path

import numpy as np

from . import world as W
from .latent import init_vae_identity, target_latents
from .tokenizer import MAX_LEN, build_tokenizer

GUIDANCE = 5.0
STEPS = 30
TRAIN_SEED_BASE = 1_000_000  # training scene seeds start here (evaluation uses small seeds)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---------------------------------------------------------------- components
def make_vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3, out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(16, 32, 64, 128), layers_per_block=1, latent_channels=4,
        # 2 groups: the top-level group (8 channels) must hold the 5-channel identity stream of latent.py
        norm_num_groups=2, sample_size=256, mid_block_add_attention=True, force_upcast=False,
    )


def make_unet():
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=32, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=(32, 64, 128), layers_per_block=1, cross_attention_dim=128,
        attention_head_dim=(1, 2, 4), norm_num_groups=8,  # heads per level (diffusers naming): head dim 32
    )


def make_text_encoder(vocab_size: int):
    from transformers import CLIPTextConfig, CLIPTextModel

    cfg = CLIPTextConfig(
        vocab_size=vocab_size, hidden_size=128, intermediate_size=256, num_hidden_layers=3,
        num_attention_heads=4, max_position_embeddings=MAX_LEN, projection_dim=128,
        bos_token_id=0, eos_token_id=1, pad_token_id=1,
    )
    return CLIPTextModel(cfg)


def _noise_settings(hp: dict | None) -> dict:
    """The scheduler settings a UNet was trained with (checkpoints from before v2 hold neither key:
    epsilon prediction on the plain scaled_linear schedule)."""
    hp = hp or {}
    return {"prediction_type": hp.get("prediction_type", "epsilon"),
            "rescale_betas_zero_snr": bool(hp.get("zero_terminal_snr", False))}


def make_scheduler_train(hp: dict | None = None):
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                         **_noise_settings(hp))


def make_scheduler_infer(hp: dict | None = None):
    from diffusers import DPMSolverMultistepScheduler

    # trailing spacing: the first sampling step is t=999, the one pure-noise step a zero-SNR model trained on
    return DPMSolverMultistepScheduler(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        algorithm_type="dpmsolver++", solver_order=2, timestep_spacing="trailing", steps_offset=1,
        **_noise_settings(hp),
    )


# ---------------------------------------------------------------- data
def render_batch(seeds) -> tuple[list[W.Scene], np.ndarray, np.ndarray]:
    """Training scenes for the given seeds: (scenes, images uint8 NHWC, target latents N4hw)."""
    scenes = [W.sample_scene(TRAIN_SEED_BASE + int(s), "train") for s in seeds]
    imgs = np.stack([W.scene_array(s) for s in scenes])
    bg = np.array([W.BACKGROUNDS[s.background] for s in scenes], dtype=np.uint8)
    return scenes, imgs, target_latents(imgs, bg)


def latent_scaling(n: int = 2000) -> tuple[float, float]:
    """1/std of the target latents over n training scenes (SD convention: scaled latents have unit std)."""
    _, _, z = render_batch(range(10**8, 10**8 + n))
    return float(1.0 / z.std()), float(z.mean())


def to_tensor(imgs: np.ndarray):
    import torch

    return torch.from_numpy(imgs).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


# ---------------------------------------------------------------- stage: VAE
def train_vae(args, work: Path):
    import torch

    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    prev = {"seconds": 0, "steps": 0, "images": 0}
    vae, which = load_vae(work) if args.resume else (None, None)
    if vae is not None and (work / "vae_time.json").exists():
        prev = json.loads((work / "vae_time.json").read_text())
        log(f"VAE: resuming from {which} ({prev['steps']} steps, {prev['seconds']} s)")
    else:
        vae = make_vae()
        init_vae_identity(vae)
    if args.vae_crop:
        # crops hold 1/4 of the latent cells: global attention would learn statistics of the wrong size
        for blk in (vae.encoder.mid_block, vae.decoder.mid_block):
            for prm in blk.attentions.parameters():
                prm.requires_grad_(False)
    dec_params = list(vae.decoder.parameters()) + list(vae.post_quant_conv.parameters())
    enc_params = list(vae.encoder.parameters()) + list(vae.quant_conv.parameters())
    opt_d = torch.optim.AdamW(_vae_groups(vae, "decoder", "post_quant_conv"), lr=args.vae_lr, weight_decay=0.0)
    opt_e = torch.optim.AdamW(_vae_groups(vae, "encoder", "quant_conv"), lr=args.vae_lr, weight_decay=0.0)
    budget = 60 * args.vae_time_min
    t0 = time.time()
    step, seed = 0, prev["images"]
    while True:
        prog = (time.time() - t0) / budget
        if prog >= 1.0 or step >= args.vae_steps:
            break
        lr = args.vae_lr * min(1.0, (step + 1) / 50) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * prog)))
        for o in (opt_d, opt_e):
            for g in o.param_groups:
                g["lr"] = lr * g["lr_scale"]
        scenes, imgs, z = render_batch(range(seed, seed + args.vae_batch))
        seed += args.vae_batch
        if args.vae_crop:
            imgs, z = object_crops(scenes, imgs, z, args.vae_crop, rng)
        x, zt = to_tensor(imgs), torch.from_numpy(z)
        bg = torch.tensor([W.BACKGROUNDS[s.background] for s in scenes], dtype=torch.uint8).view(-1, 3, 1, 1)
        obj = (torch.from_numpy(imgs).permute(0, 3, 1, 2) != bg).any(1, keepdim=True).float()
        wt = 1.0 + 4.0 * obj  # object pixels are a small fraction of each image
        # decoder: paint the scene from a slightly noised target latent (robust to sampler error)
        sigma = torch.rand(len(zt), 1, 1, 1) * args.vae_latent_noise
        y = vae.decode(zt + sigma * torch.randn_like(zt)).sample
        e = y - x
        rec = ((e.pow(2) + 0.5 * e.abs()) * wt).mean() / wt.mean()
        opt_d.zero_grad(set_to_none=True)
        rec.backward()
        torch.nn.utils.clip_grad_norm_(dec_params, 1.0)
        opt_d.step()
        enc_loss = None
        if step % args.enc_every == 0:  # the encoder's task (regression) is cheaper to learn
            m = vae.encode(x).latent_dist.mean
            enc_loss = (m - zt).pow(2).mean()
            opt_e.zero_grad(set_to_none=True)
            enc_loss.backward()
            torch.nn.utils.clip_grad_norm_(enc_params, 1.0)
            opt_e.step()
        step += 1
        if step % 25 == 0:
            el = f" enc {enc_loss.item():.5f}" if enc_loss is not None else ""
            log(f"VAE step {step} dec {rec.item():.4f}{el} lr {lr:.1e} ({time.time() - t0:.0f}s)")
        if step % 200 == 0:
            vae.save_pretrained(work / "vae_partial")
    vae.save_pretrained(work / "vae")
    secs = round(time.time() - t0)
    total = {"seconds": prev["seconds"] + secs, "steps": prev["steps"] + step, "images": seed,
             "batch": args.vae_batch, "runs": prev.get("runs", 0) + 1,
             "history": prev.get("history", []) + [{"steps": step, "seconds": secs, "batch": args.vae_batch,
                                                    "crop": args.vae_crop, "lr": args.vae_lr}]}
    (work / "vae_time.json").write_text(json.dumps(total))
    log(f"VAE done: {total['steps']} steps, {seed} scenes in {total['runs']} run(s)")
    return vae


def object_crops(scenes, imgs: np.ndarray, z: np.ndarray, crop: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """A crop of side ``crop`` px per scene around one of its objects (random offset), aligned to the
    8 px latent cells so image and latent crops match exactly.  Small objects' outlines are what the
    decoder gets wrong; crops show it 4x more of them per pixel computed."""
    cells, n = crop // 8, z.shape[-1]
    xs, zs = [], []
    for k, s in enumerate(scenes):
        cx, cy = s.objects[int(rng.integers(len(s.objects)))].center
        j0, i0 = (int(np.clip(round(c / 8 - cells / 2 + rng.integers(-cells // 4, cells // 4 + 1)), 0, n - cells))
                  for c in (cx, cy))
        xs.append(imgs[k, i0 * 8 : (i0 + cells) * 8, j0 * 8 : (j0 + cells) * 8])
        zs.append(z[k, :, i0 : i0 + cells, j0 : j0 + cells])
    return np.stack(xs), np.stack(zs)


def _vae_groups(vae, *prefixes: str) -> list[dict]:
    """Residual branches and attention learn at the full rate; the layers that carry the identity stream
    (conv in/out, output norm, resampling convs, shortcuts) at 1%: they multiply the +-K constants, so
    a full-size Adam step there shifts every colour at once."""
    from .latent import stream_parameter

    full, slow = [], []
    for name, prm in vae.named_parameters():
        if name.split(".")[0] in prefixes:
            (slow if stream_parameter(name) else full).append(prm)
    return [{"params": full, "lr_scale": 1.0}, {"params": slow, "lr_scale": 0.01}]


def load_vae(work: Path):
    from diffusers import AutoencoderKL

    for name in ("vae", "vae_partial"):
        if (work / name / "config.json").exists():
            return AutoencoderKL.from_pretrained(work / name), name
    return None, None


# ---------------------------------------------------------------- stage: UNet + text encoder
def export(out: Path, vae, unet, te, tok, scaling: float, meta: dict, hp: dict | None = None) -> None:
    import torch
    from diffusers import StableDiffusionPipeline

    vae = copy.deepcopy(vae).to(torch.float16)
    vae.register_to_config(scaling_factor=scaling)
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=copy.deepcopy(te).to(torch.float16), tokenizer=tok,
        unet=copy.deepcopy(unet).to(torch.float16), scheduler=make_scheduler_infer(hp),
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


def unet_hparams(args) -> dict:
    """The UNet stage's settings, stored in its checkpoints so a later ``--stage export`` describes the
    run that produced the weights rather than its own command line."""
    return {"unet_steps_planned": args.unet_steps, "batch_size": args.batch_size, "lr": args.lr,
            "min_snr_gamma": args.min_snr, "ema_decay": args.ema, "t_high_frac": args.t_high_frac,
            "offset_noise": args.offset_noise, "prediction_type": args.prediction,
            "zero_terminal_snr": args.zero_snr, "frozen_text_encoder": args.text_encoder or None,
            "init_unet": args.init_unet or None}


def _meta(args, work: Path, ck: dict, final: bool) -> dict:
    import torch

    vae_t = json.loads((work / "vae_time.json").read_text()) if (work / "vae_time.json").exists() else {}
    hp = ck.get("hparams") or unet_hparams(args)
    tm_path = Path(hp.get("frozen_text_encoder") or "/nonexistent") / "text_metrics.json"
    tm = json.loads(tm_path.read_text()) if tm_path.exists() else {}
    text_metrics = {"targets": (tm.get("hparams") or {}).get("text_targets", "cumulative"), "steps": tm.get("steps"),
                    "seconds": tm.get("seconds"), "position_ratio": (tm.get("position_separation") or {}).get("ratio"),
                    "binding_ratio": (tm.get("binding_separation") or {}).get("ratio")} if tm else None
    return {"text_encoder_metrics": text_metrics,
        "seed": args.seed, "unet_steps_done": ck["step"], **hp, "unet_scenes_seen": ck["step"] * hp["batch_size"],
        "vae_steps": vae_t.get("steps"), "vae_scenes_seen": vae_t.get("images"), "vae_seconds": vae_t.get("seconds"),
        "vae_history": vae_t.get("history", []),
        "unet_seconds": ck["seconds"], "unet_runs": ck.get("runs", 1), "vae_runs": vae_t.get("runs", 1), "final": final,
        "guidance_scale": GUIDANCE, "num_inference_steps": STEPS, "scaling_factor": ck["scaling"],
        "hardware": f"CPU only ({platform.processor() or platform.machine()}), torch threads {torch.get_num_threads()}",
        "command": args.command,
        "commands": (work / "commands.txt").read_text().splitlines() if (work / "commands.txt").exists() else [],
        "holdout": sorted(map(list, W.HOLDOUT)),
    }


def train_unet(args, work: Path, tok):
    import torch
    import torch.nn.functional as F

    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    scaling, _ = latent_scaling()
    log(f"latent scaling factor {scaling:.4f}")
    unet = make_unet()
    frozen = bool(args.text_encoder)
    if frozen:  # mini v3: a text encoder trained before the UNet (--stage text), never updated here
        from .text_encoder import load_frozen

        te = load_frozen(args.text_encoder)
        frozen_sd = {k: v.clone() for k, v in te.state_dict().items()}
        log(f"text encoder: {args.text_encoder} (frozen)")
    else:
        te = make_text_encoder(len(tok))
    params = list(unet.parameters()) + ([] if frozen else list(te.parameters()))
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)
    ema_u = copy.deepcopy(unet).eval()
    ema_t = te if frozen else copy.deepcopy(te).eval()
    for p in list(ema_u.parameters()) + list(ema_t.parameters()):
        p.requires_grad_(False)
    sched = make_scheduler_train(unet_hparams(args))
    abar = sched.alphas_cumprod
    snr = abar / (1 - abar)
    vpred = args.prediction == "v_prediction"
    # min-SNR-gamma weights favour the high-noise (layout) steps; 0 = the plain MSE, which also trains the
    # last low-noise steps well enough to leave no grain in the final latent.  For v the same weighting
    # is min(snr, gamma) / (snr + 1) (Hang et al. 2023), finite at zero terminal SNR.
    if not args.min_snr:
        weight = torch.ones_like(snr)
    else:
        weight = torch.clamp(snr, max=args.min_snr) / (snr + 1 if vpred else snr)
    t0 = time.time()
    budget = args.time_budget_min * 60 if args.time_budget_min else None
    step, seed, prev_s, runs = 0, 10**7 * (args.seed + 1), 0, 1
    started_from = args.init_unet or None  # a resumed run keeps the first run's starting point in its card
    if args.resume and (work / "unet_state.pt").exists():
        st = torch.load(work / "unet_state.pt", weights_only=False)
        started_from = (st.get("hparams") or {}).get("init_unet")
        _check_frozen_match(st, te, frozen)
        unet.load_state_dict(st["unet"])
        te.load_state_dict(st["te"])
        opt.load_state_dict(st["opt"])
        ema_u.load_state_dict(st["ema_unet"])
        ema_t.load_state_dict(st["ema_te"])
        step, seed, prev_s, runs = st["step"], st["seed"], st["seconds"], st.get("runs", 1) + 1
        log(f"UNet: resuming at step {step}")
    elif args.resume and (work / "unet_ema.pt").exists():
        # only the EMA weights of an earlier run: start from them with a fresh optimizer
        st = torch.load(work / "unet_ema.pt", weights_only=False)
        started_from = (st.get("hparams") or {}).get("init_unet")
        _check_frozen_match(st, te, frozen)
        for m in (unet, ema_u):
            m.load_state_dict(st["unet"])
        for m in (te, ema_t):
            m.load_state_dict(st["te"])
        step, prev_s, runs = st["step"], st["seconds"], st.get("runs", 1) + 1
        seed += step * args.batch_size
        log(f"UNet: resuming from EMA weights at step {step} (fresh optimizer)")
    elif args.init_unet:
        # fine-tune: an earlier UNet already renders the world's shapes and colours; on a new frozen
        # encoder only what it reads from the text (its cross-attention) has to be relearnt
        from diffusers import UNet2DConditionModel

        init = UNet2DConditionModel.from_pretrained(args.init_unet, torch_dtype=torch.float32).state_dict()
        for m in (unet, ema_u):
            m.load_state_dict(init)
        log(f"UNet: initialised from {args.init_unet}")
    step0 = step
    grown = False

    hparams = unet_hparams(args) | {"init_unet": started_from}

    def save(final: bool) -> None:
        secs = prev_s + round(time.time() - t0)
        ck = {"unet": ema_u.state_dict(), "te": ema_t.state_dict(), "step": step, "scaling": scaling,
              "seconds": secs, "runs": runs, "hparams": hparams}
        torch.save(ck, work / "unet_ema.pt")
        torch.save({"unet": unet.state_dict(), "te": te.state_dict(), "opt": opt.state_dict(),
                    "ema_unet": ema_u.state_dict(), "ema_te": ema_t.state_dict(), "step": step, "seed": seed,
                    "seconds": secs, "runs": runs, "hparams": hparams}, work / "unet_state.pt")
        vae, which = load_vae(work)
        if vae is not None:
            export(Path(args.out), vae, ema_u, ema_t, tok, scaling, _meta(args, work, ck, final) | {"vae_export": which},
                   ck["hparams"])
            log(f"exported EMA weights at step {step} with {which} -> {args.out}")

    while step < args.unet_steps:
        vae_done = (work / "vae" / "config.json").exists() and not (work / "vae.running").exists()
        if args.threads_after_vae and not grown and vae_done:
            torch.set_num_threads(args.threads_after_vae)
            grown = True
            log(f"VAE finished: torch threads -> {args.threads_after_vae}")
        scenes, _, z = render_batch(range(seed, seed + args.batch_size))
        seed += args.batch_size
        x0 = torch.from_numpy(z) * scaling
        caps = [W.caption(s, rng) if rng.random() >= 0.1 else "" for s in scenes]
        ids = tok(caps, padding="max_length", max_length=MAX_LEN, truncation=True, return_tensors="pt").input_ids
        noise = torch.randn_like(x0)
        if args.offset_noise:  # per-image channel offsets hide the mean the schedule leaks at t=999 (background)
            noise = noise + args.offset_noise * torch.randn(len(noise), noise.shape[1], 1, 1)
        t = torch.randint(0, 1000, (len(scenes),))
        n_high = round(args.t_high_frac * len(t))  # layout (position, count) is decided at high noise
        t[:n_high] = torch.randint(500, 1000, (n_high,))
        xt = sched.add_noise(x0, noise, t)
        if frozen:
            with torch.no_grad():
                cond = te(ids).last_hidden_state
        else:
            cond = te(ids).last_hidden_state
        pred = unet(xt, t, cond).sample
        target = sched.get_velocity(x0, noise, t) if vpred else noise
        loss = (F.mse_loss(pred, target, reduction="none").mean((1, 2, 3)) * weight[t]).mean()
        # cosine decay over whichever ends first: the planned steps or the time budget
        prog = step / args.unet_steps
        if budget:
            prog = max(prog, (time.time() - t0) / budget)
        lr = args.lr * min(1.0, (step - step0 + 1) / 200) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(prog, 1.0))))
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        d = min(args.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for e, p in zip(list(ema_u.parameters()) + ([] if frozen else list(ema_t.parameters())), params):
                e.lerp_(p, 1 - d)
        step += 1
        if step % 50 == 0:
            log(f"UNet step {step}/{args.unet_steps} loss {loss.item():.4f} lr {lr:.2e} ({time.time() - t0:.0f}s)")
        over = budget is not None and time.time() - t0 > budget
        if over or step == args.unet_steps:
            log("time budget reached" if over else "planned steps done")
            break
        if step % args.export_every == 0:
            save(False)
    save(True)
    if frozen:
        assert all(torch.equal(v, frozen_sd[k]) for k, v in te.state_dict().items()), "frozen text encoder changed"
    return step


def _check_frozen_match(st: dict, te, frozen: bool) -> None:
    """A run on a frozen encoder resumes only with that same encoder, and a joint run only without one
    (checkpoints from before v3 hold no such key: joint)."""
    import torch

    was = bool((st.get("hparams") or {}).get("frozen_text_encoder"))
    if frozen and (not was or not all(torch.equal(v, st["te"][k]) for k, v in te.state_dict().items())):
        raise SystemExit("--resume: the checkpoint in --work was not trained on this frozen --text-encoder")
    if not frozen and was:
        raise SystemExit("--resume: the checkpoint in --work was trained on a frozen text encoder; pass --text-encoder")


def export_stage(args, work: Path, tok) -> None:
    import torch

    vae, which = load_vae(work)
    if vae is None or not (work / "unet_ema.pt").exists():
        raise SystemExit(f"export: {work} holds no trained VAE and UNet yet (run --stage vae and --stage unet)")
    ck = torch.load(work / "unet_ema.pt", weights_only=False)
    unet, te = make_unet(), make_text_encoder(len(tok))
    unet.load_state_dict(ck["unet"])
    te.load_state_dict(ck["te"])
    export(Path(args.out), vae, unet, te, tok, ck["scaling"], _meta(args, work, ck, which == "vae") | {"vae_export": which},
           ck.get("hparams"))
    log(f"exported step {ck['step']} with {which} -> {args.out}")


def unpack_stage(args, work: Path) -> None:
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel

    src = Path(args.src)
    meta_path = src / "training.json"
    if not (src / "unet" / "config.json").exists() or not meta_path.exists():
        raise SystemExit(f"unpack: {src} is not a mini model folder (needs unet/ and training.json)")
    meta = json.loads(meta_path.read_text())
    vae = AutoencoderKL.from_pretrained(src / "vae", torch_dtype=torch.float32)
    vae.save_pretrained(work / "vae")
    unet = UNet2DConditionModel.from_pretrained(src / "unet", torch_dtype=torch.float32)
    te = CLIPTextModel.from_pretrained(src / "text_encoder", dtype=torch.float32)
    ck = {"unet": unet.state_dict(), "te": te.state_dict(), "step": meta["unet_steps_done"],
          "scaling": meta["scaling_factor"], "seconds": meta["unet_seconds"], "runs": meta.get("unet_runs", 1),
          "hparams": {k: meta[k] for k in unet_hparams(args) if k in meta}}
    torch.save(ck, work / "unet_ema.pt")
    (work / "vae_time.json").write_text(json.dumps({
        "steps": meta.get("vae_steps"), "images": meta.get("vae_scenes_seen"), "seconds": meta.get("vae_seconds"),
        "history": meta.get("vae_history", []), "runs": meta.get("vae_runs", 1)}))
    # the history so far first, then this unpack command (main() appended it before we got here)
    own = (work / "commands.txt").read_text().splitlines()
    (work / "commands.txt").write_text("\n".join(meta.get("commands", []) + own) + "\n")
    log(f"unpacked {src} (UNet step {ck['step']}) -> {work}")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(Path(__file__).parent / "weights"))
    p.add_argument("--work", default="/tmp/mini_work", help="folder for the VAE and UNet checkpoints")
    p.add_argument("--stage", choices=("all", "text", "vae", "unet", "export", "unpack"), default="all")
    p.add_argument("--from", dest="src", default=str(Path(__file__).parent / "weights"),
                   help="unpack stage: the shipped model folder to continue from")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue the VAE / UNet found in --work for another budget")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--threads-after-vae", type=int, default=0,
                   help="unet stage: raise torch threads to this once the VAE stage (another process) has finished")
    p.add_argument("--vae-steps", type=int, default=100_000)
    p.add_argument("--vae-time-min", type=float, default=25, help="stop VAE training after this many minutes")
    p.add_argument("--vae-batch", type=int, default=2)
    p.add_argument("--vae-lr", type=float, default=5e-4)
    p.add_argument("--vae-latent-noise", type=float, default=0.08, help="max std of the noise added to decoder inputs")
    p.add_argument("--vae-crop", type=int, default=0,
                   help="train the VAE on object-centred crops of this many px (multiple of 8; 0: whole images)")
    p.add_argument("--enc-every", type=int, default=3, help="train the encoder on every n-th VAE step")
    p.add_argument("--unet-steps", type=int, default=100_000)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--ema", type=float, default=0.998)
    p.add_argument("--min-snr", type=float, default=5.0, help="min-SNR-gamma loss weights (0: plain epsilon MSE)")
    p.add_argument("--t-high-frac", type=float, default=0.0,
                   help="share of each UNet batch whose timesteps are drawn from the noisier half [500, 1000)")
    p.add_argument("--offset-noise", type=float, default=0.0,
                   help="std of a per-image, per-channel constant added to the training noise (0: off)")
    p.add_argument("--prediction", choices=("epsilon", "v_prediction"), default="v_prediction",
                   help="what the UNet predicts (v: Salimans & Ho 2022; needed with --zero-snr)")
    p.add_argument("--zero-snr", action=argparse.BooleanOptionalAction, default=True,
                   help="rescale the betas to zero terminal SNR (Lin et al. 2024), so that t=999 is pure noise "
                        "and the UNet cannot read the layout from signal the schedule leaves there")
    p.add_argument("--text-encoder", default="",
                   help="unet stage: load this CLIPTextModel folder (e.g. WORK/text_encoder from --stage text) and "
                        "train the UNet on it frozen (never updated, exported as is)")
    p.add_argument("--init-unet", default="",
                   help="unet stage: start from this diffusers UNet folder (e.g. the shipped weights/unet) instead "
                        "of random weights; ignored by --resume, which continues its own checkpoint")
    p.add_argument("--text-steps", type=int, default=1500, help="text stage: training steps")
    p.add_argument("--text-batch", type=int, default=64, help="text stage: captions per step")
    p.add_argument("--text-lr", type=float, default=1e-3, help="text stage: peak AdamW learning rate")
    p.add_argument("--text-targets", choices=("cumulative", "per-object"), default="per-object",
                   help="text stage: what each token is asked (text_encoder.TARGET_MODES); v3 used cumulative")
    p.add_argument("--text-stop-at", type=int, default=0,
                   help="text stage: stop after this step (schedule of --text-steps kept; continue with --resume)")
    p.add_argument("--export-every", type=int, default=500)
    p.add_argument("--time-budget-min", type=float, default=90, help="stop UNet training after this many minutes")
    args = p.parse_args(argv)
    if args.vae_crop and (args.vae_crop % 8 or not 8 <= args.vae_crop <= W.SIZE):
        p.error(f"--vae-crop must be a multiple of 8 between 8 and {W.SIZE} px, got {args.vae_crop}")
    if not 0.0 <= args.t_high_frac <= 1.0:
        p.error(f"--t-high-frac must be between 0 and 1, got {args.t_high_frac}")
    if args.text_encoder and not (Path(args.text_encoder) / "config.json").exists():
        p.error(f"--text-encoder {args.text_encoder}: no CLIPTextModel folder there (config.json missing)")
    if args.init_unet and not (Path(args.init_unet) / "config.json").exists():
        p.error(f"--init-unet {args.init_unet}: no diffusers UNet folder there (config.json missing)")
    if args.zero_snr and args.prediction == "epsilon":
        p.error("--zero-snr needs --prediction v_prediction: at zero SNR the noise is the input itself")
    args.command = "python -m studio.mini.train " + " ".join(argv if argv is not None else sys.argv[1:])
    import torch

    torch.set_num_threads(args.threads)
    work = Path(args.work)
    if args.stage == "unpack" and (work / "unet_ema.pt").exists():
        p.error(f"--stage unpack: {work} already holds a UNet checkpoint; unpack into a new --work folder")
    work.mkdir(parents=True, exist_ok=True)
    with open(work / "commands.txt", "a") as f:  # every stage invocation, for the model card
        f.write(f"{time.strftime('%Y-%m-%d %H:%M')} {args.command}\n")
    tok = build_tokenizer()
    if args.stage == "unpack":
        unpack_stage(args, work)
    if args.stage == "text":
        from .text_encoder import train_text

        train_text(args, work, tok)
    if args.stage in ("all", "vae"):
        (work / "vae.running").touch()  # tells a concurrent unet stage that the VAE is still training
        try:
            train_vae(args, work)
        finally:
            (work / "vae.running").unlink(missing_ok=True)
    if args.stage in ("all", "unet"):
        train_unet(args, work, tok)
    if args.stage in ("all", "export"):
        export_stage(args, work, tok)
    log("done")


if __name__ == "__main__":
    main()
