"""Video speed on this machine: a stock diffusers `AnimateDiffPipeline` call against `studio.generate` on the
same model, same prompt, size, frames, steps and sampler, side by side in one process, alternating, after a
warm-up of each.

    python bench/video_bench.py [--model mini-video] [--frames 16] [--steps 25] [--size 256] [--repeats 2]

The stock side loads the model's folder with `AnimateDiffPipeline.from_pretrained` and calls it once per clip
(unsealed PIL frames, nothing written): the floor. Where the folder ships motion LoRAs (mini-video), the stock side
loads the prompt's one once with `load_lora_weights` and keeps it; the studio loads and removes it per clip. The
studio side renders and delivers a sealed MP4 (mark in every frame, H.264, C2PA) to disk. Not a test: it prints a
table to paste into docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

PROMPT = "a red circle moving to the right on a white background"


def stock_pipe(source: str):
    import torch
    from diffusers import AnimateDiffPipeline, EulerDiscreteScheduler

    # fp32 as the studio runs on CPU: the committed weights are fp16, and diffusers 0.42 leaves some of them
    # half and others float without an explicit dtype (conv_in then refuses a half input)
    pipe = AnimateDiffPipeline.from_pretrained(source, local_files_only=True, torch_dtype=torch.float32)
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    pipe._prompt = PROMPT
    from pipelines.motion_loras import choose_motion, motion_table

    choice = choose_motion(motion_table(source), PROMPT, source) if Path(source).is_dir() else None
    if choice is not None:  # a stock user loads the prompt's motion LoRA once and keeps it on
        pipe.load_lora_weights(str(choice.file), adapter_name=choice.motion)
        pipe._prompt = choice.prompt
    return pipe


def stock_clip(pipe, args, seed: int) -> float:
    import torch

    t0 = time.perf_counter()
    with torch.inference_mode():
        pipe(pipe._prompt, num_frames=args.frames, num_inference_steps=args.steps, guidance_scale=args.guidance,
             width=args.size, height=args.size, generator=torch.Generator("cpu").manual_seed(seed))
    return time.perf_counter() - t0


def studio_clip(studio, args, seed: int, out: Path) -> tuple[float, float]:
    t0 = time.perf_counter()
    r = studio.generate(prompt=PROMPT, model=args.model, frames=args.frames, steps=args.steps, sampler="Euler",
                        guidance=args.guidance, width=args.size, height=args.size, seed=seed,
                        out=out / f"clip-{seed}.mp4", overwrite=True)
    total = time.perf_counter() - t0
    return total, total - r.record.elapsed_s  # record.elapsed_s ends when the frames exist: the rest is the seal


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="mini-video")
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--guidance", type=float, default=5.0)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()

    import torch

    import studio as st
    from studio.engine import Studio

    entry = st.Registry().resolve(args.model)
    studio = Studio(quiet=True)
    pipe = stock_pipe(entry.source)
    out = Path(tempfile.mkdtemp(prefix="video-bench-"))
    stock_clip(pipe, args, 0)  # warm-up: first-call allocations and kernel selection
    studio_clip(studio, args, 0, out)
    stock, ours, seal = [], [], []
    for i in range(1, args.repeats + 1):
        stock.append(stock_clip(pipe, args, i))
        total, sealing = studio_clip(studio, args, i, out)
        ours.append(total)
        seal.append(sealing)
    s, o = statistics.median(stock), statistics.median(ours)
    print(f"| {args.frames} frames {args.size}x{args.size}, {args.steps} steps Euler, guidance {args.guidance:g} "
          f"| stock AnimateDiffPipeline {s:.1f} s | studio.generate (sealed MP4 on disk) {o:.1f} s "
          f"(seal + write {statistics.median(seal):.1f} s) | studio/stock {o / s:.2f}x |")
    import diffusers

    print(f"model {args.model} ({entry.source}); {args.repeats} clips each after a warm-up, medians; "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads), diffusers {diffusers.__version__}, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")


if __name__ == "__main__":
    main()
