"""Analytic judge for the mini world: pixel analysis only (numpy), no learned model.

``judge(image)`` returns the background name and a list of detected objects (largest first), each
with colour, shape, size and position.  The thresholds follow the world's geometry in ``world.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
from scipy import ndimage

from . import world as W

_OBJ_NAMES = list(W.COLORS)
_OBJ_RGB = np.array([W.COLORS[c] for c in _OBJ_NAMES], dtype=np.float32)
_BG_NAMES = list(W.BACKGROUNDS)
_BG_RGB = np.array([W.BACKGROUNDS[c] for c in _BG_NAMES], dtype=np.float32)

MIN_AREA = 120  # pixels after opening; the smallest object (small star) is ~560 px
SIZE_THRESHOLD = 56  # bbox extent (px): small objects span 33-47 px, large ones 66-94 px


@dataclass
class Detected:
    color: str
    shape: str
    size: str
    position: str
    area: int
    centroid: tuple[float, float]
    extent: float = 0.0
    solidity: float = 0.0
    hole: float = 0.0

    def attrs(self) -> dict[str, str]:
        return {"color": self.color, "shape": self.shape, "size": self.size, "position": self.position}


@dataclass
class Verdict:
    background: str
    objects: list[Detected]
    # per colour, how many further blobs of at least MIN_AREA it has beside the one described: two
    # captioned objects drawn in one colour (the colour of one leaked to the other) show up here
    extra_blobs: dict[str, int] = field(default_factory=dict)


def nearest_colour(arr: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Index of the nearest palette colour per pixel (HxW). |p|^2 - 2 a.p in float64 has the argmin of the
    squared distance, exactly on 0-255 integers (ties included), at a fraction of the HxWxPx3 difference."""
    pal = np.asarray(palette, dtype=np.float64)
    a = np.asarray(arr, dtype=np.float64).reshape(-1, 3)
    return ((pal ** 2).sum(1)[None] - 2.0 * (a @ pal.T)).argmin(-1).reshape(arr.shape[:2])


def _shift_and(m: np.ndarray, r: int) -> np.ndarray:
    """Binary erosion with a (2r+1)^2 square."""
    out = m.copy()
    p = np.pad(m, r, constant_values=False)
    h, w = m.shape
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            out &= p[r + dy : r + dy + h, r + dx : r + dx + w]
    return out


def _shift_or(m: np.ndarray, r: int) -> np.ndarray:
    out = m.copy()
    p = np.pad(m, r, constant_values=False)
    h, w = m.shape
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            out |= p[r + dy : r + dy + h, r + dx : r + dx + w]
    return out


