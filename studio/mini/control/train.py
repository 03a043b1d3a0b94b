"""Train mini-control: a ControlNet for the frozen ``mini`` model on edge and layout maps of mini-world scenes.

    nice -n 10 python -m studio.mini.control.train --out studio/mini/control/weights --time-budget-min 50

The ControlNet starts as a copy of mini's UNet encoder (``ControlNetModel.from_unet``; its zero convolutions
make it a no-op at step 0) with a small conditioning embedding that brings the 256 px map down 8x to the 32 px
latent. mini's UNet, text encoder and latent space stay frozen: the targets are the closed-form latents of
``studio/mini/latent.py`` (as mini's own UNet training, no VAE in the loop), the noise schedule and prediction
type are mini's (``training.json``: v-prediction on zero-terminal-SNR scaled_linear betas), and each batch is
new scenes (``studio.mini.train.render_batch``), half with an edges map and half with a layout map.
EMA weights are exported to --out every --export-every steps, so a run stopped early still leaves usable weights;
``--resume`` continues from the state in --work for another budget.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np

from .. import world as W
from ..train import log, make_scheduler_train, render_batch, to_tensor
from ..tokenizer import MAX_LEN, build_tokenizer
from . import WEIGHTS
from . import world as CW

MINI = Path(__file__).resolve().parents[1] / "weights"
COND_CHANNELS = (8, 16, 32, 64)  # conv_in + one stride-2 step per further entry: 256 px -> 32 px (8x)
SEED_OFFSET = 50_000_000  # training scenes of their own (mini's UNet saw seeds from 0 up)


def load_mini(folder: Path = MINI):
    """mini's frozen parts in fp32: (unet, text_encoder, tokenizer, training.json)."""
    import torch
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel

    unet = UNet2DConditionModel.from_pretrained(folder / "unet", torch_dtype=torch.float32).eval()
    te = CLIPTextModel.from_pretrained(folder / "text_encoder", dtype=torch.float32).eval()
    for m in (unet, te):
        m.requires_grad_(False)
    return unet, te, build_tokenizer(), json.loads((folder / "training.json").read_text())


def make_controlnet(unet, wake: bool = False):
    """The ControlNet copied from ``unet``'s encoder. ``wake``: the conditioning embedding's last conv starts
    random instead of zero (the zero convolutions into the UNet still make the net a no-op at step 0); with two
    zero layers in a row the control's effect grows only as their product, too slowly for a CPU budget."""
    import torch
    from diffusers import ControlNetModel

    net = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=COND_CHANNELS)
    if wake:
        conv = net.controlnet_cond_embedding.conv_out
        torch.manual_seed(0)
        conv.reset_parameters()
    return net


ZERO_LAYERS = ("controlnet_down_blocks.", "controlnet_mid_block.")  # the zero convolutions into the UNet


def maps_tensor(maps: np.ndarray):
    """Control maps as the diffusers ControlNet pipelines hand them over: RGB in [0, 1]."""
    import torch

    return torch.from_numpy(maps).permute(0, 3, 1, 2).float().div(255.0)


