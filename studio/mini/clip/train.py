"""Train mini-clip, the mini world's prompt-fidelity reward, on CPU in minutes.

    OMP_NUM_THREADS=1 nice -n 10 python -m studio.mini.clip.train --out studio/mini/clip/weights

Each step renders `--batch` new training scenes (split "train": no held-out colour-shape pair is ever drawn or
captioned) and, for each, a twin with one thing changed (`world.MODS`: a colour, a shape, a position, a size,
the background, the two objects' colours swapped, an object dropped). Scenes and twins sit in one batch, so the
symmetric InfoNCE loss has each one's twin as its hardest negative both ways (caption -> image ranks images,
what best-of-N needs; image -> caption ranks captions); each image also meets `--text-negatives` further
one-change captions of its own. Images get a little noise and colour gain so the score carries over to the
mini model's outputs. mini's text encoder stays frozen; only the image tower and the text head learn.
At the end the model is evaluated (`evaluate.py`) and the card written.
"""
from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import time
from pathlib import Path

from .. import weights_path
from .. import world as W
from . import WEIGHTS
from .world import applicable, modify, phrased

SEED_OFFSET = 70_000_000  # scenes of its own (mini's UNet and text encoder used lower seeds)


def pixels(scenes, rng=None):
    """Rendered scenes as a (B, 3, 64, 64) float tensor, optionally augmented (noise, per-channel gain)."""
    import numpy as np
    import torch

    from ...rewards.base import resize

    x = torch.from_numpy(np.stack([W.scene_array(s) for s in scenes])).permute(0, 3, 1, 2).float() / 255.0
    x = resize(x, 64)
    if rng is not None:
        g = torch.Generator().manual_seed(rng.randrange(1 << 30))
        gain = 1 + 0.04 * (torch.rand(x.shape[0], 3, 1, 1, generator=g) * 2 - 1)
        sigma = 0.04 * torch.rand(x.shape[0], 1, 1, 1, generator=g)
        x = (x * gain + sigma * torch.randn(x.shape, generator=g)).clamp(0, 1)
    return x


def batch(step: int, size: int, n_neg: int):
    """(scenes + twins, their captions, per-image extra negative captions)."""
    rng = random.Random(f"mini-clip-{step}")
    scenes, caps, negs = [], [], []
    twins, twin_caps, twin_negs = [], [], []
    i = 0
    while len(scenes) < size:
        s = W.sample_scene(SEED_OFFSET + step * 1000 + i, "train")
        i += 1
        mods = list(applicable(s))
        rng.shuffle(mods)
        twin = next((t for t in (modify(s, m, rng) for m in mods) if t is not None), None)
        if twin is None:
            continue
        pseed, full = rng.randrange(1 << 30), rng.random() < 0.3
        extra = [t for t in (modify(s, rng.choice(mods), rng) for _ in range(n_neg)) if t is not None]
        scenes.append(s)
        caps.append(phrased(s, pseed, full))
        negs.append([phrased(t, pseed, full) for t in extra])
        twins.append(twin)
        twin_caps.append(phrased(twin, pseed, full))
        extra = [t for t in (modify(twin, rng.choice(applicable(twin)), rng) for _ in range(n_neg)) if t is not None]
        twin_negs.append([phrased(t, pseed, full) for t in extra])
    return scenes + twins, caps + twin_caps, negs + twin_negs, rng


def loss_fn(model, text, images, caps, negs):
    import torch
    import torch.nn.functional as F

    n = len(caps)
    flat = [c for row in negs for c in row]
    states = text(caps + flat)
    t = model.text(states)
    tc, tn = t[:n], t[n:]
    im = model.image(images)
    scale = model.logit_scale.exp().clamp(max=100)
    logits = scale * im @ tc.T  # (images, captions)
    same = torch.tensor([[a == b for b in caps] for a in caps])
    eye = torch.eye(n, dtype=torch.bool)
    logits = logits.masked_fill(same & ~eye, float("-inf"))  # an identical caption is no negative
    # image -> its caption, against all batch captions and its own extra negatives
    k = max(len(r) for r in negs) if flat else 0
    extra = torch.full((n, k), float("-inf"))
    pos = 0
    for i, row in enumerate(negs):
        for j, c in enumerate(row):
            if c != caps[i]:
                extra[i, j] = scale * (im[i] * tn[pos + j]).sum()
        pos += len(row)
    target = torch.arange(n)
    i2t = F.cross_entropy(torch.cat([logits, extra], 1), target)
    t2i = F.cross_entropy(logits.T, target)
    with torch.no_grad():
        acc = float((logits.argmax(1) == target).float().mean())
    return (i2t + t2i) / 2, acc


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(WEIGHTS))
    ap.add_argument("--mini", default=str(weights_path()), help="mini's weights (its text encoder and tokenizer)")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=24, help="scenes per step (each with its twin: 2x images)")
    ap.add_argument("--text-negatives", type=int, default=2)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--eval-scenes", type=int, default=300)
    args = ap.parse_args(argv)

    import torch

    from ...rewards.mini_clip import FrozenText, MiniClipModel, save
    from .evaluate import evaluate, write_card

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    mini = Path(args.mini)
    text = FrozenText(mini / "text_encoder", mini / "tokenizer")
    model = MiniClipModel()
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    warm = max(1, args.steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * max(0.05, 1 - s / args.steps))
    t0, cpu0, history, run_loss, run_acc = time.time(), time.process_time(), [], 0.0, 0.0
    for step in range(args.steps):
        scenes, caps, negs, rng = batch(step, args.batch, args.text_negatives)
        loss, acc = loss_fn(model, text, pixels(scenes, rng), caps, negs)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        run_loss += float(loss.detach())
        run_acc += acc
        if (step + 1) % 50 == 0:
            history.append({"step": step + 1, "loss": round(run_loss / 50, 4), "batch_acc": round(run_acc / 50, 3),
                            "seconds": round(time.time() - t0)})
            print(json.dumps(history[-1]), file=sys.stderr, flush=True)
            run_loss = run_acc = 0.0
    seconds = round(time.time() - t0)
    model.eval()
    command = "OMP_NUM_THREADS=1 nice -n 10 python -m studio.mini.clip.train " + " ".join(argv or sys.argv[1:])
    meta = {"command": command.strip(), "steps": args.steps, "batch": args.batch,
            "text_negatives": args.text_negatives, "lr": args.lr, "seed": args.seed, "seconds": seconds,
            "cpu_seconds": round(time.process_time() - cpu0),
            "hardware": f"CPU only ({platform.machine()}), torch threads {torch.get_num_threads()}",
            "scenes_seen": 2 * args.batch * args.steps, "history": history,
            "parameters": sum(p.numel() for p in model.parameters())}
    out = save(model, args.out)
    meta["eval"] = evaluate(out, mini, n=args.eval_scenes)
    (out / "training.json").write_text(json.dumps(meta, indent=2) + "\n")
    write_card(out)
    print(json.dumps(meta["eval"]["summary"]), flush=True)


if __name__ == "__main__":
    main()
