"""Evaluate mini-control with the analytic judge (``studio/mini/judge.py``) on held-out scenes.

    nice -n 10 python -m studio.mini.control.evaluate --write

Each held-out scene (``world.sample_scene(seed, "holdout")``: a colour-shape pair never trained on) is
generated from its control map and a caption that names the colour, shape, size and background but NOT the
position, so where the object goes can only come from the control. Measured per map kind (issue 17's targets):
  placement  IoU of the drawn object's mask with the control's region (the object's pixels in the scene the map
             was made from) >= 0.7, in >= 90% of the samples;
  attributes colour and shape as captioned (judge) >= 95%;
  weight 0   a generation with control weight 0 equals the one without a ControlNet, pixel for pixel.
A baseline without the ControlNet on the same captions shows what the control adds. ``--write`` stores the
figures in ``weights/training.json`` (``eval``) and refreshes the model card.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from .. import DEFAULT_GUIDANCE_SCALE, DEFAULT_STEPS
from .. import world as W
from ..judge import MIN_AREA, judge, score
from . import WEIGHTS
from . import world as CW

IOU_MIN, PLACED_TARGET, ATTR_TARGET = 0.7, 90.0, 95.0
FG_TOLERANCE = 40  # per-channel distance from the judged background colour that counts as object


def eval_scenes(n: int, start: int = 20_000) -> list[W.Scene]:
    return [W.sample_scene(start + i, "holdout", n_objects=1) for i in range(n)]


def drawn_mask(image: Image.Image, background: str) -> np.ndarray:
    """Pixels of the generated image that are not its background, minus specks under the judge's MIN_AREA."""
    from scipy import ndimage

    arr = np.asarray(image.convert("RGB"), dtype=np.int16)
    fg = (np.abs(arr - np.array(W.BACKGROUNDS[background], np.int16)) > FG_TOLERANCE).any(-1)
    labels, n = ndimage.label(fg)
    if not n:
        return fg
    sizes = ndimage.sum(fg, labels, range(1, n + 1))
    return np.isin(labels, 1 + np.flatnonzero(sizes >= MIN_AREA))


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else 0.0


def load(net_path=WEIGHTS, mini_path=None):
    """(mini pipeline, its ControlNet pipeline) in fp32 on CPU, offline."""
    import torch
    from diffusers import ControlNetModel, StableDiffusionControlNetPipeline

    from .. import load_pipeline

    base = load_pipeline(mini_path)
    net = ControlNetModel.from_pretrained(str(net_path), torch_dtype=torch.float32, local_files_only=True)
    ctl = StableDiffusionControlNetPipeline.from_pipe(base, controlnet=net)
    for p in (base, ctl):
        p.set_progress_bar_config(disable=True)
    return base, ctl


def _generate(pipe, captions, maps, seeds, *, steps, guidance, weight=1.0):
    import torch

    kw = {"image": maps, "controlnet_conditioning_scale": weight} if maps is not None else {}
    return pipe(captions, num_inference_steps=steps, guidance_scale=guidance, height=W.SIZE, width=W.SIZE,
                generator=[torch.Generator().manual_seed(s) for s in seeds], **kw).images


def measure(base, ctl, scenes, kind: str | None, *, steps: int, guidance: float, batch: int,
            save_dir: Path | None = None) -> dict:
    """Placement IoU and judged attributes for ``scenes`` controlled by ``kind`` maps (None: no ControlNet)."""
    ious, color, shape = [], [], []
    for i in range(0, len(scenes), batch):
        chunk = scenes[i:i + batch]
        maps = [CW.control_map(s, kind) for s in chunk] if kind else None
        imgs = _generate(ctl if kind else base, [CW.unplaced_caption(s) for s in chunk], maps,
                         [3000 + i + j for j in range(len(chunk))], steps=steps, guidance=guidance)
        for j, (s, im) in enumerate(zip(chunk, imgs)):
            region = np.any(CW.object_masks(s), 0)
            ious.append(iou(drawn_mask(im, s.background), region))
            r = score(s.objects, judge(im))
            color.append(r["color"])
            shape.append(r["shape"])
            if save_dir:
                parts = [np.asarray(W.render(s)), np.asarray(maps[j]) if maps else np.zeros_like(np.asarray(im)),
                         np.asarray(im)]
                Image.fromarray(np.concatenate(parts, 1)).save(save_dir / f"{kind or 'base'}_{i + j:03d}.png")
    pct = lambda v: round(100.0 * float(np.mean(v)), 1)  # noqa: E731
    return {"n": len(ious), "placed": pct(np.array(ious) >= IOU_MIN), "iou_median": round(float(np.median(ious)), 3),
            "iou_mean": round(float(np.mean(ious)), 3), "color": pct(color), "shape": pct(shape),
            "color_and_shape": pct(np.array(color) & np.array(shape))}


