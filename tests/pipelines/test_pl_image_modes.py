"""run_image on tiny random-weight models: determinism, batches, every mode, every family."""
import numpy as np
import pytest
from PIL import Image
from _pl_helpers import KW, pattern, px

from pipelines import from_pipeline, run_image, tiny


def test_same_seed_same_pixels_different_seed_different(sd_model):
    a = run_image(sd_model, mode="txt2img", sampler="Euler", seeds=[7], **KW)
    b = run_image(sd_model, mode="txt2img", sampler="Euler", seeds=[7], **KW)
    c = run_image(sd_model, mode="txt2img", sampler="Euler", seeds=[8], **KW)
    assert len(a) == 1 and a[0].size == (32, 32) and a[0].mode == "RGB"
    assert np.array_equal(px(a[0]), px(b[0]))
    assert np.abs(px(a[0]) - px(c[0])).mean() > 1


@pytest.mark.parametrize("sampler", ["Euler", "Euler a"])  # Euler a also draws noise at every step
def test_batch_image_i_equals_single_image_of_its_seed(sd_model, sampler):
    batch = run_image(sd_model, mode="txt2img", sampler=sampler, seeds=[100, 101], **KW)
    single = run_image(sd_model, mode="txt2img", sampler=sampler, seeds=[101], **KW)
    assert len(batch) == 2
    assert np.array_equal(px(batch[1]), px(single[0]))
    assert not np.array_equal(px(batch[0]), px(batch[1]))


def test_scheduler_of_the_model_is_not_touched(sd_model):
    before = type(sd_model.pipe.scheduler).__name__
    cfg = dict(sd_model.pipe.scheduler.config)
    run_image(sd_model, mode="txt2img", sampler="DPM++ 2M Karras", seeds=[1], **KW)
    assert type(sd_model.pipe.scheduler).__name__ == before
    assert dict(sd_model.pipe.scheduler.config) == cfg
    # and a request with another sampler is unaffected by the previous one
    e1 = run_image(sd_model, mode="txt2img", sampler="Euler", seeds=[1], **KW)
    run_image(sd_model, mode="txt2img", sampler="Euler a", seeds=[1], **KW)
    e2 = run_image(sd_model, mode="txt2img", sampler="Euler", seeds=[1], **KW)
    assert np.array_equal(px(e1[0]), px(e2[0]))


def test_callback_gets_every_step(sd_model):
    seen = []
    run_image(sd_model, mode="txt2img", sampler="Euler", seeds=[1, 2], callback=lambda i, n, lat: seen.append(
        (i, n, tuple(lat.shape))), **{**KW, "steps": 3})
    assert [s[0] for s in seen] == [1, 2, 3] and all(s[1] == 3 for s in seen)
    assert seen[0][2] == (2, 4, 16, 16)


def test_img2img_strength(sd_model):
    init = pattern(32)
    same = run_image(sd_model, mode="img2img", sampler="Euler", seeds=[1], init_image=init, strength=0.0, **KW)
    assert np.array_equal(px(same[0]), px(init))  # strength 0 = input unchanged
    low = run_image(sd_model, mode="img2img", sampler="Euler", seeds=[1], init_image=init, strength=0.3,
                    **{**KW, "steps": 4})
    full = run_image(sd_model, mode="img2img", sampler="Euler", seeds=[1], init_image=init, strength=1.0,
                     **{**KW, "steps": 4})
    assert not np.array_equal(px(low[0]), px(full[0]))
    # (random-weight VAEs don't reconstruct, so distance to the input itself says little.)
    # at strength 1 the init image barely matters: two very different inits give near-identical outputs
    other = run_image(sd_model, mode="img2img", sampler="Euler", seeds=[1], init_image=Image.new("RGB", (32, 32)),
                      strength=1.0, **{**KW, "steps": 4})
    low_other = run_image(sd_model, mode="img2img", sampler="Euler", seeds=[1], init_image=Image.new("RGB", (32, 32)),
                          strength=0.3, **{**KW, "steps": 4})
    assert np.abs(px(full[0]) - px(other[0])).mean() < np.abs(px(low[0]) - px(low_other[0])).mean()


