"""Shipped single-file configs: complete, loadable offline, and the published architecture sizes."""
import json
from pathlib import Path

import diffusers
import torch
import pytest
import transformers
from accelerate import init_empty_weights

from pipelines.loading import CONFIG_DIR, TOKENIZERS, _MODEL_TYPES

# published parameter counts of the real checkpoints
EXPECTED = {
    "sd1": {"unet": 859_520_964, "vae": 83_653_863, "text_encoder": 123_060_480},
    "sd2": {"unet": 865_910_724, "vae": 83_653_863, "text_encoder": 340_387_840},
    "sdxl": {"unet": 2_567_463_684, "vae": 83_653_863, "text_encoder": 123_060_480, "text_encoder_2": 694_659_840},
    "sd3": {"transformer": 2_028_328_000},
    "flux-dev": {"transformer": 11_901_408_320},
    "flux-schnell": {"transformer": 11_891_178_560},
}


def _count(folder: Path, comp: str) -> int:
    lib, cls = json.loads((folder / "model_index.json").read_text())[comp]
    with init_empty_weights():
        if lib == "diffusers":
            C = getattr(diffusers, cls)
            m = C.from_config(C.load_config(folder / comp))
        else:
            m = getattr(transformers, cls)(transformers.AutoConfig.from_pretrained(folder / comp))
    return sum(p.numel() for p in m.parameters())


def test_every_shipped_family_is_complete():
    for name in ("sd1", "sd2", "sdxl", "sd3", "flux-dev", "flux-schnell"):
        folder = CONFIG_DIR / name
        idx = json.loads((folder / "model_index.json").read_text())
        assert hasattr(diffusers, idx["_class_name"])
        for comp, spec in idx.items():
            if comp.startswith("_") or not isinstance(spec, list) or spec[0] is None:
                continue
            if comp.startswith("tokenizer"):
                assert not (folder / comp).exists()  # tokenizers come from the user (MissingTokenizer)
                continue
            cfg = folder / comp / ("scheduler_config.json" if comp == "scheduler" else "config.json")
            assert cfg.is_file(), cfg
    # every family a detected model type maps to has its tokenizers described
    for _t, (family, shipped, _p) in _MODEL_TYPES.items():
        assert family in TOKENIZERS
        if shipped:
            assert (CONFIG_DIR / shipped / "model_index.json").is_file()


def test_sd_scheduler_configs():
    sd1 = json.loads((CONFIG_DIR / "sd1/scheduler/scheduler_config.json").read_text())
    sd2 = json.loads((CONFIG_DIR / "sd2/scheduler/scheduler_config.json").read_text())
    assert sd1["prediction_type"] == "epsilon" and sd2["prediction_type"] == "v_prediction"
    assert sd1["beta_schedule"] == "scaled_linear" and sd1["beta_end"] == 0.012
    assert json.loads((CONFIG_DIR / "sd2/unet/config.json").read_text())["sample_size"] == 96  # 768 px


@pytest.mark.parametrize("name", ["sd1", "sd2"])
def test_param_counts_sd(name):
    for comp, n in EXPECTED[name].items():
        assert _count(CONFIG_DIR / name, comp) == n, (name, comp)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["sdxl", "sd3", "flux-dev", "flux-schnell"])
def test_param_counts_large(name):
    for comp, n in EXPECTED[name].items():
        assert _count(CONFIG_DIR / name, comp) == n, (name, comp)


@pytest.mark.parametrize("name,expected_type", [("sd1", "v1"), ("sd2", "v2"), ("sdxl", "xl_base")])
def test_shipped_unet_vae_configs_match_the_original_ldm_layout(name, expected_type):
    """Real-size models on the meta device -> original (LDM) keys -> diffusers' own single-file converters with
    the shipped config: every key and shape must come back, and the family must be detected from the keys."""
    from diffusers.loaders.single_file_utils import (convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint,
                                                     infer_diffusers_model_type)

    from pipelines._ldm_export import unet_to_ldm, vae_to_ldm
    from pipelines.loading import _MODEL_TYPES

    U, V = diffusers.UNet2DConditionModel, diffusers.AutoencoderKL
    ucfg, vcfg = U.load_config(CONFIG_DIR / name / "unet"), V.load_config(CONFIG_DIR / name / "vae")
    with init_empty_weights():
        unet, vae = U.from_config(ucfg), V.from_config(vcfg)
    ldm = unet_to_ldm(unet)
    if name == "sdxl":  # the OpenCLIP-bigG text encoder key SDXL detection looks for
        ldm["conditioner.embedders.1.model.transformer.resblocks.9.mlp.c_proj.bias"] = torch.empty(1280,
                                                                                                   device="meta")
    model_type = infer_diffusers_model_type(ldm)
    assert model_type == expected_type and _MODEL_TYPES[model_type][0] == name
    back = convert_ldm_unet_checkpoint(ldm, ucfg)
    ref = unet.state_dict()
    assert set(back) == set(ref) and all(back[k].shape == ref[k].shape for k in ref)
    vback = convert_ldm_vae_checkpoint(vae_to_ldm(vae), vcfg)
    vref = vae.state_dict()
    assert set(vback) == set(vref) and all(vback[k].shape == vref[k].shape for k in vref)
