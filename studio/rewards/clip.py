"""Adapters for real reward models, loaded from local folders only (never the hub): a CLIP score and
PickScore through transformers' `CLIPModel` (PickScore is a CLIP checkpoint; its score is
logit_scale.exp() * cos(text, image)), the LAION aesthetic head (an MLP state dict over CLIP ViT-L/14
image embeddings), and a CLAP score through `ClapModel`. Image preprocessing is done in torch (resize,
centre crop, normalise with the folder's `preprocessor_config.json` values) so the image rewards stay
differentiable in the pixels. No studio imports."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from .base import Prompts, Reward, RewardError, audio_mono, image_batch, prompt_list, resize
from .weights import file_sha256, folder_sha256, load_state_dict

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def _folder(path, what: str) -> Path:
    p = Path(path).expanduser()
    if not p.is_dir():
        raise RewardError(f"{what}: {p} is not a folder (give the local folder of a transformers checkpoint)")
    return p


def _features(out) -> torch.Tensor:
    # transformers 5 returns a model output whose pooler_output is the projected embedding; 4.x a tensor
    return out if isinstance(out, torch.Tensor) else out.pooler_output


def _preprocess_config(folder: Path, default_size: int) -> tuple[int, torch.Tensor, torch.Tensor]:
    cfg = {}
    f = folder / "preprocessor_config.json"
    if f.is_file():
        cfg = json.loads(f.read_text())
    crop = cfg.get("crop_size", default_size)
    size = crop.get("height", default_size) if isinstance(crop, dict) else int(crop or default_size)
    mean = torch.tensor(cfg.get("image_mean", CLIP_MEAN)).view(1, 3, 1, 1)
    std = torch.tensor(cfg.get("image_std", CLIP_STD)).view(1, 3, 1, 1)
    return size, mean, std


class _ClipBackbone:
    def __init__(self, folder, processor_folder=None, what="CLIP reward"):
        from transformers import AutoTokenizer, CLIPModel

        self.folder = _folder(folder, what)
        proc = _folder(processor_folder, what) if processor_folder else self.folder
        try:
            self.model = CLIPModel.from_pretrained(str(self.folder), local_files_only=True).eval()
            self.tokenizer = AutoTokenizer.from_pretrained(str(proc), local_files_only=True)
        except (OSError, ValueError) as exc:
            raise RewardError(f"{what}: cannot load {self.folder} ({str(exc).splitlines()[0]})") from None
        self.model.requires_grad_(False)
        self.size, self.mean, self.std = _preprocess_config(proc, self.model.config.vision_config.image_size)
        self.max_length = min(int(getattr(self.tokenizer, "model_max_length", 77) or 77),
                              self.model.config.text_config.max_position_embeddings)
        self.hash = folder_sha256(self.folder)

    def pixels(self, media) -> torch.Tensor:
        x = image_batch(media)
        h, w = x.shape[-2:]
        s = min(h, w)  # centre crop to a square, as CLIPImageProcessor does after its resize
        x = x[..., (h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
        if self.model.device != x.device:  # follow the media (a guided sampler's x0 lives on its GPU)
            self.model.to(x.device)
        return (resize(x, self.size) - self.mean.to(x.device)) / self.std.to(x.device)

    def image_embeds(self, media) -> torch.Tensor:
        e = _features(self.model.get_image_features(pixel_values=self.pixels(media)))
        return e / e.norm(dim=-1, keepdim=True)

    def text_embeds(self, prompts: list[str]) -> torch.Tensor:
        tok = self.tokenizer(prompts, padding="max_length", truncation=True, max_length=self.max_length,
                             return_tensors="pt")
        with torch.no_grad():
            mask = tok.get("attention_mask")
            e = _features(self.model.get_text_features(input_ids=tok["input_ids"].to(self.model.device),
                                                       attention_mask=None if mask is None else
                                                       mask.to(self.model.device)))
        return e / e.norm(dim=-1, keepdim=True)


class ClipScore(Reward):
    """kind "clip": 100 x cosine(text, image) (the CLIPScore convention, unclipped); kind "pickscore":
    logit_scale.exp() x cosine, PickScore's own formula (comparable only between images of one prompt)."""

    differentiable = True

    def __init__(self, folder, *, kind: str = "clip", processor_folder=None, name: Optional[str] = None):
        if kind not in ("clip", "pickscore"):
            raise RewardError(f"unknown CLIP score kind {kind!r} (clip, pickscore)")
        self.kind, self.name = kind, name or kind
        self.clip = _ClipBackbone(folder, processor_folder, what=f"reward {self.name}")

    @property
    def hash(self) -> str:
        return hashlib.sha256(f"{self.kind}:{self.clip.hash}".encode()).hexdigest()

    @property
    def source(self) -> str:
        return str(self.clip.folder)

    def score(self, media, prompts: Prompts) -> torch.Tensor:
        img = self.clip.image_embeds(media)
        txt = self.clip.text_embeds(prompt_list(prompts, img.shape[0]))
        cos = (img * txt).sum(-1)
        scale = self.clip.model.logit_scale.exp() if self.kind == "pickscore" else 100.0
        return scale * cos


