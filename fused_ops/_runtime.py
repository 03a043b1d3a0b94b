"""Runtime detection: is Triton importable, is the interpreter on, may a tensor go to a Triton kernel.

Nothing here imports project code. Triton is optional: without it every op uses its PyTorch reference.
``TRITON_INTERPRET=1`` must be set before ``import triton`` for the interpreter to take effect; the tests do that
in their conftest.
"""
from __future__ import annotations

import os

import torch

try:  # pragma: no cover - depends on the environment
    import triton  # noqa: F401
    import triton.language as tl  # noqa: F401

    HAS_TRITON = True
    TRITON_VERSION = triton.__version__
except Exception:  # ImportError, or a broken install
    triton = None
    tl = None
    HAS_TRITON = False
    TRITON_VERSION = None

_FORCE_REFERENCE = False


def _env_interpret() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() not in ("", "0", "false", "off", "no")


# Triton decides interpreted-vs-compiled when a kernel is decorated, i.e. when fused_ops.kernels is imported (right
# after this module), so the flag is read once here and not re-read at call time.
_INTERPRET_AT_IMPORT = _env_interpret()


def interpreting() -> bool:
    """True when this package's kernels run through Triton's CPU interpreter (``TRITON_INTERPRET=1`` at import)."""
    return HAS_TRITON and _INTERPRET_AT_IMPORT


def set_force_reference(flag: bool) -> bool:
    """Route every op to its PyTorch reference (debugging / A-B checks). Returns the previous value."""
    global _FORCE_REFERENCE
    prev, _FORCE_REFERENCE = _FORCE_REFERENCE, bool(flag)
    return prev


def triton_ok(*tensors: torch.Tensor) -> bool:
    """May these tensors be handed to a Triton kernel?

    CUDA tensors: yes when Triton is installed. CPU tensors: only under the interpreter (tests).
    Autograd-tracked inputs go to the reference (the kernels are forward-only).
    """
    if not HAS_TRITON or _FORCE_REFERENCE:
        return False
    for t in tensors:
        if t is None:
            continue
        if t.requires_grad and torch.is_grad_enabled():
            return False
        if t.is_cuda:
            continue
        if t.device.type == "cpu" and interpreting():
            continue
        return False
    return True


def next_pow2(n: int) -> int:
    return 1 << max(0, (int(n) - 1).bit_length())


_DISABLED: dict[tuple, str] = {}


def launch_or_fallback(key: tuple, triton_fn, reference_fn):
    """Run ``triton_fn()``; if it raises on a real GPU (e.g. a compile error or out-of-resources for one tile
    config), log once, remember ``key`` and use ``reference_fn()`` from then on. Under the interpreter errors propagate
    (the tests must see them)."""
    if key in _DISABLED:
        return reference_fn()
    try:
        return triton_fn()
    except Exception as exc:
        if interpreting():
            raise
        import logging

        _DISABLED[key] = repr(exc)
        logging.getLogger("fused_ops").warning("fused_ops: Triton kernel %s failed (%r); using the PyTorch "
                                               "reference for it from now on", key, exc)
        return reference_fn()


def disabled_kernels() -> dict[tuple, str]:
    """Kernels that failed on this machine and were replaced by their reference (key -> error)."""
    return dict(_DISABLED)
