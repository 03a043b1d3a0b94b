#!/usr/bin/env python
"""Side-by-side benchmark: stock diffusers models vs ``fused_ops.accelerate`` (issue 7).

Builds each model from its real config with random weights (no downloads), times the stock forward, applies
``accelerate(model, mode)`` to the SAME model object (same weights, same process), times again, undoes, and prints
ms per call (median of CUDA-event timings), peak CUDA memory, TFLOP/s (FLOPs counted with
``torch.utils.flop_counter`` on the stock forward; matmul/conv/attention only), the ratio to stock, and the max
difference of the outputs against stock.

Workloads (fp16 by default, batch as the pipelines run them):
  sd15     SD1.5 UNet, 512x512 (latent 64x64), CFG batch 2, 77x768 text tokens
  sdxl     SDXL UNet, 1024x1024 (latent 128x128), CFG batch 2, 77x2048 text tokens + text_time conditioning
  vae512   VAE decode 512x512 (latent 1x4x64x64)   (SD/SDXL VAE architecture)
  vae1024  VAE decode 1024x1024 (latent 1x4x128x128)

    python bench/fused_bench.py                          # all workloads, modes safe and max (needs CUDA)
    python bench/fused_bench.py --models sd15 --modes max --iters 50
    python bench/fused_bench.py --cpu-smoke              # toy sizes on CPU: proves the code path, measures nothing

Without CUDA (and without --cpu-smoke) it exits with status 2 and a message. Not a test; never run by pytest.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

SD15_UNET = dict(
    sample_size=64, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=768, attention_head_dim=8, norm_num_groups=32,
)
SDXL_UNET = dict(
    sample_size=128, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(320, 640, 1280),
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    transformer_layers_per_block=(1, 2, 10), attention_head_dim=(5, 10, 20), cross_attention_dim=2048,
    use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=256,
    projection_class_embeddings_input_dim=2816, norm_num_groups=32,
)
SD_VAE = dict(
    in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, block_out_channels=(128, 256, 512, 512),
    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4, norm_num_groups=32,
    sample_size=512,
)
# toy versions for --cpu-smoke: same block types, tiny widths
TOY_UNET = dict(SD15_UNET, sample_size=8, block_out_channels=(16, 32), layers_per_block=1, norm_num_groups=4,
                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=24)
TOY_XL_UNET = dict(SDXL_UNET, sample_size=8, block_out_channels=(16, 32), layers_per_block=1, norm_num_groups=4,
                   down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                   up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), transformer_layers_per_block=(1, 2),
                   attention_head_dim=(2, 4), cross_attention_dim=24, addition_time_embed_dim=8,
                   projection_class_embeddings_input_dim=24 + 6 * 8)
TOY_VAE = dict(SD_VAE, block_out_channels=(16, 32), layers_per_block=1, norm_num_groups=4,
               down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2)

WORKLOADS = {
    # name: (kind, config, latent size, batch, ctx tokens, ctx dim, toy config, toy latent, toy ctx dim)
    "sd15": ("unet", SD15_UNET, 64, 2, 77, 768, TOY_UNET, 8, 24),
    "sdxl": ("unet_xl", SDXL_UNET, 128, 2, 77, 2048, TOY_XL_UNET, 8, 24),
    "vae512": ("vae", SD_VAE, 64, 1, 0, 0, TOY_VAE, 8, 0),
    "vae1024": ("vae", SD_VAE, 128, 1, 0, 0, TOY_VAE, 16, 0),
}


def build(name, device, dtype, smoke):
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel

    kind, cfg, lat, batch, ntok, cdim, toy, toy_lat, toy_cdim = WORKLOADS[name]
    if smoke:
        cfg, lat, cdim, ntok = toy, toy_lat, toy_cdim, (5 if ntok else 0)
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    if kind == "vae":
        model = AutoencoderKL(**cfg).to(device, dtype).eval()
        z = torch.randn(batch, 4, lat, lat, generator=g).to(device, dtype)
        return model, (lambda: model.decode(z, return_dict=False)[0])
    model = UNet2DConditionModel(**cfg).to(device, dtype).eval()
    x = torch.randn(batch, 4, lat, lat, generator=g).to(device, dtype)
    ctx = torch.randn(batch, ntok, cdim, generator=g).to(device, dtype)
    t = torch.tensor(500, device=device)
    kw = {}
    if kind == "unet_xl":
        te = cfg["projection_class_embeddings_input_dim"] - 6 * cfg["addition_time_embed_dim"]
        kw["added_cond_kwargs"] = {"text_embeds": torch.randn(batch, te, generator=g).to(device, dtype),
                                   "time_ids": torch.tensor([[lat * 8, lat * 8, 0, 0, lat * 8, lat * 8]] * batch,
                                                            device=device, dtype=dtype)}
    return model, (lambda: model(x, t, encoder_hidden_states=ctx, return_dict=False, **kw)[0])


def count_flops(fn):
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        fn()
    return fc.get_total_flops()


def time_fn(fn, iters, warmup, cuda):
    import torch

    with torch.no_grad():
        for _ in range(warmup):
            fn()
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        times = []
        for _ in range(iters):
            if cuda:
                a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                a.record()
                out = fn()
                b.record()
                b.synchronize()
                times.append(a.elapsed_time(b))
            else:
                t0 = time.perf_counter()
                out = fn()
                times.append((time.perf_counter() - t0) * 1e3)
        peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
    return statistics.median(times), peak, out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="sd15,sdxl,vae512,vae1024", help="comma list of " + ",".join(WORKLOADS))
    ap.add_argument("--modes", default="safe,max", help="comma list of accelerate modes to compare with stock")
    ap.add_argument("--dtype", default="fp16", choices=["fp16", "bf16", "fp32"])
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--compile-regions", action="store_true", help="pass compile=True to accelerate (mode max)")
    ap.add_argument("--json", help="also write the rows as JSON to this path")
    ap.add_argument("--cpu-smoke", action="store_true",
                    help="toy sizes on CPU through the same code path (Triton interpreter if installed); no timings")
    args = ap.parse_args(argv)

    if args.cpu_smoke:
        os.environ.setdefault("TRITON_INTERPRET", "1")  # before fused_ops/triton import: kernels run on CPU
    import torch

    cuda = torch.cuda.is_available() and not args.cpu_smoke
    if not cuda and not args.cpu_smoke:
        print("fused_bench: no CUDA device; this benchmark measures GPU kernels and has nothing to measure here.\n"
              "  Run it on a CUDA machine, or use --cpu-smoke to exercise the code path at toy sizes on CPU.",
              file=sys.stderr)
        return 2
    import fused_ops

    try:
        from diffusers.utils import logging as dlogging

        dlogging.set_verbosity_error()
    except Exception:
        pass
    device = torch.device("cuda" if cuda else "cpu")
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[args.dtype]
    if not cuda:
        dtype = torch.float32
        args.iters, args.warmup = 1, 0
    modes = [m for m in args.modes.split(",") if m]
    for m in modes:
        if m not in fused_ops.ACCELERATE_MODES:
            ap.error(f"unknown mode {m!r}")
    names = [n for n in args.models.split(",") if n]
    for n in names:
        if n not in WORKLOADS:
            ap.error(f"unknown model {n!r}; known: {', '.join(WORKLOADS)}")

    header = f"{'workload':9} {'mode':6} {'ms/call':>9} {'peak GiB':>9} {'TFLOP/s':>8} {'vs stock':>9} {'max|diff|':>10}  swaps"
    if cuda:
        dev = torch.cuda.get_device_name()
        print(f"device: {dev}; torch {torch.__version__}; triton {fused_ops.TRITON_VERSION}; dtype {args.dtype}")
    else:
        print("CPU SMOKE RUN: toy model sizes, fp32, Triton "
              + ("interpreter" if fused_ops.interpreting() else "absent/off (reference paths)")
              + ". These numbers measure nothing about GPU speed.")
    print(header)
    rows = []
    for name in names:
        model, fn = build(name, device, dtype, smoke=not cuda)
        flops = count_flops(fn)
        ms, peak, ref = time_fn(fn, args.iters, args.warmup, cuda)
        rows.append(dict(workload=name, mode="stock", ms=ms, peak_gib=peak, tflops=flops / ms / 1e9, ratio=1.0,
                         max_diff=0.0, swaps=0))
        for mode in modes:
            h = fused_ops.accelerate(model, mode, allow_cpu=not cuda,
                                     compile=args.compile_regions and mode == "max")
            try:
                ms_m, peak_m, out = time_fn(fn, args.iters, args.warmup, cuda)
                diff = (out.float() - ref.float()).abs().max().item()
            finally:
                h.undo()
            rows.append(dict(workload=name, mode=mode, ms=ms_m, peak_gib=peak_m, tflops=flops / ms_m / 1e9,
                             ratio=ms / ms_m, max_diff=diff, swaps=len(h.applied)))
        for r in rows[-(len(modes) + 1):]:
            if cuda:
                print(f"{r['workload']:9} {r['mode']:6} {r['ms']:9.2f} {r['peak_gib']:9.2f} {r['tflops']:8.1f} "
                      f"{r['ratio']:8.2f}x {r['max_diff']:10.3g}  {r['swaps']}")
            else:  # CPU toy run: timings are meaningless, print only what proves the path ran
                print(f"{r['workload']:9} {r['mode']:6} {'-':>9} {'-':>9} {'-':>8} {'-':>9} {r['max_diff']:10.3g}  "
                      f"{r['swaps']}")
        del model, fn, ref
        if cuda:
            torch.cuda.empty_cache()
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cuda": cuda, "dtype": args.dtype, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
