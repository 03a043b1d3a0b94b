"""First-frame image-to-video for AnimateDiff (pipelines/animatediff_i2v.py) on the mini base model with
an untrained motion adapter: frame 0 must come back as the given image whatever the motion module does."""
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

MINI = Path(__file__).resolve().parents[2] / "studio" / "mini" / "weights"
pytestmark = [pytest.mark.skipif(not (MINI / "unet").exists(), reason="mini weights absent"),
              pytest.mark.slow]  # ~30 s with the imports and the mini load on 2 shared cores


@pytest.fixture(scope="module")
def pipe():
    from diffusers import (AnimateDiffPipeline, AutoencoderKL, DPMSolverMultistepScheduler, MotionAdapter,
                           UNet2DConditionModel)
    from transformers import CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)
    adapter = MotionAdapter(block_out_channels=(32, 64, 128), motion_layers_per_block=1, motion_num_attention_heads=4,
                            motion_norm_num_groups=8, motion_max_seq_length=32)
    p = AnimateDiffPipeline(
        vae=AutoencoderKL.from_pretrained(MINI / "vae"), text_encoder=CLIPTextModel.from_pretrained(MINI / "text_encoder"),
        tokenizer=CLIPTokenizer.from_pretrained(MINI / "tokenizer"), unet=UNet2DConditionModel.from_pretrained(MINI / "unet"),
        motion_adapter=adapter, scheduler=DPMSolverMultistepScheduler.from_pretrained(MINI / "scheduler"),
    )
    p.set_progress_bar_config(disable=True)
    return p


def _image() -> Image.Image:
    img = Image.new("RGB", (256, 256), (255, 255, 255))
    ImageDraw.Draw(img).ellipse([40, 90, 120, 170], fill=(220, 30, 30))
    return img


def _psnr(a, b) -> float:
    mse = float(((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2).mean())
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def test_first_frame_is_the_given_image(pipe):
    from pipelines.animatediff_i2v import animate_image, encode_image

    img = _image()
    seen = []
    frames = animate_image(pipe, img, prompt="a red circle moving to the right on a white background", num_frames=8,
                           width=256, height=256, num_inference_steps=3, guidance_scale=1.0,
                           generator=torch.Generator().manual_seed(0),
                           callback=lambda i, t, lat: seen.append((i, lat[:, :, 0].clone())))
    assert len(frames) == 8 and frames[0].size == (256, 256)
    assert [i for i, _ in seen] == [0, 1, 2]
    # after the last step frame 0 holds the clean latent of the image
    assert torch.allclose(seen[-1][1], encode_image(pipe, img, 256, 256))
    assert _psnr(frames[0], img) >= 30.0
