"""`studio tune`: a Diffusion-DPO LoRA (Wallace et al. 2023) trained on the ratings store's pairs, with a
Diffusion-KTO term (Li et al. 2024) for likes / dislikes, on an SD-family UNet's attention projections.

    from studio.rewards import tune
    result = tune.tune("mini", steps=200)        # LoRA + provenance JSON next to it, then the eval gate
    result.path, result.provenance["gate"]["passed"]

The reference model is the frozen base itself with the adapter switched off (`unet.disable_adapters()`), so
no second UNet is held in memory. The LoRA is saved with diffusers' `save_lora_weights` (the same format
`pipelines.lora.apply_loras` loads), with `<name>.json` next to it: what it was trained from (rating count and
ids' hash, the base model's hash, steps, seed, beta...) and, once run, the eval gate's figures (`gate.py`).

Hand-written: the DPO / KTO losses and their training loop (diffusers ships them only as example scripts,
not as an importable API); peft provides the LoRA layers, diffusers the noise schedule and the file format.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F

from ..errors import RequestError

LORA_FORMAT = "diffusion-studio-tuned-lora"
TUNE_FAMILIES = ("sd1", "sd2")  # UNet + one CLIP text encoder, epsilon or v prediction (the mini model is sd1)
TARGET_MODULES = ("to_q", "to_k", "to_v", "to_out.0")  # the UNet's attention, as the Diffusion-DPO paper tunes
ADAPTER = "tune"
Progress = Callable[[int, int, str], None]  # (done, total, phase: "tune" | "gate")


@dataclass
class TuneConfig:
    steps: int = 200
    beta: float = 2000.0  # DPO's KL weight; the paper uses 2000-5000 for SD1.5 with per-pixel mean errors
    lr: float = 1e-3
    rank: int = 8
    batch: int = 8  # pairs (and likes) per step
    seed: int = 0
    holdout: float = 0.2  # share of rated prompts kept out of training: the gate renders those
    method: str = "auto"  # "dpo" (pairs), "kto" (likes/dislikes), "auto": DPO on pairs + KTO on likes
    # training timesteps as fractions of the schedule; the paper samples all of it (0, 1). Layout and size
    # are decided in the noisy half, so a taste for them can train on (0.5, 1) at half the cost
    timesteps: tuple = (0.0, 1.0)


# -- losses ----------------------------------------------------------------------------------------------------
def dpo_loss(err_w: torch.Tensor, err_l: torch.Tensor, ref_w: torch.Tensor, ref_l: torch.Tensor,
             beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Diffusion-DPO (Wallace et al. 2023, eq. 14, as their training code writes it): the per-sample denoising
    errors of the policy (`err_*`) and the reference (`ref_*`) on the same noise and timestep for the
    preferred (w) and the other (l) image. loss = -log sigmoid(-beta/2 [(err_w - ref_w) - (err_l - ref_l)]):
    log 2 where the policy equals the reference, lower when the policy denoises the winner better than the
    reference does, relative to the loser. Returns (loss, share of pairs the policy already orders right)."""
    inside = -0.5 * beta * ((err_w - ref_w) - (err_l - ref_l))
    return -F.logsigmoid(inside).mean(), (inside > 0).float().mean()


def kto_loss(err: torch.Tensor, ref: torch.Tensor, liked: torch.Tensor, beta: float) -> torch.Tensor:
    """Diffusion-KTO for unpaired likes / dislikes: implicit reward r = -beta/2 (err - ref); a liked sample
    costs 1 - sigmoid(r - z), a disliked one 1 - sigmoid(z - r). z, KTO's reference point, is the batch's mean
    implicit reward clamped at 0 and detached (KTO's KL estimate, simplified to the batch itself). 0.5 at the
    reference."""
    r = -0.5 * beta * (err - ref)
    z = r.detach().mean().clamp(min=0)
    sign = liked.float() * 2 - 1
    return (1 - torch.sigmoid(sign * (r - z))).mean()


