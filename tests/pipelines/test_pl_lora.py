"""LoRA: weight 0 == none, weight 1 changes output, two at once, nothing leaks into the next request."""
import hashlib

import numpy as np
import pytest
import torch
from _pl_helpers import KW, px

from pipelines import ModelNotAvailable, UnsafeCheckpoint, apply_loras, load_model, loras_applied, run_image, tiny


@pytest.fixture(scope="module")
def lora_files(tiny_sd_pipe, tmp_path_factory):
    d = tmp_path_factory.mktemp("loras")
    return (tiny.make_tiny_lora(tiny_sd_pipe, d / "style_a.safetensors", seed=1),
            tiny.make_tiny_lora(tiny_sd_pipe, d / "style_b.safetensors", seed=2))


@pytest.fixture()
def model(sd_dir):
    return load_model(sd_dir)


def _img(m, seed=4, mode="txt2img"):
    return px(run_image(m, mode=mode, sampler="Euler", seeds=[seed], **KW)[0])


def test_lora_file_is_diffusers_peft_format(lora_files):
    from safetensors.torch import load_file

    sd = load_file(str(lora_files[0]))
    assert sd and all(k.startswith("unet.") and ".lora_" in k for k in sd)


def test_weights_and_leaks(model, lora_files):
    a, b = lora_files
    base = _img(model)
    hashes = apply_loras(model, [(a, 0.0)])
    assert hashes == [hashlib.sha256(a.read_bytes()).hexdigest()]
    assert np.array_equal(_img(model), base)  # weight 0 == no LoRA
    apply_loras(model, [(a, 1.0)])
    with_a = _img(model)
    assert np.abs(with_a - base).mean() > 1  # weight 1 changes the picture
    apply_loras(model, [(a, 0.5)])
    half = _img(model)
    assert not np.array_equal(half, with_a) and not np.array_equal(half, base)
    hs = apply_loras(model, [(a, 1.0), (b, 1.0)])
    assert len(hs) == 2 and hs[0] != hs[1]
    both = _img(model)
    assert not np.array_equal(both, with_a)
    assert sorted(model.pipe.get_active_adapters()) == sorted(model._lora_names) and len(model._lora_names) == 2
    # next request without LoRAs: exactly the base picture again, no adapters left behind
    assert apply_loras(model, []) == []
    assert np.array_equal(_img(model), base)
    assert not getattr(model.pipe.unet, "peft_config", None)
    # re-applying gives the same result as the first time (no accumulated state)
    apply_loras(model, [(a, 1.0)])
    assert np.array_equal(_img(model), with_a)


def test_lora_reaches_every_mode_pipeline(model, lora_files):
    from _pl_helpers import pattern

    init = pattern(32)
    kw = dict(mode="img2img", sampler="Euler", seeds=[1], init_image=init, strength=0.8, **KW)
    base = px(run_image(model, **kw)[0])
    with loras_applied(model, [(lora_files[0], 1.0)]) as hs:
        assert len(hs) == 1
        styled = px(run_image(model, **kw)[0])
    assert not np.array_equal(base, styled)
    assert np.array_equal(px(run_image(model, **kw)[0]), base)  # context manager unloaded it


def test_pickle_lora_refused(model, tmp_path):
    f = tmp_path / "lora.pt"
    torch.save({}, f)
    with pytest.raises(UnsafeCheckpoint, match="allow-unsafe-pickle"):
        apply_loras(model, [(f, 1.0)])


def test_missing_lora_file(model, tmp_path):
    with pytest.raises(ModelNotAvailable, match="LoRA file not found"):
        apply_loras(model, [(tmp_path / "nope.safetensors", 1.0)])


def test_broken_lora_leaves_model_clean(model, lora_files, tmp_path):
    from safetensors.torch import save_file

    bad = tmp_path / "bad.safetensors"
    save_file({"unet.nonsense.lora_A.weight": torch.zeros(2, 2)}, str(bad))
    base = _img(model)
    with pytest.raises(Exception):
        apply_loras(model, [(lora_files[0], 1.0), (bad, 1.0)])
    assert model._lora_names == []
    assert np.array_equal(_img(model), base)
