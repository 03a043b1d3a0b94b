"""Tiny random-weight ControlNets and instruction editors for tests, built in code (sizes after diffusers' own
tests of these pipelines, on the bases of ``pipelines.tiny``). Each builds in well under a second on CPU."""
from __future__ import annotations

import torch

from .tiny import tiny_flux, tiny_sd, tiny_sdxl


def _wake(modules, seed: int) -> None:
    """ControlNets start with zero convolutions (no effect until trained); a random one must act, as in
    diffusers' tests (`init_weights`: normal weights, bias 1)."""
    g = torch.Generator().manual_seed(seed)
    for module in modules:
        for m in module.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
                with torch.no_grad():
                    m.weight.copy_(torch.randn(m.weight.shape, generator=g) * 0.3)
                    if m.bias is not None:
                        m.bias.fill_(0.1)


def tiny_controlnet(base, seed: int = 0):
    """A random ControlNet that fits the tiny pipeline ``base`` (SD1/SDXL: ControlNetModel from its UNet with a
    conditioning embedding that downsamples like its VAE; Flux: FluxControlNetModel from its transformer)."""
    from diffusers import ControlNetModel, FluxControlNetModel

    torch.manual_seed(seed)
    if hasattr(base, "transformer"):
        net = FluxControlNetModel.from_transformer(base.transformer, num_layers=1, num_single_layers=1,
                                                   attention_head_dim=16, num_attention_heads=2,
                                                   load_weights_from_transformer=True)
        _wake([net.controlnet_blocks, net.controlnet_single_blocks, net.controlnet_x_embedder], seed)
        return net.eval()
    scale = 2 ** (len(base.vae.config.block_out_channels) - 1)
    channels = tuple([8] * (scale.bit_length()))  # one stride-2 step per entry after the first
    net = ControlNetModel.from_unet(base.unet, conditioning_embedding_out_channels=channels)
    _wake([net.controlnet_down_blocks, net.controlnet_mid_block], seed)
    return net.eval()


def tiny_ip2p(seed: int = 0, vae_scale: int = 2):
    """Tiny StableDiffusionInstructPix2PixPipeline: the tiny SD1 components with an 8-channel UNet (noisy
    latents + the image's latents), as InstructPix2Pix initialises it. ``vae_scale`` as in ``tiny_sd``."""
    from diffusers import StableDiffusionInstructPix2PixPipeline, UNet2DConditionModel

    sd = tiny_sd(seed=seed, vae_scale=vae_scale)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**{**sd.unet.config, "in_channels": 8}).eval()
    return StableDiffusionInstructPix2PixPipeline(
        vae=sd.vae, text_encoder=sd.text_encoder, tokenizer=sd.tokenizer, unet=unet, scheduler=sd.scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)


def tiny_ip2p_sdxl(seed: int = 0):
    from diffusers import StableDiffusionXLInstructPix2PixPipeline, UNet2DConditionModel

    xl = tiny_sdxl(seed=seed)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**{**xl.unet.config, "in_channels": 8}).eval()
    return StableDiffusionXLInstructPix2PixPipeline(
        vae=xl.vae, text_encoder=xl.text_encoder, text_encoder_2=xl.text_encoder_2, tokenizer=xl.tokenizer,
        tokenizer_2=xl.tokenizer_2, unet=unet, scheduler=xl.scheduler, force_zeros_for_empty_prompt=True,
        add_watermarker=False)


def tiny_kontext(seed: int = 0):
    """Tiny FluxKontextPipeline on the tiny Flux (dev-style distilled guidance) components."""
    from diffusers import FluxKontextPipeline

    f = tiny_flux(seed=seed, guidance_embeds=True)
    return FluxKontextPipeline(scheduler=f.scheduler, vae=f.vae, text_encoder=f.text_encoder, tokenizer=f.tokenizer,
                               text_encoder_2=f.text_encoder_2, tokenizer_2=f.tokenizer_2,
                               transformer=f.transformer)


__all__ = ["tiny_controlnet", "tiny_ip2p", "tiny_ip2p_sdxl", "tiny_kontext"]
