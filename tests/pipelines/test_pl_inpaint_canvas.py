"""Inpaint options on a tiny random-weight SD model: pixels the (blurred) mask does not reach are the source's
own, bit for bit, for every masked-content option and for only-masked; the blur grows the mask outwards; the
fill and noise starts, the crop box, and batch image i = a single run of its seed."""
import numpy as np
import pytest
from PIL import Image
from _pl_helpers import KW, pattern, px

from pipelines.inpaint_canvas import crop_box, masked_start, run_inpaint, soft_mask


def square_mask(size, box):
    m = Image.new("L", (size, size), 0)
    m.paste(255, box)
    return m


@pytest.mark.parametrize("content", ["original", "fill", "latent_noise"])
@pytest.mark.parametrize("only_masked", [False, True])
def test_unmasked_pixels_unchanged(sd_model, content, only_masked):
    size = 64
    src = pattern(size, seed=3)
    mask = square_mask(size, (20, 24, 36, 40))
    kw = {**KW, "width": 32, "height": 32} if only_masked else {**KW, "width": size, "height": size}
    (out,) = run_inpaint(sd_model, init_image=src, mask=mask, seeds=[4], mask_blur=3, masked_content=content,
                         only_masked=only_masked, padding=4, sampler="Euler", **kw)
    assert out.size == (size, size)
    reach = np.asarray(soft_mask(mask, 3)) > 0
    a, b = px(out), px(src)
    assert np.array_equal(a[~reach], b[~reach])  # exactly the source outside the blurred mask
    assert np.abs(a[reach] - b[reach]).mean() > 1  # and repainted inside it


def test_blur_grows_the_mask_outwards_only():
    mask = square_mask(32, (10, 10, 20, 20))
    soft = np.asarray(soft_mask(mask, 2))
    assert (soft[10:20, 10:20] == 255).all()  # the painted area stays fully repainted
    assert soft[9, 15] > 0 and soft[0, 0] == 0  # feathered just outside, nothing far away
    assert np.array_equal(np.asarray(soft_mask(mask, 0)), np.asarray(mask))


def test_masked_starts():
    src = Image.new("RGB", (32, 32), (200, 40, 40))
    mask = square_mask(32, (8, 8, 24, 24))
    filled = px(masked_start(src, mask, "fill", 0))
    assert np.abs(filled[16, 16] - [200, 40, 40]).max() <= 2  # the fill takes the colours around the hole
    noise = px(masked_start(src, mask, "latent_noise", 5))
    assert noise[8:24, 8:24].std() > 40 and np.array_equal(noise[0:8], px(src)[0:8])
    assert np.array_equal(noise, px(masked_start(src, mask, "latent_noise", 5)))  # seeded
    assert masked_start(src, mask, "original", 0) is src
    with pytest.raises(ValueError, match="masked content"):
        masked_start(src, mask, "blur", 0)


def test_crop_box_pads_keeps_aspect_and_stays_inside():
    mask = square_mask(100, (40, 40, 50, 60))  # 10 x 20
    assert crop_box(mask, 5, 1.0) == (30, 35, 60, 65)  # padded to 20 x 30, widened to square
    x0, y0, x1, y1 = crop_box(square_mask(100, (0, 0, 10, 10)), 8, 2.0)
    assert x0 == 0 and y0 == 0 and (x1 - x0) == 2 * (y1 - y0)  # shifted in, not cut
    assert crop_box(Image.new("L", (8, 8)), 4, 1.0) is None


def test_batch_image_equals_single_run(sd_model):
    src, mask = pattern(32, seed=1), square_mask(32, (8, 8, 24, 24))
    kw = dict(init_image=src, mask=mask, mask_blur=2, masked_content="latent_noise", sampler="Euler", **KW)
    batch = run_inpaint(sd_model, seeds=[10, 11], **kw)
    (single,) = run_inpaint(sd_model, seeds=[11], **kw)
    assert np.array_equal(px(batch[1]), px(single)) and not np.array_equal(px(batch[0]), px(batch[1]))


def test_only_masked_steers_the_crop_with_the_crop_of_each_control_map(monkeypatch):
    """A control map covers the whole picture; only-masked inpaints a crop, so each unit's map is cut the same."""
    import pipelines.image
    from pipelines.controlnet import ControlSpec

    size, work = 64, (32, 32)
    seen = []
    monkeypatch.setattr(pipelines.image, "run_image", lambda model, **kw: (seen.append(kw["controls"]) or
                                                                           [kw["init_image"]]))
    control = Image.new("RGB", work, "black")  # made at the work size for the whole 64 px source
    control.paste((255, 255, 255), (16, 16, 32, 32))  # the bottom-right quarter white
    unit = ControlSpec(net=None, image=control, weight=0.7, start=0.1, end=0.9)
    mask = square_mask(size, (40, 40, 56, 56))  # inside the white quarter
    run_inpaint(None, init_image=pattern(size, seed=1), mask=mask, seeds=[0], only_masked=True, padding=4,
                mask_blur=0, width=work[0], height=work[1], controls=[unit])
    [[cut]] = seen
    assert (cut.weight, cut.start, cut.end) == (0.7, 0.1, 0.9) and cut.image.size == work
    assert np.asarray(cut.image.convert("L")).min() > 200  # the crop's part of the map: all white
    run_inpaint(None, init_image=pattern(size, seed=1), mask=mask, seeds=[0], width=size, height=size,
                controls=[unit])
    assert seen[-1] == [unit]  # the whole picture: the map as made
