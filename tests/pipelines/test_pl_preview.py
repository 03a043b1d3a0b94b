import torch

from pipelines import preview
from pipelines.tiny import tiny_sd


def test_small_vae_decodes_for_real_and_large_uses_linear_map(monkeypatch):
    pipe = tiny_sd(vae_scale=8)
    latents = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    real = preview.latent_preview(pipe, latents)
    assert real.size == (64, 64)
    monkeypatch.setattr(preview, "SMALL_VAE_PARAMS", 0)
    approx = preview.latent_preview(pipe, latents)
    assert approx.size == (64, 64)
    assert real.tobytes() != approx.tobytes()


def test_no_preview_for_unknown_latent_layouts():
    pipe = tiny_sd(vae_scale=8)
    assert preview.latent_preview(pipe, torch.zeros(1, 16, 8, 8)) is None  # SD3-style 16 channels
    assert preview.latent_preview(pipe, torch.zeros(1, 64, 64)) is None  # Flux-style packed tokens
    assert preview.latent_preview(pipe, None) is None
