"""`mini-clip`: a prompt-fidelity score for the mini world, a tiny CLIP trained contrastively on rendered
mini-world scenes and their captions (training: `studio/mini/clip/train.py`, card: `studio/mini/clip/weights/`).

Image side: a few strided convolutions on the image downsampled to 64 px (plus two coordinate channels, so
"top left" vs "bottom right" survives the flatten), projected to a unit vector. Text side: mini's own frozen
text encoder (a transformers `CLIPTextModel` whose end-of-text state carries every attribute of both objects,
see studio/mini/text_encoder.py) and a small MLP head on that state. Score = 100 x cos(text, image), like the
`clip` reward. Differentiable in the pixels (gradient guidance can use it).

Hand-written because no library ships a CLIP this small for a procedural world; the text encoder and the
tokenizer are loaded with transformers from local folders. Weights: one safetensors state dict (fp16 on disk)
plus config.json; nothing pickled. No studio imports (see `base`).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .base import Prompts, Reward, RewardError, image_batch, prompt_list, resize
from .weights import file_sha256, folder_sha256, load_state_dict

FORMAT = "diffusion-studio-mini-clip"
WEIGHTS_FILE = "model.safetensors"
DEFAULT_CONFIG = {"format": FORMAT, "version": 1, "image_size": 64, "channels": [24, 48, 48, 96, 128],
                  "text_width": 128, "embed_dim": 128}


class ImageTower(nn.Module):
    def __init__(self, image_size: int, channels: list[int], embed_dim: int):
        super().__init__()
        c1, c2, c3, c4, c5 = channels
        self.image_size = image_size
        self.convs = nn.Sequential(
            nn.Conv2d(5, c1, 4, 2, 1), nn.GELU(),  # 64 -> 32
            nn.Conv2d(c1, c2, 3, 2, 1), nn.GELU(),  # 16
            nn.Conv2d(c2, c3, 3, 1, 1), nn.GELU(),
            nn.Conv2d(c3, c4, 3, 2, 1), nn.GELU(),  # 8
            nn.Conv2d(c4, c5, 3, 2, 1), nn.GELU(),  # 4
        )
        side = image_size // 16
        self.proj = nn.Linear(c5 * side * side, embed_dim)
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, image_size), torch.linspace(-1, 1, image_size), indexing="ij")
        self.register_buffer("coords", torch.stack([xs, ys])[None], persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) in [0, 1] -> (B, embed_dim), unit norm."""
        x = resize(x, self.image_size) * 2 - 1
        x = torch.cat([x, self.coords.to(x.dtype).expand(x.shape[0], -1, -1, -1)], 1)
        return F.normalize(self.proj(self.convs(x).flatten(1)), dim=-1)


class TextHead(nn.Module):
    """An MLP on the frozen encoder's end-of-text state."""

    def __init__(self, width: int, embed_dim: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, 2 * width), nn.GELU(),
                                 nn.Linear(2 * width, embed_dim))

    def forward(self, eos_states: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.mlp(eos_states), dim=-1)


class MiniClipModel(nn.Module):
    def __init__(self, config: Optional[dict] = None):
        super().__init__()
        self.config = {**DEFAULT_CONFIG, **(config or {})}
        c = self.config
        self.image = ImageTower(c["image_size"], list(c["channels"]), c["embed_dim"])
        self.text = TextHead(c["text_width"], c["embed_dim"])
        self.logit_scale = nn.Parameter(torch.tensor(2.659))  # log(1 / 0.07), CLIP's start


