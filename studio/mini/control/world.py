"""Control maps for mini-world scenes, made exactly as a user's maps are made (``pipelines.control_preprocess``),
so what the ControlNet was trained on is what the studio hands it.

Two kinds, told apart by their look (one ControlNet serves both):
  edges   the ``canny`` preprocessor's output on the rendered scene: white edges on black.
  layout  the ``layout`` preprocessor's output on the rendered scene: each object's silhouette filled black on
          white. That is what the Edit tab's sketch pad gives (black strokes flattened onto white), so a scribbled
          blob can go in as is (preprocessor ``none``) and an outline through ``layout``, which fills it.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

from .. import world as W

KINDS = ("edges", "layout")
PREPROCESSOR = {"edges": "canny", "layout": "layout"}  # the preprocessor that makes each kind


def control_map(scene: W.Scene, kind: str, image: Image.Image | None = None) -> Image.Image:
    """The ``kind`` control map of ``scene`` (RGB, 256 px); ``image`` is its render when already made."""
    import pipelines.control_preprocess as prep

    if kind not in PREPROCESSOR:
        raise ValueError(f"unknown control map kind {kind!r}; expected one of {', '.join(KINDS)}")
    src = image if image is not None else W.render(scene)
    return prep.preprocess(PREPROCESSOR[kind], src, (W.SIZE, W.SIZE))


def object_masks(scene: W.Scene) -> list[np.ndarray]:
    """Each object's own pixels (bool HxW) as rendered alone on the scene's background: the region the control
    puts it in (a ring's hole is not part of it)."""
    out = []
    for o in scene.objects:
        alone = np.asarray(W.render(W.Scene(scene.background, (o,))))
        out.append((alone != np.array(W.BACKGROUNDS[scene.background], np.uint8)).any(-1))
    return out


def unplaced_caption(scene: W.Scene, rng=None) -> str:
    """A caption without positions (colour, shape, size and background): where each object goes is the control's
    to say. With ``rng`` the phrasing varies as the world's captions do; without it, the canonical form."""
    if rng is None:
        objs = " and ".join(f"a {o.size} {o.color} {o.shape}" for o in scene.objects)
        return f"{objs} on a {scene.background} background"
    objs = " and ".join(W._obj_phrase(o, rng, with_size=rng.random() < 0.8, with_pos=False) for o in scene.objects)
    return f"{objs} on a {scene.background} background" if rng.random() < 0.7 else f"{objs}, {scene.background} background"


def training_caption(scene: W.Scene, rng, unplaced: float, empty: float) -> str:
    """A training caption: empty (classifier-free guidance) with probability ``empty``, without positions with
    ``unplaced`` (the control alone says where: otherwise the caption already does and the ControlNet has little
    to learn), else the world's own caption."""
    r = rng.random()
    if r < empty:
        return ""
    return unplaced_caption(scene, rng) if r < empty + unplaced else W.caption(scene, rng)


def batch_maps(scenes, images: np.ndarray, rng: np.random.Generator, layout_share: float = 0.5):
    """(maps uint8 NHWC, kinds) for a training batch: each scene's map of a kind drawn with ``layout_share``."""
    kinds = ["layout" if rng.random() < layout_share else "edges" for _ in scenes]
    maps = np.stack([np.asarray(control_map(s, k, Image.fromarray(im))) for s, k, im in zip(scenes, kinds, images)])
    return maps, kinds
