"""Batch throughput: items/s of a naive per-prompt diffusers loop and of the studio's job engine, side by side in
one process, with the same model, prompts, sampler (Euler), guidance and seeds; and the job engine's memory over
a long job.

    python bench/batch_bench.py [--model mini] [--items 24] [--steps 30] [--workers 2] [--skip-ray]
                                [--seal-workers 1] [--batch-items 4,8] [--rounds 1] [--skip-unet]
    python bench/batch_bench.py --rss 2000 [--rss-size 256]     # RSS over a long job (no model, see below)

The naive loop is stock diffusers (`StableDiffusionPipeline.from_pretrained`, `EulerDiscreteScheduler` from the
model's scheduler config, one call per prompt, each image saved as an unsealed PNG with Pillow's defaults): the
floor the job engine's bookkeeping (seal, fsynced manifest, resume) is measured against. Both sides run fp32 with
the same torch thread count. Two figures per runner: the whole run (model load included, as a user waits for it)
and the steady state (mean seconds an item after the first pipeline call: (last end - end of the first call) /
items after it; model load and warm-up excluded). `--batch-items 4,8` adds a studio row per size with cross-item
batching (`studio render --batch-items N`); `--rounds R` runs every row R times, alternating, and reports the
median. Last, a table of one batched UNet call (the CFG batch of N images) against N calls of one image, which
says how much a batch can gain on this device at all.

`--rss N`: a job of N items whose pipeline costs nothing (`seal_bench.PixelsStudio`: the engine's own
`Generated`, so seal, writer, manifest and runner all run for real), RSS sampled after every item; it measures
what the job engine keeps per item, not a model's memory. Not a test: it prints tables for docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def prompts(n: int) -> list[str]:
    from studio.demo import parse_prompt_file

    items = [i.fields["prompt"] for i in parse_prompt_file(ROOT / "samples" / "prompts.txt") if len(i.fields) == 1]
    return [items[i % len(items)] for i in range(n)]


def naive(model_path: str, texts: list[str], steps: int, size: int, guidance: float, seed: int) -> dict:
    import torch
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline

    out = Path(tempfile.mkdtemp(prefix="bench-naive-"))
    t0 = time.perf_counter()
    pipe = StableDiffusionPipeline.from_pretrained(model_path, local_files_only=True)
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    ends = []
    for i, text in enumerate(texts):
        image = pipe(text, num_inference_steps=steps, height=size, width=size, guidance_scale=guidance,
                     generator=torch.Generator("cpu").manual_seed(seed + i)).images[0]
        image.save(out / f"{i}.png")
        ends.append(time.perf_counter())
    return {"whole_s": time.perf_counter() - t0, "ends": ends}


def studio_job(texts: list[str], model: str, steps: int, executor: str, workers: int, guidance: float,
               seal_workers: int = 1, studio=None, batch_items: int = 1) -> dict:
    from studio.jobs import render

    out = Path(tempfile.mkdtemp(prefix=f"bench-{executor}-"))
    ends = []
    t0 = time.perf_counter()
    summary = render([{"prompt": t, "id": f"item{i}"} for i, t in enumerate(texts)], out, model=model,
                     defaults={"steps": steps, "sampler": "Euler", "guidance": guidance}, seed=1,
                     executor=executor, workers=workers, seal_workers=seal_workers, studio=studio,
                     batch_items=batch_items, on_item=lambda o, done, total: ends.append(time.perf_counter()))
    elapsed = time.perf_counter() - t0
    if summary.succeeded != len(texts):
        sys.exit(f"{executor}: only {summary.succeeded}/{len(texts)} items succeeded")
    return {"whole_s": elapsed, "ends": ends, "first_call": batch_items}


def steady(run: dict) -> float:
    """Mean seconds an item after the first pipeline call (warm-up): its last item ends at ends[first - 1]."""
    ends, first = run["ends"], min(run.get("first_call", 1), len(run["ends"]) - 1)
    return (ends[-1] - ends[first - 1]) / (len(ends) - first) if len(ends) > first else float("nan")


def unet_probe(model_path: str, size: int, sizes=(1, 4, 8), repeats: int = 5) -> list[str]:
    """One UNet call on the CFG batch of N images (2N latents) against N calls on 2 latents each: what a batched
    pipeline call can gain on this device at all (the UNet is nearly all of an image's time)."""
    import torch
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(model_path, local_files_only=True)
    with torch.inference_mode():
        cond, uncond = pipe.encode_prompt("a red circle above a blue square", "cpu", 1, True)
        emb = torch.cat([uncond, cond])
        side = size // pipe.vae_scale_factor
        t = torch.tensor(500)
        lines = [f"UNet of {Path(model_path).name}, latents {side}x{side}, median of {repeats} ({torch.get_num_threads()} "
                 "torch threads):", "", "| images N | one call on 2N latents ms | N calls on 2 latents ms | gain |",
                 "|---|---|---|---|"]

        def timed(batch: int, calls: int) -> float:
            x = torch.randn(2 * batch, pipe.unet.config.in_channels, side, side, generator=torch.Generator().manual_seed(0))
            e = emb.repeat(batch, 1, 1)
            pipe.unet(x, t, encoder_hidden_states=e)  # warm-up (allocator, oneDNN primitives for this shape)
            runs = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                for _ in range(calls):
                    pipe.unet(x, t, encoder_hidden_states=e)
                runs.append(time.perf_counter() - t0)
            return statistics.median(runs) * 1000

        timed(max(sizes), 1)  # the first calls of a process are slow (allocator, thread pool): not a batch effect
        for n in sizes:
            one, many = timed(n, 1), timed(1, n)
            lines.append(f"| {n} | {one:.1f} | {many:.1f} | {many / one:.2f}x |")
    return lines


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def rss_job(items: int, size: int) -> list[str]:
    import numpy as np
    from PIL import Image

    from safety_robustness import gen_image
    from seal_bench import PixelsStudio
    from studio.jobs import render

    os.environ["DIFFUSION_STUDIO_HOME"] = tempfile.mkdtemp(prefix="bench-rss-home-")
    images = [Image.fromarray(gen_image("photo", size, 900 + i)) for i in range(3)]
    samples: list[tuple[int, float, float]] = []
    t0 = time.perf_counter()

    def on_item(outcome, done, total):
        samples.append((done, rss_mb(), time.perf_counter() - t0))

    out = Path(tempfile.mkdtemp(prefix="bench-rss-"))
    summary = render([{"prompt": f"a lighthouse at dusk, take {i}", "id": f"it{i}"} for i in range(items)], out,
                     studio=PixelsStudio(images), seed=1, cpu_threads=1, on_item=on_item)
    assert summary.succeeded == items, summary.to_dict()
    warm = next(s for s in samples if s[0] >= min(100, items // 10))
    end = samples[-1]
    peak = max(s[1] for s in samples)
    lines = [f"RSS over a {items}-item job at {size}x{size} (pipeline-free studio, real seal + writer + manifest), "
             f"{end[2]:.0f} s, {items / end[2]:.1f} items/s:", "",
             "| after item | RSS MiB |", "|---|---|"]
    marks = sorted({1, warm[0]} | {int(items * f) for f in (0.25, 0.5, 0.75)} | {items})
    for d, r, _ in samples:
        if d in marks:
            lines.append(f"| {d} | {r:.1f} |")
    lines += ["", f"growth after warm-up (item {warm[0]} -> {end[0]}): {end[1] - warm[1]:+.1f} MiB "
                  f"({(end[1] / warm[1] - 1) * 100:+.2f} %); peak {peak:.1f} MiB"]
    del np
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="mini")
    ap.add_argument("--items", type=int, default=24)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seal-workers", type=int, default=1,
                    help="local executor: seal threads overlapping generation (a second row shows 0 = inline)")
    ap.add_argument("--skip-ray", action="store_true")
    ap.add_argument("--skip-inline", action="store_true", help="leave out the --seal-workers 0 row")
    ap.add_argument("--rss", type=int, default=0, metavar="ITEMS", help="only the RSS run, over ITEMS items")
    ap.add_argument("--rss-size", type=int, default=256)
    ap.add_argument("--batch-items", default="4,8",
                    help="comma-separated cross-item batch sizes, one studio row each ('' for none)")
    ap.add_argument("--rounds", type=int, default=1, help="run every row this many times, alternating; medians")
    ap.add_argument("--skip-unet", action="store_true", help="leave out the batched-UNet table")
    args = ap.parse_args()
    started = time.time()
    if args.rss:
        lines = rss_job(args.rss, args.rss_size)
    else:
        lines = throughput(args)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    import torch

    lines += ["", f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC; {platform.processor() or platform.machine()}, "
                  f"{os.cpu_count()} CPUs, torch {torch.__version__} ({torch.get_num_threads()} threads), load "
                  f"average {load} (1/5/15 min) at the end; {time.time() - started:.0f} s"]
    print("\n".join(lines))


def throughput(args) -> list[str]:
    from studio.registry import Registry

    entry = Registry().resolve(args.model)
    guidance = entry.guidance if entry.guidance is not None else 5.0
    texts = prompts(args.items)
    runners = [("naive diffusers loop (Euler, unsealed PNGs)",
                lambda: naive(entry.source, texts, args.steps, entry.width, guidance, seed=0))]
    if not args.skip_inline:
        runners.append(("studio job, seal inline (--seal-workers 0)",
                        lambda: studio_job(texts, args.model, args.steps, "local", 1, guidance, seal_workers=0)))
    runners.append((f"studio job, seal overlapped (--seal-workers {args.seal_workers})",
                    lambda: studio_job(texts, args.model, args.steps, "local", 1, guidance,
                                       seal_workers=args.seal_workers)))
    for b in [int(x) for x in args.batch_items.split(",") if x.strip()]:
        runners.append((f"studio job, cross-item batching (--batch-items {b})",
                        lambda b=b: studio_job(texts, args.model, args.steps, "local", 1, guidance,
                                               seal_workers=args.seal_workers, batch_items=b)))
    if not args.skip_ray:
        runners.append((f"studio Ray executor, {args.workers} workers",
                        lambda: studio_job(texts, args.model, args.steps, "ray", args.workers, guidance)))
    runs: dict[str, list[dict]] = {name: [] for name, _ in runners}
    for _ in range(max(1, args.rounds)):  # alternating, so a load change hits every row alike
        for name, fn in runners:
            runs[name].append(fn())
    whole = {n: statistics.median(r["whole_s"] for r in rs) for n, rs in runs.items()}
    st = {n: statistics.median(steady(r) for r in rs) for n, rs in runs.items()}
    base = runners[0][0]
    lines = [f"{args.items} items, {args.steps} steps, {entry.width}x{entry.height}, model {args.model}, Euler, "
             f"guidance {guidance}, fp32; all rows in one process, {max(1, args.rounds)} round(s) alternating "
             "(medians); each studio row loads its own model", "",
             "| runner | whole run s | items/s | vs naive | steady s/item | vs naive (steady) | runs (whole s) |",
             "|---|---|---|---|---|---|---|"]
    for name, _ in runners:
        each = " / ".join(f"{r['whole_s']:.1f}" for r in runs[name])
        lines.append(f"| {name} | {whole[name]:.1f} | {args.items / whole[name]:.3f} | {whole[base] / whole[name]:.2f}x "
                     f"| {st[name]:.3f} | {st[base] / st[name]:.2f}x | {each} |")
    if not args.skip_unet:
        lines += [""] + unet_probe(entry.source, entry.width)
    return lines


if __name__ == "__main__":
    main()