class FrozenText:
    """mini's tokenizer and frozen text encoder: captions -> end-of-text states (B, width), no grad.
    Causal attention: the end-of-text state does not depend on the padding after it, so batches pad to
    their longest caption only."""

    def __init__(self, encoder_folder, tokenizer_folder):
        from transformers import CLIPTextModel, CLIPTokenizer

        self.encoder_folder, self.tokenizer_folder = Path(encoder_folder), Path(tokenizer_folder)
        try:
            self.tokenizer = CLIPTokenizer.from_pretrained(str(self.tokenizer_folder), local_files_only=True)
            self.encoder = CLIPTextModel.from_pretrained(str(self.encoder_folder), local_files_only=True).eval()
        except (OSError, ValueError) as exc:
            raise RewardError(f"reward mini-clip: cannot load mini's text encoder ({str(exc).splitlines()[0]})") \
                from None
        self.encoder.requires_grad_(False)

    @torch.no_grad()
    def __call__(self, captions: list[str]) -> torch.Tensor:
        tok = self.tokenizer(list(captions), padding=True, truncation=True, return_tensors="pt")
        states = self.encoder(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"]).last_hidden_state
        eos = tok["attention_mask"].sum(1) - 1
        return states[torch.arange(states.shape[0]), eos]


def save(model: MiniClipModel, folder, extra: Optional[dict] = None) -> Path:
    """config.json + model.safetensors (fp16: the scores move by < 0.05 of 100, far below the gaps it ranks)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / WEIGHTS_FILE), metadata={"format": FORMAT})
    (folder / "config.json").write_text(json.dumps({**model.config, **(extra or {})}, indent=2) + "\n")
    return folder


def load_model(folder) -> MiniClipModel:
    """The model from a weights folder; RewardError (one line) for a missing, foreign or mismatched file."""
    folder = Path(folder).expanduser()
    cfg_path, weights = folder / "config.json", folder / WEIGHTS_FILE
    if not cfg_path.is_file() or not weights.is_file():
        raise RewardError(f"reward mini-clip: {folder} holds no config.json + {WEIGHTS_FILE} "
                          "(train it: python -m studio.mini.clip.train)")
    try:
        cfg = json.loads(cfg_path.read_text())
    except ValueError:
        raise RewardError(f"reward mini-clip: {cfg_path} is not JSON") from None
    if cfg.get("format") != FORMAT:
        raise RewardError(f"reward mini-clip: {cfg_path} is not a mini-clip config (format {cfg.get('format')!r})")
    model = MiniClipModel({k: cfg[k] for k in DEFAULT_CONFIG if k in cfg})
    state = load_state_dict(weights)
    try:
        model.load_state_dict({k: v.float() for k, v in state.items()})
    except RuntimeError as exc:
        raise RewardError(f"reward mini-clip: {weights.name} does not fit its config "
                          f"({str(exc).splitlines()[0]})") from None
    return model.eval().requires_grad_(False)


class MiniClip(Reward):
    """100 x cos(text, image) of the mini CLIP: higher when the image shows what the mini-world caption says."""

    name = "mini-clip"
    differentiable = True

    def __init__(self, folder, encoder_folder, tokenizer_folder):
        self.folder = Path(folder).expanduser()
        self.model = load_model(self.folder)
        self.text = FrozenText(encoder_folder, tokenizer_folder)
        self._cache: dict[str, torch.Tensor] = {}

    @property
    def hash(self) -> str:
        h = hashlib.sha256(FORMAT.encode())
        h.update(file_sha256(self.folder / WEIGHTS_FILE).encode())
        h.update(folder_sha256(self.text.encoder_folder).encode())
        return h.hexdigest()

    @property
    def source(self) -> str:
        return f"{self.folder} + {self.text.encoder_folder}"

    def text_embeds(self, prompts: list[str]) -> torch.Tensor:
        todo = [p for p in dict.fromkeys(prompts) if p not in self._cache]
        if todo:
            with torch.no_grad():
                for p, e in zip(todo, self.model.text(self.text(todo))):
                    self._cache[p] = e
        return torch.stack([self._cache[p] for p in prompts])

    def score(self, media, prompts: Prompts) -> torch.Tensor:
        x = image_batch(media)
        self.model.to(x.device)
        img = self.model.image(x)
        txt = self.text_embeds(prompt_list(prompts, img.shape[0])).to(x.device)
        return 100.0 * (img * txt).sum(-1)


