"""Resource limits on what a request may ask for, in one place so the README can state them.

Each is checked before any expensive work (reading a whole file, decoding pixels, loading a model), and a
request over one fails with one line naming the limit. The verify limits live in `safety.verify` (safety
imports nothing of ours) and are re-exported here.
"""
from __future__ import annotations

from safety.verify import MAX_VERIFY_BYTES, MAX_VERIFY_PIXELS

from .schema import MAX_BATCH, MAX_FRAMES, MAX_SIDE

MiB = 1 << 20

# Init images and masks. A PNG/WebP compresses flat pixels thousands of times over, so the byte cap alone does
# not bound memory: the declared size is read from the header and checked before the pixels are decoded.
MAX_INPUT_BYTES = 64 * MiB
MAX_INPUT_PIXELS = 8192 * 8192  # twice the largest output side; decoded RGB is 192 MiB
# Init videos: only the frames a request can use are decoded (a clip longer than that is cut, and says so).
MAX_INPUT_VIDEO_BYTES = 256 * MiB
MAX_INPUT_FRAMES = MAX_FRAMES
# Init audio: bytes before reading, and seconds before the samples are allocated.
MAX_INPUT_AUDIO_BYTES = 256 * MiB
MAX_INPUT_AUDIO_SECONDS = 600.0

# width x height x batch (x frames for video) of one request. On CPU the cost is time and RAM (VAE decode of a 2048x2048 fp32 image
# peaks near 10 GB); 2048x2048 x 1 (or 256x256 x 64, the mini model's largest batch) is the most allowed.
CPU_PIXEL_BUDGET = 2048 * 2048
# On CUDA the budget is the free memory divided by a rough peak cost per output pixel: the VAE decoder's
# full-resolution activations dominate (128 channels, a few alive at once, group norm upcast to fp32).
CUDA_BYTES_PER_PIXEL = {"fp16": 2048, "bf16": 2048, "fp32": 4096}

__all__ = [
    "CPU_PIXEL_BUDGET", "CUDA_BYTES_PER_PIXEL", "MAX_BATCH", "MAX_FRAMES", "MAX_INPUT_BYTES", "MAX_INPUT_FRAMES",
    "MAX_INPUT_PIXELS", "MAX_INPUT_VIDEO_BYTES", "MAX_INPUT_AUDIO_BYTES", "MAX_INPUT_AUDIO_SECONDS", "MAX_SIDE",
    "MAX_VERIFY_BYTES", "MAX_VERIFY_PIXELS", "MiB",
]
