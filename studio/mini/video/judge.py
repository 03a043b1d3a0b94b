"""Analytic judge for mini-video clips: pixel analysis only, no learned model.

Per frame it runs the image judge (``studio/mini/judge.py``) and keeps the largest object.  Over the
clip it reads:

- trajectory: the object's centroid in every frame; the motion is the displacement between the
  mean of the first three and the last three centroids (robust to one bad frame).  The dominant axis and
  its sign give the direction; below ``STILL_PX`` of displacement the object stands still.
- identity: whether each frame's colour and shape are the expected ones (the caption's, or the clip's
  majority when none is given).
- flicker: the mean absolute change, frame to frame, of the pixels that are background in both frames
  (0-255 units), and whether every frame's background is the same.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from .. import judge as J
from .. import world as W
from .world import FRAMES

STILL_PX = 0.06 * W.SIZE  # displacement below this: "still" (15 px; a moving clip travels >= 0.28 x 256)
MIN_TRAVEL_PX = 0.2 * W.SIZE  # a moving clip must cover this to count as moving as captioned
FLICKER_MAX = 6.0  # mean |change| of background pixels between frames (0-255) above this is flicker
ENDS = 3  # frames averaged at each end of the trajectory


@dataclass
class ClipVerdict:
    frames: list[J.Verdict]
    centroids: list[tuple[float, float] | None]
    color: str | None  # majority over frames
    shape: str | None
    background: str
    direction: str  # right / left / up / down / still / none (no object found)
    distance: float  # pixels, along the dominant axis
    flicker: float
    same_background: bool
    per_frame: list[tuple[str | None, str | None]] = field(default_factory=list)

    def identity_frac(self, color: str | None = None, shape: str | None = None) -> float:
        """Fraction of frames whose colour and shape are the given ones (default: the clip's majority)."""
        c, s = color or self.color, shape or self.shape
        return float(np.mean([pc == c and ps == s for pc, ps in self.per_frame])) if self.per_frame else 0.0


def _to_arrays(frames) -> list[np.ndarray]:
    from PIL import Image

    out = []
    for f in frames:
        if isinstance(f, Image.Image):
            f = f.convert("RGB")
            if f.size != (W.SIZE, W.SIZE):
                f = f.resize((W.SIZE, W.SIZE), Image.BILINEAR)
            f = np.asarray(f)
        out.append(np.asarray(f, dtype=np.uint8))
    return out


def _bg_mask(arr: np.ndarray, bg: str) -> np.ndarray:
    """Pixels nearer the background colour than any object colour."""
    pal = np.array([W.BACKGROUNDS[bg]] + [W.COLORS[c] for c in W.COLORS if c != bg], dtype=np.float32)
    return J.nearest_colour(arr, pal) == 0


def direction_of(dx: float, dy: float) -> tuple[str, float]:
    if max(abs(dx), abs(dy)) < STILL_PX:
        return "still", float(max(abs(dx), abs(dy)))
    if abs(dx) >= abs(dy):
        return ("right" if dx > 0 else "left"), float(abs(dx))
    return ("down" if dy > 0 else "up"), float(abs(dy))


def judge_clip(frames) -> ClipVerdict:
    arrs = _to_arrays(frames)
    verdicts = [J.judge(a) for a in arrs]
    tops = [v.objects[0] if v.objects else None for v in verdicts]
    cents = [o.centroid if o else None for o in tops]
    per = [(o.color, o.shape) if o else (None, None) for o in tops]
    cc = Counter(c for c, _ in per if c)
    sc = Counter(s for _, s in per if s)
    bgs = [v.background for v in verdicts]
    bg = Counter(bgs).most_common(1)[0][0]
    pts = [(i, c) for i, c in enumerate(cents) if c is not None]
    if len(pts) >= 2:
        head = np.mean([c for _, c in pts[:ENDS]], 0)
        tail = np.mean([c for _, c in pts[-ENDS:]], 0)
        # the end means sit ENDS-1 frames inside the clip: rescale to the whole clip's span
        span_pts = (np.mean([i for i, _ in pts[-ENDS:]]) - np.mean([i for i, _ in pts[:ENDS]]))
        full = (pts[-1][0] - pts[0][0]) if len(pts) > 1 else 1
        k = full / span_pts if span_pts > 0 else 1.0
        direction, dist = direction_of(*((tail - head) * k))
    else:
        direction, dist = "none", 0.0
    diffs = []
    masks = [_bg_mask(a, bg) for a in arrs]
    for i in range(1, len(arrs)):
        m = masks[i] & masks[i - 1]
        if m.any():
            diffs.append(float(np.abs(arrs[i].astype(np.int16) - arrs[i - 1].astype(np.int16))[m].mean()))
    return ClipVerdict(
        frames=verdicts, centroids=cents,
        color=cc.most_common(1)[0][0] if cc else None, shape=sc.most_common(1)[0][0] if sc else None,
        background=bg, direction=direction, distance=dist,
        flicker=float(np.mean(diffs)) if diffs else 0.0, same_background=len(set(bgs)) == 1, per_frame=per,
    )


def score_clip(clip, v: ClipVerdict) -> dict:
    """Compare a verdict with the clip it should show (``world.Clip``: colour, shape, motion, background)."""
    moved = v.direction == clip.motion and (clip.motion == "still" or v.distance >= MIN_TRAVEL_PX)
    ident = v.identity_frac(clip.color, clip.shape)
    return {
        "direction": v.direction == clip.motion,
        "moved_as_captioned": moved,
        "distance": v.distance,
        "identity_frames": ident,
        "color_frames": float(np.mean([c == clip.color for c, _ in v.per_frame])),
        "shape_frames": float(np.mean([s == clip.shape for _, s in v.per_frame])),
        "background": v.background == clip.background and v.same_background,
        "no_flicker": v.flicker <= FLICKER_MAX,
        "flicker": v.flicker,
        "all": moved and ident == 1.0 and v.flicker <= FLICKER_MAX and v.background == clip.background,
    }


def judge_and_score(clip, frames) -> dict:
    return score_clip(clip, judge_clip(frames))


__all__ = ["ClipVerdict", "judge_clip", "score_clip", "judge_and_score", "direction_of", "FRAMES"]
