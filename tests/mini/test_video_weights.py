"""The committed mini-video weights: offline load, shapes, a 2-step 8-frame smoke render (skipped when absent)."""
import json
from pathlib import Path

import numpy as np
import pytest

WEIGHTS = Path(__file__).resolve().parents[2] / "studio" / "mini" / "video" / "weights"
pytestmark = pytest.mark.skipif(not (WEIGHTS / "model_index.json").exists(), reason="mini-video weights absent")


@pytest.fixture(scope="module")
def pipe():
    import torch
    from diffusers import AnimateDiffPipeline

    torch.set_num_threads(1)
    p = AnimateDiffPipeline.from_pretrained(WEIGHTS, torch_dtype=torch.float32)
    p.set_progress_bar_config(disable=True)
    return p


def test_files_and_size():
    st = list(WEIGHTS.rglob("*.safetensors"))
    assert st and not list(WEIGHTS.rglob("*.bin"))
    family = sum(p.stat().st_size for p in (WEIGHTS.parents[1] / "weights").rglob("*") if p.is_file())
    family += sum(p.stat().st_size for p in WEIGHTS.rglob("*") if p.is_file())
    assert family <= 64 * 2**20  # the whole mini family
    idx = json.loads((WEIGHTS / "model_index.json").read_text())
    assert idx["_class_name"] == "AnimateDiffPipeline"
    assert {"unet", "motion_adapter", "text_encoder", "tokenizer", "vae", "scheduler"} <= set(idx)


def test_every_motion_phrase_picks_its_own_motion_lora():
    from pipelines.motion_loras import choose_motion, motion_table
    from studio.mini.video import world as V

    table = motion_table(WEIGHTS)
    assert table is not None and set(table["loras"]) == set(V.MOTIONS)
    for motion, phrases in V.MOTION_PHRASES.items():
        for phrase in phrases:
            c = choose_motion(table, f"a red circle {phrase} on a white background", WEIGHTS)
            assert c.motion == motion and c.file.is_file(), phrase
            assert c.prompt == "a red circle on a white background"  # as the training captions were stripped


def test_text_side_is_the_mini_image_models():
    """The motion comes from the motion LoRAs, so the text encoder and tokenizer are the image model's."""
    from safetensors.torch import load_file
    from transformers import CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(WEIGHTS / "tokenizer")
    old = CLIPTokenizer.from_pretrained(WEIGHTS.parents[1] / "weights" / "tokenizer")
    cap = "a large red circle at the top left on a white background"
    assert tok(cap).input_ids == old(cap).input_ids and len(tok) == len(old)
    new_te = load_file(str(WEIGHTS / "text_encoder" / "model.safetensors"))
    old_te = load_file(str(WEIGHTS.parents[1] / "weights" / "text_encoder" / "model.safetensors"))
    assert new_te.keys() == old_te.keys()
    assert all((new_te[k].float() - old_te[k].float()).abs().max() < 1e-3 for k in new_te)


@pytest.mark.slow
def test_smoke_render(pipe):
    import torch

    out = pipe(prompt="a red square moving to the left on a white background", num_frames=8, width=256, height=256,
               num_inference_steps=2, guidance_scale=5.0, generator=torch.Generator().manual_seed(0),
               output_type="np").frames[0]
    assert out.shape == (8, 256, 256, 3) and np.isfinite(out).all()
    assert pipe.unet.config.in_channels == 4 and pipe.vae.config.latent_channels == 4