def _components(mask: np.ndarray) -> list[np.ndarray]:
    """4-connected components as arrays of flat indices, in raster order of their first pixel (the order the
    largest-first tie-break relies on)."""
    labels, n = ndimage.label(mask)
    if n == 0:
        return []
    flat = labels.ravel()
    order = np.argsort(flat, kind="stable")
    starts = np.searchsorted(flat[order], np.arange(1, n + 2))
    return [order[starts[i]:starts[i + 1]] for i in range(n)]


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill holes: background pixels not 4-connected to the border."""
    return ndimage.binary_fill_holes(mask)


def _hull_area(points: np.ndarray) -> float:
    """Area of the convex hull of integer pixel corners (monotone chain)."""
    pts = np.unique(points, axis=0)
    if len(pts) < 3:
        return 0.0
    pts = [tuple(p) for p in pts[np.lexsort((pts[:, 1], pts[:, 0]))].tolist()]

    def half(ps):
        h: list = []
        for p in ps:
            while len(h) >= 2 and (
                (h[-1][0] - h[-2][0]) * (p[1] - h[-2][1]) - (h[-1][1] - h[-2][1]) * (p[0] - h[-2][0])
            ) <= 0:
                h.pop()
            h.append(p)
        return h

    lower, upper = half(pts), half(pts[::-1])
    hull = np.array(lower[:-1] + upper[:-1], dtype=np.float64)
    x, y = hull[:, 0], hull[:, 1]
    return 0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1)))


def classify_shape(extent: float, solidity: float, hole: float) -> str:
    if hole > 0.12:
        return "ring"
    if solidity < 0.72:
        return "star"
    if extent > 0.89:
        return "square"
    if extent > 0.64:
        return "circle"
    return "triangle"


def _position(cx: float, cy: float) -> str:
    col = "left" if cx < 0.35 * W.SIZE else "right" if cx > 0.65 * W.SIZE else ""
    row = "top" if cy < 0.35 * W.SIZE else "bottom" if cy > 0.65 * W.SIZE else ""
    return f"{row} {col}".strip() or "center"


def _describe(mask: np.ndarray, color: str) -> Detected:
    ys, xs = np.nonzero(mask)
    oy, ox = ys.min(), xs.min()
    sub = mask[oy : ys.max() + 1, ox : xs.max() + 1]
    filled_sub = _fill_holes(sub)
    edge = filled_sub & ~_shift_and(filled_sub, 1)
    ys, xs = np.nonzero(filled_sub)
    eys, exs = np.nonzero(edge)
    ys, xs, eys, exs = ys + oy, xs + ox, eys + oy, exs + ox
    area_f = len(ys)
    area = int(mask.sum())
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    bw, bh = x1 - x0, y1 - y0
    extent = area_f / float(bw * bh)
    # hull over pixel corners of the boundary-ish pixels (all pixels is fine at this size)
    corners = np.concatenate(
        [np.stack([exs + dx, eys + dy], 1) for dx in (0, 1) for dy in (0, 1)]
    ).astype(np.int64)
    hull = _hull_area(corners)
    solidity = area_f / hull if hull > 0 else 1.0
    hole = (area_f - area) / float(area_f)
    shape = classify_shape(extent, solidity, hole)
    size = "large" if max(bw, bh) >= SIZE_THRESHOLD else "small"
    cx, cy = float(xs.mean()) + 0.5, float(ys.mean()) + 0.5
    return Detected(color, shape, size, _position(cx, cy), area, (cx, cy), extent, solidity, hole)


def judge(image, open_radius: int = 1) -> Verdict:
    """Analyse an image (PIL or HxWx3 uint8 array, any size is resized to 256)."""
    from PIL import Image

    if isinstance(image, Image.Image):
        if image.size != (W.SIZE, W.SIZE):
            image = image.convert("RGB").resize((W.SIZE, W.SIZE), Image.BILINEAR)
        arr = np.asarray(image.convert("RGB"), dtype=np.float32)
    else:
        arr = np.asarray(image, dtype=np.float32)
    border = np.concatenate([arr[:4].reshape(-1, 3), arr[-4:].reshape(-1, 3), arr[:, :4].reshape(-1, 3), arr[:, -4:].reshape(-1, 3)])
    med = np.median(border, axis=0)
    bg = _BG_NAMES[int(np.argmin(((_BG_RGB - med) ** 2).sum(1)))]
    # palette: background + object colours (an object colour equal to the background is impossible)
    names = [bg] + [c for c in _OBJ_NAMES if c != bg]
    pal = np.array([W.BACKGROUNDS[bg]] + [W.COLORS[c] for c in names[1:]], dtype=np.float32)
    cls = nearest_colour(arr, pal)
    objects: list[Detected] = []
    extra: dict[str, int] = {}
    for k in range(1, len(names)):
        m = cls == k
        if m.sum() < MIN_AREA:
            continue
        if open_radius:
            m = _shift_or(_shift_and(m, open_radius), open_radius) & m
        if m.sum() < MIN_AREA:
            continue
        comps = _components(m)
        best = max(comps, key=len)
        if len(best) < MIN_AREA:
            continue
        n_extra = sum(len(c) >= MIN_AREA for c in comps) - 1
        if n_extra:
            extra[names[k]] = n_extra
        cm = np.zeros(m.size, bool)
        cm[best] = True
        objects.append(_describe(cm.reshape(m.shape), names[k]))
    objects.sort(key=lambda o: -o.area)
    return Verdict(bg, objects, extra)


def matched(exp: list[dict], verdict: Verdict) -> list[tuple[dict, Optional[Detected]]]:
    """Each expected object (attr dict) with the detection it is judged on: the largest one for a single
    object, else the one of its colour (None when nothing matches)."""
    if len(exp) == 1:
        return [(exp[0], verdict.objects[0] if verdict.objects else None)]
    return [(e, next((o for o in verdict.objects if o.color == e["color"]), None)) for e in exp]


def score(expected, verdict: Verdict) -> dict[str, bool]:
    """Compare expected objects (``world.Obj`` or attr dicts) with a verdict.

    Single object: attributes of the largest detection.  Each expected object is otherwise matched
    to the detection with its colour.  ``all`` means every expected object matches on all four
    attributes (and, for one object, that the colour is right).
    """
    exp = [e.attrs() if hasattr(e, "attrs") else dict(e) for e in expected]
    res: dict[str, bool] = {}
    per_obj = []
    for e, det in matched(exp, verdict):
        got = det.attrs() if det else {}
        per_obj.append({k: got.get(k) == v for k, v in e.items()})
    for k in ("color", "shape", "size", "position"):
        res[k] = all(p[k] for p in per_obj)
    res["all"] = all(all(p.values()) for p in per_obj)
    return res
