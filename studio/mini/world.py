"""Procedural world for the ``mini`` model: seeded 256x256 scenes with captions.

A scene is a solid background (white, black, gray, beige) and one or two objects.  Each object has a
colour, a shape, a size and a position.  Everything is deterministic given a seed; only numpy and PIL
are used (no torch), so this module is cheap to import.

Held-out colour-shape combinations (``HOLDOUT``) never appear in the training sampler
(``split="train"``); the evaluation sampler (``split="holdout"``) always includes at least one.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw

SIZE = 256

BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "white": (255, 255, 255),
    "black": (0, 0, 0),
    "gray": (128, 128, 128),
    "beige": (225, 210, 170),
}
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "orange": (245, 140, 20),
    "yellow": (240, 220, 30),
    "green": (40, 170, 60),
    "cyan": (40, 210, 220),
    "blue": (40, 70, 220),
    "purple": (140, 50, 190),
    "pink": (245, 130, 190),
    "white": (255, 255, 255),
    "black": (0, 0, 0),
}
SHAPES = ("circle", "square", "triangle", "star", "ring")
SIZES = ("small", "large")
# (x, y) as a fraction of the image side.
POSITIONS: dict[str, tuple[float, float]] = {
    "top left": (0.2, 0.2),
    "top": (0.5, 0.2),
    "top right": (0.8, 0.2),
    "left": (0.2, 0.5),
    "center": (0.5, 0.5),
    "right": (0.8, 0.5),
    "bottom left": (0.2, 0.8),
    "bottom": (0.5, 0.8),
    "bottom right": (0.8, 0.8),
}
# Nominal outer radius (fraction of the side) per size; each object is drawn inside that circle.
RADIUS = {"small": 0.085, "large": 0.17}
JITTER_PX = 4
RING_INNER = 0.55
STAR_INNER = 0.42
SQUARE_HALF = 0.8  # half-side as a fraction of the radius

# Colour-shape combinations that never appear in training.
HOLDOUT: frozenset[tuple[str, str]] = frozenset(
    {("purple", "triangle"), ("orange", "star"), ("cyan", "ring"), ("pink", "square"), ("green", "circle")}
)

POSITION_PHRASES: dict[str, tuple[str, ...]] = {
    "top left": ("at the top left", "in the top left corner", "in the upper left"),
    "top": ("at the top", "at the top center"),
    "top right": ("at the top right", "in the top right corner", "in the upper right"),
    "left": ("on the left", "at the left"),
    "center": ("in the center", "in the middle"),
    "right": ("on the right", "at the right"),
    "bottom left": ("at the bottom left", "in the bottom left corner", "in the lower left"),
    "bottom": ("at the bottom", "at the bottom center"),
    "bottom right": ("at the bottom right", "in the bottom right corner", "in the lower right"),
}


@dataclass(frozen=True)
class Obj:
    color: str
    shape: str
    size: str
    position: str
    dx: int = 0  # jitter in pixels
    dy: int = 0
    scale: float = 1.0

    @property
    def center(self) -> tuple[float, float]:
        fx, fy = POSITIONS[self.position]
        return fx * SIZE + self.dx, fy * SIZE + self.dy

    @property
    def radius(self) -> float:
        return RADIUS[self.size] * SIZE * self.scale

    def attrs(self) -> dict[str, str]:
        return {"color": self.color, "shape": self.shape, "size": self.size, "position": self.position}


@dataclass(frozen=True)
class Scene:
    background: str
    objects: tuple[Obj, ...]
    caption: str = field(default="", compare=False)


def is_holdout(obj: Obj) -> bool:
    return (obj.color, obj.shape) in HOLDOUT


def _star_points(cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    pts = []
    for i in range(10):
        rr = r if i % 2 == 0 else r * STAR_INNER
        a = -math.pi / 2 + i * math.pi / 5
        pts.append((cx + rr * math.cos(a), cy + rr * math.sin(a)))
    return pts


def draw_object(draw: ImageDraw.ImageDraw, obj: Obj, bg_rgb: tuple[int, int, int]) -> None:
    cx, cy = obj.center
    r = obj.radius
    rgb = COLORS[obj.color]
    if obj.shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=rgb)
    elif obj.shape == "ring":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=rgb)
        ri = r * RING_INNER
        draw.ellipse([cx - ri, cy - ri, cx + ri, cy + ri], fill=bg_rgb)
    elif obj.shape == "square":
        h = r * SQUARE_HALF
        draw.rectangle([cx - h, cy - h, cx + h, cy + h], fill=rgb)
    elif obj.shape == "triangle":
        pts = [(cx + r * math.cos(a), cy + r * math.sin(a)) for a in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)]
        draw.polygon(pts, fill=rgb)
    elif obj.shape == "star":
        draw.polygon(_star_points(cx, cy, r), fill=rgb)
    else:  # pragma: no cover
        raise ValueError(obj.shape)


def render(scene: Scene) -> Image.Image:
    """Render a scene to a 256x256 RGB image (no anti-aliasing: every pixel is a palette colour)."""
    bg = BACKGROUNDS[scene.background]
    img = Image.new("RGB", (SIZE, SIZE), bg)
    d = ImageDraw.Draw(img)
    for o in scene.objects:
        draw_object(d, o, bg)
    return img


def _obj_phrase(o: Obj, rng: random.Random, with_size: bool, with_pos: bool = True) -> str:
    words = [o.size] if with_size else []
    words += [o.color, o.shape]
    s = f"a {' '.join(words)}"
    if with_pos:
        s += " " + rng.choice(POSITION_PHRASES[o.position])
    return s


def caption(scene: Scene, rng: random.Random | None = None, full: bool = False) -> str:
    """Plain-English caption.  ``full=True`` gives the canonical, fully specified form."""
    if rng is None or full:
        objs = " and ".join(f"a {o.size} {o.color} {o.shape} {POSITION_PHRASES[o.position][0]}" for o in scene.objects)
        return f"{objs} on a {scene.background} background"
    objs = " and ".join(_obj_phrase(o, rng, with_size=rng.random() < 0.8) for o in scene.objects)
    bg = scene.background
    t = rng.random()
    if t < 0.55:
        return f"{objs} on a {bg} background"
    if t < 0.85:
        return f"{objs}, {bg} background"
    if t < 0.95:
        return f"{bg} background with {objs}"
    return objs  # background unspecified


def _sample_obj(rng: random.Random, bg: str, split: str, size: str | None = None) -> Obj:
    while True:
        color = rng.choice([c for c in COLORS if c != bg])
        shape = rng.choice(SHAPES)
        held = (color, shape) in HOLDOUT
        if split == "train" and held:
            continue
        break
    return Obj(
        color=color,
        shape=shape,
        size=size or rng.choice(SIZES),
        position=rng.choice(list(POSITIONS)),
        dx=rng.randint(-JITTER_PX, JITTER_PX),
        dy=rng.randint(-JITTER_PX, JITTER_PX),
        scale=rng.uniform(0.94, 1.06),
    )


def _separated(a: Obj, b: Obj) -> bool:
    (ax, ay), (bx, by) = a.center, b.center
    return math.hypot(ax - bx, ay - by) >= a.radius + b.radius + 6


def sample_scene(seed: int, split: str = "train", n_objects: int | None = None) -> Scene:
    """Deterministic scene for ``seed``.

    split: "train" never contains a held-out colour-shape pair; "holdout" always contains at least one
    (the first object); "any" samples freely.
    """
    if split not in ("train", "holdout", "any"):
        raise ValueError(split)
    rng = random.Random(f"mini-world-{split}-{seed}")
    bg = rng.choice(list(BACKGROUNDS))
    n = n_objects or (1 if rng.random() < 0.5 else 2)
    while True:
        if split == "holdout":
            cands = [hc for hc in sorted(HOLDOUT) if hc[0] != bg]
            color, shape = rng.choice(cands)
            first = _sample_obj(rng, bg, "any")
            first = Obj(color, shape, first.size, first.position, first.dx, first.dy, first.scale)
        else:
            first = _sample_obj(rng, bg, split)
        objs = [first]
        if n == 2:
            for _ in range(50):
                o = _sample_obj(rng, bg, "any" if split == "holdout" else split)
                if o.color != first.color and o.position != first.position and _separated(first, o):
                    objs.append(o)
                    break
            else:
                continue
        break
    scene = Scene(bg, tuple(objs))
    return Scene(bg, tuple(objs), caption(scene, rng))


def scene_array(scene: Scene) -> np.ndarray:
    return np.asarray(render(scene), dtype=np.uint8)
