"""Variation seeds' noise (pipelines.variation) and prompt tools on a pipeline (pipelines.prompting), on tiny
random-weight pipelines built in code."""
import numpy as np
import pytest
import torch

from pipelines.prompting import has_weights, plain_text, to_compel, token_counts, weighted_embeds
from pipelines.tiny import tiny_clip_tokenizer, tiny_sd, tiny_sdxl
from pipelines.variation import latent_shape, slerp, variation_latents


def _noise(seed, shape=(2, 4, 8, 8)):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def test_slerp_ends_are_exact_and_middle_keeps_the_norm():
    a, b = _noise(1), _noise(2)
    assert torch.equal(slerp(0.0, a, b), a) and torch.equal(slerp(1.0, a, b), b)
    mid = slerp(0.5, a, b)
    line = 0.5 * (a + b)
    for i in range(2):
        # two independent noises are ~orthogonal: the arc keeps |a| ~ |b|, the straight line loses ~30%
        assert abs(mid[i].norm() / a[i].norm() - 1) < 0.05
        assert line[i].norm() / a[i].norm() < 0.8
    # on the unit sphere the midpoint is at equal angles from both ends, and t=0.25 a quarter of the way
    ua, ub = a / a.flatten(1).norm(dim=1).view(-1, 1, 1, 1), b / b.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    angle = lambda x, y: torch.acos(torch.nn.functional.cosine_similarity(x.flatten(), y.flatten(), dim=0))
    for i in range(2):
        whole = angle(ua[i], ub[i])
        assert abs(angle(slerp(0.5, ua, ub)[i], ua[i]) - whole / 2) < 1e-4
        assert abs(angle(slerp(0.25, ua, ub)[i], ua[i]) - whole / 4) < 1e-4


