"""ControlNet and preprocessors on tiny random-weight pipelines built in code (SD1, SDXL, Flux)."""
import importlib.util
import numpy as np
import pytest
from PIL import Image, ImageDraw

import pipelines
from pipelines import control_preprocess as prep
from pipelines.controlnet import ControlSpec, check_fits, control_kwargs, control_pipeline, from_module
from pipelines.tiny import tiny_flux, tiny_sd, tiny_sdxl
from pipelines.tiny_control import tiny_controlnet

# controlnet-aux is installed without its dependencies (they would replace torch): see pyproject's `control` extra
needs_aux = pytest.mark.skipif(importlib.util.find_spec("controlnet_aux") is None,
                               reason="controlnet-aux not installed (pip install --no-deps controlnet-aux)")



def _shape(size=(32, 32)):
    im = Image.new("RGB", size, "white")
    ImageDraw.Draw(im).rectangle((size[0] // 8, size[1] // 8, size[0] // 2, size[1] // 2), fill="black")
    return im


def _px(im):
    return np.asarray(im).astype(int)


@needs_aux
@pytest.mark.parametrize("name", ["canny", "shuffle", "lineart_standard", "none"])
def test_weightless_preprocessors_give_the_output_size(name):
    out = prep.preprocess(name, _shape((100, 60)), (64, 48), seed=3)
    assert out.size == (64, 48) and out.mode == "RGB"
    if name != "none":  # a map of edges / lines / shuffled content, not the picture resized
        assert not np.array_equal(_px(out), _px(_shape((100, 60)).resize((64, 48))))


@needs_aux
def test_canny_marks_the_edges_of_a_shape():
    edges = _px(prep.preprocess("canny", _shape((64, 64)), (64, 64)))[..., 0]
    assert edges[8, 8:32].max() == 255  # the square's top edge
    assert edges[48:, 48:].max() == 0  # flat background: no edges


@needs_aux
def test_shuffle_is_seeded_and_leaves_numpy_global_state_alone():
    np.random.seed(5)
    before = np.random.get_state()[1].copy()
    a = prep.preprocess("shuffle", _shape(), (32, 32), seed=1)
    assert np.array_equal(np.random.get_state()[1], before)
    assert np.array_equal(_px(a), _px(prep.preprocess("shuffle", _shape(), (32, 32), seed=1)))
    assert not np.array_equal(_px(a), _px(prep.preprocess("shuffle", _shape(), (32, 32), seed=2)))


@pytest.mark.parametrize("name, files", [("hed", "ControlNetHED.pth"), ("openpose", "body_pose_model.pth"),
                                          ("lineart", "sk_model.pth, sk_model2.pth")])
def test_learned_preprocessor_without_weights_says_which_files_go_where(name, files, tmp_path, monkeypatch):
    monkeypatch.delenv(prep.ANNOTATORS_ENV, raising=False)
    with pytest.raises(prep.MissingAnnotatorWeights) as exc:
        prep.preprocess(name, _shape(), (32, 32), annotators_dir=tmp_path)
    msg = str(exc.value)
    assert files in msg and str(tmp_path) in msg and "lllyasviel/Annotators" in msg and "\n" not in msg


def test_learned_preprocessor_finds_its_folder_through_the_environment(tmp_path, monkeypatch):
    (tmp_path / "ControlNetHED.pth").write_bytes(b"x")
    monkeypatch.setenv(prep.ANNOTATORS_ENV, str(tmp_path))
    assert prep.weights_folder("hed") == tmp_path
    assert prep.weights_folder("canny") is None


def test_unknown_preprocessor_is_named():
    with pytest.raises(prep.PreprocessError, match="unknown preprocessor 'edgy'"):
        prep.preprocess("edgy", _shape(), (32, 32))


def test_schema_lists_the_same_preprocessors():
    from studio.schema import CONTROL_PREPROCESSORS

    assert set(CONTROL_PREPROCESSORS) == set(prep.PREPROCESSORS)


KW = dict(mode="txt2img", prompt="a red square", width=32, height=32, steps=2, guidance=5.0, seeds=[1])


@pytest.fixture(scope="module", params=["sd1", "sdxl", "flux"])
def family(request):
    pipe = {"sd1": tiny_sd, "sdxl": tiny_sdxl, "flux": tiny_flux}[request.param]()
    return request.param, pipelines.from_pipeline(pipe), from_module(tiny_controlnet(pipe), "tiny-cn")


def test_control_steers_and_weight_zero_is_the_uncontrolled_image(family):
    name, model, net = family
    plain = _px(pipelines.run_image(model, **KW)[0])
    steered = _px(pipelines.run_image(model, **KW, controls=[ControlSpec(net, _shape(), 1.0)])[0])
    zero = _px(pipelines.run_image(model, **KW, controls=[ControlSpec(net, _shape(), 0.0)])[0])
    assert np.abs(plain - steered).mean() > 1
    assert np.array_equal(plain, zero)


def test_multi_controlnet_with_per_unit_weight_and_window(family):
    name, model, net = family
    one = _px(pipelines.run_image(model, **KW, controls=[ControlSpec(net, _shape(), 1.0)])[0])
    two = _px(pipelines.run_image(model, **KW, controls=[
        ControlSpec(net, _shape(), 1.0), ControlSpec(net, _shape().rotate(90), 0.7, 0.0, 0.5)])[0])
    assert two.shape == one.shape and np.abs(two - one).mean() > 0.5


def test_sd_controlnet_pipeline_at_weight_zero_equals_the_base_pipeline():
    """Not only the weight-0 shortcut: diffusers' SD ControlNet pipeline adds zero residuals at scale 0."""
    import torch

    pipe = tiny_sd()
    net = from_module(tiny_controlnet(pipe))
    spec = ControlSpec(net, _shape(), 0.0)
    cpipe = control_pipeline(pipe, "sd1", "txt2img", [spec])
    common = dict(prompt="x", num_inference_steps=2, width=32, height=32, output_type="np")
    a = pipe(generator=torch.Generator().manual_seed(0), **common).images
    b = cpipe(generator=torch.Generator().manual_seed(0), **common,
              **control_kwargs("sd1", "txt2img", [spec])).images
    assert np.array_equal(a, b)


@pytest.mark.parametrize("mode", ["img2img", "inpaint"])
def test_sd_img2img_and_inpaint_with_control_guess_mode_and_weight_zero(mode):
    model = pipelines.from_pipeline(tiny_sd())
    net = from_module(tiny_controlnet(model.pipe))
    mask = Image.new("L", (32, 32), 0)
    mask.paste(255, (0, 0, 16, 32))
    extra = dict(init_image=_shape(), strength=0.6, **({"mask": mask} if mode == "inpaint" else {}))
    kw = {**KW, "mode": mode, **extra}
    plain = _px(pipelines.run_image(model, **kw)[0])
    guessed = _px(pipelines.run_image(model, **kw, controls=[ControlSpec(net, _shape(), 1.0)], guess_mode=True)[0])
    assert guessed.shape == (32, 32, 3) and np.abs(plain - guessed).mean() > 0.5
    zero = _px(pipelines.run_image(model, **kw, controls=[ControlSpec(net, _shape(), 0.0)])[0])
    assert np.array_equal(plain, zero)  # weight 0 edits exactly as with no ControlNet
    if mode == "inpaint":  # the kept half is pasted back unchanged
        assert np.abs(guessed[:, 20:] - _px(_shape())[:, 20:]).max() <= 2


def test_guess_mode_is_refused_for_flux():
    with pytest.raises(ValueError, match="guess mode is not available for flux"):
        control_kwargs("flux", "txt2img", [ControlSpec(None, _shape())], guess_mode=True)


def test_a_controlnet_for_another_base_is_refused_by_name():
    xl = tiny_sdxl()
    net = from_module(tiny_controlnet(tiny_sd()), "sd1-net")
    with pytest.raises(ValueError, match="sd1-net does not fit this sdxl model"):
        check_fits("sdxl", xl, net)


def test_controlnet_loads_from_a_folder_and_refuses_pickle(tmp_path):
    from pipelines.controlnet import load_controlnet

    pipe = tiny_sd()
    tiny_controlnet(pipe).save_pretrained(tmp_path / "cn")
    net = load_controlnet(tmp_path / "cn", family="sd1")
    assert len(net.content_hash) == 64 and type(net.model).__name__ == "ControlNetModel"
    with pytest.raises(pipelines.ModelLoadError, match="FluxControlNetModel"):
        load_controlnet(tmp_path / "cn", family="flux")
    bad = tmp_path / "pickled"
    bad.mkdir()
    (bad / "config.json").write_text('{"_class_name": "ControlNetModel"}')
    (bad / "diffusion_pytorch_model.bin").write_bytes(b"x")
    with pytest.raises(pipelines.UnsafeCheckpoint):
        load_controlnet(bad, family="sd1")
    with pytest.raises(pipelines.ModelNotAvailable, match="not available offline"):
        load_controlnet("nobody/no-such-controlnet", family="sd1")


@pytest.mark.parametrize("mode", ["img2img", "inpaint"])
def test_flux_img2img_and_inpaint_with_control(mode):
    model = pipelines.from_pipeline(tiny_flux())
    net = from_module(tiny_controlnet(model.pipe))
    mask = Image.new("L", (32, 32), 0)
    mask.paste(255, (0, 0, 16, 32))
    kw = {**KW, "mode": mode, "init_image": _shape(), "strength": 0.8, **({"mask": mask} if mode == "inpaint" else {})}
    plain = _px(pipelines.run_image(model, **kw)[0])
    steered = _px(pipelines.run_image(model, **kw, controls=[ControlSpec(net, _shape(), 1.0)])[0])
    assert steered.shape == (32, 32, 3) and np.abs(plain - steered).mean() > 0.5
