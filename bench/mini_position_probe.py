"""Can the mini UNet learn to place an object where the caption says?  A diagnostic, not a test.

Trains only the noisiest step (t=999, pure noise in; with zero-terminal-SNR v-prediction the target is the
negated clean latent, i.e. the caption's conditional mean layout) and, every 100 steps, reads where the
predicted object coverage lies for each of the nine position phrases (the judge's position rule on its
centre of mass; 11.1% is what ignoring the position words scores) with ``evaluate.first_step_layout``.

    python bench/mini_position_probe.py --arch base --steps 400                 # mini's UNet from scratch
    python bench/mini_position_probe.py --arch deep --steps 400                 # + a 4x4 level, from scratch
    python bench/mini_position_probe.py --arch base --steps 400 --from-shipped  # continue the shipped weights
    python bench/mini_position_probe.py --steps 400 --text-encoder WORK/text_encoder  # fresh UNet, frozen encoder
    python bench/mini_position_probe.py --steps 400 --text-encoder studio/mini/weights/text_encoder  # v2's, frozen
    python bench/mini_position_probe.py --steps 400 --hand-made  # fixed random vector per attribute value
    python bench/mini_position_probe.py --steps 400 --hand-made summed  # the same vectors, summed per caption
    python bench/mini_position_probe.py --steps 400 --text-encoder DIR --binding  # + the two-object binding probe

With ``--text-encoder`` or ``--hand-made`` only the UNet trains (from scratch); the conditioning is frozen.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from studio.mini import world as W
from studio.mini import weights_path
from studio.mini.evaluate import first_step_binding, first_step_layout
from studio.mini.tokenizer import MAX_LEN, build_tokenizer
from studio.mini.train import make_text_encoder, make_unet, render_batch


def deep_unet():
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=32, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=(32, 64, 128, 128), layers_per_block=1, cross_attention_dim=128,
        attention_head_dim=(1, 2, 4, 4), norm_num_groups=8,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", choices=("base", "deep"), default="base")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--from-shipped", action="store_true", help="start from the shipped mini UNet + text encoder")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--text-encoder", default="", help="a CLIPTextModel folder to condition on, frozen")
    ap.add_argument("--hand-made", nargs="?", const="slots", choices=("slots", "summed"), default=None,
                    help="condition on a fixed random 128-d vector per attribute value (issue 14's baseline): "
                         "one attribute per token (slots, the default) or all of them summed into every token")
    ap.add_argument("--json", default="", help="also write the probe history to this file")
    ap.add_argument("--binding", action="store_true",
                    help="also read the two-object binding probe (evaluate.first_step_binding) every 100 steps")
    args = ap.parse_args()
    if sum(map(bool, (args.from_shipped, args.text_encoder, args.hand_made))) > 1:
        ap.error("--from-shipped, --text-encoder and --hand-made exclude each other")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    tok = build_tokenizer()
    if args.from_shipped:
        from diffusers import UNet2DConditionModel
        from transformers import CLIPTextModel

        if args.arch != "base":
            ap.error("--from-shipped needs --arch base (the shipped architecture)")
        unet = UNet2DConditionModel.from_pretrained(weights_path() / "unet", torch_dtype=torch.float32)
        te = CLIPTextModel.from_pretrained(weights_path() / "text_encoder", dtype=torch.float32)
    else:
        unet, te = (deep_unet() if args.arch == "deep" else make_unet()), make_text_encoder(len(tok))
    frozen = bool(args.text_encoder or args.hand_made)
    if args.text_encoder:
        from studio.mini.text_encoder import load_frozen

        te = load_frozen(args.text_encoder)
    elif args.hand_made:
        from studio.mini.text_encoder import HandMadeConditioning

        te = HandMadeConditioning(tok, mode=args.hand_made)
    scaling = float(json.loads((weights_path() / "vae" / "config.json").read_text())["scaling_factor"])
    params = list(unet.parameters()) + ([] if frozen else list(te.parameters()))
    opt = torch.optim.AdamW(params, lr=5e-4, weight_decay=0.01)
    rng = random.Random(0)
    t999 = torch.full((args.batch,), 999)

    def ids(caps):
        return tok(caps, padding="max_length", max_length=MAX_LEN, truncation=True, return_tensors="pt").input_ids

    def probe() -> dict:
        unet.eval()
        te.eval()
        res = {"position": first_step_layout(unet, te, tok, alpha_last=0.0, scaling=scaling, v_pred=True)["position_correct"]}
        if args.binding:
            res["binding"] = first_step_binding(unet, te, tok, alpha_last=0.0, scaling=scaling, v_pred=True)["bound"]
        unet.train()
        if not frozen:
            te.train()
        return res

    cond_name = (f"hand-made vectors ({args.hand_made})" if args.hand_made else f"frozen {args.text_encoder}" if args.text_encoder
                 else "shipped UNet + text encoder" if args.from_shipped else "joint text encoder")
    hist = [{"step": 0, **probe()}]
    print(f"{args.arch}, {cond_name}: {sum(p.numel() for p in unet.parameters()) / 1e6:.2f} M"
          f" UNet parameters; before training {json.dumps(hist[0])}", flush=True)
    t0, seed = time.time(), 5 * 10**8
    for step in range(1, args.steps + 1):
        scenes, _, z = render_batch(range(seed, seed + args.batch))
        seed += args.batch
        x0 = torch.from_numpy(z) * scaling
        with torch.set_grad_enabled(not frozen):
            cond = te(ids([W.caption(s, rng) for s in scenes])).last_hidden_state
        pred = unet(torch.randn_like(x0), t999, cond).sample
        loss = F.mse_loss(pred, -x0)  # v at zero SNR is -x0
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if step % 100 == 0:
            hist.append({"step": step, "loss": round(loss.item(), 4), **probe(), "seconds": round(time.time() - t0)})
            print(json.dumps(hist[-1]), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "conditioning": cond_name, "history": hist}, indent=2))


if __name__ == "__main__":
    main()