def test_slerp_moves_monotonically_and_handles_parallel_noise():
    a, b = _noise(3), _noise(4)
    dist = [float((slerp(t, a, b) - b).norm()) for t in (0.0, 0.25, 0.5, 0.75, 1.0)]
    assert dist == sorted(dist, reverse=True) and dist[-1] == 0
    same = slerp(0.3, a, a * 2)  # parallel: no division by sin(0)
    assert torch.isfinite(same).all() and torch.allclose(same, a * 1.3, atol=1e-5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        slerp(1.5, a, b)


def test_variation_latents_draw_like_diffusers_and_leave_the_generator_where_it_would_be():
    from diffusers.utils.torch_utils import randn_tensor

    pipe = tiny_sd(vae_scale=8)
    assert latent_shape(pipe, 64, 48) == (4, 6, 8)
    gens = [torch.Generator().manual_seed(s) for s in (5, 6)]
    ref_gens = [torch.Generator().manual_seed(s) for s in (5, 6)]
    own = randn_tensor((2, 4, 6, 8), generator=ref_gens, dtype=torch.float32)
    lat0 = variation_latents(pipe, gens, width=64, height=48, variation_seed=9, strength=0.0)
    assert torch.equal(lat0, own)  # strength 0: exactly the pipeline's own noise
    assert torch.equal(gens[0].get_state(), ref_gens[0].get_state())
    lat1 = variation_latents(pipe, [torch.Generator().manual_seed(s) for s in (5, 6)], width=64, height=48,
                             variation_seed=9, strength=1.0)
    target = randn_tensor((1, 4, 6, 8), generator=torch.Generator().manual_seed(9), dtype=torch.float32)
    assert torch.equal(lat1[0], target[0]) and torch.equal(lat1[1], target[0])  # one variation seed for the batch


def test_token_counts_say_what_is_cut():
    pipe = tiny_sd(vae_scale=8)
    short = token_counts(pipe, "a red circle")
    assert [(c.kind, c.tokens, c.limit, c.over) for c in short] == [("CLIP", 12, 77, False)]  # byte-level, no spaces: 10 + 2
    long = token_counts(pipe, "x" * 100)
    assert long[0].tokens == 102 and long[0].over and long[0].ignored == "x" * 25  # start + 75 + end read, 25 cut
    xl = token_counts(tiny_sdxl(), "a red circle")
    assert len(xl) == 1  # SDXL's two CLIP tokenizers cut at the same place: counted once


def test_a1111_weights_are_detected_and_handed_to_compel():
    assert has_weights("a (red:1.5) circle") and not has_weights("a (red) circle, 1.5")
    assert to_compel("a (red circle:0.5) on (white: 1.2)") == "a (red circle)0.5 on (white)1.2"
    assert plain_text("a (red:1.5) circle") == "a red circle"


@pytest.mark.parametrize("build", [lambda: tiny_sd(vae_scale=8), tiny_sdxl], ids=["sd1", "sdxl"])
def test_compel_embeds_plain_prompt_equal_and_weight_changes_them(build):
    pipe = build()
    plain = weighted_embeds(pipe, "a red circle", "blurry")
    ref = pipe.encode_prompt("a red circle", device="cpu", num_images_per_prompt=1,
                             do_classifier_free_guidance=True, negative_prompt="blurry")
    assert torch.allclose(plain["prompt_embeds"], ref[0], atol=1e-6)
    weighted = weighted_embeds(pipe, "a (red:1.5) circle", "blurry")
    assert not torch.allclose(weighted["prompt_embeds"], plain["prompt_embeds"], atol=1e-4)
    assert set(weighted) >= {"prompt_embeds", "negative_prompt_embeds"}
    if "pooled_prompt_embeds" in weighted:
        assert weighted["pooled_prompt_embeds"].shape[0] == 1


# ---- run_image: the same noise contract on every family that takes initial latents
def _models():
    from pipelines import from_pipeline, tiny

    return {"sd1": lambda: from_pipeline(tiny.tiny_sd()), "sdxl": lambda: from_pipeline(tiny.tiny_sdxl()),
            "sd3": lambda: from_pipeline(tiny.tiny_sd3()),
            "sd1-inpaint-unet": lambda: from_pipeline(tiny.tiny_sd(inpaint_channels=9))}


@pytest.mark.parametrize("family", list(_models()))
def test_run_image_variation_ends_match_plain_seeds(family):
    from pipelines import run_image

    model = _models()[family]()
    kw = dict(mode="txt2img", prompt="a red fox", negative_prompt="blurry", width=32, height=32, steps=2,
              guidance=5.0, sampler="Euler" if family != "sd3" else None)
    px = lambda ims: np.asarray(ims[0], dtype=np.int16)  # noqa: E731
    plain, target = px(run_image(model, seeds=[3], **kw)), px(run_image(model, seeds=[8], **kw))
    assert np.array_equal(px(run_image(model, seeds=[3], variation_seed=8, variation_strength=0.0, **kw)), plain)
    full = px(run_image(model, seeds=[3], variation_seed=8, variation_strength=1.0, **kw))
    if family == "sd1-inpaint-unet":
        # strength 1 is the variation seed's initial noise; this pipeline also samples the VAE encoding of its
        # (blank) masked image from the image's own generator, so the pixels are near, not equal
        assert np.abs(full - plain).mean() > 10 * np.abs(full - target).mean()  # measured: 50 vs 2.5 levels
    else:
        assert np.array_equal(full, target)  # a deterministic sampler: the initial noise is all the randomness
    mid = px(run_image(model, seeds=[3], variation_seed=8, variation_strength=0.5, **kw))
    assert not np.array_equal(mid, plain) and not np.array_equal(mid, target)


def test_run_image_refuses_variation_where_it_does_not_apply():
    from pipelines import from_pipeline, run_image, tiny

    sd = from_pipeline(tiny.tiny_sd())
    with pytest.raises(ValueError, match="variation seeds apply to txt2img"):
        run_image(sd, mode="img2img", prompt="x", init_image=__import__("_pl_helpers").pattern(32), width=32,
                  height=32, steps=2, seeds=[1], variation_seed=2, variation_strength=0.5)
    flux = from_pipeline(tiny.tiny_flux())
    with pytest.raises(ValueError, match="not supported for Flux"):
        run_image(flux, mode="txt2img", prompt="x", width=32, height=32, steps=2, seeds=[1], variation_seed=2,
                  variation_strength=0.5)


def test_run_image_weighting_on_sdxl_changes_the_image_and_plain_text_does_not():
    from pipelines import from_pipeline, run_image, tiny

    model = from_pipeline(tiny.tiny_sdxl())
    kw = dict(mode="txt2img", negative_prompt="blurry", width=32, height=32, steps=2, guidance=5.0, seeds=[4],
              sampler="Euler")
    px = lambda ims: np.asarray(ims[0], dtype=np.int16)  # noqa: E731
    plain = px(run_image(model, prompt="a red fox", **kw))
    assert np.array_equal(px(run_image(model, prompt="a red fox", prompt_weighting=True, **kw)), plain)
    weighted = px(run_image(model, prompt="a (red:1.8) fox", prompt_weighting=True, **kw))
    assert np.abs(weighted - plain).max() > 0
