"""Held-out accuracy of the studio's learned reward on simulated raters with a hidden taste.

    python bench/learned_reward_bench.py [--pairs 1000] [--images 1500] [--consistency 0.8] [--seed 0]

Images are mini-world scenes (`studio.mini.world`: one or two coloured shapes on a plain background, the
mini model's training distribution). A simulated rater compares two scenes and picks the one its hidden
taste prefers with probability `consistency` (else the other), so 80% is also the ceiling a perfect reward
can reach against the labels. Tastes: redder; large-centred-saturated (the object's
area x saturation x closeness to the centre, measured on the scene's own object list, not on pixels).
The reward is trained through `studio.rewards.learned.train` (80/20 pair split) with the labels as given and
with shuffled labels. Not a test: it prints a table for docs/rewards.md.
"""
from __future__ import annotations

import argparse
import math
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=1000)
    ap.add_argument("--images", type=int, default=1500)
    ap.add_argument("--consistency", type=float, default=0.8)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import torch

    from studio.mini.world import COLORS, POSITIONS, RADIUS, caption, render, sample_scene
    from studio.rewards.learned import train

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    scenes = [sample_scene(args.seed * 100000 + i) for i in range(args.images)]
    images = [np.asarray(render(s).resize((64, 64))) for s in scenes]
    prompts = [caption(s) for s in scenes]
    render_s = time.perf_counter() - t0

    def redness(imgs, scns, i):
        a = imgs[i].astype(np.float32) / 255
        return float((a[..., 0] - (a[..., 1] + a[..., 2]) / 2).mean())

    def big_centred_saturated(imgs, scns, i):
        best = 0.0
        for o in scns[i].objects:
            r, g, b = (c / 255 for c in COLORS[o.color])
            sat = (max(r, g, b) - min(r, g, b)) / (max(r, g, b) + 1e-3)
            x, y = POSITIONS[o.position]
            centred = 1 - math.hypot(x - 0.5, y - 0.5) / math.hypot(0.3, 0.3)
            best = max(best, RADIUS[o.size] / RADIUS["large"] * (0.3 + sat) * (0.3 + centred))
        return best

    rng = np.random.default_rng(args.seed)
    print(f"{args.images} scenes rendered in {render_s:.1f}s; {args.pairs} pairs, rater consistency "
          f"{args.consistency:.0%}, 20% of pairs held out")
    fresh = [sample_scene(10**7 + args.seed * 100000 + i) for i in range(400)]
    fresh_images = [np.asarray(render(s).resize((64, 64))) for s in fresh]
    fi, fj = np.triu_indices(len(fresh), 1)
    print(f"{'taste':<26} {'labels':<9} {'held-out acc':>12} {'train acc':>9} {'fresh, true order':>17} "
          f"{'fit s':>6}")
    for name, taste in (("redder", redness), ("large-centred-saturated", big_centred_saturated)):
        r = np.array([taste(images, scenes, i) for i in range(args.images)])
        pairs = []
        while len(pairs) < args.pairs:
            i, j = rng.choice(args.images, 2, replace=False)
            if r[i] == r[j]:
                continue
            keep = rng.random() < args.consistency
            first = (r[i] > r[j]) == keep
            a, b = (i, j) if first else (j, i)
            # the prompt of the first drawn scene, not of the winner: a winner's own caption would leak the label
            pairs.append((images[a], images[b], prompts[i]))
        for labels in ("as rated", "shuffled"):
            use = pairs
            if labels == "shuffled":
                use = [(a, b, p) if rng.random() < 0.5 else (b, a, p) for a, b, p in pairs]
            reward, rep = train(use, seed=args.seed)
            # the refitted reward on 400 unseen scenes, against the taste itself (no label noise)
            scores = reward.score(fresh_images, [caption(s) for s in fresh]).numpy()
            true = np.array([taste(fresh_images, fresh, i) for i in range(len(fresh))])
            keep = true[fi] != true[fj]
            fresh_acc = float(np.mean((scores[fi] > scores[fj])[keep] == (true[fi] > true[fj])[keep]))
            print(f"{name:<26} {labels:<9} {rep.heldout_accuracy:>12.3f} {rep.train_accuracy:>9.3f} "
                  f"{fresh_acc:>17.3f} {rep.seconds:>6.1f}")


if __name__ == "__main__":
    main()