def train(args) -> int:
    import torch
    import torch.nn.functional as F

    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    cap_rng = __import__("random").Random(args.seed)
    work, out = Path(args.work), Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    unet, te, tok, meta = load_mini(Path(args.mini))
    scaling = float(meta["scaling_factor"])
    sched = make_scheduler_train(meta)
    vpred = sched.config.prediction_type == "v_prediction"
    net = make_controlnet(unet, wake=True).train()
    ema = make_controlnet(unet).eval().requires_grad_(False)
    zero = [p for n, p in net.named_parameters() if n.startswith(ZERO_LAYERS)]
    rest = [p for n, p in net.named_parameters() if not n.startswith(ZERO_LAYERS)]
    opt = torch.optim.AdamW([{"params": rest, "scale": 1.0}, {"params": zero, "scale": args.zero_lr_scale}],
                            lr=args.lr, weight_decay=0.0)
    step, seed, prev_s, losses, runs = 0, 0, 0, [], 1
    earlier: list[str] = []
    state = work / "state.pt"
    if args.init_controlnet and not (args.resume and state.exists()):
        # a later budget on exported weights when the --work state is gone: the optimiser starts afresh
        step, seed, prev_s, losses, runs, earlier = _init_from_export(net, ema, Path(args.init_controlnet),
                                                                               args.batch_size)
        log(f"starting from {args.init_controlnet} (step {step}, fresh optimiser)")
    if args.resume and state.exists():
        st = torch.load(state, weights_only=False)
        net.load_state_dict(st["net"])
        ema.load_state_dict(st["ema"])
        opt.load_state_dict(st["opt"])
        step, seed, prev_s, losses, runs = st["step"], st["seed"], st["seconds"], st["losses"], st["runs"] + 1
        earlier = st.get("earlier_commands", [])
        log(f"resuming at step {step}")
    elif not args.init_controlnet:
        ema.load_state_dict(net.state_dict())
    step0, t0 = step, time.time()
    budget = args.time_budget_min * 60

    def save(final: bool) -> None:
        secs = prev_s + round(time.time() - t0)
        torch.save({"net": net.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(), "step": step,
                    "seed": seed, "seconds": secs, "losses": losses, "runs": runs, "earlier_commands": earlier}, state)
        export(ema, out, {"steps": step, "seconds": secs, "runs": runs, "final": final, "batch_size": args.batch_size,
                          "lr": args.lr, "zero_lr_scale": args.zero_lr_scale, "ema_decay": args.ema, "layout_share": args.layout_share,
                          "caption_dropout": args.caption_dropout, "unplaced_share": args.unplaced_share, "t_high_frac": args.t_high_frac,
                          "loss_by_100_steps": [round(float(np.mean(losses[i:i + 100])), 4)
                                                for i in range(0, len(losses), 100)],
                          "mini_unet_steps": meta.get("unet_steps_done"), "scaling_factor": scaling,
                          "prediction_type": sched.config.prediction_type,
                          "zero_terminal_snr": bool(sched.config.rescale_betas_zero_snr),
                          "conditioning_embedding_out_channels": list(COND_CHANNELS),
                          "hardware": f"CPU only ({platform.machine()}), torch threads {torch.get_num_threads()}",
                          "command": args.command, "commands": [*earlier, args.command],
                          "continued_from": args.init_controlnet or None})
        log(f"exported EMA weights at step {step} -> {out}")

    while step < args.steps:
        scenes, imgs, z = render_batch(range(SEED_OFFSET + seed, SEED_OFFSET + seed + args.batch_size))
        seed += args.batch_size
        maps, _ = CW.batch_maps(scenes, imgs, rng, args.layout_share)
        x0 = torch.from_numpy(z) * scaling
        caps = [CW.training_caption(s, cap_rng, args.unplaced_share, args.caption_dropout) for s in scenes]
        ids = tok(caps, padding="max_length", max_length=MAX_LEN, truncation=True, return_tensors="pt").input_ids
        with torch.no_grad():
            cond = te(ids).last_hidden_state
        noise = torch.randn_like(x0)
        t = torch.randint(0, 1000, (len(scenes),))
        n_high = round(args.t_high_frac * len(t))  # where the objects go is decided at high noise
        t[:n_high] = torch.randint(500, 1000, (n_high,))
        xt = sched.add_noise(x0, noise, t)
        down, mid = net(xt, t, cond, controlnet_cond=maps_tensor(maps), return_dict=False)
        pred = unet(xt, t, cond, down_block_additional_residuals=down, mid_block_additional_residual=mid).sample
        target = sched.get_velocity(x0, noise, t) if vpred else noise
        loss = F.mse_loss(pred, target)
        prog = max(step / args.steps, (time.time() - t0) / budget)  # cosine over whichever ends first
        lr = args.lr * min(1.0, (step - step0 + 1) / 50) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(prog, 1.0))))
        _update(net, ema, opt, loss, lr, min(args.ema, (1 + step) / (10 + step)))
        step += 1
        losses.append(loss.item())
        if step % 25 == 0:
            log(f"step {step}/{args.steps} loss {np.mean(losses[-25:]):.4f} lr {lr:.2e} ({time.time() - t0:.0f}s)")
        over = time.time() - t0 > budget
        if over or step >= args.steps:
            log("time budget reached" if over else "planned steps done")
            break
        if step % args.export_every == 0:
            save(False)
    save(True)
    return step