def test_img2img_resizes_init_to_requested_size(sd_model):
    out = run_image(sd_model, mode="img2img", sampler="Euler", seeds=[1], init_image=pattern(48), strength=0.5,
                    **KW)
    assert out[0].size == (32, 32)


def _mask():
    m = Image.new("L", (32, 32), 0)
    m.paste(255, (8, 8, 24, 24))
    return m


@pytest.mark.parametrize("channels", [4, 9])
def test_inpaint_keeps_unmasked_region(channels, sd_model):
    model = sd_model if channels == 4 else from_pipeline(tiny.tiny_sd(inpaint_channels=9))
    assert model.inpaint_unet == (channels == 9)
    init, mask = pattern(32), _mask()
    out = run_image(model, mode="inpaint", sampler="Euler", seeds=[3], init_image=init, mask=mask, **KW)[0]
    keep = np.asarray(mask) == 0
    diff = np.abs(px(out) - px(init))
    assert diff[keep].max() == 0  # overlay restores the unmasked pixels exactly
    assert diff[~keep].mean() > 5  # the masked square was regenerated


def test_nine_channel_model_serves_txt2img_and_img2img():
    model = from_pipeline(tiny.tiny_sd(inpaint_channels=9))
    assert all(model.supports(m) for m in ("txt2img", "img2img", "inpaint", "outpaint"))
    a = run_image(model, mode="txt2img", sampler="Euler", seeds=[1], **KW)[0]
    b = run_image(model, mode="img2img", sampler="Euler", seeds=[1], init_image=pattern(32), strength=0.5, **KW)[0]
    assert a.size == b.size == (32, 32)


@pytest.mark.parametrize("channels", [4, 9])
def test_outpaint_size_and_original_pasted_back(sd_model, channels):
    model = sd_model if channels == 4 else from_pipeline(tiny.tiny_sd(inpaint_channels=9))
    init = pattern(32)
    out = run_image(model, mode="outpaint", sampler="Euler", seeds=[2], init_image=init, outpaint=(8, 16, 0, 8),
                    **KW)[0]
    assert out.size == (32 + 8 + 0, 32 + 16 + 8)
    assert np.array_equal(px(out)[16:48, 8:40], px(init))
    border = px(out)[:16, :]
    assert border.std() > 0  # something was generated there


def test_outpaint_margins_must_keep_multiples_of_8(sd_model):
    with pytest.raises(ValueError, match="multiple of 8"):
        run_image(sd_model, mode="outpaint", sampler="Euler", seeds=[2], init_image=pattern(32),
                  outpaint=(4, 0, 0, 0), **KW)
    with pytest.raises(ValueError):
        run_image(sd_model, mode="outpaint", sampler="Euler", seeds=[2], init_image=pattern(32),
                  outpaint=(0, 0, 0, 0), **KW)


def test_outpaint_canvas_masks():
    from pipelines import outpaint_canvas

    canvas, gen, keep = outpaint_canvas(pattern(32), (8, 0, 8, 0), overlap=4)
    assert canvas.size == gen.size == keep.size == (48, 32)
    g, k = np.asarray(gen), np.asarray(keep)
    assert (g[:, :8] == 255).all() and (g[:, -8:] == 255).all()  # margins generated
    assert (k[:, 8:40] == 0).all() and (k[:, :8] == 255).all()
    assert 0 < g[16, 9] < 255 or g[16, 9] == 255  # overlap band reaches into the original
    assert g[16, 24] < 10  # centre of the original is kept
    assert np.array_equal(np.asarray(canvas)[:, 8:40], np.asarray(pattern(32)))  # original on the canvas


@pytest.mark.parametrize("bad", [dict(width=30), dict(steps=0)])
def test_bad_requests(sd_model, bad):
    with pytest.raises(ValueError):
        run_image(sd_model, mode="txt2img", sampler="Euler", seeds=[1], **{**KW, **bad})