class AestheticHead(torch.nn.Module):
    """LAION improved-aesthetic-predictor's MLP: the same layer indices as its checkpoint (layers.0/2/4/6/7;
    the odd ones are dropouts), so its `.pth` state dict loads as is. Sized from the state dict."""

    def __init__(self, dims: list[int]):
        super().__init__()
        a, b, c, d, e = dims
        self.layers = torch.nn.Sequential(torch.nn.Linear(a, b), torch.nn.Dropout(0.2), torch.nn.Linear(b, c),
                                          torch.nn.Dropout(0.2), torch.nn.Linear(c, d), torch.nn.Dropout(0.1),
                                          torch.nn.Linear(d, e), torch.nn.Linear(e, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)

    @classmethod
    def from_state_dict(cls, state: dict) -> "AestheticHead":
        try:
            dims = [state[f"layers.{i}.weight"].shape[1] for i in (0, 2, 4, 6, 7)]
            head = cls(dims)
            head.load_state_dict(state)
        except (KeyError, RuntimeError, IndexError) as exc:
            raise RewardError(f"not a LAION aesthetic head state dict ({str(exc).splitlines()[0]})") from None
        return head.eval()


class Aesthetic(Reward):
    """The LAION aesthetic score (about 1-10) of CLIP ViT-L/14 image embeddings (L2-normalised)."""

    name = "aesthetic"
    differentiable = True

    def __init__(self, head_path, clip_folder, *, processor_folder=None):
        self.head_path = Path(head_path).expanduser()
        self.head = AestheticHead.from_state_dict(load_state_dict(self.head_path)).requires_grad_(False)
        self.clip = _ClipBackbone(clip_folder, processor_folder, what="reward aesthetic")
        width = self.head.layers[0].in_features
        if self.clip.model.config.projection_dim != width:
            raise RewardError(f"the aesthetic head takes {width}-d embeddings but {self.clip.folder.name} makes "
                              f"{self.clip.model.config.projection_dim}-d ones (it needs CLIP ViT-L/14)")

    @property
    def hash(self) -> str:
        return hashlib.sha256(f"aesthetic:{file_sha256(self.head_path)}:{self.clip.hash}".encode()).hexdigest()

    @property
    def source(self) -> str:
        return f"{self.head_path} + {self.clip.folder}"

    def score(self, media, prompts: Prompts) -> torch.Tensor:
        emb = self.clip.image_embeds(media)
        return self.head.to(emb.device)(emb)[:, 0]


class ClapScore(Reward):
    """100 x cosine(text, audio) from a local `ClapModel` folder (e.g. laion/clap-htsat-unfused); audio is
    resampled to the feature extractor's rate. Not differentiable: the extractor computes mels in numpy."""

    name = "clap"
    modality = "audio"

    def __init__(self, folder):
        from transformers import ClapModel, ClapProcessor

        self.folder = _folder(folder, "reward clap")
        try:
            self.model = ClapModel.from_pretrained(str(self.folder), local_files_only=True).eval()
            self.processor = ClapProcessor.from_pretrained(str(self.folder), local_files_only=True)
        except (OSError, ValueError) as exc:
            raise RewardError(f"reward clap: cannot load {self.folder} ({str(exc).splitlines()[0]})") from None
        self._hash = folder_sha256(self.folder)

    @property
    def hash(self) -> str:
        return hashlib.sha256(f"clap:{self._hash}".encode()).hexdigest()

    @property
    def source(self) -> str:
        return str(self.folder)

    def score(self, media, prompts: Prompts) -> torch.Tensor:
        rate = int(self.processor.feature_extractor.sampling_rate)
        clips = []
        for item in media:
            x, r = audio_mono(item)
            if r != rate:
                n = max(1, int(round(x.numel() * rate / r)))
                x = torch.nn.functional.interpolate(x[None, None], size=n, mode="linear", align_corners=False)[0, 0]
            limit = int(getattr(self.processor.feature_extractor, "nb_max_samples", 0) or 0)
            if limit and x.numel() > limit:  # the extractor would crop at random (rand_trunc): a score must not
                start = (x.numel() - limit) // 2
                x = x[start:start + limit]
            clips.append(x.numpy().astype(np.float32))
        prompts = prompt_list(prompts, len(clips))
        with torch.no_grad():
            audio_in = self.processor.feature_extractor(clips, sampling_rate=rate, return_tensors="pt")
            text_in = self.processor.tokenizer(prompts, padding=True, truncation=True, return_tensors="pt")
            a = _features(self.model.get_audio_features(**audio_in))
            t = _features(self.model.get_text_features(**text_in))
        a = a / a.norm(dim=-1, keepdim=True)
        t = t / t.norm(dim=-1, keepdim=True)
        return 100.0 * (a * t).sum(-1)
