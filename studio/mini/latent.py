"""The mini model's latent space, defined in closed form, and the VAE initialisation that realises it.

A learned 16x VAE trained on a CPU budget could not keep flat colours (the v0 weights: 20 dB, judge 0%
on its own reconstructions).  So the latent is *defined* instead of discovered: the 256 px image is
cut into 8x8 cells and each cell becomes four numbers,

    channels 0-2: the cell's mean colour (RGB scaled to [-1, 1]),
    channel 3:    the cell's object coverage (fraction of pixels that are not background), scaled to [-1, 1].

Colour is then exact by construction, coverage makes shape and size explicit even for dark objects on
black, and the UNet can be trained on latents computed straight from rendered scenes (no encoder in its
loop, no data set to pre-encode).

The VAE stays a plain diffusers ``AutoencoderKL``.  ``init_vae_identity`` sets its weights so that at
step 0 the encoder already outputs the cell-mean colours and the decoder already paints them back
(nearest-neighbour blocks); training then only has to learn the coverage channel and sharp edges.
GroupNorm normally destroys absolute colour (it subtracts each sample's mean), so two constant channels
+K and -K ride in the same group as the colour channels: after the norm, colour is recovered linearly as
``s * (n_c - (n_+K + n_-K) / 2)`` with ``s = K * sqrt(2 / group_size)`` (exact up to O(1/K^2)), and a
large GroupNorm bias keeps the following SiLU in its linear range.
"""

from __future__ import annotations

import math

import numpy as np

FACTOR = 8  # pixels per latent cell (3 downsamplings)
K = 40.0  # the constant channels' magnitude
SILU_SHIFT = 20.0  # GroupNorm bias that keeps SiLU(x) ~= x for the carried channels
# channel layout of the identity stream inside the VAE: 0-2 colour, 3 = +K, 4 = -K
_STREAM = 5


def target_latents(images: np.ndarray, backgrounds: np.ndarray) -> np.ndarray:
    """Closed-form latents (before the VAE scaling factor).

    images: (N, H, W, 3) uint8; backgrounds: (N, 3) uint8 background colour per image.
    Returns (N, 4, H/8, W/8) float32.
    """
    import torch
    import torch.nn.functional as F

    images = np.array(images, dtype=np.uint8)  # a writable copy: torch.from_numpy warns on read-only arrays
    n, h, w, _ = images.shape
    if h % FACTOR or w % FACTOR:
        raise ValueError(f"image size {w}x{h} is not a multiple of {FACTOR}")
    px = torch.from_numpy(images).permute(0, 3, 1, 2)
    bg = torch.from_numpy(np.asarray(backgrounds, dtype=np.uint8)).view(n, 3, 1, 1)
    cover = (px != bg).any(1, keepdim=True).float() * 2.0 - 1.0
    x = torch.cat([px.float() / 127.5 - 1.0, cover], 1)
    return F.avg_pool2d(x, FACTOR).numpy()


def _identity_(w, n: int, taps=((1, 1),), value: float = 1.0) -> None:
    """Write value at the given (ky, kx) taps of the first n channel diagonals of a conv weight."""
    for i in range(n):
        for ky, kx in taps:
            w[i, i, ky, kx] = value


def init_vae_identity(vae) -> None:
    """Initialise an AutoencoderKL (4 down/up blocks, layers_per_block 1, mid attention) as described above."""
    import torch

    enc, dec = vae.encoder, vae.decoder
    cfg = vae.config
    if len(cfg.block_out_channels) != 4 or cfg.latent_channels != 4:
        raise ValueError("init_vae_identity expects 4 blocks (8x) and 4 latent channels")
    g = cfg.norm_num_groups
    for group_size in (cfg.block_out_channels[-1] // g, cfg.block_out_channels[0] // g):
        if group_size < _STREAM:
            raise ValueError(f"GroupNorm groups of {group_size} channels cannot hold the {_STREAM}-channel stream")
    with torch.no_grad():
        # every residual branch and attention output starts at zero: the stream passes unchanged
        for mod in vae.modules():
            name = type(mod).__name__
            if name == "ResnetBlock2D":
                mod.conv2.weight.zero_()
                mod.conv2.bias.zero_()
                if mod.conv_shortcut is not None:
                    mod.conv_shortcut.weight.zero_()
                    mod.conv_shortcut.bias.zero_()
                    _identity_(mod.conv_shortcut.weight, min(mod.conv_shortcut.weight.shape[:2]), ((0, 0),))
            elif name == "Attention":
                mod.to_out[0].weight.zero_()
                mod.to_out[0].bias.zero_()
        # ---- encoder: RGB + constants, 2x2 averages at each downsampling, colour read out linearly
        _stream_in_(enc.conv_in)
        for blk in enc.down_blocks:
            for ds in blk.downsamplers or []:
                # Downsample2D pads (0, 1, 0, 1) and strides 2: taps (0..1, 0..1) are an aligned 2x2 cell
                _diagonal_(ds.conv, ds.conv.weight.shape[0], ((0, 0), (0, 1), (1, 0), (1, 1)), 0.25)
        _readout_(enc.conv_norm_out, enc.conv_out, cfg.block_out_channels[-1] // g, rows=range(3))
        enc.conv_out.bias[3] = -0.8  # coverage: mostly background until trained
        enc.conv_out.bias[4:] = -12.0  # log-variance: a near-deterministic posterior (std ~ 0.0025)
        _diagonal_(vae.quant_conv, 8, ((0, 0),))
        # ---- decoder: latent colour + constants, nearest upsampling, colour read out linearly
        _diagonal_(vae.post_quant_conv, 4, ((0, 0),))
        _stream_in_(dec.conv_in)
        for blk in dec.up_blocks:
            for us in blk.upsamplers or []:
                _diagonal_(us.conv, us.conv.weight.shape[0])
        _readout_(dec.conv_norm_out, dec.conv_out, cfg.block_out_channels[0] // g, rows=range(3))


def _diagonal_(conv, n: int, taps=((1, 1),), value: float = 1.0) -> None:
    """Zero a conv, then pass its first n channels straight through at the given taps."""
    conv.weight.zero_()
    conv.bias.zero_()
    _identity_(conv.weight, n, taps, value)


def _stream_in_(conv) -> None:
    """The first conv: colour into channels 0-2, the constants +K / -K into channels 3 and 4, nothing else."""
    _diagonal_(conv, 3)
    conv.bias[3], conv.bias[4] = K, -K


def stream_parameter(name: str) -> bool:
    """Whether a VAE parameter belongs to a layer that carries the identity stream (see init_vae_identity)."""
    keys = ("conv_in.", "conv_out.", "conv_norm_out.", "samplers.0.conv.", "conv_shortcut.", "quant_conv.")
    return any(k in name for k in keys)


def _readout_(norm, conv, group_size: int, rows) -> None:
    norm.weight.fill_(1.0)
    norm.bias.zero_()
    norm.bias[:_STREAM] = SILU_SHIFT
    conv.weight.zero_()
    conv.bias.zero_()
    s = K * math.sqrt(2.0 / group_size)
    for i in rows:
        conv.weight[i, i, 1, 1] = s
        conv.weight[i, 3, 1, 1] = -s / 2
        conv.weight[i, 4, 1, 1] = -s / 2
