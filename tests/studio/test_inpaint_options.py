"""Inpaint options through the engine (tiny random-weight SD): recorded in the request, the C2PA record and the
A1111 text, replayable to the same pixels; only-masked keeps the source's size; bad options are one line."""
import numpy as np
import pytest
from PIL import Image

import studio
from studio import GenerationRequest, RequestError

SIZE = 256


def test_options_recorded_and_replayable(tiny_model, tmp_path):
    engine = studio.Studio()
    src = tmp_path / "src.png"
    smooth = np.zeros((SIZE, SIZE, 3), np.uint8)  # smooth, so the watermark moves few levels
    smooth[..., 0] = np.linspace(30, 220, SIZE)[None, :]
    smooth[..., 1] = np.linspace(200, 40, SIZE)[:, None]
    smooth[..., 2] = 120
    Image.fromarray(smooth).save(src)
    mask = Image.new("L", (SIZE, SIZE), 0)
    mask.paste(255, (96, 96, 160, 160))
    mask.save(tmp_path / "mask.png")
    opts = {"mask_blur": 6, "masked_content": "fill", "only_masked": True, "padding": 16}
    result = engine.generate(prompt="a red circle", model=tiny_model, init_image=str(src),
                             mask=str(tmp_path / "mask.png"), width=128, height=128, steps=2, seed=3, inpaint=opts,
                             out=tmp_path / "out.png")
    out = result.outputs[0]
    assert result.record.mode == "inpaint" and result.record.request.inpaint.model_dump() == opts
    assert (out.record.width, out.record.height) == (SIZE, SIZE)  # only-masked pastes back into the source
    info = studio.info(tmp_path / "out.png")
    assert info["request"]["inpaint"] == opts
    assert "Mask blur: 6, Masked content: fill, Inpaint area: Only masked, Only masked padding, pixels: 16" \
        in info["_parameters"]
    again = engine.generate(result.record.request, init_image=str(src), mask=str(tmp_path / "mask.png"))
    assert again.outputs[0].record.pixel_sha256 == out.record.pixel_sha256
    # far from the mask the delivered image is the source (up to the watermark's few levels)
    a = np.asarray(out.image.convert("RGB")).astype(int)
    b = np.asarray(Image.open(src).convert("RGB")).astype(int)
    assert np.abs(a[:64] - b[:64]).mean() < 4 and np.abs(a[100:156, 100:156] - b[100:156, 100:156]).mean() > 20


@pytest.mark.parametrize("fields, needle", [
    (dict(init_image="a.png", inpaint={"mask_blur": 2}), "inpaint options given without mask"),
    (dict(init_image="a.png", mask="m.png", inpaint={"masked_content": "blur"}), "masked_content"),
    (dict(init_image="a.png", mask="m.png", inpaint={"mask_blur": 100}), "mask_blur"),
])
def test_bad_options_one_line(fields, needle):
    with pytest.raises(RequestError, match=needle) as info:
        GenerationRequest.build(prompt="x", **fields)
    assert "\n" not in str(info.value)


def test_cli_inpaint_options(tiny_model, tmp_path):
    from studio.cli import main

    Image.new("RGB", (SIZE, SIZE), (90, 140, 200)).save(tmp_path / "src.png")
    mask = Image.new("L", (SIZE, SIZE), 0)
    mask.paste(255, (64, 64, 128, 128))
    mask.save(tmp_path / "mask.png")
    out = tmp_path / "cli.png"
    code = main(["generate", "a red circle", "--model", tiny_model, "--init", str(tmp_path / "src.png"), "--mask",
                 str(tmp_path / "mask.png"), "--steps", "2", "--seed", "1", "--mask-blur", "2", "--masked-content",
                 "latent_noise", "--only-masked", "-W", "128", "-H", "128", "-o", str(out)])
    assert code == 0
    assert studio.info(out)["request"]["inpaint"] == {"mask_blur": 2, "masked_content": "latent_noise",
                                                      "only_masked": True, "padding": 32}
    assert main(["generate", "x", "-o", str(tmp_path / "y.png"), "--masked-content", "fill"]) == 2