# -- data ------------------------------------------------------------------------------------------------------
@dataclass
class TuneData:
    pairs: list = field(default_factory=list)  # (preferred image, other image, prompt)
    likes: list = field(default_factory=list)  # (image, prompt, liked)
    ratings: int = 0  # rating lines that gave at least one usable pair or like
    skipped: int = 0  # rated files missing or changed since they were rated
    ids_sha256: str = ""  # of the sorted rating ids used: which ratings a LoRA was trained on

    def prompts(self) -> list[str]:
        return sorted({p[2] for p in self.pairs} | {x[1] for x in self.likes})


def collect(store=None) -> TuneData:
    """The image ratings of `store` (default: the studio's) with their media read back (sha256-checked)."""
    from . import RatingStore, _read_media

    store = store or RatingStore()
    cache: dict[str, object] = {}
    data, used = TuneData(), set()

    def media(ref: dict):
        key = ref.get("sha256")
        if key not in cache:
            m = _read_media(ref) if (ref.get("modality") or "image") == "image" else None
            cache[key] = m.convert("RGB") if hasattr(m, "convert") else None
            data.skipped += cache[key] is None
        return cache[key]

    for win, lose, prompt, rid in store.pairs():
        a, b = media(win), media(lose)
        if a is not None and b is not None:
            data.pairs.append((a, b, prompt))
            used.add(rid)
    for r in store.ratings():
        if r["kind"] in ("like", "dislike"):
            m = media(r["item"])
            if m is not None:
                data.likes.append((m, r["item"].get("prompt", ""), r["kind"] == "like"))
                used.add(r["id"])
    data.ratings = len(used)
    data.ids_sha256 = hashlib.sha256("\n".join(sorted(used)).encode()).hexdigest()
    return data


def split_prompts(prompts: Sequence[str], holdout: float, seed: int) -> tuple[list[str], list[str]]:
    """(train prompts, held-out prompts): a seeded share of the distinct prompts; every rating of a prompt
    stays on one side, so the gate judges the LoRA on prompts it was not trained on."""
    uniq = sorted(set(prompts))
    order = torch.randperm(len(uniq), generator=torch.Generator().manual_seed(seed)).tolist()
    n_out = int(math.floor(len(uniq) * holdout)) if len(uniq) >= 5 else 0
    out = {uniq[i] for i in order[:n_out]}
    return [p for p in uniq if p not in out], sorted(out)


# -- training --------------------------------------------------------------------------------------------------
def _latents(pipe, images, size: tuple[int, int]) -> torch.Tensor:
    """VAE latents of `images`, each distinct image encoded once (a pick's winner is in N-1 pairs)."""
    import numpy as np

    slot: dict[int, int] = {}
    uniq = []
    for im in images:
        if id(im) not in slot:
            slot[id(im)] = len(uniq)
            uniq.append(im)
    vae = pipe.vae
    out = []
    for i in range(0, len(uniq), 16):
        chunk = [im.convert("RGB").resize(size) if im.size != size else im.convert("RGB") for im in uniq[i:i + 16]]
        x = torch.from_numpy(np.stack([np.asarray(im, dtype=np.float32) for im in chunk])).permute(0, 3, 1, 2)
        x = (x / 127.5 - 1).to(vae.device, vae.dtype)
        with torch.no_grad():
            z = vae.encode(x).latent_dist.mode()
        shift = getattr(vae.config, "shift_factor", None) or 0.0
        out.append(((z - shift) * vae.config.scaling_factor).float())
    if not out:
        return torch.zeros(0)
    return torch.cat(out)[torch.tensor([slot[id(im)] for im in images])]


def _embeds(pipe, prompts: Sequence[str]) -> dict[str, torch.Tensor]:
    uniq = sorted(set(prompts))
    out = {}
    with torch.no_grad():
        for i in range(0, len(uniq), 32):
            chunk = uniq[i:i + 32]
            emb = pipe.encode_prompt(chunk, pipe.unet.device, 1, False)[0]
            out.update({p: e for p, e in zip(chunk, emb)})
    return out


