"""Reading reward weights: state dicts only. safetensors as is; a `.pt/.pth/.bin` file (the LAION aesthetic
head ships as one) through torch's restricted unpickler (`weights_only=True`), which loads tensors and
refuses a whole pickled model (arbitrary code on load). No studio imports (see `base`)."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from .base import RewardError

PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
_hash_cache: dict[tuple, str] = {}


def load_state_dict(path: os.PathLike | str) -> dict:
    """A flat {name: tensor} state dict from `path`; RewardError (one line) for anything else."""
    import torch

    path = Path(path).expanduser()
    if not path.is_file():
        raise RewardError(f"reward weights {path} not found")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
            raise RewardError(f"reward weights {path.name} are not a readable safetensors file ({exc})") from None
    if path.suffix not in PICKLE_SUFFIXES:
        raise RewardError(f"reward weights {path.name}: expected .safetensors (or a .pt/.pth state dict)")
    try:
        data = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - UnpicklingError for a whole model, others for a corrupt file
        raise RewardError(f"reward weights {path.name} are not a plain state dict (a whole pickled model is "
                          "refused: it could run code on load); save model.state_dict() instead") from None
    if isinstance(data, dict) and "state_dict" in data and isinstance(data["state_dict"], dict):
        data = data["state_dict"]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise RewardError(f"reward weights {path.name} hold no {{name: tensor}} state dict")
    return data


def file_sha256(path: os.PathLike | str) -> str:
    """sha256 of a file, cached on (path, size, mtime): reward backbones are gigabytes."""
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _hash_cache:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        _hash_cache[key] = h.hexdigest()
    return _hash_cache[key]


def folder_sha256(folder: os.PathLike | str) -> str:
    """sha256 over a model folder's weight and config files (names and contents), stable across copies."""
    folder = Path(folder)
    h = hashlib.sha256()
    files = sorted(p for p in folder.rglob("*") if p.is_file() and (
        p.suffix in (".safetensors", ".json", ".txt", ".model") + PICKLE_SUFFIXES))
    if not files:
        raise RewardError(f"reward model folder {folder} holds no weights")
    for p in files:
        h.update(str(p.relative_to(folder)).encode())
        h.update(file_sha256(p).encode())
    return h.hexdigest()
