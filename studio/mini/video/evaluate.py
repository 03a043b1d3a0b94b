"""Measure mini-video's targets on held-out prompts and write them into the card.

    python -m studio.mini.video.evaluate [--weights studio/mini/video/weights] [--n-t2v 15 --n-i2v 8 --n-v2v 5]

Every prompt holds a held-out colour-shape-motion combination (``world.HOLDOUT_MOTION``, or a colour-shape
pair the image model never saw).  Clips are 16 frames at 256x256, 25 steps, guidance 5, DPM++ 2M, and
are scored by the analytic judge (``judge.py``).  Writes ``eval_results.json`` next to the weights and
regenerates the card (``card.py``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import numpy as np

from . import judge as VJ
from . import world as V
from .train import DEFAULTS, OUT

EVAL_SEED = 50_000


def motion_prompt(pipe, caption: str):
    """The studio's motion-LoRA choice for ``caption`` on the evaluated folder (``pipelines/motion_loras.py``):
    the clips are rendered as ``studio generate`` renders them.  A folder without a table: the caption as is."""
    from pipelines.motion_loras import motion_lora_applied

    return motion_lora_applied(pipe, getattr(pipe, "_weights_dir", None), caption)


def load_pipe(weights: Path, dtype=None):
    import torch
    from diffusers import AnimateDiffPipeline

    pipe = AnimateDiffPipeline.from_pretrained(weights, torch_dtype=dtype or torch.float32)
    pipe.set_progress_bar_config(disable=True)
    pipe._weights_dir = Path(weights)
    return pipe


def heldout_clips(n: int, offset: int = 0) -> list[V.Clip]:
    """n held-out clips, the motions in turn (right, left, up, down, still, right, ...)."""
    return [V.sample_clip(EVAL_SEED + offset + i, "holdout", motion=V.MOTIONS[i % len(V.MOTIONS)]) for i in range(n)]


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())
    return float("inf") if mse == 0 else 10 * math.log10(255.0**2 / mse)


def _summary(rows: list[dict]) -> dict:
    moving = [r for r in rows if r["motion"] != "still"]
    out = {
        "n": len(rows),
        "direction_correct": _pct([r["direction"] for r in rows]),
        "direction_correct_moving": _pct([r["direction"] for r in moving]),
        "moved_as_captioned": _pct([r["moved_as_captioned"] for r in rows]),
        "identity_frames": _pct([r["identity_frames"] for r in rows]),
        "color_frames": _pct([r["color_frames"] for r in rows]),
        "shape_frames": _pct([r["shape_frames"] for r in rows]),
        "no_flicker": _pct([r["no_flicker"] for r in rows]),
        "flicker_mean": round(float(np.mean([r["flicker"] for r in rows])), 2),
        "mean_distance_moving_px": round(float(np.mean([r["distance"] for r in moving])), 1) if moving else 0.0,
        "per_motion": {m: _pct([r["direction"] for r in rows if r["motion"] == m]) for m in V.MOTIONS},
    }
    return out


def _pct(xs) -> float:
    return round(100.0 * float(np.mean([float(x) for x in xs])), 1) if xs else 0.0


def text_to_video(pipe, clips, steps, guidance, save_dir=None) -> dict:
    import torch

    rows = []
    for i, c in enumerate(clips):
        t0 = time.time()
        with motion_prompt(pipe, V.caption(c)) as (prompt, _):
            frames = pipe(prompt=prompt, num_frames=V.FRAMES, width=256, height=256, num_inference_steps=steps,
                          guidance_scale=guidance, generator=torch.Generator().manual_seed(i)).frames[0]
        s = VJ.judge_and_score(c, frames)
        rows.append({"caption": V.caption(c), "motion": c.motion, **s})
        print(f"  t2v {i + 1}/{len(clips)} {V.caption(c)!r}: direction {s['direction']} ({s['distance']:.0f} px) "
              f"identity {s['identity_frames']:.2f} flicker {s['flicker']:.1f} [{time.time() - t0:.0f} s]", flush=True)
        if save_dir:
            _save_strip(frames, Path(save_dir) / f"t2v_{i:02d}.png")
    return _summary(rows) | {"rows": rows}


def image_to_video(pipe, clips, steps, guidance, save_dir=None) -> dict:
    import torch

    from pipelines.animatediff_i2v import animate_image

    rows = []
    for i, c in enumerate(clips):
        t0 = time.time()
        first = V.render_pil(c)[0]
        with motion_prompt(pipe, V.caption(c)) as (prompt, _):
            frames = animate_image(pipe, first, prompt=prompt, num_frames=V.FRAMES, width=256, height=256,
                                   num_inference_steps=steps, guidance_scale=guidance,
                                   generator=torch.Generator().manual_seed(100 + i))
        p = _psnr(np.asarray(frames[0].convert("RGB")), np.asarray(first))
        s = VJ.judge_and_score(c, frames)
        rows.append({"caption": V.caption(c), "motion": c.motion, "psnr_frame0": p, **s})
        print(f"  i2v {i + 1}/{len(clips)} {V.caption(c)!r}: frame-0 PSNR {p:.1f} dB, direction {s['direction']} "
              f"({s['distance']:.0f} px) moved {s['moved_as_captioned']} [{time.time() - t0:.0f} s]", flush=True)
        if save_dir:
            _save_strip(frames, Path(save_dir) / f"i2v_{i:02d}.png")
    ps = [r["psnr_frame0"] for r in rows]
    return _summary(rows) | {"psnr_frame0_median": round(float(np.median(ps)), 2), "psnr_frame0_min": round(float(np.min(ps)), 2),
                             "psnr_frame0_ge_30": _pct([p >= 30 for p in ps]), "rows": rows}


LAYOUT_PX = 16  # a kept layout: same colour and shape, centroid within this many pixels of the input's


def video_to_video(pipe, clips, steps, guidance, strength=0.3) -> dict:
    import torch
    from diffusers import AnimateDiffVideoToVideoPipeline

    v2v = AnimateDiffVideoToVideoPipeline(**{k: v for k, v in pipe.components.items()
                                             if k in ("vae", "text_encoder", "tokenizer", "unet", "motion_adapter", "scheduler",
                                                      "feature_extractor", "image_encoder")})
    v2v.set_progress_bar_config(disable=True)
    v2v._weights_dir = getattr(pipe, "_weights_dir", None)
    kept, rows = [], []
    for i, c in enumerate(clips):
        src = V.render_pil(c)
        with motion_prompt(v2v, V.caption(c)) as (prompt, _):
            frames = v2v(video=src, prompt=prompt, strength=strength, height=256, width=256,
                         num_inference_steps=steps, guidance_scale=guidance,
                         generator=torch.Generator().manual_seed(200 + i)).frames[0]
        vin, vout = VJ.judge_clip(src), VJ.judge_clip(frames)
        per = []
        for a, b, ca, cb in zip(vin.per_frame, vout.per_frame, vin.centroids, vout.centroids):
            ok = a == b and ca is not None and cb is not None and math.dist(ca, cb) <= LAYOUT_PX
            per.append(ok)
        kept += per
        rows.append({"caption": V.caption(c), "layout_frames": _pct(per), "direction_kept": vin.direction == vout.direction})
        print(f"  v2v {i + 1}/{len(clips)}: layout kept in {_pct(per)}% of frames", flush=True)
    return {"n": len(clips), "strength": strength, "layout_frames": _pct(kept),
            "direction_kept": _pct([r["direction_kept"] for r in rows]), "rows": rows}


def speed(pipe, steps, guidance, threads=2) -> dict:
    import torch

    torch.set_num_threads(threads)
    caption = "a red circle moving to the right on a white background"
    kw = dict(num_frames=V.FRAMES, width=256, height=256, guidance_scale=guidance)
    with motion_prompt(pipe, caption) as (prompt, _):
        pipe(prompt=prompt, num_inference_steps=2, **kw)  # warm-up
    t0 = time.time()
    with motion_prompt(pipe, caption) as (prompt, _):  # the LoRA's load and removal are part of the time
        pipe(prompt=prompt, num_inference_steps=steps, generator=torch.Generator().manual_seed(0), **kw)
    return {"seconds_16_frames": round(time.time() - t0, 2), "steps": steps, "threads": threads}


def _save_strip(frames, path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = frames[0].size
    strip = Image.new("RGB", (w * len(frames) // 2, h * 2))
    for k, f in enumerate(frames):
        strip.paste(f.convert("RGB"), ((k % (len(frames) // 2)) * w, (k // (len(frames) // 2)) * h))
    strip.resize((strip.width // 2, strip.height // 2)).save(path)


def main(argv=None) -> dict:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", default=str(OUT))
    ap.add_argument("--n-t2v", type=int, default=15)
    ap.add_argument("--n-i2v", type=int, default=8)
    ap.add_argument("--n-v2v", type=int, default=5)
    ap.add_argument("--steps", type=int, default=DEFAULTS["num_inference_steps"])
    ap.add_argument("--guidance", type=float, default=DEFAULTS["guidance_scale"])
    ap.add_argument("--threads", type=int, default=1, help="torch threads for the quality runs (speed uses 2)")
    ap.add_argument("--skip", default="", help="comma list of parts to skip: t2v,i2v,v2v,speed,judge")
    ap.add_argument("--save-dir", default="")
    ap.add_argument("--no-card", action="store_true")
    ap.add_argument("--results", default="", help="write the figures here instead of eval_results.json next to the "
                    "weights (parts run in parallel processes; --merge then joins them)")
    ap.add_argument("--merge", nargs="*", default=None, help="merge these result files into eval_results.json, write the card")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    weights = Path(args.weights)
    skip = set(filter(None, args.skip.split(",")))
    res_path = Path(args.results) if args.results else weights / "eval_results.json"
    res = json.loads(res_path.read_text()) if res_path.exists() else {}
    if args.merge is not None:
        final = weights / "eval_results.json"
        res = json.loads(final.read_text()) if final.exists() else {}
        for f in args.merge:
            part = json.loads(Path(f).read_text())
            res["eval_seconds"] = res.get("eval_seconds", 0) + part.pop("eval_seconds", 0)
            res.update(part)
        final.write_text(json.dumps(res, indent=1))
        from .card import write_card

        write_card(weights)
        return res
    pipe = load_pipe(weights)
    t0 = time.time()
    res["settings"] = {"steps": args.steps, "guidance": args.guidance, "frames": V.FRAMES, "size": 256,
                       "sampler": type(pipe.scheduler).__name__}
    if "judge" not in skip:
        gt = heldout_clips(20, offset=900)
        res["judge_on_ground_truth"] = {"n": len(gt), "all_correct": _pct([VJ.judge_and_score(c, V.render_frames(c))["all"] for c in gt])}
        print(f"judge on rendered ground truth: {res['judge_on_ground_truth']}", flush=True)
    if "t2v" not in skip:
        res["t2v"] = text_to_video(pipe, heldout_clips(args.n_t2v), args.steps, args.guidance, args.save_dir or None)
        print("t2v", {k: v for k, v in res["t2v"].items() if k != "rows"}, flush=True)
    if "i2v" not in skip:
        res["i2v"] = image_to_video(pipe, heldout_clips(args.n_i2v, offset=300), args.steps, args.guidance, args.save_dir or None)
        print("i2v", {k: v for k, v in res["i2v"].items() if k != "rows"}, flush=True)
    if "v2v" not in skip:
        res["v2v"] = video_to_video(pipe, heldout_clips(args.n_v2v, offset=600), args.steps, args.guidance)
        print("v2v", {k: v for k, v in res["v2v"].items() if k != "rows"}, flush=True)
    if "speed" not in skip:
        res["speed"] = speed(pipe, args.steps, args.guidance)
        print("speed", res["speed"], flush=True)
    res["eval_seconds"] = round(time.time() - t0)
    res_path.write_text(json.dumps(res, indent=1))
    if not args.no_card:
        from .card import write_card

        write_card(weights)
    return res


if __name__ == "__main__":
    main()
