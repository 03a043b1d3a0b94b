"""diffusers -> original LDM (CompVis) key layout for SD1-style UNet / VAE / CLIP text encoder.

A generic version of diffusers' scripts/convert_diffusers_to_original_stable_diffusion.py: the block and layer
counts come from the model configs instead of being hard-coded to SD1.5 sizes, so tiny test models export too.
"""
from __future__ import annotations

import torch

_RESNET = [("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("norm2", "out_layers.0"), ("conv2", "out_layers.3"),
           ("time_emb_proj", "emb_layers.1"), ("conv_shortcut", "skip_connection")]
_UNET_TOP = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
             "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2",
             "add_embedding.linear_1": "label_emb.0.0", "add_embedding.linear_2": "label_emb.0.2"}


def _resnet_inner(rest: str) -> str:
    for hf, sd in _RESNET:
        if rest.startswith(hf + "."):
            return sd + rest[len(hf):]
    return rest


def unet_to_ldm(unet) -> dict[str, torch.Tensor]:
    cfg = unet.config
    L = cfg.layers_per_block
    if not isinstance(L, int):
        raise ValueError("only an int layers_per_block is supported")
    n = len(cfg.block_out_channels)
    up_has_attn = ["CrossAttn" in t for t in cfg.up_block_types]
    out = {}
    for k, v in unet.state_dict().items():
        parts = k.split(".")
        new = None
        for hf, sd in _UNET_TOP.items():
            if k.startswith(hf + "."):
                new = sd + k[len(hf):]
        if new is None and parts[0] == "down_blocks":
            i, kind, j, rest = int(parts[1]), parts[2], int(parts[3]), ".".join(parts[4:])
            if kind == "resnets":
                new = f"input_blocks.{1 + i * (L + 1) + j}.0.{_resnet_inner(rest)}"
            elif kind == "attentions":
                new = f"input_blocks.{1 + i * (L + 1) + j}.1.{rest}"
            elif kind == "downsamplers":  # downsamplers.0.conv.weight
                new = f"input_blocks.{(i + 1) * (L + 1)}.0.op.{rest.split('.', 1)[1]}"
        elif new is None and parts[0] == "up_blocks":
            i, kind, j, rest = int(parts[1]), parts[2], int(parts[3]), ".".join(parts[4:])
            if kind == "resnets":
                new = f"output_blocks.{i * (L + 1) + j}.0.{_resnet_inner(rest)}"
            elif kind == "attentions":
                new = f"output_blocks.{i * (L + 1) + j}.1.{rest}"
            elif kind == "upsamplers":
                new = f"output_blocks.{i * (L + 1) + L}.{2 if up_has_attn[i] else 1}.{rest}"
        elif new is None and parts[0] == "mid_block":
            kind, j, rest = parts[1], int(parts[2]), ".".join(parts[3:])
            new = f"middle_block.{2 * j}.{_resnet_inner(rest)}" if kind == "resnets" else f"middle_block.1.{rest}"
        if new is None:
            raise KeyError(f"no LDM name for UNet key {k}")
        out["model.diffusion_model." + new] = v
    del n
    return out


_VAE_ATTN = [("group_norm.", "norm."), ("to_q.", "q."), ("to_k.", "k."), ("to_v.", "v."), ("to_out.0.", "proj_out.")]


def vae_to_ldm(vae) -> dict[str, torch.Tensor]:
    n = len(vae.config.block_out_channels)
    out = {}
    for k, v in vae.state_dict().items():
        parts = k.split(".")
        side = parts[0]
        new = k
        if side in ("encoder", "decoder") and len(parts) > 1:
            sub = parts[1]
            if sub in ("down_blocks", "up_blocks"):
                i, kind = int(parts[2]), parts[3]
                bi = i if sub == "down_blocks" else n - 1 - i
                tag = "down" if sub == "down_blocks" else "up"
                if kind == "resnets":
                    rest = ".".join(parts[5:]).replace("conv_shortcut", "nin_shortcut")
                    new = f"{side}.{tag}.{bi}.block.{parts[4]}.{rest}"
                else:  # downsamplers.0.conv.* / upsamplers.0.conv.*
                    new = f"{side}.{tag}.{bi}.{'downsample' if tag == 'down' else 'upsample'}.{'.'.join(parts[5:])}"
            elif sub == "mid_block":
                kind, j, rest = parts[2], int(parts[3]), ".".join(parts[4:])
                if kind == "resnets":
                    new = f"{side}.mid.block_{j + 1}.{rest.replace('conv_shortcut', 'nin_shortcut')}"
                else:
                    for hf, sd in _VAE_ATTN:
                        if rest.startswith(hf):
                            rest = sd + rest[len(hf):]
                    new = f"{side}.mid.attn_1.{rest}"
                    if rest.endswith("weight") and v.ndim == 2:
                        v = v.reshape(*v.shape, 1, 1)
            elif sub == "conv_norm_out":
                new = f"{side}.norm_out.{'.'.join(parts[2:])}"
        out["first_stage_model." + new] = v
    return out


def clip_to_ldm(text_encoder) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in text_encoder.state_dict().items():
        if not k.startswith("text_model."):
            k = "text_model." + k  # transformers >= 5.6 flattened CLIPTextModel
        out["cond_stage_model.transformer." + k] = v
    return out


def diffusers_sd_to_ldm(unet, vae, text_encoder) -> dict[str, torch.Tensor]:
    return {**unet_to_ldm(unet), **vae_to_ldm(vae), **clip_to_ldm(text_encoder)}
