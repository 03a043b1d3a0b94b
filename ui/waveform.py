"""Pictures of sound for the Music tab and the Gallery, drawn with numpy + PIL from decoded samples.

A picture is only a view of a sealed clip: it is never offered as the output (the sealed audio file is), and
it is drawn from the samples decoded out of the sealed bytes, so it shows what a listener gets (watermark
included), not what the model produced before the seal. The picture itself leaves sealed too (watermarked and
signed, the clip as its ingredient), like every file the app serves."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np

WIDTH = 960
PANEL_H = 150
AXIS_H = 22
TITLE_H = 20
BG = (250, 250, 252)
GRID = (226, 228, 236)
WAVE = (79, 70, 229)  # the app's indigo
WAVE_RMS = (165, 160, 245)
BEFORE = (100, 116, 139)
BEFORE_RMS = (190, 198, 210)
SHADE = (255, 228, 170)
TEXT = (55, 65, 81)


def _mono(samples) -> np.ndarray:
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim == 2:  # (n, channels): a stereo clip is drawn as its mid signal
        x = x.mean(axis=1)
    return np.nan_to_num(x.reshape(-1))


def _envelope(x: np.ndarray, columns: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(min, max, rms) per pixel column; columns past the clip's end are NaN (nothing drawn)."""
    lo, hi, rms = (np.full(columns, np.nan, dtype=np.float32) for _ in range(3))
    if len(x) == 0 or columns <= 0:
        return lo, hi, rms
    edges = np.linspace(0, len(x), columns + 1).astype(int)
    for i in range(columns):
        a, b = edges[i], max(edges[i + 1], edges[i] + 1)
        if a >= len(x):
            break
        seg = x[a:b]
        lo[i], hi[i], rms[i] = seg.min(), seg.max(), float(np.sqrt(np.mean(seg * seg)))
    return lo, hi, rms


def _font():
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=13)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def _panel(draw, top: int, x: np.ndarray, rate: int, seconds: float, title: str, colors, shade, font) -> None:
    """One waveform panel whose width spans `seconds` (shared by the panels, so before/after line up)."""
    wave, rms_color = colors
    mid, half = top + TITLE_H + PANEL_H // 2, PANEL_H // 2 - 4
    draw.text((8, top + 3), title, fill=TEXT, font=font)
    y0, y1 = top + TITLE_H, top + TITLE_H + PANEL_H
    draw.rectangle([0, y0, WIDTH - 1, y1], fill=BG)
    px_per_s = WIDTH / seconds
    for start, end in shade or ():
        draw.rectangle([int(start * px_per_s), y0, int(end * px_per_s), y1], fill=SHADE)
    for t in _ticks(seconds):
        draw.line([int(t * px_per_s), y0, int(t * px_per_s), y1], fill=GRID)
    draw.line([0, mid, WIDTH, mid], fill=GRID)
    columns = max(1, int(round(len(x) / rate * px_per_s)))
    lo, hi, rms = _envelope(x, min(columns, WIDTH))
    peak = max(float(np.nanmax(np.abs(np.r_[lo, hi]))) if np.isfinite(hi).any() else 0.0, 1e-4)
    scale = half / max(peak, 0.05)  # near-silence stays small instead of being blown up to full height
    for i in range(len(lo)):
        if np.isnan(hi[i]):
            continue
        draw.line([i, int(mid - hi[i] * scale), i, int(mid - lo[i] * scale)], fill=wave)
        r = rms[i] * scale
        draw.line([i, int(mid - r), i, int(mid + r)], fill=rms_color)


def _ticks(seconds: float) -> list[float]:
    step = next(s for s in (0.1, 0.25, 0.5, 1, 2, 5, 10, 15, 30, 60, 120) if seconds / s <= 12)
    return [i * step for i in range(1, int(seconds / step) + 1) if i * step < seconds]


def _axis(draw, top: int, seconds: float, font) -> None:
    px_per_s = WIDTH / seconds
    draw.line([0, top, WIDTH, top], fill=TEXT)
    for t in [0.0, *_ticks(seconds)]:
        x = int(t * px_per_s)
        draw.line([x, top, x, top + 4], fill=TEXT)
        draw.text((x + 2, top + 5), f"{t:g}s", fill=TEXT, font=font)


def draw_waveform(path: Path | str, samples, rate: int, *, before: Optional[tuple] = None,
                  shade: Optional[Sequence[tuple[float, float]]] = None, title: str = "",
                  before_title: str = "before (source clip)", source: Optional[bytes] = None,
                  source_format: Optional[str] = None) -> Path:
    """Write a sealed PNG of `samples` at `rate` to `path` (the studio's seal for derived pictures, with
    `source`, the sealed clip's bytes in `source_format`, as its C2PA ingredient); with `before` (samples,
    rate) of an edit's source, the source is drawn above on the same time scale, and each `shade` span
    (seconds) is shaded in both panels: the part of the clip the edit regenerated or added."""
    from PIL import Image, ImageDraw

    after = _mono(samples)
    seconds = len(after) / rate
    panels = [(after, rate, title or "result", (WAVE, WAVE_RMS))]
    if before is not None:
        b, b_rate = _mono(before[0]), int(before[1])
        seconds = max(seconds, len(b) / b_rate)
        panels.insert(0, (b, b_rate, before_title, (BEFORE, BEFORE_RMS)))
    seconds = max(seconds, 1e-3)
    height = len(panels) * (TITLE_H + PANEL_H) + AXIS_H
    img = Image.new("RGB", (WIDTH, height), (255, 255, 255))
    draw, font = ImageDraw.Draw(img), _font()
    for i, (x, r, name, colors) in enumerate(panels):
        _panel(draw, i * (TITLE_H + PANEL_H), x, r, seconds, name, colors, shade, font)
    _axis(draw, len(panels) * (TITLE_H + PANEL_H), seconds, font)
    from studio.writer import seal_derived  # watermark + sign, then an atomic write: never served half-written

    seal_derived(img, Path(path), model_name="waveform", source=source, source_format=source_format,
                 params={"derived": "waveform", "title": title}, description="waveform picture of a sealed clip")
    return Path(path)


__all__ = ["draw_waveform"]
