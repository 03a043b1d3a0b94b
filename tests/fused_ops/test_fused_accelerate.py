import logging
import types

import pytest
import torch

import fused_ops
from fused_ops import ACCELERATE_MODES, accelerate
from fused_testutil import psnr, run_pipeline, sd_pipeline, tiny_unet, tiny_vae, unet_inputs


def _unet_out(u, inputs):
    x, t, ctx = inputs
    with torch.no_grad():
        return u(x, t, encoder_hidden_states=ctx).sample


def _snapshot(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_modes_constant_and_bad_mode():
    assert ACCELERATE_MODES == ("off", "safe", "max")
    with pytest.raises(ValueError):
        accelerate(tiny_unet(), "fast")
    with pytest.raises(TypeError):
        accelerate(object(), "safe")


@pytest.mark.parametrize("mode", ACCELERATE_MODES)
def test_cpu_default_is_noop_and_identical(mode, caplog):
    u = tiny_unet()
    inputs = unet_inputs()
    ref = _unet_out(u, inputs)
    with caplog.at_level(logging.INFO, logger="fused_ops"):
        h = accelerate(u, mode)
    assert h.applied == []
    if mode != "off":
        assert any("no-op" in n for n in h.notes)
        assert any("no-op" in r.getMessage() for r in caplog.records)
    assert torch.equal(_unet_out(u, inputs), ref)
    h.undo()


@pytest.mark.parametrize("mode", ["safe", "max"])
def test_unet_swaps_close_and_undo_exact(mode):
    u = tiny_unet()
    inputs = unet_inputs()
    ref = _unet_out(u, inputs)
    keys, sd = list(u.state_dict()), _snapshot(u)
    procs = dict(u.attn_processors)
    h = accelerate(u, mode, allow_cpu=True)
    kinds = " ".join(h.applied)
    assert "FusedAttnProcessor (packed to_q+to_k+to_v)" in kinds and "packed to_k+to_v" in kinds
    assert "ResnetBlock2D GroupNorm+SiLU fused" in kinds and "conv_norm_out+conv_act" in kinds
    assert ("GEGLU fused (dual_gemm)" if mode == "max" else "GEGLU fused (elementwise)") in kinds
    assert list(u.state_dict()) == keys  # module tree / parameter names unchanged
    assert all(torch.equal(v, sd[k]) for k, v in u.state_dict().items())
    out = _unet_out(u, inputs)
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)
    if mode == "max":
        assert any("CUDA graphs off" in n for n in h.notes)
        assert "channels_last" in kinds
    h.undo()
    h.undo()  # idempotent
    assert all(u.attn_processors[k] is p for k, p in procs.items())
    assert not any("forward" in m.__dict__ for m in u.modules())
    assert all(p.is_contiguous() for p in u.parameters())
    assert torch.equal(_unet_out(u, inputs), ref)


def test_reference_paths_match_stock_closely():
    """With every op forced to its PyTorch reference the accelerated model is the stock math."""
    u = tiny_unet()
    inputs = unet_inputs()
    ref = _unet_out(u, inputs)
    prev = fused_ops.set_force_reference(True)
    try:
        with accelerate(u, "safe", allow_cpu=True):
            out = _unet_out(u, inputs)
    finally:
        fused_ops.set_force_reference(prev)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)  # only the packed-QKV GEMM differs
    assert torch.equal(_unet_out(u, inputs), ref)


def test_vae_decode_and_pipeline_object(kernel_device):
    vae = tiny_vae()
    unet = tiny_unet()
    pipe = types.SimpleNamespace(components={"vae": vae, "unet": unet, "tokenizer": None, "scheduler": object()})
    z = torch.randn(1, 4, 8, 8)
    with torch.no_grad():
        ref = vae.decode(z).sample
        h = accelerate(pipe, "max", allow_cpu=True)
        names = " ".join(h.applied)
        assert "vae.decoder.up_blocks.1.resnets.0: ResnetBlock2D" in names
        assert "vae.decoder.mid_block.attentions.0: FusedAttnProcessor" in names
        assert "vae.decoder.conv_norm_out+conv_act" in names and "unet." in names
        out = vae.decode(z).sample
        torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)
        h.undo()
        assert torch.equal(vae.decode(z).sample, ref)


def test_existing_instance_forward_left_alone():
    u = tiny_unet()
    blk = u.down_blocks[0].resnets[0]
    marker = blk.forward
    blk.forward = marker  # e.g. an offload hook
    h = accelerate(u, "safe", allow_cpu=True)
    assert not any(a.startswith("UNet2DConditionModel.down_blocks.0.resnets.0:") for a in h.applied)
    h.undo()
    assert blk.__dict__["forward"] is marker


def test_lora_wrapped_projection_is_not_packed():
    u = tiny_unet()
    attn = u.down_blocks[0].attentions[0].transformer_blocks[0].attn1

    class Wrapped(torch.nn.Linear):
        pass

    w = Wrapped(attn.to_q.in_features, attn.to_q.out_features, bias=False)
    w.load_state_dict(attn.to_q.state_dict())
    attn.to_q = w
    h = accelerate(u, "safe", allow_cpu=True)
    assert any(a.endswith("transformer_blocks.0.attn1: FusedAttnProcessor") for a in h.applied)
    prev = fused_ops.set_force_reference(True)
    try:
        _unet_out(u, unet_inputs())
    finally:
        fused_ops.set_force_reference(prev)
    h.undo()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_pipeline_end_to_end_cpu_reference_paths():
    """The GPU PSNR test's code path on a real diffusers pipeline object, tiny and on CPU (reference ops)."""
    pipe = sd_pipeline(tiny_unet(), tiny_vae())
    run = lambda: run_pipeline(pipe, 24, steps=2, size=16, device="cpu", dtype=torch.float32)  # noqa: E731
    stock = run()
    prev = fused_ops.set_force_reference(True)
    try:
        h = accelerate(pipe, "max", allow_cpu=True)
        assert any(a.startswith("unet.") for a in h.applied) and any(a.startswith("vae.") for a in h.applied)
        fast = run()
    finally:
        fused_ops.set_force_reference(prev)
        h.undo()
    assert psnr(fast, stock) >= 40.0
    assert torch.equal(run(), stock)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_regional_compile_option_is_reversible():
    u = tiny_unet()
    h = accelerate(u, "max", allow_cpu=True, compile=True)  # torch.compile is lazy: nothing compiles here
    assert any("torch.compile (regional)" in a for a in h.applied)
    assert not any("ResnetBlock2D GroupNorm+SiLU fused" in a for a in h.applied)  # compiled blocks not swapped
    blk = u.down_blocks[0].resnets[0]
    assert blk._compiled_call_impl is not None
    h.undo()
    assert blk._compiled_call_impl is None


def test_resnet_output_scale_factor_respected():
    from diffusers.models.resnet import ResnetBlock2D

    torch.manual_seed(0)
    blk = ResnetBlock2D(in_channels=8, out_channels=16, temb_channels=12, groups=4, output_scale_factor=2.0).eval()
    x, temb = torch.randn(2, 8, 5, 5), torch.randn(2, 12)
    with torch.no_grad():
        ref = blk(x, temb)
        prev = fused_ops.set_force_reference(True)
        try:
            with accelerate(blk, "safe", allow_cpu=True) as h:
                assert h.applied
                out = blk(x, temb)
        finally:
            fused_ops.set_force_reference(prev)
    assert torch.equal(out, ref)
