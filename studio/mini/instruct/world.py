"""Edit triplets for ``mini-instruct``: (source scene, instruction, edited scene) from the mini world.

Seven edit kinds, each changing exactly one thing of a ``world.Scene`` and nothing else (same jitter, same
other object, same background):

    color       "make the circle blue"            the object's colour
    shape       "turn the red circle into a star" the object's shape
    size        "make the square small"           the object's size
    move        "move the star to the top left"   the object's position
    background  "change the background to black"  the background
    add         "add a small red ring at the top" a second object (sources hold one)
    remove      "remove the blue square"          one of two objects

Held-out edit-attribute combinations (``HOLDOUT_EDITS``: edit kind, the edited object's shape -- the source
background for background edits --, and the new value) never appear in ``split="train"``; ``split="holdout"``
always draws one.  The scenes themselves come from ``world.sample_scene`` (so the world's held-out colour-shape
pairs stay out of training too).  numpy/PIL only, like ``world.py``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

from .. import world as W

KINDS = ("color", "shape", "size", "move", "background", "add", "remove")
# the attribute(s) an edit kind asks to change; "count" = how many objects the scene holds
ASKED = {"color": ("color",), "shape": ("shape",), "size": ("size",), "move": ("position",),
         "background": ("background",), "add": ("count",), "remove": ("count",)}

# (kind, the edited object's shape | the source background, new value)
HOLDOUT_EDITS: frozenset[tuple[str, str, str]] = frozenset({
    ("color", "circle", "blue"), ("color", "star", "red"), ("color", "ring", "yellow"),
    ("shape", "square", "star"), ("shape", "circle", "triangle"), ("shape", "ring", "circle"),
    ("size", "triangle", "large"), ("size", "star", "small"), ("size", "ring", "large"),
    ("move", "circle", "top right"), ("move", "star", "bottom left"), ("move", "square", "left"),
    ("background", "white", "gray"), ("background", "black", "beige"), ("background", "beige", "white"),
    ("add", "ring", "top"), ("add", "triangle", "bottom right"), ("add", "circle", "left"),
    ("remove", "square", "left"), ("remove", "star", "top right"), ("remove", "ring", "center"),
})

MOVE_TO = {p: "the center" if p == "center" else f"the {p}" for p in W.POSITIONS}


@dataclass(frozen=True)
class Edit:
    kind: str
    source: W.Scene
    target: W.Scene
    instruction: str
    index: int  # the edited object's index in source.objects (add: in target.objects; background: -1)
    key: tuple[str, str, str]  # (kind, object shape | source background, new value): see HOLDOUT_EDITS

    @property
    def heldout(self) -> bool:
        return self.key in HOLDOUT_EDITS


def _ref(scene: W.Scene, i: int, rng: random.Random) -> str:
    """How the instruction names object i: its shape when that is unambiguous (sometimes), else colour + shape."""
    o = scene.objects[i]
    unique = sum(p.shape == o.shape for p in scene.objects) == 1
    if unique and rng.random() < (0.5 if len(scene.objects) == 1 else 0.3):
        return o.shape
    return f"{o.color} {o.shape}"


def _fits(objs) -> bool:
    if len(objs) < 2:
        return True
    a, b = objs
    return a.color != b.color and a.position != b.position and W._separated(a, b)


def _propose(kind: str, src: W.Scene, rng: random.Random, split: str):
    """One candidate (target objects, background, index, key, instruction) or None when it cannot apply."""
    objs, bg = list(src.objects), src.background
    if kind == "background":
        new = rng.choice([b for b in W.BACKGROUNDS if b != bg and all(o.color != b for o in objs)])
        ins = rng.choice((f"change the background to {new}", f"make the background {new}",
                          f"turn the background {new}", f"{new} background"))
        return objs, new, -1, (kind, bg, new), ins
    if kind == "add":
        if len(objs) != 1:
            return None
        o = W._sample_obj(rng, bg, "train" if split == "train" else "any")
        if not _fits([objs[0], o]):
            return None
        words = f"{o.size} {o.color} {o.shape}" if rng.random() < 0.8 else f"{o.color} {o.shape}"
        ins = rng.choice((f"add a {words} {rng.choice(W.POSITION_PHRASES[o.position])}",
                          f"add a {words} {rng.choice(W.POSITION_PHRASES[o.position])}",
                          f"put a {words} {rng.choice(W.POSITION_PHRASES[o.position])}"))
        return objs + [o], bg, 1, (kind, o.shape, o.position), ins
    if kind == "remove":
        if len(objs) != 2:
            return None
        i = rng.randrange(2)
        ref = _ref(src, i, rng)
        ins = rng.choice((f"remove the {ref}", f"delete the {ref}", f"take away the {ref}"))
        return [objs[1 - i]], bg, i, (kind, objs[i].shape, objs[i].position), ins
    i = rng.randrange(len(objs))
    o, ref = objs[i], _ref(src, i, rng)
    others = [p for j, p in enumerate(objs) if j != i]
    if kind == "color":
        new = rng.choice([c for c in W.COLORS if c != o.color and c != bg and all(p.color != c for p in others)])
        n = replace(o, color=new)
        ins = rng.choice((f"make the {ref} {new}", f"turn the {ref} {new}", f"change the {ref} to {new}",
                          f"color the {ref} {new}"))
    elif kind == "shape":
        new = rng.choice([s for s in W.SHAPES if s != o.shape])
        n = replace(o, shape=new)
        ins = rng.choice((f"turn the {ref} into a {new}", f"make the {ref} a {new}", f"change the {ref} to a {new}"))
    elif kind == "size":
        new = "small" if o.size == "large" else "large"
        n = replace(o, size=new)
        word = rng.choice((new, "bigger" if new == "large" else "smaller"))
        ins = rng.choice((f"make the {ref} {word}", f"make the {ref} {word}", f"resize the {ref} to {new}"))
    else:  # move
        new = rng.choice([p for p in W.POSITIONS if p != o.position])
        n = replace(o, position=new)
        ins = rng.choice((f"move the {ref} to {MOVE_TO[new]}", f"move the {ref} to {MOVE_TO[new]}",
                          f"move the {ref} {rng.choice(W.POSITION_PHRASES[new])}"))
    new_objs = objs[:i] + [n] + objs[i + 1:]
    if not _fits(new_objs):
        return None
    return new_objs, bg, i, (kind, o.shape, new), ins


def sample_edit(seed: int, split: str = "train", kind: str | None = None) -> Edit:
    """A deterministic edit triplet for ``seed``.  split "train": no held-out combination and no held-out
    colour-shape pair in either scene; "holdout": always a held-out combination (of ``kind`` when given)."""
    if split not in ("train", "holdout", "any"):
        raise ValueError(f"split must be train, holdout or any, got {split!r}")
    if kind is not None and kind not in KINDS:
        raise ValueError(f"unknown edit kind {kind!r} (kinds: {', '.join(KINDS)})")
    rng = random.Random(f"mini-instruct-{split}-{kind}-{seed}")
    k = kind or rng.choice(KINDS)
    scene_split = "train" if split == "train" else "any"
    for attempt in range(10_000):
        n_obj = 1 if k == "add" else 2 if k == "remove" else None
        src = W.sample_scene(rng.randrange(10**9), scene_split, n_objects=n_obj)
        if split == "holdout":
            wanted = [h for h in sorted(HOLDOUT_EDITS) if h[0] == k]
            forced = _force(k, src, rng, rng.choice(wanted))
            if forced is None:
                continue
            src, (new_objs, bg, i, key, ins) = forced
        else:
            prop = _propose(k, src, rng, split)
            if prop is None:
                continue
            new_objs, bg, i, key, ins = prop
            if split == "train" and (key in HOLDOUT_EDITS or any(W.is_holdout(o) for o in new_objs)):
                continue
        tgt = W.Scene(bg, tuple(new_objs))
        return Edit(k, W.Scene(src.background, src.objects, W.caption(src, full=True)),
                    W.Scene(bg, tuple(new_objs), W.caption(tgt, full=True)), ins, i, key)
    raise RuntimeError(f"no {k} edit found for seed {seed}")  # pragma: no cover


def _force(kind: str, src: W.Scene, rng: random.Random, key: tuple[str, str, str]):
    """The held-out edit ``key`` applied to a source made to fit it (None when this source cannot)."""
    _, a, new = key
    objs = list(src.objects)
    if kind == "background":
        if src.background != a or any(o.color == new for o in objs):
            return None
        prop = _propose_fixed(kind, src, rng, -1, new)
        return None if prop is None else (src, prop)
    if kind == "add":
        o = W._sample_obj(rng, src.background, "any")
        o = replace(o, shape=a, position=new)
        if not _fits([objs[0], o]):
            return None
        words = f"{o.size} {o.color} {o.shape}"
        return src, (objs + [o], src.background, 1, key, f"add a {words} {W.POSITION_PHRASES[new][0]}")
    i = rng.randrange(len(objs))
    objs[i] = replace(objs[i], shape=a)
    if kind == "remove":
        objs[i] = replace(objs[i], position=new)
    if kind == "size":  # the source holds the other size
        objs[i] = replace(objs[i], size="small" if new == "large" else "large")
    if not _fits(objs) or (kind == "move" and objs[i].position == new) or (kind == "color" and objs[i].color == new):
        return None
    src = W.Scene(src.background, tuple(objs))
    prop = _propose_fixed(kind, src, rng, i, new)
    return None if prop is None else (src, prop)


def _propose_fixed(kind: str, src: W.Scene, rng: random.Random, i: int, new: str):
    """Like ``_propose`` with the edited object and the new value given (evaluation: one canonical phrasing)."""
    objs, bg = list(src.objects), src.background
    if kind == "background":
        return objs, new, -1, (kind, bg, new), f"change the background to {new}"
    o, ref = objs[i], _ref(src, i, random.Random(0)) if len(objs) == 1 else f"{objs[i].color} {objs[i].shape}"
    if kind == "remove":
        return [objs[1 - i]], bg, i, (kind, o.shape, o.position), f"remove the {ref}"
    others = [p for j, p in enumerate(objs) if j != i]
    if kind == "color":
        if new == bg or any(p.color == new for p in others):
            return None
        n, ins = replace(o, color=new), f"make the {ref} {new}"
    elif kind == "shape":
        n, ins = replace(o, shape=new), f"turn the {ref} into a {new}"
    elif kind == "size":
        n, ins = replace(o, size=new), f"make the {ref} {new}"
    else:
        n, ins = replace(o, position=new), f"move the {ref} to {MOVE_TO[new]}"
    new_objs = objs[:i] + [n] + objs[i + 1:]
    if not _fits(new_objs):
        return None
    return new_objs, bg, i, (kind, o.shape, new), ins


def heldout_edits(n_per_kind: int, split: str = "holdout") -> list[Edit]:
    """The fixed evaluation set: ``n_per_kind`` edits of every kind (seeds 0..n-1)."""
    return [sample_edit(s, split, k) for k in KINDS for s in range(n_per_kind)]


def render_pair(edit: Edit):
    """(source image, edited image) as PIL images."""
    return W.render(edit.source), W.render(edit.target)
