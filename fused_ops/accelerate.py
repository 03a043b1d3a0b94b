"""``accelerate(obj, mode)``: swap fused kernels into diffusers models; reversible.

Modes (``ACCELERATE_MODES``):
  ``"off"``   nothing.
  ``"safe"``  fused GroupNorm+SiLU (with the ResNet time-embedding add folded in) in every ``ResnetBlock2D`` and in
              ``conv_norm_out``/``conv_act``; GEGLU split+GELU+mul as one kernel after the cuBLAS projection;
              attention processors with fused QKV/KV projections, Triton GroupNorm (VAE) and per-shape backend
              selection. Same math, same op order; results differ from stock only by kernel rounding.
  ``"max"``   ``"safe"`` + dual-GEMM GEGLU (Triton), attention backend autotuning per shape, channels-last
              weights/activations for UNets and VAEs, CUDA-graph capture of each UNet/transformer forward (one graph
              per input shape); optionally ``compile=True`` compiles each transformer and ResNet block
              (regional ``torch.compile``) in place of the Triton swaps for those blocks.

On a model whose parameters are not on CUDA, ``"safe"``/``"max"`` change nothing and log a note (outputs stay
bit-identical), unless ``allow_cpu=True`` (tests, debugging): then the swaps are installed and each op runs its
PyTorch reference on CPU, or its Triton kernel under ``TRITON_INTERPRET=1``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from . import _runtime
from .attention import FusedAttnProcessor
from .graphs import install_cuda_graphs
from .modules import (
    fused_geglu_forward,
    fused_resnet_forward,
    geglu_eligible,
    gn_silu_forward,
    has_instance_forward,
    identity_forward,
    install_forward,
    resnet_eligible,
)

log = logging.getLogger("fused_ops")

ACCELERATE_MODES = ("off", "safe", "max")
_MODEL_KEYS = ("unet", "transformer", "vae", "controlnet", "prior", "decoder", "movq")


@dataclass
class AccelerationHandle:
    """What :func:`accelerate` did. ``applied``: one string per swap ("<model>.<module path>: <what>")."""

    mode: str
    applied: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    graph_runners: dict = field(default_factory=dict)
    _undo: list = field(default_factory=list, repr=False)
    undone: bool = False

    def undo(self) -> None:
        """Restore every swapped module (idempotent)."""
        if self.undone:
            return
        errors = []
        while self._undo:
            fn = self._undo.pop()
            try:
                fn()
            except Exception as exc:  # keep undoing the rest
                errors.append(exc)
        self.undone = True
        if errors:
            raise RuntimeError(f"undo finished with {len(errors)} error(s); first: {errors[0]!r}")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.undo()
        return False


def _models_of(obj) -> list[tuple[str, nn.Module]]:
    if isinstance(obj, nn.Module):
        return [(type(obj).__name__, obj)]
    comps = getattr(obj, "components", None)
    if not isinstance(comps, dict):
        raise TypeError(f"accelerate() takes a diffusers pipeline or an nn.Module, got {type(obj).__name__}")
    out = []
    for name, m in comps.items():
        if not isinstance(m, nn.Module):
            continue
        if name in _MODEL_KEYS or type(m).__module__.startswith("diffusers."):
            out.append((name, m))
    return out


def _device_of(m: nn.Module) -> torch.device:
    for p in m.parameters():
        return p.device
    return torch.device("cpu")


def _is_attention(m) -> bool:
    return all(hasattr(m, a) for a in ("to_q", "to_k", "to_v", "to_out", "set_processor", "processor"))


def _stock_processor(proc) -> bool:
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    return type(proc) in (AttnProcessor, AttnProcessor2_0)


def _has_conv(m: nn.Module) -> bool:
    return any(isinstance(x, nn.Conv2d) for x in m.modules())


def accelerate(obj, mode: str = "safe", *, allow_cpu: bool = False, cuda_graphs: bool | None = None,
               compile: bool = False, channels_last: bool | None = None,
               attention_autotune: bool | None = None) -> AccelerationHandle:
    """Apply fused kernels to a diffusers pipeline (its UNet/transformer/VAE/ControlNet) or to one model.

    Returns an :class:`AccelerationHandle`; ``handle.undo()`` restores the stock modules. Options default by mode:
    ``cuda_graphs``, ``channels_last`` and ``attention_autotune`` are on for ``"max"`` and off for ``"safe"``.
    """
    if mode not in ACCELERATE_MODES:
        raise ValueError(f"mode must be one of {ACCELERATE_MODES}, got {mode!r}")
    handle = AccelerationHandle(mode)
    if mode == "off":
        return handle
    is_max = mode == "max"
    cuda_graphs = is_max if cuda_graphs is None else cuda_graphs
    channels_last = is_max if channels_last is None else channels_last
    attention_autotune = is_max if attention_autotune is None else attention_autotune
    if not _runtime.HAS_TRITON:
        msg = "triton is not installed: fused ops use their PyTorch reference paths"
        handle.notes.append(msg)
        log.info("fused_ops: %s", msg)

    for mname, model in _models_of(obj):
        dev = _device_of(model)
        if dev.type != "cuda" and not allow_cpu:
            msg = f"{mname}: on {dev.type}, accelerate({mode!r}) is a no-op (CUDA only); output unchanged"
            handle.notes.append(msg)
            log.info("fused_ops: %s", msg)
            continue
        _apply_model(handle, mname, model, is_max=is_max, compile=compile, channels_last=channels_last,
                     autotune=attention_autotune, cuda_graphs=cuda_graphs and dev.type == "cuda")
    return handle


def _apply_model(handle, mname, model, *, is_max, compile, channels_last, autotune, cuda_graphs):
    compiled_ids: set[int] = set()
    if compile:
        from diffusers.models.attention import BasicTransformerBlock
        from diffusers.models.resnet import ResnetBlock2D

        for path, m in model.named_modules():
            if isinstance(m, (BasicTransformerBlock, ResnetBlock2D)) and getattr(m, "_compiled_call_impl", None) is None:
                m.compile(dynamic=False)
                compiled_ids.update(id(x) for x in m.modules())
                handle.applied.append(f"{mname}.{path}: torch.compile (regional)")

                def _uncompile(m=m):
                    m._compiled_call_impl = None

                handle._undo.append(_uncompile)

    # attention processors
    procs, originals = {}, {}
    for path, m in model.named_modules():
        if not _is_attention(m) or id(m) in compiled_ids:
            continue
        if not _stock_processor(m.processor):
            continue
        p = FusedAttnProcessor(fuse_projections=True, autotune=autotune)
        originals[path] = m.processor
        procs[path] = (m, p)
    if procs:
        for path, (m, p) in procs.items():
            m.set_processor(p)
            packed = p.pack(m)
            handle.applied.append(f"{mname}.{path}: FusedAttnProcessor"
                                  + (f" (packed {'+'.join(p.packed['names'])})" if packed else ""))

        def _restore_procs(procs=procs, originals=originals):
            for path, (m, p) in procs.items():
                p.unpack(m)
                m.set_processor(originals[path])

        handle._undo.append(_restore_procs)

    from diffusers.models.activations import GEGLU
    from diffusers.models.resnet import ResnetBlock2D

    for path, m in model.named_modules():
        if id(m) in compiled_ids or has_instance_forward(m):
            continue
        if isinstance(m, ResnetBlock2D) and resnet_eligible(m):
            handle._undo.append(install_forward(m, fused_resnet_forward))
            handle.applied.append(f"{mname}.{path}: ResnetBlock2D GroupNorm+SiLU fused")
        elif isinstance(m, GEGLU) and geglu_eligible(m):
            gmode = "dual_gemm" if is_max else "elementwise"
            handle._undo.append(install_forward(m, fused_geglu_forward, _fused_geglu_mode=gmode))
            handle.applied.append(f"{mname}.{path}: GEGLU fused ({gmode})")

    # conv_norm_out + conv_act pairs (UNet2DConditionModel, VAE Encoder/Decoder)
    for path, m in model.named_modules():
        norm, act = getattr(m, "conv_norm_out", None), getattr(m, "conv_act", None)
        if (type(norm) is nn.GroupNorm and type(act) is nn.SiLU and not has_instance_forward(norm)
                and not has_instance_forward(act)):
            u1 = install_forward(norm, gn_silu_forward)
            u2 = install_forward(act, identity_forward)
            handle._undo.append(lambda u1=u1, u2=u2: (u2(), u1()))
            handle.applied.append(f"{mname}.{path + '.' if path else ''}conv_norm_out+conv_act: GroupNorm+SiLU fused")

    if channels_last and _has_conv(model):
        model.to(memory_format=torch.channels_last)
        handle._undo.append(lambda model=model: model.to(memory_format=torch.contiguous_format))
        handle.applied.append(f"{mname}: channels_last")

    if is_max and not cuda_graphs:
        handle.notes.append(f"{mname}: CUDA graphs off (not requested, or model not on CUDA)")
    if cuda_graphs and mname not in ("vae",) and not type(model).__name__.startswith("Autoencoder"):
        runner, undo = install_cuda_graphs(model)
        if runner is not None:
            handle._undo.append(undo)
            handle.graph_runners[mname] = runner
            handle.applied.append(f"{mname}: CUDA graphs (one per input shape)")
        else:
            handle.notes.append(f"{mname}: CUDA graphs not installed (forward already wrapped, or no CUDA)")
