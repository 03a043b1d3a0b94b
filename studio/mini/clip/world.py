"""Hard negatives for mini-clip: a mini-world scene with exactly one thing changed (``MODS``), so the contrastive
loss must look at every attribute, at which object carries it, and at how many objects there are."""
from __future__ import annotations

import random
from dataclasses import replace

from .. import world as W

# colour / shape / position / size of one object, the background, the two objects' colours swapped
# (binding), and one of two objects dropped (a caption with two objects, an image with one, or back)
MODS = ("color", "shape", "position", "size", "background", "swap", "drop")


def applicable(scene: W.Scene) -> tuple[str, ...]:
    two = len(scene.objects) == 2
    return tuple(m for m in MODS if two or m not in ("swap", "drop"))


def _ok(scene: W.Scene, allow_holdout: bool) -> bool:
    cols = [o.color for o in scene.objects]
    return (len(set(cols)) == len(cols) and scene.background not in cols and
            (allow_holdout or not any(W.is_holdout(o) for o in scene.objects)))


def modify(scene: W.Scene, mod: str, rng: random.Random, allow_holdout: bool = False) -> W.Scene | None:
    """`scene` with one `mod` change (captionless), or None when none fits (e.g. a swap that would make a
    held-out colour-shape pair in training)."""
    objs = list(scene.objects)
    for _ in range(20):
        k = rng.randrange(len(objs))
        o = objs[k]
        new, bg = list(objs), scene.background
        if mod == "color":
            new[k] = replace(o, color=rng.choice([c for c in W.COLORS if c != o.color]))
        elif mod == "shape":
            new[k] = replace(o, shape=rng.choice([s for s in W.SHAPES if s != o.shape]))
        elif mod == "position":
            taken = {x.position for x in objs}
            new[k] = replace(o, position=rng.choice([p for p in W.POSITIONS if p not in taken]), dx=0, dy=0)
        elif mod == "size":
            new[k] = replace(o, size="small" if o.size == "large" else "large")
        elif mod == "background":
            bg = rng.choice([b for b in W.BACKGROUNDS if b != bg])
        elif mod == "swap" and len(objs) == 2:
            a, b = objs
            new = [replace(a, color=b.color), replace(b, color=a.color)]
        elif mod == "drop" and len(objs) == 2:
            new = [objs[k]]
        else:
            return None
        out = W.Scene(bg, tuple(new))
        if _ok(out, allow_holdout) and (mod != "position" or len(new) < 2 or W._separated(*new)):
            return out
        if mod in ("swap", "drop"):
            return None if mod == "swap" else out
    return None


def phrased(scene: W.Scene, seed: int, full: bool) -> str:
    """The caption of `scene` in the phrasing `seed` picks (the same seed phrases a scene and its modified twin
    alike, so only the changed words differ)."""
    return W.caption(scene, full=True) if full else W.caption(scene, random.Random(seed))
