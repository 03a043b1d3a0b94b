"""Device / dtype choice: CUDA fp16 (bf16 for flux/sd3 where supported), MPS fp16, CPU fp32; strings override."""
from __future__ import annotations

import warnings

import torch

_DTYPES = {"fp16": torch.float16, "float16": torch.float16, "half": torch.float16,
           "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
           "fp32": torch.float32, "float32": torch.float32, "float": torch.float32, "full": torch.float32}
BF16_FAMILIES = ("flux", "sd3", "flux-kontext", "qwen-edit")  # published in bf16 (fp16 overflows)


def _mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """None/"auto" -> cuda if available, else mps, else cpu. Strings like "cpu", "cuda", "cuda:1", "mps"."""
    if device is None or (isinstance(device, str) and device.strip().lower() in ("", "auto")):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device.strip().lower() if isinstance(device, str) else device)
    except (RuntimeError, TypeError):
        # torch's own message lists every backend it was built with (ipu, xla, vulkan...), not what runs here
        raise ValueError(f"device {device!r} is not a device name: use cpu, cuda, cuda:N or mps (or auto)") from None
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device {str(dev)!r} is not supported: use cpu, cuda, cuda:N or mps (or auto)")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(dev)!r} requested but CUDA is not available on this machine (use cpu)")
    count = torch.cuda.device_count() if dev.type == "cuda" else 0
    # torch itself accepts any index here and fails only at first use ("invalid device ordinal")
    if dev.index is not None and 0 < count <= dev.index:
        raise ValueError(f"device {str(dev)!r} requested but this machine has {count} CUDA device"
                         f"{'s' if count != 1 else ''} (cuda:0{f' to cuda:{count - 1}' if count > 1 else ''})")
    if dev.type == "mps" and not _mps_available():
        raise ValueError("device 'mps' requested but MPS is not available")
    return dev


def resolve_dtype(dtype: str | torch.dtype | None = None, device: str | torch.device | None = None,
                  family: str | None = None) -> torch.dtype:
    """None/"auto" -> fp16 on CUDA (bf16 for flux/sd3 when the GPU supports it), fp16 on MPS, fp32 on CPU."""
    if isinstance(dtype, torch.dtype):
        return dtype
    dev = resolve_device(device)
    if dtype is None or str(dtype).strip().lower() in ("", "auto"):
        if dev.type == "cuda":
            if family in BF16_FAMILIES and torch.cuda.is_bf16_supported():
                return torch.bfloat16
            return torch.float16
        if dev.type == "mps":
            return torch.float16
        return torch.float32
    key = str(dtype).strip().lower().replace("torch.", "")
    if key not in _DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; use one of fp16, bf16, fp32 (or auto)")
    out = _DTYPES[key]
    if dev.type == "cuda" and out == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        raise ValueError(f"dtype bf16 is not supported by this GPU ({torch.cuda.get_device_name(dev)}); use fp16")
    if dev.type == "cpu" and out == torch.float16:
        warnings.warn("fp16 on CPU is slow and some ops are unsupported; fp32 is recommended", stacklevel=2)
    return out


def pick_device_dtype(device=None, dtype=None, family: str | None = None) -> tuple[torch.device, torch.dtype]:
    dev = resolve_device(device)
    return dev, resolve_dtype(dtype, dev, family)