def test_mode_and_input_validation(sd_model):
    with pytest.raises(ValueError, match="mode"):
        run_image(sd_model, mode="video", sampler="Euler", seeds=[1], **KW)
    with pytest.raises(ValueError, match="init_image"):
        run_image(sd_model, mode="img2img", sampler="Euler", seeds=[1], **KW)
    with pytest.raises(ValueError, match="mask"):
        run_image(sd_model, mode="inpaint", sampler="Euler", seeds=[1], init_image=pattern(), **KW)
    with pytest.raises(ValueError, match="seed"):
        run_image(sd_model, mode="txt2img", sampler="Euler", seeds=[], **KW)


def test_txt2img_sdxl():
    model = from_pipeline(tiny.tiny_sdxl())
    assert model.family == "sdxl"
    a = run_image(model, mode="txt2img", sampler="DPM++ 2M Karras", seeds=[1], **KW)[0]
    b = run_image(model, mode="txt2img", sampler="DPM++ 2M Karras", seeds=[1], **KW)[0]
    assert a.size == (32, 32) and np.array_equal(px(a), px(b)) and px(a).std() > 0


@pytest.mark.parametrize("fixture", ["sd3_model", "flux_model"])
def test_txt2img_flow_models(fixture, request):
    model = request.getfixturevalue(fixture)
    assert model.family == ("sd3" if fixture == "sd3_model" else "flux")
    a = run_image(model, mode="txt2img", sampler=None, seeds=[1], **KW)[0]  # None = family default
    b = run_image(model, mode="txt2img", sampler="flow_match_euler", seeds=[1], **KW)[0]
    c = run_image(model, mode="txt2img", sampler="Flow-match Euler", seeds=[2], **KW)[0]
    assert a.size == (32, 32) and np.array_equal(px(a), px(b)) and not np.array_equal(px(a), px(c))


@pytest.mark.slow
@pytest.mark.parametrize("fixture", ["sd3_model", "flux_model"])
def test_flow_models_other_modes(fixture, request):
    model = request.getfixturevalue(fixture)
    init = pattern(32)
    i2i = run_image(model, mode="img2img", sampler=None, seeds=[1], init_image=init, strength=0.6, **KW)[0]
    assert i2i.size == (32, 32)
    inp = run_image(model, mode="inpaint", sampler=None, seeds=[1], init_image=init, mask=_mask(), **KW)[0]
    assert np.array_equal(px(inp)[np.asarray(_mask()) == 0], px(init)[np.asarray(_mask()) == 0])
    out = run_image(model, mode="outpaint", sampler=None, seeds=[1], init_image=init, outpaint=(8, 8, 8, 8), **KW)[0]
    assert out.size == (48, 48) and np.array_equal(px(out)[8:40, 8:40], px(init))


def test_flux_distilled_guidance_changes_output_only_with_guidance_embeds():
    dev = from_pipeline(tiny.tiny_flux(guidance_embeds=True))
    a = run_image(dev, mode="txt2img", sampler=None, seeds=[1], **{**KW, "guidance": 1.0})[0]
    b = run_image(dev, mode="txt2img", sampler=None, seeds=[1], **{**KW, "guidance": 6.0})[0]
    assert not np.array_equal(px(a), px(b))


def test_tiny_sd_with_8x_vae_and_its_single_file_export(tmp_path):
    from pipelines import detect_single_file, load_model

    pipe = tiny.tiny_sd(vae_scale=8)
    model = from_pipeline(pipe)
    out = run_image(model, mode="txt2img", sampler="Euler", seeds=[1], **{**KW, "width": 64, "height": 64})[0]
    assert out.size == (64, 64) and pipe.vae_scale_factor == 8
    f = tiny.save_tiny_single_file(pipe, tmp_path / "m.safetensors")
    assert detect_single_file(f)[1] == "sd1"
    again = load_model(f, single_file_config=tiny.save_config_folder(pipe, tmp_path / "cfg"))
    same = run_image(again, mode="txt2img", sampler="Euler", seeds=[1], **{**KW, "width": 64, "height": 64})[0]
    assert np.array_equal(px(out), px(same))
