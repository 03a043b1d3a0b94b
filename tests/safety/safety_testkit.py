"""Synthetic media for the safety tests (imported by name: this folder is on sys.path under pytest)."""
from __future__ import annotations

import numpy as np
from PIL import Image

def photo(n: int = 384, seed: int = 0, w: int | None = None) -> Image.Image:
    """Photo-like procedural picture: smooth colour field + texture + blur."""
    import cv2
    r = np.random.default_rng(seed)
    h, w = n, (w or n)
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack([np.sin(x * r.uniform(2, 9) + c) * np.cos(y * r.uniform(2, 9)) * 70 + 120 for c in range(3)], -1)
    base += r.normal(0, 14, (h, w, 3))
    base = cv2.GaussianBlur(base, (0, 0), 1.2) + r.normal(0, 3, (h, w, 3))
    return Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))


def music(seconds: float = 6.0, sr: int = 44100, seed: int = 0, stereo: bool = False) -> np.ndarray:
    r = np.random.default_rng(seed)
    t = np.arange(int(sr * seconds)) / sr
    y = np.zeros_like(t)
    for k in range(int(seconds * 4)):
        f0 = r.choice([220.0, 261.6, 329.6, 392.0, 440.0, 523.3])
        s, e = int(k * sr / 4), min(len(t), int(k * sr / 4) + int(sr * 0.5))
        env = np.exp(-np.arange(e - s) / sr * 4)
        for h in range(1, 6):
            y[s:e] += env * np.sin(2 * np.pi * f0 * h * t[s:e]) / h
    y += 0.02 * r.normal(size=len(t))
    y = 0.3 * y / np.abs(y).max()
    if stereo:
        return np.stack([y, 0.8 * y], 1).astype(np.float32)
    return y.astype(np.float32)


def frames(n: int = 12, size: int = 256, seed: int = 0) -> np.ndarray:
    base = np.asarray(photo(size + 4 * n, seed))
    return np.stack([base[2 * i: 2 * i + size, 3 * i: 3 * i + size] for i in range(n)])


CG = "diffusion-studio/0.1.0 (model: test-tiny)"
