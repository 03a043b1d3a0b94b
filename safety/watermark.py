"""Pluggable invisible watermarks, one per modality, all carrying the same 96-bit codeword.

Codeword (``CODEWORD_BITS`` = 96): 64-bit random per-output ID || 32-bit keyed check
(sha256(key || id)[:4]), XOR-whitened with a keyed pseudo-random mask. Decoding is soft-decision: every
carrier (image block, audio tile, video frame) votes, votes are averaged per bit, then a Chase-style decoder
flips up to ``CHASE_FLIPS`` least reliable bits (2^8 = 256 candidates, also the inverted pattern, which
brightness shifts can cause) and accepts only a candidate whose 32-bit check matches. False-positive
probability per decode <= 2 * 256 / 2^32 ~ 1.2e-7 under a random-bits model; the ledger lookup that
follows adds a second filter (an ID must have been issued by this install).

Interface (``Watermarker``): ``embed(media, wm_id: bytes) -> media`` (raises ``WatermarkNotApplicable``
with ``.status`` such as ``"too_small"``), ``detect(media) -> (id_hex | None, confidence)``; ``soft(media)``
returns the per-bit votes so several carriers (video frames) can be combined. Model-based marks
(AudioSeal, VideoSeal, TrustMark) plug in by implementing the same three methods.
"""
from __future__ import annotations

import hashlib
import itertools
from abc import ABC, abstractmethod
from typing import Optional, Tuple

import numpy as np

DEFAULT_KEY = b"diffusion-studio/watermark/v1"
ID_BITS = 64
CHECK_BITS = 32
CODEWORD_BITS = ID_BITS + CHECK_BITS
CHASE_FLIPS = 8


class WatermarkNotApplicable(Exception):
    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status = status


# ----------------------------------------------------------------------------------------------- codeword
def _bits(data: bytes) -> np.ndarray:
    return np.unpackbits(np.frombuffer(data, dtype=np.uint8)).astype(np.uint8)


def _mask(key: bytes) -> np.ndarray:
    return _bits(hashlib.sha256(key + b"/mask").digest())[:CODEWORD_BITS]


