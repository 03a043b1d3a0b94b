"""Evaluate mini-clip on held-out scenes and write its card.

    python -m studio.mini.clip.evaluate [--weights studio/mini/clip/weights] [--n 300] [--write]

Scenes of split "holdout" (each holds a colour-shape pair never drawn nor captioned in training), canonical
captions. For every one-change kind (`world.MODS`), two pairwise accuracies: *caption*, how often the true
caption outscores the changed caption on the true image; *image*, how often the true image outscores the
changed scene's image for the true caption (what best-of-N relies on: ranking images of one prompt).
"""
from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from .. import weights_path
from .. import world as W
from . import WEIGHTS
from .world import MODS, modify

EVAL_SEED_BASE = 60_000


def reward(folder, mini=None):
    from ...rewards.mini_clip import MiniClip

    mini = Path(mini or weights_path())
    return MiniClip(folder, mini / "text_encoder", mini / "tokenizer")


def evaluate(folder, mini=None, n: int = 300) -> dict:
    import torch

    r = reward(folder, mini)
    rng = random.Random("mini-clip-eval")
    right = {m: {"caption": [], "image": []} for m in MODS}
    with torch.no_grad():
        for i in range(n):
            s = W.sample_scene(EVAL_SEED_BASE + i, "holdout")
            cap = W.caption(s, full=True)
            for m in MODS:
                t = modify(s, m, rng, allow_holdout=True)
                if t is None:
                    continue
                tcap = W.caption(t, full=True)
                a, b = r.score([W.render(s)] * 2, [cap, tcap]).tolist()
                right[m]["caption"].append(a > b)
                c = float(r.score([W.render(t)], cap)[0])
                right[m]["image"].append(a > c)
    pct = lambda v: round(100.0 * sum(v) / len(v), 1) if v else None  # noqa: E731
    rows = {m: {"n": len(v["caption"]), "caption": pct(v["caption"]), "image": pct(v["image"])}
            for m, v in right.items()}
    every = lambda k: [x for v in right.values() for x in v[k]]  # noqa: E731
    summary = {"caption": pct(every("caption")), "image": pct(every("image")), "pairs": len(every("caption")),
               "scenes": n}
    return {"command": f"python -m studio.mini.clip.evaluate --n {n}", "per_change": rows, "summary": summary}


def write_card(folder) -> None:
    folder = Path(folder)
    meta = json.loads((folder / "training.json").read_text())
    ev, hist = meta.get("eval") or {}, meta.get("history") or [{}]
    lines = ["# mini-clip", "",
             "The mini world's prompt-fidelity score, the reward `mini-clip` (`studio rewards`; "
             "`studio generate --model mini --best-of 8 --reward mini-clip`): 100 x cos(text, image) of a tiny CLIP, "
             "an image tower of five strided convolutions on the image at 64 px (plus coordinate channels) and an "
             "MLP head on the end-of-text state of mini's own frozen text encoder (`studio/mini/weights/"
             "text_encoder`). Model and reward: `studio/rewards/mini_clip.py`; weights: fp16 safetensors "
             "(state dict only).", "",
             "## Training", "",
             f"- {meta.get('steps')} steps x {meta.get('batch')} training scenes + their one-change twins "
             f"({meta.get('scenes_seen')} images), {meta.get('text_negatives')} extra one-change captions per image, "
             f"symmetric InfoNCE, AdamW lr {meta.get('lr')}; {meta.get('parameters')} parameters",
             f"- {meta.get('seconds')} s wall, {meta.get('cpu_seconds')} s CPU, {meta.get('hardware')}, nice 10, on 2 "
             "cores shared with two other trainings",
             f"- last loss {hist[-1].get('loss')}, in-batch accuracy {hist[-1].get('batch_acc')}", "",
             "Reproduce (from the repository root):", "", "```", meta.get("command", ""), "```", ""]
    if ev:
        s = ev["summary"]
        lines += ["## Evaluation (held-out colour-shape pairs)", "", f"`{ev['command']}`: {s['scenes']} scenes of split "
                  f"\"holdout\", canonical captions, {s['pairs']} pairs. *caption*: the true caption outscores the "
                  "one-change caption on the true image; *image*: the true image outscores the one-change scene's "
                  "image for the true caption.", "", "| change | pairs | caption right % | image right % |",
                  "|---|---|---|---|"]
        for m, row in ev["per_change"].items():
            lines.append(f"| {m} | {row['n']} | {row['caption']} | {row['image']} |")
        lines += [f"| **all** | {s['pairs']} | **{s['caption']}** | **{s['image']}** |", ""]
    (folder / "README.md").write_text("\n".join(lines).rstrip() + "\n")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default=str(WEIGHTS))
    ap.add_argument("--mini", default=None)
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--write", action="store_true", help="store the figures in training.json and rewrite the card")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    ev = evaluate(args.weights, args.mini, args.n)
    print(json.dumps(ev, indent=1))
    if args.write:
        path = Path(args.weights) / "training.json"
        meta = json.loads(path.read_text())
        meta["eval"] = ev
        path.write_text(json.dumps(meta, indent=2) + "\n")
        write_card(args.weights)


if __name__ == "__main__":
    main()
