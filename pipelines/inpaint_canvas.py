"""Inpainting options creators know from A1111: mask blur, what the masked area starts from ("masked content":
original / fill / latent noise) and inpaint-only-masked at full resolution (crop to the mask's box plus padding,
inpaint that crop at the full working size, paste it back). Built around `run_image(mode="inpaint")`.

Every output is composited onto the source with the (blurred) mask, so a pixel the mask does not reach is the
source's own pixel, bit for bit. The blur only grows the mask outwards (the painted area stays fully repainted),
so the filled or noised start never shows through a half-transparent edge.

Hand-written (no library does these as such): the fill is a normalised blur (the unmasked pixels blurred and
divided by the blurred coverage, coarse radii first, finer ones over them), and "latent noise" starts the masked
area from seeded noise pixels, which the VAE turns into noise-like latents (A1111 writes noise into the latents;
diffusers' inpaint pipeline takes an image).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image, ImageFilter

MASKED_CONTENT = ("original", "fill", "latent_noise")
_FILL_RADII = (128, 32, 8, 2)


def soft_mask(mask: Image.Image, blur: int) -> Image.Image:
    """The binary mask (white = repaint) grown outwards by a Gaussian blur of `blur` px (0: unchanged)."""
    binary = mask.convert("L").point(lambda v: 255 if v > 127 else 0)
    if blur <= 0:
        return binary
    blurred = binary.filter(ImageFilter.GaussianBlur(blur))
    return Image.fromarray(np.maximum(np.asarray(binary), np.asarray(blurred)))


def masked_start(image: Image.Image, mask: Image.Image, content: str, seed: int) -> Image.Image:
    """`image` with its masked (binary) area replaced as `content` says."""
    if content not in MASKED_CONTENT:
        raise ValueError(f"masked content must be one of {', '.join(MASKED_CONTENT)} (got {content!r})")
    if content == "original":
        return image
    img = np.asarray(image.convert("RGB")).astype(np.float32)
    m = np.asarray(mask.convert("L")) > 127
    if not m.any():
        return image
    if content == "latent_noise":
        noise = np.random.default_rng(int(seed)).integers(0, 256, img.shape).astype(np.float32)
        out = np.where(m[..., None], noise, img)
    else:  # fill: colours flowing in from around the mask
        keep = (~m).astype(np.float32)
        filled = np.full_like(img, img[~m].mean(axis=0) if (~m).any() else 127.0)
        for radius in _FILL_RADII:
            num = np.stack([_blur(img[..., c] * keep, radius) for c in range(3)], axis=-1)
            den = _blur(keep, radius)[..., None]
            filled = np.where(den > 1e-3, num / np.maximum(den, 1e-3), filled)
        out = np.where(m[..., None], filled, img)
    return Image.fromarray(np.clip(out, 0, 255).round().astype(np.uint8))


def _blur(channel: np.ndarray, radius: int) -> np.ndarray:
    # PIL blurs 8-bit planes; scale to keep precision for the coverage division
    scale = 255.0 / max(float(channel.max()), 1e-6)
    im = Image.fromarray(np.clip(channel * scale, 0, 255).astype(np.uint8))
    return np.asarray(im.filter(ImageFilter.GaussianBlur(radius))).astype(np.float32) / scale


def crop_box(mask: Image.Image, padding: int, aspect: float) -> tuple[int, int, int, int] | None:
    """The mask's bounding box plus `padding` px, widened to `aspect` (w/h) where the image allows, clamped."""
    box = mask.getbbox()
    if box is None:
        return None
    W, H = mask.size
    x0, y0, x1, y1 = box[0] - padding, box[1] - padding, box[2] + padding, box[3] + padding
    w, h = x1 - x0, y1 - y0
    if w / h < aspect:
        grow = int(round(h * aspect)) - w
        x0, x1 = x0 - grow // 2, x1 + grow - grow // 2
    else:
        grow = int(round(w / aspect)) - h
        y0, y1 = y0 - grow // 2, y1 + grow - grow // 2
    # shift into the image before clamping, so the box keeps its size where it fits
    for lo, hi, size, axis in ((x0, x1, W, 0), (y0, y1, H, 1)):
        shift = -lo if lo < 0 else (size - hi if hi > size else 0)
        if axis == 0:
            x0, x1 = x0 + shift, x1 + shift
        else:
            y0, y1 = y0 + shift, y1 + shift
    return max(0, x0), max(0, y0), min(W, x1), min(H, y1)


def run_inpaint(model, *, init_image: Image.Image, mask: Image.Image, width: int, height: int,
                seeds: Sequence[int], mask_blur: int = 4, masked_content: str = "original",
                only_masked: bool = False, padding: int = 32, callback=None, **run_kwargs) -> list[Image.Image]:
    """Inpaint with the options above; one run per seed (image i equals a single run of seeds[i]). Plain:
    the output is width x height (the source resized, as `run_image` does). `only_masked`: the crop around the
    mask is inpainted at width x height and pasted back, so the output keeps the source's size."""
    from .image import run_image

    src = init_image.convert("RGB")
    if not only_masked:
        src = src if src.size == (width, height) else src.resize((width, height), Image.LANCZOS)
    binary = mask.convert("L").resize(src.size, Image.NEAREST).point(lambda v: 255 if v > 127 else 0)
    soft = soft_mask(binary, mask_blur)
    box = crop_box(soft, padding, width / height) if only_masked else (0, 0) + src.size
    if box is None:
        raise ValueError("the mask is empty: paint the area to repaint")
    region, region_soft, region_bin = (im.crop(box) for im in (src, soft, binary))
    work = (width, height)
    if region.size != work:
        region_in = region.resize(work, Image.LANCZOS)
        soft_in, bin_in = region_soft.resize(work, Image.BILINEAR), region_bin.resize(work, Image.NEAREST)
    else:
        region_in, soft_in, bin_in = region, region_soft, region_bin
    units = run_kwargs.get("controls")
    if only_masked and units:  # each ControlSpec's map covers the whole picture: the crop is steered by its part
        run_kwargs = {**run_kwargs, "controls": [_cropped_unit(u, src.size, box, work) for u in units]}
    outputs = []
    for seed in seeds:
        start = masked_start(region_in, bin_in, masked_content, seed)
        (made,) = run_image(model, mode="inpaint", init_image=start, mask=soft_in, width=width, height=height,
                            seeds=[seed], callback=callback, **run_kwargs)
        if made.size != region.size:
            made = made.resize(region.size, Image.LANCZOS)
        out = src.copy()
        out.paste(Image.composite(made.convert("RGB"), region, region_soft), box[:2])
        outputs.append(out)
    return outputs


def _cropped_unit(unit, size, box, work):
    """A control unit whose map (made at the work size for the whole source) is cut to the inpainted crop: the
    map back at the source's size, the crop's box of it, at the work size."""
    import dataclasses

    crop = unit.image.resize(size, Image.BILINEAR).crop(box)
    return dataclasses.replace(unit, image=crop.resize(work, Image.BILINEAR))


__all__ = ["MASKED_CONTENT", "crop_box", "masked_start", "run_inpaint", "soft_mask"]
