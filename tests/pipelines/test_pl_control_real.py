"""Real checkpoints, run only where they are in the local Hugging Face cache and a CUDA device is present:
InstructPix2Pix edits, and SD 1.5 with its canny ControlNet following an edge map."""
import numpy as np
import pytest
from PIL import Image, ImageDraw

pytestmark = [pytest.mark.gpu, pytest.mark.slow]


def _cached(repo: str, name: str = "model_index.json") -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(repo, name), str)
    except Exception:  # noqa: BLE001
        return False


def _scene(size=512):
    im = Image.new("RGB", (size, size), "white")
    ImageDraw.Draw(im).ellipse((size // 8, size // 8, size // 2, size // 2), fill="red")
    return im


@pytest.mark.skipif(not _cached("timbrooks/instruct-pix2pix"), reason="timbrooks/instruct-pix2pix not cached")
def test_instruct_pix2pix_recolours():
    import pipelines

    model = pipelines.load_model("timbrooks/instruct-pix2pix", device="cuda")
    assert model.family == "ip2p"
    out = pipelines.run_instruct(model, prompt="make the circle blue", init_image=_scene(), width=512, height=512,
                                 steps=20, guidance=7.5, image_guidance=1.5, seeds=[0])[0]
    px = np.asarray(out).astype(int)[100:200, 100:200]
    assert px[..., 2].mean() > px[..., 0].mean()  # blue now dominates where the red circle was


@pytest.mark.skipif(not (_cached("stable-diffusion-v1-5/stable-diffusion-v1-5")
                         and _cached("lllyasviel/control_v11p_sd15_canny", "config.json")),
                    reason="SD 1.5 and its canny ControlNet not cached")
def test_sd15_canny_controlnet_follows_the_edges():
    import pipelines
    from pipelines.control_preprocess import preprocess
    from pipelines.controlnet import ControlSpec, load_controlnet

    model = pipelines.load_model("stable-diffusion-v1-5/stable-diffusion-v1-5", device="cuda")
    net = load_controlnet("lllyasviel/control_v11p_sd15_canny", family="sd1", device=model.device, dtype=model.dtype)
    edges = preprocess("canny", _scene(), (512, 512))
    out = pipelines.run_image(model, mode="txt2img", prompt="a ball on a table", width=512, height=512, steps=20,
                              guidance=7.5, seeds=[0], controls=[ControlSpec(net, edges, 1.0)])[0]
    made = np.asarray(preprocess("canny", out, (512, 512)))[..., 0] > 0
    want = np.asarray(edges)[..., 0] > 0
    near = np.zeros_like(want)
    for dy in range(-4, 5):  # an edge within 4 px of the control's counts
        for dx in range(-4, 5):
            near |= np.roll(np.roll(made, dy, 0), dx, 1)
    assert (near & want).sum() / want.sum() > 0.5
