"""Batch throughput on this machine: items/s for a naive per-prompt diffusers loop, the studio's local
executor, and the Ray executor with N workers, side by side in one process, with the same model and prompts.

    python bench/batch_bench.py [--model mini] [--items 12] [--steps 30] [--workers 2] [--skip-ray]
                                [--seal-workers 1]

The naive loop is stock diffusers (`StableDiffusionPipeline.from_pretrained` + one call per prompt) and
delivers nothing (no seal, no file): it is the floor the job engine's bookkeeping (seal, manifest, resume)
is measured against. Not a test: it prints a table to paste into docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def prompts(n: int) -> list[str]:
    from studio.demo import parse_prompt_file

    items = [i.fields["prompt"] for i in parse_prompt_file(ROOT / "samples" / "prompts.txt") if len(i.fields) == 1]
    return [items[i % len(items)] for i in range(n)]


def naive(model_path: str, texts: list[str], steps: int, size: int) -> float:
    import torch
    from diffusers import StableDiffusionPipeline

    t0 = time.perf_counter()
    pipe = StableDiffusionPipeline.from_pretrained(model_path, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    for i, text in enumerate(texts):
        pipe(text, num_inference_steps=steps, height=size, width=size,
             generator=torch.Generator("cpu").manual_seed(i))
    return time.perf_counter() - t0


def studio_job(texts: list[str], model: str, steps: int, executor: str, workers: int,
               seal_workers: int = 1) -> float:
    from studio.jobs import render

    out = Path(tempfile.mkdtemp(prefix=f"bench-{executor}-"))
    t0 = time.perf_counter()
    summary = render([{"prompt": t, "id": f"item{i}"} for i, t in enumerate(texts)], out, model=model,
                     defaults={"steps": steps}, seed=1, executor=executor, workers=workers,
                     seal_workers=seal_workers)
    elapsed = time.perf_counter() - t0
    if summary.succeeded != len(texts):
        sys.exit(f"{executor}: only {summary.succeeded}/{len(texts)} items succeeded")
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="mini")
    ap.add_argument("--items", type=int, default=12)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seal-workers", type=int, default=1,
                    help="local executor: seal threads overlapping generation (a second row shows 0 = inline)")
    ap.add_argument("--skip-ray", action="store_true")
    args = ap.parse_args()

    from studio.registry import Registry

    entry = Registry().resolve(args.model)
    texts = prompts(args.items)
    rows = [("naive diffusers loop (no seal, no files)", naive(entry.source, texts, args.steps, entry.width))]
    rows.append(("studio local executor, seal inline (--seal-workers 0)",
                 studio_job(texts, args.model, args.steps, "local", 1, seal_workers=0)))
    rows.append((f"studio local executor, seal overlapped (--seal-workers {args.seal_workers})",
                 studio_job(texts, args.model, args.steps, "local", 1, seal_workers=args.seal_workers)))
    if not args.skip_ray:
        rows.append((f"studio Ray executor, {args.workers} workers",
                     studio_job(texts, args.model, args.steps, "ray", args.workers)))
    import torch

    print(f"# {args.items} items, {args.steps} steps, model {args.model}; {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, torch {torch.__version__}, {time.strftime('%Y-%m-%d')}")
    base = rows[0][1]
    print("| runner | seconds | items/s | vs naive |")
    print("|---|---|---|---|")
    for name, sec in rows:
        print(f"| {name} | {sec:.1f} | {args.items / sec:.2f} | {base / sec:.2f}x |")


if __name__ == "__main__":
    main()