def weight_zero_equal(base, ctl, scenes, *, steps: int, guidance: float) -> bool:
    caps = [CW.unplaced_caption(s) for s in scenes]
    seeds = list(range(len(scenes)))
    plain = _generate(base, caps, None, seeds, steps=steps, guidance=guidance)
    zero = _generate(ctl, caps, [CW.control_map(s, "edges") for s in scenes], seeds, steps=steps, guidance=guidance,
                     weight=0.0)
    return all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(plain, zero))


def rows(res: dict) -> list[dict]:
    out = []
    for kind in CW.KINDS:
        r = res[kind]
        out.append({"name": f"{kind}: IoU >= {IOU_MIN} (n={r['n']})", "value": f"{r['placed']}%",
                    "target": f">= {PLACED_TARGET:g}%", "met": r["placed"] >= PLACED_TARGET})
        out.append({"name": f"{kind}: colour and shape as captioned", "value": f"{r['color_and_shape']}%",
                    "target": f">= {ATTR_TARGET:g}%", "met": r["color_and_shape"] >= ATTR_TARGET})
    b = res.get("baseline")
    if b:
        out.append({"name": f"no ControlNet (same captions): IoU >= {IOU_MIN}", "value": f"{b['placed']}%",
                    "target": "(baseline)", "met": True})
    out.append({"name": "weight 0 == no ControlNet (pixels)", "value": str(res["weight_zero_equal"]),
                "target": "True", "met": bool(res["weight_zero_equal"])})
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--path", default=str(WEIGHTS), help="the ControlNet folder")
    ap.add_argument("--n", type=int, default=40, help="held-out scenes per map kind")
    ap.add_argument("--n-baseline", type=int, default=20, help="the same scenes without a ControlNet (0: skip)")
    ap.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    ap.add_argument("--guidance", type=float, default=DEFAULT_GUIDANCE_SCALE)
    ap.add_argument("--batch", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--save-dir", default=None, help="save scene | map | sample strips here")
    ap.add_argument("--write", action="store_true", help="store the figures in training.json and the card")
    args = ap.parse_args(argv)
    import torch
    from diffusers.utils import logging as dlog

    dlog.set_verbosity_error()
    torch.set_num_threads(args.threads)
    save = Path(args.save_dir) if args.save_dir else None
    if save:
        save.mkdir(parents=True, exist_ok=True)
    base, ctl = load(args.path)
    t0 = time.time()
    scenes = eval_scenes(args.n)
    res: dict = {"steps": args.steps, "guidance_scale": args.guidance, "caption": "colour, shape, size, background; "
                 "no position", "scenes": f"world.sample_scene(20000 + i, 'holdout', n_objects=1), i < {args.n}"}
    for kind in CW.KINDS:
        res[kind] = measure(base, ctl, scenes, kind, steps=args.steps, guidance=args.guidance, batch=args.batch,
                            save_dir=save)
        print(kind, json.dumps(res[kind]), flush=True)
    if args.n_baseline:
        res["baseline"] = measure(base, ctl, scenes[:args.n_baseline], None, steps=args.steps,
                                  guidance=args.guidance, batch=args.batch, save_dir=save)
        print("no ControlNet", json.dumps(res["baseline"]), flush=True)
    res["weight_zero_equal"] = weight_zero_equal(base, ctl, scenes[:2], steps=args.steps, guidance=args.guidance)
    res["eval_seconds"] = round(time.time() - t0)
    res["command"] = "python -m studio.mini.control.evaluate " + " ".join(argv if argv is not None else sys.argv[1:])
    res["rows"] = rows(res)
    for r in res["rows"]:
        print(f"  {r['name']:45s} {r['value']:>7s}  ({r['target']})  {'PASS' if r['met'] else 'FAIL'}")
    if args.write:
        folder = Path(args.path)
        meta = json.loads((folder / "training.json").read_text())
        meta["eval"] = res
        (folder / "training.json").write_text(json.dumps(meta, indent=2))
        from .card import write_card

        write_card(folder)
    return res


if __name__ == "__main__":
    main()