def _init_from_export(net, ema, folder: Path, batch: int):
    """Load an exported mini-control folder into the net and its EMA; (step, seed, seconds, losses, runs, earlier
    commands) carried on from its training.json, so the card's record and reproduce list stay whole."""
    import torch
    from diffusers import ControlNetModel

    if not (folder / "config.json").exists() or not (folder / "training.json").exists():
        raise SystemExit(f"--init-controlnet {folder}: not an exported mini-control folder (config.json and "
                         "training.json expected)")
    loaded = ControlNetModel.from_pretrained(folder, torch_dtype=torch.float32)
    if list(loaded.config.conditioning_embedding_out_channels) != list(COND_CHANNELS):
        raise SystemExit(f"--init-controlnet {folder}: conditioning channels "
                         f"{list(loaded.config.conditioning_embedding_out_channels)}, expected {list(COND_CHANNELS)}")
    net.load_state_dict(loaded.state_dict())
    ema.load_state_dict(loaded.state_dict())
    before = json.loads((folder / "training.json").read_text())
    step = int(before["steps"])
    # the loss record is per 100 steps in the export; repeat each mean so later 100-step means line up
    losses = [float(v) for v in before.get("loss_by_100_steps", []) for _ in range(100)][:step]
    earlier = list(before.get("commands", [before.get("command", "")]))
    return step, step * batch + 1_000_003, int(before.get("seconds", 0)), losses, int(before.get("runs", 1)) + 1, earlier


def _update(net, ema, opt, loss, lr: float, decay: float) -> None:
    """One optimiser step at ``lr`` (times each group's ``scale``), gradients clipped to norm 1, then the EMA."""
    import torch

    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
    for g in opt.param_groups:
        g["lr"] = lr * g["scale"]
    opt.step()
    with torch.no_grad():
        for e, p in zip(ema.parameters(), net.parameters()):
            e.lerp_(p, 1 - decay)


def export(net, out: Path, meta: dict) -> None:
    """The ControlNet as an fp16 diffusers folder with its training record and model card (written to a
    temporary folder first: a run killed mid-export leaves the last complete one)."""
    import shutil

    import torch

    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    half = type(net).from_config(net.config)
    half.load_state_dict(net.state_dict())
    half.to(torch.float16).save_pretrained(tmp, safe_serialization=True)
    # no "eval": figures of earlier weights do not describe these (the evaluation's --write adds them)
    (tmp / "training.json").write_text(json.dumps(meta, indent=2))
    from .card import write_card

    write_card(tmp)
    out.mkdir(parents=True, exist_ok=True)
    for f in tmp.iterdir():
        f.replace(out / f.name)
    tmp.rmdir()


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(WEIGHTS))
    p.add_argument("--work", default="/tmp/mini_control_work", help="folder for the training state (--resume)")
    p.add_argument("--mini", default=str(MINI), help="the mini model folder whose UNet the ControlNet steers")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--init-controlnet", default="",
                   help="start from an exported mini-control folder (its --work state is gone): weights, step count "
                        "and command chain carry on, the optimiser starts afresh")
    p.add_argument("--steps", type=int, default=100_000)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--zero-lr-scale", type=float, default=2.0,
                   help="learning-rate factor of the zero convolutions into the UNet")
    p.add_argument("--ema", type=float, default=0.99)
    p.add_argument("--layout-share", type=float, default=0.5, help="share of layout maps (the rest: edges)")
    p.add_argument("--caption-dropout", type=float, default=0.15, help="share of empty captions")
    p.add_argument("--unplaced-share", type=float, default=0.5, help="share of captions that name no position")
    p.add_argument("--t-high-frac", type=float, default=0.5,
                   help="share of each batch whose timesteps are drawn from the noisier half [500, 1000)")
    p.add_argument("--export-every", type=int, default=100)
    p.add_argument("--time-budget-min", type=float, default=55, help="stop training after this many minutes")
    args = p.parse_args(argv)
    if not (Path(args.mini) / "unet" / "config.json").exists():
        p.error(f"--mini {args.mini}: not a mini model folder (unet/config.json missing)")
    if not 0.0 <= args.layout_share <= 1.0:
        p.error(f"--layout-share must be between 0 and 1, got {args.layout_share}")
    args.command = "python -m studio.mini.control.train " + " ".join(argv if argv is not None else sys.argv[1:])
    import torch

    torch.set_num_threads(args.threads)
    train(args)
    log("done")


if __name__ == "__main__":
    main()