def common_size(data: TuneData) -> tuple[int, int]:
    from collections import Counter

    sizes = Counter(im.size for p in data.pairs for im in p[:2])
    sizes.update(x[0].size for x in data.likes)
    return sizes.most_common(1)[0][0] if sizes else (512, 512)


def add_adapter(unet, rank: int) -> None:
    from peft import LoraConfig

    unet.requires_grad_(False)
    # gaussian init leaves lora_B at zero: the policy starts exactly at the reference (loss log 2)
    unet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian",
                                target_modules=list(TARGET_MODULES)), adapter_name=ADAPTER)


def train_lora(pipe, data: TuneData, cfg: TuneConfig, *, size: Optional[tuple[int, int]] = None,
               progress: Optional[Progress] = None) -> dict:
    """Add a LoRA to `pipe.unet` and fit it with DPO on `data.pairs` and KTO on `data.likes` (per `cfg.method`).
    `size`: what the images are resized to (default: the most common size among them). Returns the training
    log (loss and implicit accuracy, first / last 10% of steps)."""
    from diffusers import DDPMScheduler

    use_pairs = bool(data.pairs) and cfg.method in ("auto", "dpo")
    use_likes = bool(data.likes) and cfg.method in ("auto", "kto")
    if not use_pairs and not use_likes:
        raise RequestError(f"nothing to tune on with method {cfg.method}: {len(data.pairs)} pairs, "
                           f"{len(data.likes)} likes/dislikes (rate some outputs first)")
    unet = pipe.unet
    device = unet.device
    noise_sched = DDPMScheduler.from_config(pipe.scheduler.config)  # add_noise / get_velocity for training
    kind = noise_sched.config.get("prediction_type", "epsilon")
    if kind not in ("epsilon", "v_prediction"):
        raise RequestError(f"studio tune supports epsilon and v-prediction models, not {kind!r}")
    gen = torch.Generator().manual_seed(cfg.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        add_adapter(unet, cfg.rank)
    params = [p for p in unet.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=1e-4)

    prompts = [p[2] for p in data.pairs] + [x[1] for x in data.likes]
    size = size or common_size(data)
    emb = _embeds(pipe, prompts)
    if use_pairs:
        lw = _latents(pipe, [p[0] for p in data.pairs], size)
        ll = _latents(pipe, [p[1] for p in data.pairs], size)
        ew = torch.stack([emb[p[2]] for p in data.pairs])
    if use_likes:
        lk = _latents(pipe, [x[0] for x in data.likes], size)
        ek = torch.stack([emb[x[1]] for x in data.likes])
        yk = torch.tensor([bool(x[2]) for x in data.likes])
    t_lo = int(noise_sched.config.num_train_timesteps * min(max(cfg.timesteps[0], 0.0), 1.0))
    t_hi = max(t_lo + 1, int(noise_sched.config.num_train_timesteps * min(max(cfg.timesteps[1], 0.0), 1.0)))

    def errors(lat, enc, noise, t):
        noisy = noise_sched.add_noise(lat, noise, t)
        target = noise if kind == "epsilon" else noise_sched.get_velocity(lat, noise, t)
        unet.disable_adapters()
        with torch.no_grad():
            ref = unet(noisy.to(unet.dtype), t.to(device), enc).sample.float()
        unet.enable_adapters()
        pred = unet(noisy.to(unet.dtype), t.to(device), enc).sample.float()
        dims = tuple(range(1, lat.dim()))
        return (pred - target).pow(2).mean(dims), (ref - target).pow(2).mean(dims)

    log = {"loss": [], "accuracy": []}
    unet.train()
    for step in range(cfg.steps):
        loss = torch.zeros((), device=device)
        acc = None
        if use_pairs:
            idx = torch.randint(0, lw.shape[0], (min(cfg.batch, lw.shape[0]),), generator=gen)
            noise = torch.randn(lw[idx].shape, generator=gen).to(device)
            t = torch.randint(t_lo, t_hi, (idx.numel(),), generator=gen)
            # the same noise and timestep for the winner and the loser: their errors differ by the image only
            e, r = errors(torch.cat([lw[idx], ll[idx]]).to(device), torch.cat([ew[idx], ew[idx]]).to(device),
                          torch.cat([noise, noise]), torch.cat([t, t]))
            n = idx.numel()
            dpo, acc = dpo_loss(e[:n], e[n:], r[:n], r[n:], cfg.beta)
            loss = loss + dpo
        if use_likes:
            idx = torch.randint(0, lk.shape[0], (min(cfg.batch, lk.shape[0]),), generator=gen)
            noise = torch.randn(lk[idx].shape, generator=gen).to(device)
            t = torch.randint(t_lo, t_hi, (idx.numel(),), generator=gen)
            e, r = errors(lk[idx].to(device), ek[idx].to(device), noise, t)
            loss = loss + kto_loss(e, r, yk[idx].to(device), cfg.beta)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        log["loss"].append(float(loss.detach()))
        if acc is not None:
            log["accuracy"].append(float(acc))
        if progress:
            progress(step + 1, cfg.steps, "tune")
    unet.eval()

    def mean(v, last: bool):
        k = max(1, len(v) // 10)
        part = v[-k:] if last else v[:k]
        return round(sum(part) / len(part), 5) if part else None

    return {"loss_first": mean(log["loss"], False), "loss_last": mean(log["loss"], True),
            "implicit_accuracy_first": mean(log["accuracy"], False),
            "implicit_accuracy_last": mean(log["accuracy"], True)}


def save_lora(pipe, path: Path) -> str:
    """Write the adapter in the diffusers LoRA format (what `pipelines.lora` loads), atomically; its sha256."""
    import tempfile

    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    import pipelines

    state = convert_state_dict_to_diffusers(get_peft_model_state_dict(pipe.unet, adapter_name=ADAPTER))
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".tune-") as tmp:
        type(pipe).save_lora_weights(save_directory=tmp, unet_lora_layers=state, weight_name=path.name,
                                     safe_serialization=True)
        os.replace(Path(tmp) / path.name, path)
    return pipelines.file_sha256(path)


def sidecar(path: os.PathLike | str) -> Path:
    """The provenance / gate JSON next to a tuned LoRA."""
    return Path(path).with_suffix(".json")


def read_provenance(path: os.PathLike | str) -> Optional[dict]:
    """A tuned LoRA's provenance, or None for a LoRA the studio did not tune (no sidecar in our format)."""
    p = sidecar(path)
    try:
        meta = json.loads(p.read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and meta.get("format") == LORA_FORMAT else None


def write_provenance(path: os.PathLike | str, meta: dict) -> Path:
    from ..writer import write_atomic

    target = sidecar(path)
    write_atomic(target, (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode(), overwrite=True)
    return target


def tuned_dir() -> Path:
    from ..config import config_dir

    return config_dir() / "loras"


@dataclass
class TuneResult:
    path: Optional[Path]  # None with reward_only
    provenance: dict
    reward_report: Optional[dict] = None

    @property
    def gate(self) -> Optional[dict]:
        return self.provenance.get("gate")


def load_base(model: Optional[str]):
    """(registry entry, LoadedModel) of a model `studio tune` can train, loaded fresh in float32 (the engine's
    cached copy must not carry a half-trained adapter)."""
    import pipelines

    from ..registry import Registry

    entry = Registry().resolve(model)
    try:
        loaded = pipelines.load_model(entry.source, family=entry.family, dtype=torch.float32)
    except pipelines.ModelLoadError as exc:
        raise RequestError(str(exc)) from None
    if loaded.family not in TUNE_FAMILIES:
        raise RequestError(f"studio tune trains LoRAs for {'/'.join(TUNE_FAMILIES)} models; {entry.name} is "
                           f"{loaded.family}")
    loaded.pipe.set_progress_bar_config(disable=True)
    return entry, loaded


def tune(model: Optional[str] = None, *, store=None, out: Optional[os.PathLike | str] = None,
         config: Optional[TuneConfig] = None, refresh_reward: bool = True, reward_only: bool = False,
         gate: bool = True, gate_options: Optional[dict] = None, progress: Optional[Progress] = None,
         **overrides) -> TuneResult:
    """Refresh the learned reward from the ratings (`refresh_reward`), train a DPO/KTO LoRA on the ratings of
    the training prompts, write it (default `<config>/loras/tuned-<time>.safetensors`) with its provenance,
    then run the eval gate on the held-out prompts (`gate.run_gate`; `gate_options` go to it)."""
    from . import RatingStore, train_learned

    cfg = config or TuneConfig()
    if overrides:
        cfg = TuneConfig(**{**asdict(cfg), **overrides})
    if cfg.steps < 1 or cfg.batch < 1 or cfg.rank < 1 or not cfg.beta > 0 or not cfg.lr > 0:
        raise RequestError("tune needs steps, batch and rank >= 1 and beta, lr > 0")
    if cfg.method not in ("auto", "dpo", "kto"):
        raise RequestError(f"tune method must be auto, dpo or kto, not {cfg.method!r}")
    store = store or RatingStore()
    reward_report = None
    if refresh_reward or reward_only:  # the new reward replaces the current one only if its eval gate passes
        check = {k: v for k, v in (gate_options or {}).items() if k in ("check", "tolerance")}
        _, rep = train_learned("image", store=store, gate=check)
        reward_report = rep.to_dict()
    if reward_only:
        return TuneResult(None, {}, reward_report)
    t0 = time.perf_counter()
    data = collect(store)
    train_p, held = split_prompts(data.prompts(), cfg.holdout, cfg.seed)
    keep = set(train_p)
    train_data = TuneData([p for p in data.pairs if p[2] in keep], [x for x in data.likes if x[1] in keep],
                          data.ratings, data.skipped, data.ids_sha256)
    entry, loaded = load_base(model)
    size = common_size(train_data)
    log = train_lora(loaded.pipe, train_data, cfg, size=size, progress=progress)
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    path = Path(out).expanduser() if out else tuned_dir() / f"tuned-{entry.name}-{stamp}.safetensors"
    if path.suffix != ".safetensors":
        path = path.with_suffix(".safetensors")
    sha = save_lora(loaded.pipe, path)
    import diffusers
    import peft

    provenance = {
        "format": LORA_FORMAT, "version": 1, "lora_sha256": sha,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "base_model": {"name": entry.name, "family": loaded.family, "hash": loaded.content_hash,
                       "source": str(entry.source)},
        "ratings": {"used": data.ratings, "ids_sha256": data.ids_sha256, "pairs": len(data.pairs),
                    "likes": len(data.likes), "train_pairs": len(train_data.pairs),
                    "train_likes": len(train_data.likes), "skipped": data.skipped,
                    "train_prompts": len(train_p), "heldout_prompts": held, "store": str(store.path)},
        "method": cfg.method, "steps": cfg.steps, "seed": cfg.seed, "beta": cfg.beta, "lr": cfg.lr,
        "rank": cfg.rank, "batch": cfg.batch, "timesteps": list(cfg.timesteps), "target_modules": list(TARGET_MODULES), "size": list(size),
        "training": log, "seconds": round(time.perf_counter() - t0, 1),
        "reward": reward_report and {k: reward_report.get(k) for k in ("pairs", "likes", "heldout_accuracy", "gate")},
        "versions": {"torch": torch.__version__, "diffusers": diffusers.__version__, "peft": peft.__version__},
        "gate": None, "enabled": False,
    }
    write_provenance(path, provenance)
    del loaded
    if gate:
        from .gate import run_gate

        opts = dict(gate_options or {})
        opts.setdefault("prompts", held)
        provenance = run_gate(path, model=entry.name, progress=progress, **opts)["provenance"]
    return TuneResult(path, provenance, reward_report)
