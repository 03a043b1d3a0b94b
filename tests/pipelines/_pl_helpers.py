"""Shared helpers for tests/pipelines (imported as a plain module)."""
import numpy as np
from PIL import Image


def px(img) -> np.ndarray:
    return np.asarray(img, dtype=np.int16)


def pattern(size=32, seed=0) -> Image.Image:
    rng = np.random.default_rng(seed)
    base = np.zeros((size, size, 3), np.uint8)
    base[..., 0] = np.linspace(0, 255, size)[None, :]
    base[..., 1] = np.linspace(255, 0, size)[:, None]
    base[..., 2] = rng.integers(0, 255, (size, size))
    return Image.fromarray(base)


KW = dict(prompt="a red fox in the snow", negative_prompt="blurry", width=32, height=32, steps=2, guidance=5.0)
