import pytest
import torch

from pipelines import apply_memory_options, pick_device_dtype, resolve_device, resolve_dtype


def test_auto_on_this_machine():
    dev, dt = pick_device_dtype()
    if torch.cuda.is_available():
        assert dev.type == "cuda" and dt in (torch.float16, torch.bfloat16)
    else:
        assert dev.type in ("cpu", "mps")
        assert dt == (torch.float32 if dev.type == "cpu" else torch.float16)


def test_cuda_policy(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_dtype(None, "cuda", "sd1") == torch.float16
    assert resolve_dtype(None, "cuda", "sdxl") == torch.float16
    assert resolve_dtype(None, "cuda", "flux") == torch.bfloat16
    assert resolve_dtype(None, "cuda:0", "sd3") == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert resolve_dtype(None, "cuda", "flux") == torch.float16
    assert resolve_device("cuda:1") == torch.device("cuda:1")


@pytest.mark.parametrize("s,dt", [("fp16", torch.float16), ("bf16", torch.bfloat16), ("fp32", torch.float32),
                                  ("float32", torch.float32), ("bfloat16", torch.bfloat16), ("auto", torch.float32)])
def test_dtype_strings(s, dt):
    assert resolve_dtype(s, "cpu") == dt


def test_bad_strings():
    with pytest.raises(ValueError):
        resolve_dtype("int4", "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA"):
            resolve_device("cuda")
    assert resolve_device("CPU") == torch.device("cpu")


def test_memory_options_on_cpu(sd_model):
    if torch.cuda.is_available():
        pytest.skip("CPU behaviour")
    with pytest.warns(RuntimeWarning, match="needs CUDA"):
        applied = apply_memory_options(sd_model, offload="model", vae_tiling=True, vae_slicing=True,
                                       attention_slicing=True)
    assert applied == {"offload": None, "vae_tiling": True, "vae_slicing": True, "attention_slicing": True}
    assert sd_model.pipe.vae.use_tiling and sd_model.pipe.vae.use_slicing
    applied = apply_memory_options(sd_model)
    assert not sd_model.pipe.vae.use_tiling and not sd_model.pipe.vae.use_slicing
    with pytest.raises(ValueError):
        apply_memory_options(sd_model, offload="disk")
