"""Train ``mini-instruct``: the shipped mini UNet widened to 8 input channels (InstructPix2Pix) on edit triplets.

    nice -n 10 python -m studio.mini.instruct.train --work /tmp/mini_instruct --out studio/mini/instruct/weights \
        --threads 1 --time-budget-min 50

Brooks et al. 2023 (InstructPix2Pix), on the mini world: the UNet reads the noisy edited latent concatenated
with the source image's latent (channels 4-7, unscaled, as ``StableDiffusionInstructPix2PixPipeline`` feeds
``vae.encode(image).mode()``); the added conv_in channels start at zero, so step 0 is the mini model
exactly.  Conditioning dropout as in the paper (5% text only, 5% image only, 5% both) trains the
unconditional branches that text and image classifier-free guidance subtract.  The noise schedule,
prediction type (v, zero terminal SNR), latents (closed-form, ``studio/mini/latent.py``), VAE, text encoder
(frozen), tokenizer and scheduler are mini's own (``studio/mini/train.py``, ``studio/mini/weights``).
Every ``--export-every`` steps the EMA UNet is exported as a complete diffusers folder to ``--out``, so a
killed run still leaves usable weights; ``--resume`` continues the checkpoint in ``--work``.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import platform
import random
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from .. import weights_path as mini_weights_path
from .. import world as W
from ..latent import target_latents
from ..tokenizer import MAX_LEN
from ..train import log, make_scheduler_train
from . import world as IW

TRAIN_SEED_BASE = 5_000_000  # training edit seeds start here (evaluation uses small seeds, split holdout)
SHARED = ("vae", "text_encoder", "tokenizer", "scheduler")  # copied unchanged from mini's weights


def widen_unet(unet, in_channels: int = 8):
    """An ``in_channels`` copy of a 4-channel UNet whose extra conv_in input channels are zero (InstructPix2Pix
    initialisation: before training the image latents have no effect)."""
    import torch
    from diffusers import UNet2DConditionModel

    wide = UNet2DConditionModel.from_config({**unet.config, "in_channels": in_channels})
    if unet.dtype != wide.dtype:
        wide = wide.to(unet.dtype)
    sd = unet.state_dict()
    w = sd["conv_in.weight"]
    new = torch.zeros(w.shape[0], in_channels, *w.shape[2:], dtype=w.dtype)
    new[:, : w.shape[1]] = w
    sd["conv_in.weight"] = new
    wide.load_state_dict(sd)
    return wide


def ema_update(ema, model, decay: float) -> None:
    import torch

    with torch.no_grad():
        for e, p in zip(ema.parameters(), model.parameters()):
            e.lerp_(p, 1 - decay)


def edit_batch(seeds, split: str = "train"):
    """(edits, source latents N4hw, edited latents N4hw), both unscaled closed-form latents."""
    edits = [IW.sample_edit(TRAIN_SEED_BASE + int(s), split) for s in seeds]
    return edits, scene_latents([e.source for e in edits]), scene_latents([e.target for e in edits])


def scene_latents(scenes) -> np.ndarray:
    """Closed-form latents (unscaled, N4hw) of the rendered ``scenes``."""
    arr = np.stack([W.scene_array(s) for s in scenes])
    bg = np.array([W.BACKGROUNDS[s.background] for s in scenes], dtype=np.uint8)
    return target_latents(arr, bg)


def hparams(args) -> dict:
    return {"batch_size": args.batch_size, "lr": args.lr, "ema_decay": args.ema, "t_high_frac": args.t_high_frac, "t_high_min": args.t_high_min,
            "drop_text": args.drop, "drop_image": args.drop, "drop_both": args.drop,
            "cond_noise": args.cond_noise, "conv_in_lr_scale": args.conv_in_lr_scale, "steps_planned": args.steps, "prediction_type": "v_prediction",
            "zero_terminal_snr": True, "init_unet": str(Path(args.base) / "unet"), "frozen_text_encoder": True}


def export(out: Path, base: Path, unet, meta: dict) -> None:
    """A StableDiffusionInstructPix2PixPipeline folder: mini's VAE / text encoder / tokenizer / scheduler files
    copied as they are, this UNet in fp16 (as mini ships)."""
    import torch

    out.mkdir(parents=True, exist_ok=True)
    for name in SHARED:
        shutil.rmtree(out / name, ignore_errors=True)
        shutil.copytree(base / name, out / name)
    tmp = out / "unet.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    copy.deepcopy(unet).to(torch.float16).save_pretrained(tmp, safe_serialization=True)
    shutil.rmtree(out / "unet", ignore_errors=True)
    tmp.rename(out / "unet")  # a reader never sees a half-written UNet
    index = json.loads((base / "model_index.json").read_text())
    index["_class_name"] = "StableDiffusionInstructPix2PixPipeline"
    index.pop("image_encoder", None)  # not a component of the InstructPix2Pix pipeline
    (out / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
    (out / "training.json").write_text(json.dumps(meta, indent=2) + "\n")
    from .card import write_card

    write_card(out, meta)


def train(args) -> int:
    import torch
    import torch.nn.functional as F
    from diffusers import UNet2DConditionModel

    from ..text_encoder import load_frozen
    from ..tokenizer import build_tokenizer

    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    base, work, out = Path(args.base), Path(args.work), Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    base_meta = json.loads((base / "training.json").read_text())
    scaling = float(base_meta["scaling_factor"])
    tok = build_tokenizer()
    te = load_frozen(base / "text_encoder")
    unet = widen_unet(UNet2DConditionModel.from_pretrained(base / "unet", torch_dtype=torch.float32))
    # conv_in holds the zero-initialised image channels: it learns faster, the rest keeps mini's rate
    conv_in = [p for n, p in unet.named_parameters() if n.startswith("conv_in.")]
    rest = [p for n, p in unet.named_parameters() if not n.startswith("conv_in.")]
    opt = torch.optim.AdamW([{"params": rest, "lr_scale": 1.0}, {"params": conv_in, "lr_scale": args.conv_in_lr_scale}],
                            lr=args.lr, weight_decay=0.01)
    ema = copy.deepcopy(unet).eval().requires_grad_(False)
    step, seed, prev_s, runs, losses = 0, 0, 0, 1, []
    earlier_commands: list[str] = []
    if args.init_unet and not (args.resume and (work / "state.pt").exists()):
        # a later budget on exported weights when the --work checkpoint is gone: the optimiser starts afresh
        init = Path(args.init_unet)
        loaded = UNet2DConditionModel.from_pretrained(init, torch_dtype=torch.float32)
        if loaded.config.in_channels != unet.config.in_channels:
            raise SystemExit(f"--init-unet {init}: {loaded.config.in_channels} input channels, "
                             f"expected {unet.config.in_channels} (an exported mini-instruct UNet)")
        unet.load_state_dict(loaded.state_dict())
        ema.load_state_dict(loaded.state_dict())
        before = json.loads((init.parent / "training.json").read_text())
        step, seed = int(before["steps_done"]), int(before["steps_done"]) * args.batch_size + 1_000_003
        prev_s, runs = int(before.get("seconds", 0)), int(before.get("runs", 1)) + 1
        earlier_commands = list(before.get("commands", [before.get("command", "")]))
        log(f"starting from {init} (step {step}, fresh optimiser)")
    if args.resume and (work / "state.pt").exists():
        st = torch.load(work / "state.pt", weights_only=False)
        unet.load_state_dict(st["unet"])
        ema.load_state_dict(st["ema"])
        opt.load_state_dict(st["opt"])
        for g, scale in zip(opt.param_groups, (1.0, args.conv_in_lr_scale)):  # the command's flag wins on resume
            g["lr_scale"] = scale
        step, seed, prev_s, runs, losses = st["step"], st["seed"], st["seconds"], st["runs"] + 1, st["losses"]
        earlier_commands = st.get("earlier_commands", [])
        log(f"resuming at step {step}")
    sched = make_scheduler_train({"prediction_type": "v_prediction", "zero_terminal_snr": True})
    cache: dict[str, torch.Tensor] = {}

    def embed(texts: list[str]):
        missing = [t for t in dict.fromkeys(texts) if t not in cache]
        if missing:
            ids = tok(missing, padding="max_length", max_length=MAX_LEN, truncation=True, return_tensors="pt").input_ids
            with torch.no_grad():
                for t, h in zip(missing, te(ids).last_hidden_state):
                    cache[t] = h
            if len(cache) > 20_000:
                cache.clear()
        return torch.stack([cache[t] for t in texts])

    t0 = time.time()
    step0 = step
    budget = args.time_budget_min * 60

    def meta(final: bool) -> dict:
        return {"base": "mini", "base_steps": base_meta.get("unet_steps_done"), "seed": args.seed, "steps_done": step,
                "triplets_seen": step * args.batch_size,
                "continued_from": args.init_unet or None, "seconds": prev_s + round(time.time() - t0), "runs": runs,
                **hparams(args), "scaling_factor": scaling, "final": final,
                "loss_last_200": round(float(np.mean(losses[-200:])), 5) if losses else None,
                "loss_first_50": round(float(np.mean(losses[:50])), 5) if losses else None,
                "hardware": f"CPU only ({platform.processor() or platform.machine()}), torch threads "
                            f"{torch.get_num_threads()}",
                "command": args.command,
                "commands": earlier_commands + (work / "commands.txt").read_text().splitlines(),
                "kinds": list(IW.KINDS), "holdout_edits": sorted(map(list, IW.HOLDOUT_EDITS)),
                "holdout_colour_shape": sorted(map(list, W.HOLDOUT))}

    def save(final: bool) -> None:
        m = meta(final)
        torch.save({"unet": unet.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(), "step": step,
                    "seed": seed, "seconds": m["seconds"], "runs": runs, "losses": losses,
                    "earlier_commands": earlier_commands}, work / "state.pt")
        export(out, base, ema, m)
        log(f"exported EMA UNet at step {step} -> {out}")

    while step < args.steps:
        edits, zs, zt = edit_batch(range(seed, seed + args.batch_size))
        seed += args.batch_size
        n = len(edits)
        x0 = torch.from_numpy(zt) * scaling
        cond_img = torch.from_numpy(zs)
        if args.cond_noise:  # the VAE encoder only approximates the closed-form latent it regresses
            cond_img = cond_img + args.cond_noise * torch.randn_like(cond_img)
        r = torch.rand(n)
        drop_text = r < 2 * args.drop  # [0, d): text only, [d, 2d): both, [2d, 3d): image only
        drop_img = (r >= args.drop) & (r < 3 * args.drop)
        cond_img = cond_img * (~drop_img).float().view(-1, 1, 1, 1)
        texts = ["" if d else e.instruction for e, d in zip(edits, drop_text.tolist())]
        ctx = embed(texts)
        noise = torch.randn_like(x0)
        t = torch.randint(0, 1000, (n,))
        n_high = round(args.t_high_frac * n)  # where things go (move, add) is decided at high noise
        t[:n_high] = torch.randint(args.t_high_min, 1000, (n_high,))
        xt = sched.add_noise(x0, noise, t)
        pred = unet(torch.cat([xt, cond_img], 1), t, ctx).sample
        loss = F.mse_loss(pred, sched.get_velocity(x0, noise, t))
        prog = max(step / args.steps, (time.time() - t0) / budget)
        lr = args.lr * min(1.0, (step - step0 + 1) / 100) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(prog, 1.0))))
        for g in opt.param_groups:
            g["lr"] = lr * g["lr_scale"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        ema_update(ema, unet, min(args.ema, (1 + step) / (10 + step)))
        step += 1
        losses.append(loss.item())
        if step % 25 == 0:
            log(f"step {step}/{args.steps} loss {np.mean(losses[-25:]):.4f} lr {lr:.2e} ({time.time() - t0:.0f}s)")
        if time.time() - t0 > budget:
            log("time budget reached")
            break
        if step % args.export_every == 0 and step < args.steps:
            save(False)
    save(True)
    return step


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(Path(__file__).parent / "weights"))
    p.add_argument("--work", default="/tmp/mini_instruct_work", help="folder for the training checkpoint")
    p.add_argument("--base", default=str(mini_weights_path()), help="the mini model folder to start from (read only)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue the checkpoint in --work for another budget")
    p.add_argument("--init-unet", default="", help="start from an exported mini-instruct UNet folder (its --work "
                   "checkpoint lost): weights and step count carry on, the optimiser starts afresh")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=100_000)
    p.add_argument("--batch-size", type=int, default=12)
    p.add_argument("--lr", type=float, default=4e-4)
    p.add_argument("--conv-in-lr-scale", type=float, default=2.5, help="learning-rate factor of conv_in")
    p.add_argument("--ema", type=float, default=0.995)
    p.add_argument("--t-high-frac", type=float, default=0.3)
    p.add_argument("--t-high-min", type=int, default=500,
                   help="the high-noise share samples t in [this, 1000): the first steps decide what is copied")
    p.add_argument("--drop", type=float, default=0.05, help="conditioning dropout: text only, image only, both")
    p.add_argument("--cond-noise", type=float, default=0.06, help="std of noise on the source latents")
    p.add_argument("--export-every", type=int, default=200)
    p.add_argument("--time-budget-min", type=float, default=50, help="stop after this many minutes")
    args = p.parse_args(argv)
    if not (Path(args.base) / "unet" / "config.json").exists():
        p.error(f"--base {args.base}: no mini model folder there (unet/config.json missing)")
    if not 0 <= args.t_high_min < 1000:
        p.error(f"--t-high-min must be in [0, 1000), got {args.t_high_min}")
    if not 0 <= args.drop <= 1 / 3:
        p.error(f"--drop must be between 0 and 1/3, got {args.drop}")
    if Path(args.out).resolve() == Path(args.base).resolve():
        p.error("--out must not be the mini model folder (--base is read only)")
    args.command = "python -m studio.mini.instruct.train " + " ".join(argv if argv is not None else sys.argv[1:])
    import torch

    torch.set_num_threads(args.threads)
    Path(args.work).mkdir(parents=True, exist_ok=True)
    with open(Path(args.work) / "commands.txt", "a") as f:
        f.write(f"{time.strftime('%Y-%m-%d %H:%M')} {args.command}\n")
    train(args)
    log("done")


if __name__ == "__main__":
    main()
