"""Every catalog sampler on a tiny model: builds, gives a valid image that differs from the others;
wrong-kind samplers are refused with the reason."""
import importlib.util

import numpy as np
import pytest
from _pl_helpers import KW, px

from pipelines import run_image
from schedulers import SAMPLERS, IncompatibleSampler, UnknownSampler

EPS = [n for n, s in SAMPLERS.items() if s.kind == "eps"]
FLOW = [n for n, s in SAMPLERS.items() if s.kind == "flow"]


def _missing(name):
    return [m for m in SAMPLERS[name].requires if importlib.util.find_spec(m) is None]


@pytest.fixture(scope="module")
def reference(sd_model):
    return px(run_image(sd_model, mode="txt2img", sampler="Euler", seeds=[5], **KW)[0])


@pytest.mark.parametrize("name", EPS)
def test_every_eps_sampler_runs_on_tiny_sd(name, sd_model, reference):
    if _missing(name):
        with pytest.raises(IncompatibleSampler, match=f"pip install {_missing(name)[0]}"):
            run_image(sd_model, mode="txt2img", sampler=name, seeds=[5], **KW)
        return
    img = run_image(sd_model, mode="txt2img", sampler=name, seeds=[5], **KW)[0]
    a = px(img)
    assert img.size == (32, 32) and img.mode == "RGB"
    assert a.std() > 1 and 0 <= a.min() and a.max() <= 255  # a real picture, not a constant/NaN frame
    if name != "Euler":
        assert not np.array_equal(a, reference), f"{name} gave exactly Euler's image"
    again = px(run_image(sd_model, mode="txt2img", sampler=name, seeds=[5], **KW)[0])
    assert np.array_equal(a, again)  # deterministic per seed, ancestral ones included


@pytest.mark.parametrize("name", FLOW)
def test_flow_samplers_refused_on_sd1(name, sd_model):
    with pytest.raises(IncompatibleSampler, match="flow-matching") as ei:
        run_image(sd_model, mode="txt2img", sampler=name, seeds=[1], **KW)
    assert "sd1" in str(ei.value)


@pytest.mark.parametrize("name", ["Euler", "DPM++ 2M Karras", "DDIM", "UniPC"])
@pytest.mark.parametrize("fixture,family", [("sd3_model", "sd3"), ("flux_model", "flux")])
def test_eps_samplers_refused_on_flow_models(name, fixture, family, request):
    model = request.getfixturevalue(fixture)
    with pytest.raises(IncompatibleSampler) as ei:
        run_image(model, mode="txt2img", sampler=name, seeds=[1], **KW)
    msg = str(ei.value)
    assert family in msg and "flow matching" in msg and name in msg


def test_unknown_sampler_names_the_known_ones(sd_model):
    with pytest.raises(UnknownSampler) as ei:
        run_image(sd_model, mode="txt2img", sampler="Eulr", seeds=[1], **KW)
    assert "Euler a" in str(ei.value) and "DPM++ 2M Karras" in str(ei.value)


@pytest.mark.skipif(importlib.util.find_spec("torchsde") is not None, reason="torchsde is installed here")
def test_sde_sampler_without_torchsde_is_refused_not_crashing(sd_model):
    with pytest.raises(IncompatibleSampler, match="pip install torchsde"):
        run_image(sd_model, mode="txt2img", sampler="DPM++ SDE Karras", seeds=[1], **KW)


def test_sd3_flow_heun_runs(sd3_model):
    a = run_image(sd3_model, mode="txt2img", sampler="Flow-match Heun", seeds=[1], **KW)[0]
    b = run_image(sd3_model, mode="txt2img", sampler="Flow-match Euler", seeds=[1], **KW)[0]
    assert a.size == (32, 32) and not np.array_equal(px(a), px(b))


def test_sde_sampler_batch_image_matches_single_seed(sd_model):
    """SDE samplers seed their Brownian noise per image: image i of a batch equals the single run of seed i."""
    pytest.importorskip("torchsde")
    batch = run_image(sd_model, mode="txt2img", sampler="DPM++ SDE Karras", seeds=[5, 6], **KW)
    single = run_image(sd_model, mode="txt2img", sampler="DPM++ SDE Karras", seeds=[6], **KW)
    assert np.abs(px(batch[1]).astype(int) - px(single[0]).astype(int)).max() <= 1
    assert not np.array_equal(px(batch[0]), px(batch[1]))