def _check(key: bytes, wm_id: bytes) -> bytes:
    return hashlib.sha256(key + b"/check" + wm_id).digest()[: CHECK_BITS // 8]


def encode_codeword(wm_id: bytes, key: bytes = DEFAULT_KEY) -> np.ndarray:
    if len(wm_id) != ID_BITS // 8:
        raise ValueError(f"watermark id must be {ID_BITS // 8} bytes")
    return _bits(wm_id + _check(key, wm_id)) ^ _mask(key)


def decode_codeword(soft: np.ndarray, key: bytes = DEFAULT_KEY,
                    max_flips: int = CHASE_FLIPS) -> Tuple[Optional[str], float]:
    """soft: per-bit values, > 0 means bit 1, magnitude = reliability. Returns (id hex | None, confidence).

    confidence = fraction of codeword bits whose soft vote agrees with the accepted codeword (0 when none).
    """
    soft = np.asarray(soft, dtype=np.float64)
    if soft.shape != (CODEWORD_BITS,) or not np.all(np.isfinite(soft)) or not np.any(soft):
        return None, 0.0
    mask = _mask(key)
    order = np.argsort(np.abs(soft))[:max_flips]
    for inverted in (False, True):
        s = -soft if inverted else soft
        hard = (s > 0).astype(np.uint8)
        for k in range(max_flips + 1):
            for combo in itertools.combinations(order, k):
                cand = hard.copy()
                cand[list(combo)] ^= 1
                raw = np.packbits(cand ^ mask).tobytes()
                wm_id, chk = raw[: ID_BITS // 8], raw[ID_BITS // 8:]
                if _check(key, wm_id) == chk:
                    agree = float(np.mean(((s > 0).astype(np.uint8)) == cand))
                    return wm_id.hex(), agree
    return None, 0.0


class Watermarker(ABC):
    """embed(media, id) -> media; detect(media) -> (id | None, confidence)."""

    alg: str = ""           # name used in the c2pa.soft-binding assertion
    key: bytes = DEFAULT_KEY

    @abstractmethod
    def embed(self, media, wm_id: bytes):
        ...

    @abstractmethod
    def soft(self, media) -> Optional[np.ndarray]:
        """Per-codeword-bit soft votes (> 0: bit 1), or None when nothing can be read."""

    def detect(self, media) -> Tuple[Optional[str], float]:
        s = self.soft(media)
        if s is None:
            return None, 0.0
        return decode_codeword(s, self.key)

    def describe(self) -> dict:
        return {"alg": self.alg, "payload_bits": ID_BITS, "codeword_bits": CODEWORD_BITS,
                "ecc": f"32-bit keyed check + Chase soft decoding ({CHASE_FLIPS} flips)"}


# ----------------------------------------------------------------------------------------------- images
_H = 0.7071067811865476     # pywt's Haar filter tap (1/sqrt 2), same float


def _haar_dwt2(x: np.ndarray):
    """pywt.dwt2(x, "haar") for an even-sized 2-D array, same floating-point operations in the same order
    (bit-identical output, tested): (cA, (cH, cV, cD))."""
    x = np.asarray(x, dtype=np.float64)
    a, b, c, d = x[0::2, 0::2], x[0::2, 1::2], x[1::2, 0::2], x[1::2, 1::2]
    l0, l1 = a * _H + c * _H, b * _H + d * _H           # low-pass along axis 0 (even / odd columns)
    h0, h1 = a * _H - c * _H, b * _H - d * _H           # high-pass along axis 0
    return l0 * _H + l1 * _H, (h0 * _H + h1 * _H, l0 * _H - l1 * _H, h0 * _H - h1 * _H)


def _haar_ll(x: np.ndarray) -> np.ndarray:
    """cA of pywt.dwt2(x, "haar") only (bit-identical)."""
    x = np.asarray(x, dtype=np.float64)
    a, b, c, d = x[0::2, 0::2], x[0::2, 1::2], x[1::2, 0::2], x[1::2, 1::2]
    return (a * _H + c * _H) * _H + (b * _H + d * _H) * _H


def _haar_idwt2(ca, ch, cv, cd) -> np.ndarray:
    """pywt.idwt2((ca, (ch, cv, cd)), "haar"), bit-identical (axis 1 first, then axis 0, as pywt does)."""
    le, lo = ca * _H + cv * _H, ca * _H - cv * _H
    he, ho = ch * _H + cd * _H, ch * _H - cd * _H
    out = np.empty((ca.shape[0] * 2, ca.shape[1] * 2))
    out[0::2, 0::2] = le * _H + he * _H
    out[1::2, 0::2] = le * _H - he * _H
    out[0::2, 1::2] = lo * _H + ho * _H
    out[1::2, 1::2] = lo * _H - ho * _H
    return out


def _blocks(ca: np.ndarray, n: int = 4) -> Tuple[np.ndarray, int, int]:
    """(r*c, n, n) blocks of ``ca`` in row-major block order (the library's bit order), and r, c."""
    r, c = ca.shape[0] // n, ca.shape[1] // n
    return ca[: r * n, : c * n].reshape(r, n, c, n).transpose(0, 2, 1, 3).reshape(-1, n, n), r, c


def _unblocks(blk: np.ndarray, r: int, c: int, n: int = 4) -> np.ndarray:
    return blk.reshape(r, c, n, n).transpose(0, 2, 1, 3).reshape(r * n, c * n)


def _mv4(A: np.ndarray, x: np.ndarray) -> np.ndarray:
    """(4, 4, n) matrices times (4, n) vectors, one matrix and vector per column n."""
    return np.stack([A[i, 0] * x[0] + A[i, 1] * x[1] + A[i, 2] * x[2] + A[i, 3] * x[3] for i in range(4)])


def _unit4(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.sqrt(x[0] * x[0] + x[1] * x[1] + x[2] * x[2] + x[3] * x[3]), 1e-300)


def _top_singular(B: np.ndarray, squarings: int = 3):
    """Top singular triplet of every 4x4 block, vectorised: power iteration on M = B^T B by repeated squaring
    (M / trace(M) squared ``squarings`` times, so (s1 / s0)^16 with 3, then two more products with M).

    The blocks are laid out as 16 arrays of n numbers (entry (k, i) of every block in one array) and each 4x4
    product is written out entry by entry: numpy's batched matmul on (n, 4, 4) spends its time per tiny
    matrix; this is ~2x faster at the same float64 results to ~1e-16 relative (bench/seal_bench.py profile).

    Returns (s0, u0, v0, ok). ``ok`` is False where the result is not certified to ~1e-11: a Davis-Kahan bound
    sin(angle) <= |M v - lambda v| / gap with gap >= 2 lambda - trace(M) (the other eigenvalues of M are >= 0
    and sum to trace - lambda). Those blocks (zero, degenerate or near-degenerate top singular value) must be
    handled by LAPACK instead. On the bench's chroma blocks (dominant DC) none are uncertified.
    """
    n = B.shape[0]
    b = np.ascontiguousarray(B.reshape(n, 16).T).reshape(4, 4, n)     # b[k, i] = B[:, k, i]
    M = np.empty((4, 4, n))
    for i in range(4):
        for j in range(i, 4):   # M = B^T B, symmetric
            M[i, j] = M[j, i] = b[0, i] * b[0, j] + b[1, i] * b[1, j] + b[2, i] * b[2, j] + b[3, i] * b[3, j]
    tr = M[0, 0] + M[1, 1] + M[2, 2] + M[3, 3]
    P = M / np.maximum(tr, 1e-300)     # eigenvalues in [0, 1], the largest >= 1/4: no overflow
    for _ in range(squarings):
        Q = np.empty_like(P)
        for i in range(4):
            for j in range(i, 4):
                Q[i, j] = Q[j, i] = P[i, 0] * P[0, j] + P[i, 1] * P[1, j] + P[i, 2] * P[2, j] + P[i, 3] * P[3, j]
        P = Q
    j = np.argmax(np.stack([P[0, 0], P[1, 1], P[2, 2], P[3, 3]]), axis=0)    # the column of ~v v^T with the
    v = np.take_along_axis(P, j[None, None, :], axis=1)[:, 0, :]             # largest entry
    v = _unit4(_mv4(M, _unit4(v)))
    Mv = _mv4(M, v)
    lam = (v * Mv).sum(0)
    r = Mv - lam * v
    res = np.sqrt((r * r).sum(0))
    gap = 2.0 * lam - tr
    w = _mv4(b, v)
    s0 = np.sqrt((w * w).sum(0))
    ok = (gap > 0) & (res <= 1e-11 * gap) & (s0 > 0)
    return s0, (w / np.maximum(s0, 1e-300)).T, v.T, ok


def _near_multiple(x: np.ndarray, step: float, tol: float = 1e-7) -> np.ndarray:
    q = x / step
    return np.abs(q - np.round(q)) < tol


class ImageWatermarker(Watermarker):
    """invisible-watermark ``dwtDctSvd`` (U channel, scale 36, 4x4 blocks of the Haar LL band).

    Embedding is a vectorised re-implementation of the library's encoder (``EmbedDwtDctSvd.encode``) that
    produces the same pixels (tested bit-exact against the library): the library sets the top singular value
    of DCT(block) to (s0 // 36 + 0.25 + 0.5 bit) * 36; the DCT is orthonormal, so that is the rank-1 update
    block + (s0' - s0) u0 v0^T with (s0, u0, v0) the top singular triplet of the block itself, computed for all
    blocks at once (``_top_singular``). Blocks whose triplet is not certified, or whose s0 lies within 1e-7 of a
    multiple of 36 (where s0 // 36 depends on the last bits: flat chroma at U = 9k), take the library's exact
    per-block path. The Haar transforms are numpy re-implementations bit-identical to pywt's, including the
    library's reconstruction with the H and V details swapped. Only the U channel is transformed.
    Reading is a vectorised re-implementation of the library's decoder that keeps the per-block votes (top
    singular value of DCT(block) == of the block, DCT being orthonormal) so they can be averaged softly; its
    hard decisions equal the library's ``decode``.
    """

    alg = "org.diffusion-studio.imwatermark-dwtDctSvd.v1"
    MIN_PIXELS = 256 * 256      # the library refuses r*c < 256*256
    scale = 36.0

    def __init__(self, key: bytes = DEFAULT_KEY):
        self.key = key

    @staticmethod
    def _rgb(img) -> np.ndarray:
        """HxWx3 uint8 RGB (C-contiguous) from a PIL image or an array (grey, RGB or RGBA)."""
        from PIL import Image
        if isinstance(img, Image.Image):
            return np.asarray(img if img.mode == "RGB" else img.convert("RGB"))
        arr = np.asarray(img)
        if arr.ndim == 2:
            arr = np.stack([arr] * 3, -1)
        return np.ascontiguousarray(arr[..., :3].astype(np.uint8, copy=False))

    def _embed_rgb(self, rgb: np.ndarray, bits: np.ndarray) -> np.ndarray:
        """The library's ``EmbedDwtDctSvd(bits, scales=[0, 36, 0]).encode`` on RGB instead of BGR (the
        conversion is the same with the channels swapped), vectorised. Returns RGB uint8."""
        import cv2
        h, w = rgb.shape[:2]
        yuv = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV)
        h4, w4 = h // 4 * 4, w // 4 * 4
        ca, (ch, cv, cd) = _haar_dwt2(yuv[:h4, :w4, 1])
        blk, r, c = _blocks(ca)
        if blk.shape[0]:
            bit = np.asarray(bits, dtype=np.float64)[np.arange(blk.shape[0]) % len(bits)]
            s0, u, v, ok = _top_singular(blk)
            ok &= ~_near_multiple(s0, self.scale)
            s1 = (s0 // self.scale + 0.25 + 0.5 * bit) * self.scale
            new = blk + (s1 - s0)[:, None, None] * (u[:, :, None] * v[:, None, :])
            bad = np.flatnonzero(~ok)
            if bad.size:    # flat regions give many identical blocks: run the exact path once per distinct one
                keys = np.concatenate([blk[bad].reshape(-1, 16), bit[bad, None]], axis=1)
                uniq, inv = np.unique(keys, axis=0, return_inverse=True)
                done = np.stack([_library_block(k[:16].reshape(4, 4), k[16], self.scale) for k in uniq])
                new[bad] = done[inv.reshape(-1)]
            ca[: r * 4, : c * 4] = _unblocks(new, r, c)
        # the library reconstructs with the H and V details swapped: keep that (same pixels as before)
        yuv[:h4, :w4, 1] = _haar_idwt2(ca, cv, ch, cd)      # float -> uint8 by truncation, as the library
        return cv2.cvtColor(yuv, cv2.COLOR_YUV2RGB)

    def embed(self, media, wm_id: bytes):
        """media: PIL image or HxWx3 RGB uint8 array -> same kind, marked."""
        from PIL import Image
        rgb = self._rgb(media)
        h, w = rgb.shape[:2]
        if h * w < self.MIN_PIXELS:
            raise WatermarkNotApplicable("too_small", f"{w}x{h} is below the 256x256 minimum of dwtDctSvd")
        out = self._embed_rgb(rgb, encode_codeword(wm_id, self.key))
        if isinstance(media, Image.Image):
            res = Image.fromarray(out)
            if media.mode == "RGBA":
                res.putalpha(media.getchannel("A"))
            return res
        return out

    def block_s0(self, media) -> Optional[np.ndarray]:
        """Top singular value of every 4x4 block of the U channel's Haar LL band (the library's bit order),
        or None if too small. Equal to ``np.linalg.svd(blocks, compute_uv=False)[:, 0]`` wherever the vote
        could depend on it: uncertified blocks and those within 1e-7 of a multiple of scale / 2 use LAPACK."""
        import cv2
        rgb = self._rgb(media)
        h, w = rgb.shape[:2]
        if h * w < self.MIN_PIXELS:
            return None
        u = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV)[: h // 4 * 4, : w // 4 * 4, 1]
        blk, _, _ = _blocks(_haar_ll(u))
        if not blk.shape[0]:
            return np.zeros(0)
        s0, _, _, ok = _top_singular(blk)
        bad = np.flatnonzero(~ok | _near_multiple(s0, self.scale * 0.5))
        if bad.size:
            uniq, inv = np.unique(blk[bad].reshape(-1, 16), axis=0, return_inverse=True)
            s0[bad] = np.linalg.svd(uniq.reshape(-1, 4, 4), compute_uv=False)[:, 0][inv.reshape(-1)]
        return s0

    def votes(self, media) -> Optional[np.ndarray]:
        """Mean block vote per codeword bit in [0, 1] (the library's score), or None if too small."""
        s0 = self.block_s0(media)
        if s0 is None:
            return None
        v = ((s0 % self.scale) > self.scale * 0.5).astype(np.float64)
        idx = np.arange(v.size) % CODEWORD_BITS
        sums = np.bincount(idx, weights=v, minlength=CODEWORD_BITS)
        counts = np.bincount(idx, minlength=CODEWORD_BITS)
        return sums / np.maximum(counts, 1)

    def soft(self, media) -> Optional[np.ndarray]:
        v = self.votes(media)
        return None if v is None else 2.0 * v - 1.0

    def detect(self, media, rescale: bool = True) -> Tuple[Optional[str], float]:
        """Decode at the given size; if that fails, also at 2x (undoes a 0.5x downscale, the common
        "shared thumbnail" case). Two decodes double the false-positive bound (~2.4e-7)."""
        s = self.soft(media)
        if s is not None:
            got = decode_codeword(s, self.key)
            if got[0] is not None or not rescale:
                return got
        if not rescale:
            return None, 0.0
        from PIL import Image
        img = media if isinstance(media, Image.Image) else Image.fromarray(np.asarray(media)[..., :3])
        w, h = img.size
        if max(w, h) * 2 > 8192:
            return None, 0.0
        s2 = self.soft(img.convert("RGB").resize((2 * w, 2 * h), Image.BICUBIC))
        return (None, 0.0) if s2 is None else decode_codeword(s2, self.key)


def _library_block(block: np.ndarray, bit: float, scale: float) -> np.ndarray:
    """``EmbedDwtDctSvd.diffuse_dct_svd`` of invisible-watermark 0.2.0, operation for operation."""
    import cv2
    u, s, v = np.linalg.svd(cv2.dct(np.ascontiguousarray(block)))
    s[0] = (s[0] // scale + 0.25 + 0.5 * bit) * scale
    return cv2.idct(np.dot(u, np.dot(np.diag(s), v)))


# ----------------------------------------------------------------------------------------------- video
class LowFreqClipMark:
    """Low-frequency spread-spectrum layer of the video mark: robust where the per-frame dwtDctSvd is not.

    The frame is a ``grid`` x ``grid`` lattice of cells whatever its size (so the detector reads a
    half-size or upscaled copy the same way). A keyed permutation gives every cell a codeword bit (each bit gets
    ``grid**2 / 96`` cells spread over the frame, so one object does not hide a bit) and a keyed +-1 chip; the
    cell pattern chip * (+-1 bit), bilinearly upsampled, scaled by ``strength`` levels, is added to one plane
    (``channel`` of YCrCb: 1 = Cr, away from the image mark in U) of every frame: the same codeword in every
    frame (temporal redundancy: any stretch of the clip carries all of it, and moving content averages out while
    the mark adds up).
    Informed embedding (improved spread spectrum, Malvar & Florencio 2003): each frame's own projection on each
    bit's chips is measured through the detector and subtracted (at most ``iss_cap`` x strength), so flat-colour
    edges and texture do not vote against the mark. Saturated backgrounds are the caller's to avoid
    (``VideoWatermarker`` gives the frames headroom first).
    Detection: the plane of the frames' mean -> area-resize to the lattice -> minus its 3x3 local mean ->
    clipped at +- ``clip`` x strength (edges of flat shapes otherwise dominate) -> chip correlation per bit.
    """

    def __init__(self, key: bytes, grid: int = 32, strength: float = 4.0, channel: int = 1,
                 iss_cap: float = 2.0, clip: float = 3.0):
        self.key, self.grid, self.strength, self.channel = key, grid, strength, channel
        self.iss_cap, self.clip = iss_cap, clip
        seed = int.from_bytes(hashlib.sha256(key + b"/video-lf").digest()[:8], "big")
        rng = np.random.default_rng(seed)
        n = grid * grid
        self.bit_of = (rng.permutation(n) % CODEWORD_BITS).reshape(grid, grid)
        self.chip = rng.choice(np.array([-1.0, 1.0]), size=(grid, grid))

    def _lattice(self, plane: np.ndarray) -> np.ndarray:
        import cv2
        g = cv2.resize(plane.astype(np.float32), (self.grid, self.grid), interpolation=cv2.INTER_AREA)
        loc = cv2.blur(g, (3, 3), borderType=cv2.BORDER_REFLECT)
        return (g - loc).astype(np.float64)

    def _per_bit(self, cells: np.ndarray) -> np.ndarray:
        lim = self.clip * self.strength
        v = np.clip(cells, -lim, lim) * self.chip
        sums = np.bincount(self.bit_of.ravel(), weights=v.ravel(), minlength=CODEWORD_BITS)
        cnt = np.bincount(self.bit_of.ravel(), minlength=CODEWORD_BITS)
        return sums / np.maximum(cnt, 1)

    # BT.601 full-range (JPEG / OpenCV YCrCb): the plane from RGB, and the RGB step that moves only that plane
    _FWD = {0: (0.299, 0.587, 0.114), 1: (0.5, -0.418688, -0.081312), 2: (-0.168736, -0.331264, 0.5)}
    _INV = {0: (1.0, 1.0, 1.0), 1: (1.402, -0.714136, 0.0), 2: (0.0, -0.344136, 1.772)}

    def _plane(self, frames: np.ndarray) -> np.ndarray:
        mean = frames.mean(axis=0, dtype=np.float64)       # the plane is linear in RGB: average first
        return mean @ np.asarray(self._FWD[self.channel])

    def embed(self, frames: np.ndarray, bits: np.ndarray) -> np.ndarray:
        import cv2
        t, h, w, _ = frames.shape
        sign = (2.0 * np.asarray(bits, np.float64) - 1.0)[self.bit_of]
        # Each frame's own vote per bit, measured through the detector, is cancelled (capped), frame by frame:
        # the detector is linear up to its clip, so the mean of any run of frames (a trimmed clip) is cancelled
        # too, which one correction from the whole clip's mean would not be.
        fwd = np.asarray(self._FWD[self.channel])
        out = np.empty_like(frames)
        for i, f in enumerate(frames):
            host = self._per_bit(self._lattice(f.astype(np.float64) @ fwd))
            # a cell of amplitude a reads back as ~(8/9) a once the 3x3 local mean is taken off
            adj = np.clip(host / (self.strength * 8.0 / 9.0), -self.iss_cap, self.iss_cap)[self.bit_of]
            cells = self.strength * self.chip * (sign - adj)
            up = cv2.resize(cells.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
            delta = up[..., None] * np.asarray(self._INV[self.channel], np.float32)
            out[i] = np.clip(np.round(f.astype(np.float32) + delta), 0, 255).astype(np.uint8)
        return out

    def soft(self, frames: np.ndarray) -> Optional[np.ndarray]:
        frames = np.asarray(frames)
        if frames.ndim != 4 or len(frames) == 0 or min(frames.shape[1:3]) < self.grid:
            return None
        s = self._per_bit(self._lattice(self._plane(frames)))
        return s if np.any(s) else None


class VideoWatermarker(Watermarker):
    """Two layers carrying the same codeword: the image mark (dwtDctSvd, U channel) on every frame, and a
    low-frequency spread-spectrum pattern (``LowFreqClipMark``, Cr channel) that survives re-encoding,
    scaling, trimming and GIF palettes. Detection tries the low-frequency layer on the frames' mean, then
    the per-frame votes of the image mark averaged across frames (how clips sealed before v2 are read);
    two decodes double the false-positive bound (~2.4e-7, ~4.8e-7 with the image layer's 2x retry)."""

    alg = "org.diffusion-studio.video-lf-ss+dwtDctSvd-frames.v2"
    HEADROOM = 6

    def __init__(self, key: bytes = DEFAULT_KEY, image: Optional[ImageWatermarker] = None,
                 lf: Optional[LowFreqClipMark] = None):
        self.key = key
        self.image = image or ImageWatermarker(key)
        self.lf = lf or LowFreqClipMark(key)

    def embed(self, media, wm_id: bytes):
        """media: T x H x W x 3 RGB uint8 array -> marked array."""
        frames = np.asarray(media)
        if frames.shape[1] * frames.shape[2] < ImageWatermarker.MIN_PIXELS:
            raise WatermarkNotApplicable("too_small", f"{frames.shape[2]}x{frames.shape[1]} frames are below "
                                                      "the 256x256 minimum")
        cw = encode_codeword(wm_id, self.key)
        # Both layers need room both ways: on a pure white or black background (half the mini-world scenes) the
        # chroma steps clip and the clip came back unmarked. HEADROOM levels cost nothing visible.
        frames = np.clip(frames, self.HEADROOM, 255 - self.HEADROOM).astype(np.uint8)
        frames = self.lf.embed(frames, cw)
        return np.stack([self.image.embed(f, wm_id) for f in frames])

    @staticmethod
    def _pick(frames: np.ndarray, max_frames: int) -> np.ndarray:
        return np.unique(np.linspace(0, len(frames) - 1, min(max_frames, len(frames))).astype(int))

    def soft_frames(self, media, max_frames: int = 48) -> Optional[np.ndarray]:
        """The image layer's votes, averaged over up to ``max_frames`` sampled frames."""
        frames = np.asarray(media)
        if frames.ndim != 4 or len(frames) == 0:
            return None
        acc = [self.image.soft(frames[i]) for i in self._pick(frames, max_frames)]
        acc = [a for a in acc if a is not None]
        return np.mean(acc, axis=0) if acc else None

    def soft(self, media, max_frames: int = 48) -> Optional[np.ndarray]:
        """Votes of the layer that decodes (low-frequency first), else the low-frequency layer's."""
        frames = np.asarray(media)
        if frames.ndim != 4 or len(frames) == 0:
            return None
        lf = self.lf.soft(frames[self._pick(frames, max_frames)])
        if lf is not None and decode_codeword(lf, self.key)[0] is not None:
            return lf
        fr = self.soft_frames(frames, max_frames)
        if fr is not None and (lf is None or decode_codeword(fr, self.key)[0] is not None):
            return fr
        return lf

    def detect(self, media, max_frames: int = 48) -> Tuple[Optional[str], float]:
        frames = np.asarray(media)
        if frames.ndim != 4 or len(frames) == 0:
            return None, 0.0
        lf = self.lf.soft(frames[self._pick(frames, max_frames)])
        if lf is not None:
            got = decode_codeword(lf, self.key)
            if got[0] is not None:
                return got
        fr = self.soft_frames(frames, max_frames)
        return (None, 0.0) if fr is None else decode_codeword(fr, self.key)


# ----------------------------------------------------------------------------------------------- audio
class AudioWatermarker(Watermarker):
    """Keyed spread-spectrum mark in the STFT magnitude (documented in docs/safety.md).

    STFT: n_fft 1024, hop 512, sqrt-Hann analysis/synthesis (perfect reconstruction). Band 300 Hz .. 8 kHz
    (capped at 0.45 * sample rate) split into ``groups`` sub-bands. Time is cut into tiles of ``tile``
    frames; each (tile, sub-band) slot carries one codeword bit (bit index = slot number mod 96), so one
    codeword needs 96 / groups tiles (~1.5 s at 44.1 kHz) and longer audio repeats it. In each slot every bin
    f gets a keyed pseudo-random chip c_f in {-1, +1}; the magnitude is scaled by (1 + strength * c_f * s),
    s = +-1 the bit, phase untouched. The mark is the same in every channel.
    Detection: log-magnitude, spectral envelope removed (moving average over 9 bins), correlated with the
    chips per slot, averaged over the slots of each bit; an alignment search (4 sub-hop shifts x every frame
    offset of one codeword cycle) re-synchronises after encoder delay (MP3/AAC) or any trim. Unlike a pure
    time-domain PN sequence it needs no sample-exact sync.
    """

    alg = "org.diffusion-studio.audio-ss-stft.v1"
    n_fft = 1024
    hop = 512
    groups = 6
    tile = 8

    def __init__(self, key: bytes = DEFAULT_KEY, strength: float = 0.15):
        self.key = key
        self.strength = strength

    # media = (samples float32 [n] or [n, ch] in -1..1, sample_rate)
    def _band(self, sr: int):
        lo = int(np.ceil(300.0 * self.n_fft / sr))
        hi = int(np.floor(min(8000.0, 0.45 * sr) * self.n_fft / sr))
        edges = np.linspace(lo, hi, self.groups + 1).astype(int)
        return lo, hi, edges

    def _chips(self, n_bins: int) -> np.ndarray:
        seed = int.from_bytes(hashlib.sha256(self.key + b"/audio-chips").digest()[:8], "big")
        rng = np.random.default_rng(seed)
        return rng.choice(np.array([-1.0, 1.0]), size=(self.tile, n_bins))

    def _stft(self, x: np.ndarray):
        win = np.sqrt(np.hanning(self.n_fft + 1)[:-1])
        n = len(x)
        frames = 1 + max(0, int(np.ceil((n - self.n_fft) / self.hop)))
        pad = np.zeros((frames - 1) * self.hop + self.n_fft)
        pad[:n] = x
        idx = np.arange(self.n_fft)[None, :] + self.hop * np.arange(frames)[:, None]
        return np.fft.rfft(pad[idx] * win, axis=1), win, len(pad)

    def capacity_ok(self, n_samples: int) -> bool:
        frames = 1 + max(0, (n_samples - self.n_fft) // self.hop)
        return frames // self.tile * self.groups >= CODEWORD_BITS

    def _gain(self, n_frames: int, sr: int, bits: np.ndarray, first_tile: int = 0,
              weight: Optional[np.ndarray] = None) -> np.ndarray:
        """(frames, bins) magnitude gain of the mark: tile j of the STFT (frames j*tile ..) carries the bits of
        the mark's tile ``first_tile + j``; ``weight`` (per tile, in [0, 1]) raises the gain to that power."""
        lo, hi, edges = self._band(sr)
        chips = self._chips(hi - lo)
        gain = np.ones((n_frames, self.n_fft // 2 + 1))
        for j in range(n_frames // self.tile):
            sl = slice(j * self.tile, (j + 1) * self.tile)
            t = first_tile + j
            for g in range(self.groups):
                b = bits[(t * self.groups + g) % CODEWORD_BITS]
                a, e = edges[g], edges[g + 1]
                gain[sl, a:e] = 1.0 + self.strength * b * chips[:, a - lo:e - lo]
                if weight is not None:
                    gain[sl, a:e] **= weight[j]
        return gain

    def _apply(self, x: np.ndarray, mono: np.ndarray, X: np.ndarray, win: np.ndarray, plen: int,
               factor: np.ndarray, start: int = 0) -> np.ndarray:
        """x + istft((factor - 1) * X), the STFT X taken from ``start`` samples before mono[0] (zero-padded)."""
        D = np.fft.irfft(X * (factor - 1.0), n=self.n_fft, axis=1) * win
        delta = np.zeros(plen)
        for i in range(D.shape[0]):
            delta[i * self.hop: i * self.hop + self.n_fft] += D[i]
        delta = delta[start: start + len(mono)]
        return x + (delta if x.ndim == 1 else delta[:, None])

    def embed(self, media, wm_id: bytes):
        """Mark ``media`` with ``wm_id``. Audio that already carries a mark of this key (a continuation or an
        edit that keeps a sealed source verbatim) has that mark taken out first (``remove``): the new mark uses
        the same chips, so an aligned old codeword would cancel the new one on every bit where the two IDs
        differ and neither would read back. Unmarked audio is marked exactly as before (same samples)."""
        x, sr = media
        x = np.asarray(x, dtype=np.float64)
        mono = x if x.ndim == 1 else x.mean(axis=1)
        if not self.capacity_ok(len(mono)):
            raise WatermarkNotApplicable("too_short", "audio too short to carry one codeword "
                                                      f"({len(mono) / sr:.2f} s)")
        x = self.remove((x, sr))[0]
        mono = x if x.ndim == 1 else x.mean(axis=1)
        bits = encode_codeword(wm_id, self.key).astype(np.float64) * 2 - 1
        X, win, plen = self._stft(mono)
        # mark = (gain - 1) * X, added to every channel: y = x + istft((gain - 1) * X)
        y = self._apply(x, mono, X, win, plen, self._gain(X.shape[0], sr, bits))
        return np.clip(y, -1.0, 1.0).astype(np.float32), sr

    def remove(self, media, passes: int = 2):
        """Take an existing mark of this key out of ``media`` -> (samples float64, sr, removed id hex | None).

        The mark is a keyed multiplicative gain (1 + strength * bit * chip) on STFT magnitudes, so once its ID
        and alignment are known (``locate``) it is divided back out on the mark's own tile grid. Only where the
        mark is present: each tile's correlation with the found codeword, smoothed over 8 tiles (~0.75 s),
        weights the division (0 on audio that never carried it, e.g. the new part of a continuation, so no
        inverse pattern is written there). ``passes`` re-locates and divides again (the STFT of the marked
        signal holds slightly less than the nominal gain). Audio with no readable mark comes back unchanged."""
        x, sr = media
        x = np.asarray(x, dtype=np.float64)
        found = None
        for _ in range(passes):
            mono = x if x.ndim == 1 else x.mean(axis=1)
            loc = self.locate((x, sr))
            if loc is None:
                break
            wm_id, sub, off = loc
            found = found or wm_id
            bits = encode_codeword(bytes.fromhex(wm_id), self.key).astype(np.float64) * 2 - 1
            T = self.tile * self.hop
            s0 = sub + off * self.hop           # the mark's tile t starts at sample s0 + t * T
            pad = (-s0) % T
            first_tile = -(s0 + pad) // T
            xp = np.concatenate([np.zeros(pad), mono])
            X, win, plen = self._stft(xp)
            n_t = X.shape[0] // self.tile
            if n_t == 0:
                break
            V = self._slot_values(xp, sr)
            ev = np.zeros(n_t)
            for j in range(n_t):
                f = j * self.tile
                if f < V.shape[0]:
                    t = first_tile + j
                    ev[j] = np.mean(V[f] * bits[(t * self.groups + np.arange(self.groups)) % CODEWORD_BITS])
            k = min(8, n_t)
            es = np.convolve(np.pad(ev, (k // 2, k - 1 - k // 2), mode="edge"), np.ones(k) / k, mode="valid")
            ref = np.percentile(es, 90)
            if ref <= 0:
                break
            w = np.clip((es - 0.25 * ref) / (0.5 * ref), 0.0, 1.0)
            gain = self._gain(X.shape[0], sr, bits, first_tile, weight=w)
            xp_all = np.concatenate([np.zeros((pad,) + x.shape[1:]), x])
            x = self._apply(xp_all, xp, X, win, plen, 1.0 / gain)[pad:]
        return x, sr, found

    def locate(self, media, max_candidates: int = 32) -> Optional[Tuple[str, int, int]]:
        """(id hex, sub-hop shift, frame offset) of the first decoding alignment, or None."""
        for _, sub, off, s in self._candidates(media)[:max_candidates]:
            wm_id, _ = decode_codeword(s, self.key, max_flips=6)
            if wm_id is not None:
                return wm_id, sub, off
        return None

    def _slot_values(self, mono: np.ndarray, sr: int) -> np.ndarray:
        """V[f, g]: chip correlation of the tile starting at STFT frame f, sub-band g."""
        lo, hi, edges = self._band(sr)
        chips = self._chips(hi - lo)
        X, _, _ = self._stft(mono)
        L = np.log(np.abs(X[:, lo:hi]) + 1e-9)
        k = 9   # remove the spectral envelope (moving average over k bins)
        P = np.pad(L, ((0, 0), (k // 2, k // 2)), mode="edge")
        C = np.cumsum(np.pad(P, ((0, 0), (1, 0))), axis=1)
        L = L - (C[:, k:] - C[:, :-k]) / k
        if L.shape[0] < self.tile:
            return np.zeros((0, self.groups))
        W = np.lib.stride_tricks.sliding_window_view(L, self.tile, axis=0)      # (n, bins, tile)
        W = W - W.mean(axis=2, keepdims=True)       # remove what is stationary over the tile (tones)
        prod = np.einsum("nbt,tb->nb", W, chips)
        e = edges - lo
        return np.stack([prod[:, e[g]:e[g + 1]].mean(axis=1) for g in range(self.groups)], axis=1)

    def _candidates(self, media, search_tiles: int = 8):
        x, sr = media
        x = np.asarray(x, dtype=np.float64)
        mono = x if x.ndim == 1 else x.mean(axis=1)
        if len(mono) < self.n_fft * 4 or not np.any(mono):
            return []
        per_bit_tiles = CODEWORD_BITS // self.groups
        out = []
        for sub in range(0, self.hop, self.hop // 4):
            V = self._slot_values(mono[sub:], sr)
            n = V.shape[0]
            for off in range(-search_tiles * self.tile, search_tiles * self.tile + 1):
                # tile t of the marked audio starts at received frame t * tile + off
                t0 = -(off // self.tile) if off < 0 else -((off) // self.tile)
                t0 = int(np.ceil(-off / self.tile))
                t1 = (n - 1 - off) // self.tile
                if t1 < t0:
                    continue
                ts = np.arange(t0, t1 + 1)
                vals = V[ts * self.tile + off]                  # (tiles, groups)
                idx = (np.mod(ts, per_bit_tiles)[:, None] * self.groups + np.arange(self.groups)[None, :])
                sums = np.bincount(idx.ravel(), weights=vals.ravel(), minlength=CODEWORD_BITS)
                cnt = np.bincount(idx.ravel(), minlength=CODEWORD_BITS)
                if np.any(cnt == 0):
                    continue
                s = sums / cnt
                out.append((float(np.mean(np.abs(s))), sub, off, s))
        out.sort(key=lambda c: -c[0])
        return out

    def soft(self, media) -> Optional[np.ndarray]:
        """Votes at the alignment that decodes (else the best-ranked alignment)."""
        c = self._candidates(media)
        for _, _, _, s in c[:32]:
            if decode_codeword(s, self.key, max_flips=6)[0] is not None:
                return s
        return c[0][3] if c else None

    def detect(self, media, max_candidates: int = 32) -> Tuple[Optional[str], float]:
        """Try the best-aligned candidates (4 sub-hop shifts x every frame offset of one codeword cycle,
        ranked by mean |vote|); Chase decoding limited to 6 flips here, so the false-positive bound is
        2 * 64 * max_candidates / 2^32 ~ 1e-6 per file."""
        for _, _, _, s in self._candidates(media)[:max_candidates]:
            wm_id, conf = decode_codeword(s, self.key, max_flips=6)
            if wm_id is not None:
                return wm_id, conf
        return None, 0.0
