"""Train mini-video: an AnimateDiff motion adapter on the frozen mini image model (CPU-friendly).

    python -m studio.mini.video.train --recipe motion-lora --work /tmp/mv_work --out studio/mini/video/weights

What is trained, and why (measured in ``docs/mini-video-plan.md``):

- a ``MotionAdapter`` (temporal attention after every UNet block): it makes the 16 frames one clip;
- the direction: AnimateDiff calls its motion modules without the text, so the shipped design
  (``--cond motion-lora``, ``RECIPES``) gives every motion its own LoRA on the motion modules' attention
  (``MotionLoRAs``), the AnimateDiff form of "pan left" control; the studio picks it from the prompt's motion
  phrase (``pipelines/motion_loras.py``).  With the same data and budget it learnt two motions' direction by
  1,500 steps, where the earlier design below stayed at chance.
- the earlier design (``--cond text``, kept to reproduce the probes): the tokenizer gains the motion words
  (``world.MOTION_WORDS``) and only their new embedding rows are learnt, with a LoRA on the UNet's spatial
  cross-attention so the frames can read them (fused into the UNet at export).

Everything else (VAE, UNet, text encoder body, scheduler) is the committed mini model (``--base``).
Training clips are rendered fresh every step (``world.sample_clip(split="train")``, never a held-out
combination) and encoded in closed form (``studio/mini/latent.py``): no VAE in the loop.  v-prediction on
the base's zero-terminal-SNR schedule, 10% caption dropout (classifier-free guidance).

Image-to-video (``pipelines/animatediff_i2v.py``) replaces frame 0's latent by the given image's latent
noised to the current timestep.  Plain training already shows frame 0 exactly that way: every frame is
its ground truth noised to the clip's timestep, which is what the replacement feeds the model at
every sampling step.

Seeded: clip seeds, captions and noise are functions of (seed, step), so ``--resume`` continues the
same stream.  Progress lines give the step, loss, seconds per step and the ETA.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import sys
import time
from pathlib import Path

import numpy as np

from .. import world as W
from ..tokenizer import BOS, EOS, MAX_LEN, build_vocab_merges, world_words
from . import world as V

ROOT = Path(__file__).resolve().parents[3]
BASE = ROOT / "studio" / "mini" / "weights"
OUT = Path(__file__).resolve().parent / "weights"
TRAIN_SEED_BASE = 3_000_000
ADAPTER_KW = dict(block_out_channels=(32, 64, 128), motion_layers_per_block=1, motion_num_attention_heads=4,
                  motion_norm_num_groups=8, motion_max_seq_length=32)
LORA_TARGETS = ("attn2.to_q", "attn2.to_k", "attn2.to_v", "attn2.to_out.0")
# defaults the studio registers (the card repeats them)
DEFAULTS = {"width": 256, "height": 256, "num_frames": V.FRAMES, "fps": V.FPS, "num_inference_steps": 25,
            "guidance_scale": 5.0, "sampler": "DPM++ 2M (DPMSolverMultistepScheduler, trailing)"}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---------------------------------------------------------------- tokenizer / text encoder
def build_video_tokenizer():
    """The mini tokenizer plus the motion words, appended so that every existing token keeps its id."""
    from transformers import CLIPTokenizer

    words = world_words()
    vocab, merges = build_vocab_merges(words + [w for w in V.MOTION_WORDS if w not in words])
    return CLIPTokenizer(vocab=vocab, merges=merges, bos_token=BOS, eos_token=EOS, pad_token=EOS, unk_token=EOS,
                         model_max_length=MAX_LEN)


def extend_text_encoder(te, tok) -> int:
    """Grow the token embedding to the video tokenizer; returns the first new row.  New motion words start
    from a related old word where there is one, so training starts from a sensible place."""
    import torch

    old = te.get_input_embeddings().weight.shape[0]
    te.resize_token_embeddings(len(tok))
    emb = te.get_input_embeddings().weight
    v = tok.get_vocab()
    near = {"up": "top", "down": "bottom", "still": "center", "standing": "center", "to": "at", "moving": "the"}
    with torch.no_grad():
        mean = emb[:old].mean(0)
        emb[old:] = mean
        for w, src in near.items():
            emb[v[w + "</w>"]] = emb[v[src + "</w>"]]
    return old


# ---------------------------------------------------------------- LoRA (hand-written: fused at export)
def add_lora(unet, rank: int):
    """Wrap the spatial cross-attention projections (``attentions.*.attn2``, not the motion modules')
    with a zero-initialised low-rank update; returns (parent, key, wrapper) triples for ``fuse_lora``."""
    import torch
    from torch import nn

    class _LoRA(nn.Module):
        def __init__(self, base: nn.Linear):
            super().__init__()
            self.base = base
            self.down = nn.Linear(base.in_features, rank, bias=False)
            self.up = nn.Linear(rank, base.out_features, bias=False)
            nn.init.normal_(self.down.weight, std=1.0 / rank)
            nn.init.zeros_(self.up.weight)

        def forward(self, x):
            return self.base(x) + self.up(self.down(x))

        def fused(self) -> nn.Linear:
            with torch.no_grad():
                self.base.weight += self.up.weight @ self.down.weight
            return self.base

    wrappers = []
    for name, mod in list(unet.named_modules()):
        if "motion_modules" in name or ".attentions." not in name or not name.endswith("attn2"):
            continue
        for parent, key in ((mod, "to_q"), (mod, "to_k"), (mod, "to_v"), (mod.to_out, 0)):
            lin = parent[key] if isinstance(key, int) else getattr(parent, key)
            w = _LoRA(lin)
            if isinstance(key, int):
                parent[key] = w
            else:
                setattr(parent, key, w)
            wrappers.append((parent, key, w))
    return wrappers


def fuse_lora(wrappers) -> None:
    for parent, key, w in wrappers:
        if isinstance(key, int):
            parent[key] = w.fused()
        else:
            setattr(parent, key, w.fused())


# ---------------------------------------------------------------- motion LoRAs (one per motion)
# the temporal attention projections, as AnimateDiff's motion LoRAs; not proj_in / proj_out: diffusers calls
# them as proj_in(input=...), which peft's LoRA layers (forward(x)) reject, so such a LoRA would not load
MOTION_LORA_TARGETS = ("attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0",
                       "attn2.to_q", "attn2.to_k", "attn2.to_v", "attn2.to_out.0")


class MotionLoRAs:
    """One low-rank update per motion on every motion module's projections (``MOTION_LORA_TARGETS``): the
    AnimateDiff form of camera/motion control ("pan left", "zoom in" motion LoRAs), and the motion-specific
    change inside the motion modules that the direct-injection probe showed can learn direction.

    Hand-written for training only, because a batch mixes motions: each clip of the batch gets its own
    motion's update (``self.active``, one motion or None per clip), which peft's one-active-adapter layers
    cannot do inside diffusers' UNet forward.  ``peft_state_dict(m)`` exports motion m in diffusers' LoRA
    format (``lora_A`` / ``lora_B``, alpha = rank), which ``AnimateDiffPipeline.load_lora_weights`` loads."""

    def __init__(self, unet, motions, rank: int, seed: int = 0):
        import torch
        from torch import nn

        self.motions, self.rank, self.active, self.layers, self.unet = tuple(motions), rank, None, [], unet
        g = torch.Generator().manual_seed(seed + 555)
        owner = self

        class _Layer(nn.Module):
            def __init__(self, base: nn.Linear, path: str):
                super().__init__()
                self.base, self.path = base, path
                k = len(owner.motions)
                self.down = nn.Parameter(torch.randn(k, rank, base.in_features, generator=g) / rank)
                self.up = nn.Parameter(torch.zeros(k, base.out_features, rank))

            def forward(self, x):
                y = self.base(x)
                act = owner.active
                if not act or all(m is None for m in act):
                    return y
                rows = x.shape[0] // len(act)  # motion-module inputs are batch-major: (batch * H * W, frames, C)
                parts = []
                for i, m in enumerate(act):
                    xi = x[i * rows:(i + 1) * rows]
                    if m is None:
                        parts.append(torch.zeros_like(y[i * rows:(i + 1) * rows]))
                        continue
                    j = owner.motions.index(m)
                    parts.append(xi @ self.down[j].T @ self.up[j].T)
                return y + torch.cat(parts, 0)

        for name, lin in list(unet.named_modules()):
            if ("motion_modules" not in name or not isinstance(lin, nn.Linear)
                    or not any(name.endswith("." + t) for t in MOTION_LORA_TARGETS)):
                continue
            parent_name, _, last = name.rpartition(".")
            parent = unet.get_submodule(parent_name)
            layer = _Layer(lin, name)
            if last.isdigit():
                parent[int(last)] = layer
            else:
                setattr(parent, last, layer)
            self.layers.append(layer)

    def params(self):
        return [p for l in self.layers for p in (l.down, l.up)]

    def state(self) -> dict:
        return {"motions": self.motions, "rank": self.rank,
                "layers": {l.path: (l.down.detach().clone(), l.up.detach().clone()) for l in self.layers}}

    def load(self, st: dict) -> None:
        import torch

        with torch.no_grad():
            for l in self.layers:
                d, u = st["layers"][l.path]
                l.down.copy_(d)
                l.up.copy_(u)

    def remove(self) -> None:
        """Put the plain projections back (the exported UNet and adapter carry no LoRA)."""
        for l in self.layers:
            parent_name, _, last = l.path.rpartition(".")
            parent = self.unet.get_submodule(parent_name)
            if last.isdigit():
                parent[int(last)] = l.base
            else:
                setattr(parent, last, l.base)
        self.layers = []

    def export(self, out: Path) -> dict:
        """fp16 ``motion_loras/<motion>.safetensors`` plus ``motion_loras/motion_loras.json``: each motion's
        file and the caption phrases that select it (the world's ``MOTION_PHRASES``); the phrase is taken
        out of the prompt, as in training.  Returns {motion: file}."""
        from safetensors.torch import save_file

        d = Path(out) / "motion_loras"
        d.mkdir(parents=True, exist_ok=True)
        files = {}
        for m in self.motions:
            files[m] = f"{m}.safetensors"
            save_file({k: v.half() for k, v in self.peft_state_dict(m).items()}, str(d / files[m]))
        table = {"format": "diffusers LoRA on the motion modules, one per motion", "strip_trigger": True,
                 "loras": {m: {"file": files[m], "triggers": list(V.MOTION_PHRASES[m])} for m in self.motions}}
        (d / "motion_loras.json").write_text(json.dumps(table, indent=1))
        return files

    def peft_state_dict(self, motion: str) -> dict:
        """Motion ``motion``'s update as diffusers/peft LoRA tensors (``unet.<path>.lora_A.weight`` ...)."""
        j = self.motions.index(motion)
        sd = {}
        for l in self.layers:
            sd[f"unet.{l.path}.lora_A.weight"] = l.down[j].detach().clone().contiguous()
            sd[f"unet.{l.path}.lora_B.weight"] = l.up[j].detach().clone().contiguous()
        return sd


# ---------------------------------------------------------------- model
def load_parts(base: Path = BASE):
    from diffusers import AutoencoderKL, DPMSolverMultistepScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel

    import torch

    unet = UNet2DConditionModel.from_pretrained(base / "unet", torch_dtype=torch.float32)
    te = CLIPTextModel.from_pretrained(base / "text_encoder", torch_dtype=torch.float32)
    vae = AutoencoderKL.from_pretrained(base / "vae", torch_dtype=torch.float32)
    sched = DPMSolverMultistepScheduler.from_pretrained(base / "scheduler")
    return unet, te, vae, sched


def build_motion_unet(unet2d, adapter=None, zero_out: bool = True):
    """UNetMotionModel = the frozen image UNet + a motion adapter.  A fresh adapter gets its temporal
    transformers' ``proj_out`` zeroed, as AnimateDiff's own training does (``zero_initialize``); diffusers'
    ``MotionAdapter()`` leaves them at the default Linear init, which mixes frames at random from step 0
    (measured: it raises the image model's v-loss 3x at t=400 before any training)."""
    from diffusers import MotionAdapter, UNetMotionModel

    fresh = adapter is None
    adapter = adapter or MotionAdapter(**ADAPTER_KW)
    if fresh and zero_out:
        zero_motion_out(adapter)
    return UNetMotionModel.from_unet2d(unet2d, adapter), adapter


def zero_motion_out(adapter) -> None:
    """Zero every temporal transformer's output projection: the video model then starts as the image model."""
    import torch

    with torch.no_grad():
        for name, p in adapter.named_parameters():
            if name.split(".")[-2] == "proj_out":
                p.zero_()


def handmade_vectors(dim: int = 128, norm: float = 11.0):
    """Probe conditioning: one fixed random vector per motion (norm ~ a token state's)."""
    import torch

    g = torch.Generator().manual_seed(1234)
    v = torch.randn(len(V.MOTIONS), dim, generator=g)
    return v / v.norm(dim=1, keepdim=True) * norm


def strip_motion(cap: str) -> str:
    for ph in sorted({p for ps in V.MOTION_PHRASES.values() for p in ps}, key=len, reverse=True):
        cap = cap.replace(" " + ph, "")
    return cap


class MotionBias:
    """Probe (suspect 2): the direction written straight into every motion module, bypassing the text.
    A fixed random vector per motion (unit variance per channel, one per module width) is added to the
    input of each temporal transformer's ``proj_in`` (after its GroupNorm, so the residual stream the
    frozen spatial layers read is unchanged).  Forward hooks, not a format change: the probe only."""

    def __init__(self, unet):
        import torch

        self.torch, self.motions, self.vec, self.handles = torch, None, {}, []
        for name, mod in unet.named_modules():
            if name.endswith("motion_modules") or "motion_modules" not in name or not hasattr(mod, "proj_in"):
                continue
            c = mod.proj_in.in_features
            if c not in self.vec:
                g = torch.Generator().manual_seed(4321 + c)
                self.vec[c] = torch.randn(len(V.MOTIONS), c, generator=g)
            self.handles.append(mod.proj_in.register_forward_pre_hook(self._hook, with_kwargs=True))

    def _hook(self, mod, args, kwargs):
        x = args[0] if args else kwargs["input"]  # (batch * H * W, frames, C), batch-major
        if self.motions is None:
            return None
        torch = self.torch
        v = self.vec[x.shape[-1]]
        b = torch.stack([v[V.MOTIONS.index(m)] if m else torch.zeros(v.shape[1]) for m in self.motions])
        return (x + b.repeat_interleave(x.shape[0] // len(self.motions), 0)[:, None],), {}


class Conditioner:
    """Caption -> cross-attention states, in one of the modes the probes compare:
    "text"     the video tokenizer + the text encoder with learnt motion-word rows (the design);
    "shipped"  the shipped tokenizer and encoder, nothing learnt (motion words fall back to bytes);
    "handmade" the shipped encoder on the caption without its motion phrase, plus one appended token
               holding a fixed random vector per motion (idealised conditioning);
    "handmade-add" the same vector added to every token of the stripped caption's states (suspect 1);
    "module"   the stripped caption only; the motion goes straight into the motion modules
               (``MotionBias``, suspect 2);
    "motion-lora" the stripped caption; the motion picks its own LoRA on the motion modules (``MotionLoRAs``),
               the way the studio's pipeline picks a motion LoRA from the prompt's motion phrase."""

    def __init__(self, mode: str, te, tok, first_new: int | None, bias: MotionBias | None = None,
                 loras: "MotionLoRAs | None" = None):
        import torch

        self.mode, self.te, self.tok, self.first_new, self.bias, self.loras = mode, te, tok, first_new, bias, loras
        self.hand = handmade_vectors() if mode in ("handmade", "handmade-add") else None
        self.torch = torch

    def params(self):
        return [self.te.get_input_embeddings().weight] if self.mode == "text" else []

    def __call__(self, caps: list[str], motions: list[str | None]):
        torch = self.torch
        if self.mode in ("handmade", "handmade-add", "module", "motion-lora"):
            caps = [strip_motion(c) for c in caps]
        ids = self.tok(caps, padding="max_length", max_length=MAX_LEN, truncation=True, return_tensors="pt").input_ids
        with torch.set_grad_enabled(self.mode == "text" and torch.is_grad_enabled()):
            h = self.te(ids).last_hidden_state
        if self.hand is not None:
            extra = torch.stack([self.hand[V.MOTIONS.index(m)] if m else torch.zeros(h.shape[-1]) for m in motions])
            h = torch.cat([h, extra[:, None]], 1) if self.mode == "handmade" else h + extra[:, None]
        if self.bias is not None:
            self.bias.motions = list(motions)
        if self.loras is not None:
            self.loras.active = list(motions)
        return h


# ---------------------------------------------------------------- probe: first-step direction
def read_direction(x0) -> tuple[str, float, float]:
    """The probe's reading of one clip estimate: x0 is an unscaled latent clip (4, frames, h, w), channel 3
    the object coverage.  Centre of mass of the above-median coverage per frame; the displacement between
    the first and last three frames names the direction.  The mean clip of a motion is a blur, so any
    displacement beyond a few px counts (tested on ground-truth mean clips).  Returns (direction, dx, dy) in px."""
    import torch

    from .judge import direction_of

    cov = x0[3]
    res = cov.shape[-1]
    ys, xs = torch.meshgrid(torch.arange(float(res)) + 0.5, torch.arange(float(res)) + 0.5, indexing="ij")
    cell = W.SIZE / res
    w = (cov - cov.flatten(1).median(1).values.view(-1, 1, 1)).clamp(min=0) + 1e-8
    cx = (w * xs).sum((1, 2)) / w.sum((1, 2)) * cell
    cy = (w * ys).sum((1, 2)) / w.sum((1, 2)) * cell
    dx, dy = float(cx[-3:].mean() - cx[:3].mean()), float(cy[-3:].mean() - cy[:3].mean())
    return ("still" if max(abs(dx), abs(dy)) < 6 else direction_of(dx * 10, dy * 10)[0]), dx, dy


def first_step_direction(unet, cond_fn, sched, scaling: float, n_per: int = 4, noise_seeds: int = 2, res: int = 32,
                         motions=V.MOTIONS) -> dict:
    """Does the caption's motion reach the clip at all?  The model's first estimate of the clean clip
    (t=999, from pure noise; zero terminal SNR makes it -v) is read frame by frame: the centre of mass
    of its predicted object coverage (latent channel 3).  Its displacement over the clip is classified
    like the judge does.  Held-out captions, n_per per motion x noise_seeds."""
    import torch

    a = float(sched.alphas_cumprod[-1])
    hits, per, shift = [], {}, {}
    with torch.no_grad():
        for m in motions:
            for k in range(n_per):
                clip = V.sample_clip(10_000 + k, "holdout", motion=m)
                cond = cond_fn([V.caption(clip)], [m])
                for s in range(noise_seeds):
                    x = torch.randn(1, 4, V.FRAMES, res, res, generator=torch.Generator().manual_seed(s))
                    out = unet(x, torch.tensor([999]), cond.repeat_interleave(V.FRAMES, 0)).sample
                    x0 = a**0.5 * x - (1 - a) ** 0.5 * out
                    d, dx, dy = read_direction(x0[0] / scaling)
                    shift.setdefault(m, []).append((dx, dy))
                    hits.append(d == m)
                    per.setdefault(m, []).append(d == m)
    return {"n": len(hits), "direction_correct": round(100 * float(np.mean(hits)), 1),
            "per_motion": {m: round(100 * float(np.mean(v)), 1) for m, v in per.items()},
            "mean_shift_px": {m: [round(float(x), 1) for x in np.mean(v, 0)] for m, v in shift.items()}}


PROBE_TS = (600, 700, 850, 950)


def motion_versions(clip) -> list:
    """The clip with each of the five motions: same object, background and travel, the trajectory's midpoint
    kept (shifted only as far as needed to stay inside the frame).  A still clip gets the mean travel."""
    import dataclasses

    lo, hi = clip.radius + 4, V.SIZE - clip.radius - 4
    travel = min(clip.travel or (V.MIN_TRAVEL + V.MAX_TRAVEL) / 2 * V.SIZE, hi - lo)
    a, b = clip.center(0), clip.center(V.FRAMES - 1)
    mid = [(a[i] + b[i]) / 2 for i in (0, 1)]
    out = []
    for c in V.MOTIONS:
        v, tr = V.VEC[c], (0.0 if c == "still" else travel)
        st = tuple(min(max(mid[i], lo + abs(v[i]) * tr / 2), hi - abs(v[i]) * tr / 2) - v[i] * tr / 2 for i in (0, 1))
        out.append(dataclasses.replace(clip, motion=c, start=st, travel=tr))
    return out


def caption_direction_probe(unet, cond_fn, sched, scaling: float, n_per: int = 2, ts=PROBE_TS, res: int = 32,
                            swap: str = "caption", motions=V.MOTIONS) -> dict:
    """Does the model *use* the captioned motion?  Diffusion-classifier reading (Li et al. 2023): a held-out
    clip is noised at each t in ``ts`` (the same noise for every candidate) and its v-loss is computed for
    each of the five motions; the lowest loss names the motion.  Chance is 20%.

    ``swap="caption"``: one clip, the five motion captions (p(caption | clip): reads only a model whose
    output depends on the caption's motion, so a model trained on one motion reads chance by construction).
    ``swap="clip"``: the true caption, the clip's five ``motion_versions`` (p(clip | caption): a one-motion
    model must read its motion here; this is the check the caption reading is validated against).

    Read per t as well as summed: with the zero-terminal-SNR schedule a(850) = 0.008 and a(950) = 0.0006, so
    even a model that knew the exact clip separates the nearest wrong motion only by d' ~ 2.9 and ~ 0.8 there
    (12 and 7.7 at t = 600 and 700, 128 px latents); the first reading (t = 850, 950 only) looked where
    direction is nearly invisible."""
    import torch
    import torch.nn.functional as F

    def lat(clips):
        x = torch.from_numpy(V.clip_latents(clips)) * scaling
        return x if res == 32 else F.avg_pool2d(x.flatten(1, 2), 32 // res).view(*x.shape[:3], res, res)

    motions = tuple(motions)
    k_m = len(motions)
    hits, per, per_t, picked = [], {}, {t: [] for t in ts}, []
    with torch.no_grad():
        for m in motions:
            for k in range(n_per):
                clip = V.sample_clip(10_000 + k, "holdout", motion=m)
                versions = [v for v in motion_versions(clip) if v.motion in motions]
                if swap == "caption":
                    x0 = lat([clip]).repeat(k_m, 1, 1, 1, 1)
                    h = cond_fn([V.caption(c) for c in versions], list(motions))  # only the motion words differ
                else:
                    x0 = lat(versions)
                    h = cond_fn([V.caption(clip)] * k_m, [m] * k_m)
                h = h.repeat_interleave(V.FRAMES, 0)
                loss = torch.zeros(k_m)
                for i, t in enumerate(ts):
                    noise = torch.randn(x0[:1].shape, generator=torch.Generator().manual_seed(77 + 1000 * k + i))
                    noise = noise.repeat(k_m, 1, 1, 1, 1)
                    tt = torch.full((k_m,), t)
                    xt, v = sched.add_noise(x0, noise, tt), sched.get_velocity(x0, noise, tt)
                    lt = ((unet(xt, tt, h).sample - v) ** 2).flatten(1).mean(1)
                    per_t[t].append(motions[int(lt.argmin())] == m)
                    loss += lt
                d = motions[int(loss.argmin())]
                hits.append(d == m)
                picked.append(d)
                per.setdefault(m, []).append(d == m)
    return {"n": len(hits), "swap": swap,
            "picked": {c: round(100 * picked.count(c) / len(picked), 1) for c in motions},
            f"{swap}_direction_correct": round(100 * float(np.mean(hits)), 1),
            "per_t": {str(t): round(100 * float(np.mean(v)), 1) for t, v in per_t.items()},
            "per_motion": {m: round(100 * float(np.mean(v)), 1) for m, v in per.items()}}


def run_probes(args, unet, cond, sched, scaling, first_step: bool = True) -> dict:
    """The probes one checkpoint is read with: the caption reading, its clip-side twin for one-motion runs
    (``--motion``), and the t=999 first-step reading."""
    kw = dict(n_per=args.probe_n, res=args.latent_res, motions=train_motions(args))
    pr = {"caption": caption_direction_probe(unet, cond, sched, scaling, ts=args.probe_ts, **kw)}
    if args.motion:
        pr["clip"] = caption_direction_probe(unet, cond, sched, scaling, ts=args.probe_ts, swap="clip", **kw)
    if first_step:
        pr["first_step"] = first_step_direction(unet, cond, sched, scaling, **kw)
    return pr


# ---------------------------------------------------------------- training
def train_motions(args) -> tuple[str, ...]:
    """The motions a run trains on and its probes read: all five, or the ``--motions`` subset (a probe)."""
    return tuple(args.motions.split(",")) if getattr(args, "motions", "") else V.MOTIONS


def clip_motion(args, step: int, k: int) -> str | None:
    """The motion forced on clip k of a step: ``--motion``, the ``--motions`` subset in turn, or none (the world's)."""
    if args.motion:
        return args.motion
    if getattr(args, "motions", ""):
        subset = train_motions(args)
        return subset[(step * args.batch + k) % len(subset)]
    return None


def train(args) -> None:
    import torch
    import torch.nn.functional as F
    from diffusers import DDPMScheduler
    from transformers import CLIPTokenizer

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    unet2d, te, vae, isched = load_parts(Path(args.base))
    scaling = float(vae.config.scaling_factor)
    for p in list(unet2d.parameters()) + list(te.parameters()):
        p.requires_grad_(False)
    if args.cond == "text":
        tok = build_video_tokenizer()
        first_new = extend_text_encoder(te, tok)
        emb = te.get_input_embeddings().weight
        emb.requires_grad_(True)
        mask = torch.zeros(emb.shape[0], 1)
        mask[first_new:] = 1.0
        emb.register_hook(lambda g: g * mask)  # only the motion words' rows learn
    else:
        tok = CLIPTokenizer.from_pretrained(Path(args.base) / "tokenizer")
        first_new = None
    te.eval()
    unet, adapter = build_motion_unet(unet2d, zero_out=args.adapter_init == "zero")
    unet.freeze_unet2d_params()
    mloras = (MotionLoRAs(unet, train_motions(args), args.motion_lora_rank, args.seed)
              if args.cond == "motion-lora" else None)
    cond = Conditioner(args.cond, te, tok, first_new, MotionBias(unet) if args.cond == "module" else None, mloras)
    wrappers = add_lora(unet, args.lora_rank) if args.lora_rank else []
    lora_params = [p for _, _, w in wrappers for p in (w.down.weight, w.up.weight)]
    mlora_params = mloras.params() if mloras else []
    lora_ids = {id(p) for p in lora_params + mlora_params}
    groups = [{"params": [p for p in unet.parameters() if p.requires_grad and id(p) not in lora_ids],
               "lr": args.lr, "name": "motion"}]
    if lora_params:
        groups.append({"params": lora_params, "lr": args.lora_lr, "name": "lora"})
    if mlora_params:
        groups.append({"params": mlora_params, "lr": args.motion_lora_lr, "weight_decay": 0.0, "name": "motion-lora"})
    if cond.params():
        groups.append({"params": cond.params(), "lr": args.emb_lr, "weight_decay": 0.0, "name": "emb"})
    for g in groups:
        g["base_lr"] = g["lr"]
    opt = torch.optim.AdamW(groups, weight_decay=1e-2)
    n_train = sum(p.numel() for g in groups for p in g["params"])
    log(f"trainable parameters: " + ", ".join(f"{g['name']} {sum(p.numel() for p in g['params'])}" for g in groups)
        + f" (total {n_train}); LoRA layers {len(wrappers)}")

    sched = DDPMScheduler.from_config(isched.config)
    if args.probe_state:  # read a saved run with both probes, no training
        _load_trainable(unet, te, wrappers, torch.load(args.probe_state, weights_only=False), mloras)
        unet.eval()
        pr = run_probes(args, unet, cond, sched, scaling)
        log(f"probes of {args.probe_state}: {json.dumps(pr)}")
        if args.probe_json:
            Path(args.probe_json).write_text(json.dumps({"args": vars(args), **pr}, indent=1))
        return
    state_path = work / "state.pt"
    step, seconds, history = 0, 0.0, []
    if args.resume and state_path.exists():
        st = torch.load(state_path, weights_only=False)
        _load_trainable(unet, te, wrappers, st, mloras)
        opt.load_state_dict(st["opt"])
        step, seconds, history = st["step"], st["seconds"], st.get("history", [])
        log(f"resumed at step {step} ({seconds:.0f} s done)")
    elif args.resume:
        log("--resume: no state yet, starting fresh")

    def save() -> None:
        st = _trainable_state(unet, te, wrappers, first_new, mloras)
        st.update(opt=opt.state_dict(), step=step, seconds=seconds, history=history, args=vars(args))
        torch.save(st, str(state_path) + ".tmp")
        os.replace(str(state_path) + ".tmp", state_path)

    unet.train()
    t_start, last_save, losses = time.time() - seconds, time.time(), []
    budget = args.time_budget_min * 60 if args.time_budget_min else 0
    stop = args.stop_at or args.steps
    while step < stop:
        rng = random.Random(f"mv-train-{args.seed}-{step}")
        gen = torch.Generator().manual_seed(args.seed * 1_000_003 + step)
        clips = [V.sample_clip(TRAIN_SEED_BASE + step * args.batch + k, "train", motion=clip_motion(args, step, k))
                 for k in range(args.batch)]
        x0 = torch.from_numpy(V.clip_latents(clips)) * scaling
        if args.latent_res != 32:  # probes: the same clips at a coarser latent (a 4x cheaper step at 16)
            f = 32 // args.latent_res
            x0 = F.avg_pool2d(x0.flatten(1, 2), f).view(*x0.shape[:3], args.latent_res, args.latent_res)
        drop = [rng.random() < args.caption_dropout for _ in clips]
        caps = ["" if d else V.caption(c, rng) for c, d in zip(clips, drop)]
        if args.t999:
            t = torch.full((len(clips),), 999)
        else:
            t = torch.randint(0, 1000, (len(clips),), generator=gen)
            hi = torch.rand(len(clips), generator=gen) < args.t_high_frac  # direction is decided at high noise
            t = torch.where(hi, torch.randint(600, 1000, (len(clips),), generator=gen), t)
        noise = torch.randn(x0.shape, generator=gen)
        xt = sched.add_noise(x0, noise, t)
        target = sched.get_velocity(x0, noise, t)
        # a motion LoRA stays on when the caption is dropped: the pipeline applies it to both guidance branches
        h = cond(caps, [None if d and not mloras else c.motion for c, d in zip(clips, drop)])
        pred = unet(xt, t, h.repeat_interleave(V.FRAMES, 0)).sample
        loss = F.mse_loss(pred, target)
        prog = max(step / args.steps, (time.time() - t_start) / budget if budget else 0.0)
        warm = min(1.0, (step + 1) / args.warmup)
        for g in opt.param_groups:
            g["lr"] = g["base_lr"] * warm * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(prog, 1.0))))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = {g["name"]: float(torch.norm(torch.stack([p.grad.norm() for p in g["params"] if p.grad is not None])))
                 if any(p.grad is not None for p in g["params"]) else 0.0 for g in groups}
        torch.nn.utils.clip_grad_norm_([p for g in groups for p in g["params"]], 1.0)
        opt.step()
        step += 1
        seconds = time.time() - t_start
        losses.append(float(loss.detach()))
        if step % args.log_every == 0 or step == stop:
            sps = seconds / max(step, 1)
            left = (stop - step) * sps
            if budget:
                left = min(left, max(0.0, budget - seconds))
            log(f"step {step}/{stop} loss {np.mean(losses[-args.log_every:]):.4f} {sps:.2f} s/step grad "
                + " ".join(f"{k} {v:.3g}" for k, v in gnorm.items()) + " "
                f"elapsed {seconds / 60:.1f} min ETA {left / 60:.1f} min")
        if args.probe_every and step % args.probe_every == 0:
            unet.eval()
            t_probe = time.time()
            pr = run_probes(args, unet, cond, sched, scaling)
            unet.train()
            t_start += time.time() - t_probe  # probe time is not training time
            # first-step fields stay at the top level: the card's probe table reads them there
            history.append({"step": step, "seconds": round(seconds), "loss": float(np.mean(losses[-args.probe_every:])),
                            **pr.pop("first_step"), **pr})
            log(f"probe step {step}: {json.dumps(history[-1])}")
            if args.probe_json:
                Path(args.probe_json).write_text(json.dumps({"args": vars(args), "history": history}, indent=1))
        if time.time() - last_save > args.ckpt_min * 60:
            save()
            last_save = time.time()
            log(f"checkpoint {state_path} at step {step}")
        if budget and seconds >= budget:
            log(f"time budget reached at step {step}")
            break
    save()
    log(f"saved {state_path} at step {step}")
    if args.out:
        export(args, unet, adapter, te, tok, vae, isched, wrappers, step, seconds, history, mloras)


def _unwrapped(key: str) -> str:
    """A state-dict key without the LoRA wrappers' ``.base`` level: the adapter's own key."""
    return key.replace(".base.", ".")


def motion_state_dict(unet) -> dict:
    """The motion modules' weights under their adapter keys (motion-LoRA factors left out)."""
    return {_unwrapped(k): v for k, v in unet.state_dict().items()
            if "motion_modules" in k and not k.endswith((".down", ".up"))}


def _trainable_state(unet, te, wrappers, first_new, mloras=None) -> dict:
    st = {"motion": {k: v.detach().clone() for k, v in motion_state_dict(unet).items()},
          "lora": [(w.down.weight.detach().clone(), w.up.weight.detach().clone()) for _, _, w in wrappers]}
    if first_new is not None:
        st["emb"] = te.get_input_embeddings().weight.detach()[first_new:].clone()
        st["first_new"] = first_new
    if mloras is not None:
        st["motion_loras"] = mloras.state()
    return st


def _load_trainable(unet, te, wrappers, st, mloras=None) -> None:
    import torch

    wrapped = {_unwrapped(k): k for k in unet.state_dict()}
    missing = unet.load_state_dict({wrapped.get(k, k): v for k, v in st["motion"].items()}, strict=False)
    assert not missing.unexpected_keys, missing.unexpected_keys
    if mloras is not None:
        mloras.load(st["motion_loras"])
    with torch.no_grad():
        for (_, _, w), (d, u) in zip(wrappers, st["lora"]):
            w.down.weight.copy_(d)
            w.up.weight.copy_(u)
        if "emb" in st:
            te.get_input_embeddings().weight[st["first_new"]:] = st["emb"]


def export(args, unet, adapter, te, tok, vae, isched, wrappers, step, seconds, history, mloras=None) -> None:
    """fp16 AnimateDiffPipeline folder: the UNet with the LoRA fused, the trained motion adapter, the
    text encoder and tokenizer (extended for ``--cond text``), the base VAE and scheduler; for
    ``--cond motion-lora`` also one diffusers LoRA file per motion under ``motion_loras/`` with the table
    that names each one's trigger phrases (``pipelines/motion_loras.py`` reads it)."""
    import torch
    from diffusers import AnimateDiffPipeline

    fuse_lora(wrappers)
    unet.eval()
    motion_files = mloras.export(Path(args.out)) if mloras is not None and args.out else {}
    if mloras is not None:
        mloras.remove()
    # the motion modules inside the UNetMotionModel are the trained ones; copy them into the adapter
    u_sd = motion_state_dict(unet)
    adapter.load_state_dict({k: u_sd[k] for k in adapter.state_dict()})
    pipe = AnimateDiffPipeline(vae=vae, text_encoder=te, tokenizer=tok, unet=unet, motion_adapter=adapter,
                               scheduler=isched, feature_extractor=None, image_encoder=None)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pipe.to(torch.float16)
    pipe.save_pretrained(out, safe_serialization=True)
    meta = {"seed": args.seed, "steps_done": step, "steps_planned": args.steps, "seconds": round(seconds),
            "batch": args.batch, "lr": args.lr, "lora_rank": args.lora_rank, "lora_lr": args.lora_lr,
            "emb_lr": args.emb_lr, "cond": args.cond, "adapter_init": args.adapter_init, "t_high_frac": args.t_high_frac,
            "caption_dropout": args.caption_dropout, "clips_seen": step * args.batch,
            "adapter": {k: list(v) if isinstance(v, tuple) else v for k, v in ADAPTER_KW.items()},
            "lora_targets": list(LORA_TARGETS), "motion_words": list(V.MOTION_WORDS),
            "holdout_motion": sorted(V.HOLDOUT_MOTION), "holdout_pairs": sorted(W.HOLDOUT),
            "motion_lora_rank": args.motion_lora_rank if mloras else 0, "motion_lora_lr": args.motion_lora_lr,
            "motion_loras": motion_files,
            "defaults": DEFAULTS, "hardware": f"CPU only ({platform.machine()}), torch threads {args.threads}",
            "command": "python -m studio.mini.video.train " + " ".join(sys.argv[1:]),
            "stages": getattr(args, "recipe_stages", []), "history": history}
    (out / "training.json").write_text(json.dumps(meta, indent=2))
    log(f"exported {out}")


def motion_subset(text: str) -> str:
    """``--motions``: two or more distinct motions of the world, comma separated ('' = all of them)."""
    if not text:
        return ""
    ms = [m.strip() for m in text.split(",") if m.strip()]
    bad = [m for m in ms if m not in V.MOTIONS]
    if bad or len(set(ms)) < 2 or len(set(ms)) != len(ms):
        raise argparse.ArgumentTypeError(f"expected two or more distinct motions of {', '.join(V.MOTIONS)}, got {text!r}")
    return ",".join(ms)


def timesteps(text: str) -> tuple[int, ...]:
    """``--probe-ts``: comma-separated training timesteps, each in [0, 1000)."""
    try:
        ts = tuple(int(t) for t in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 600,850, got {text!r}")
    bad = [t for t in ts if not 0 <= t < 1000]
    if bad:
        raise argparse.ArgumentTypeError(f"timesteps must lie in [0, 1000); got {bad}")
    return ts


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", default="/tmp/mini_video_work")
    ap.add_argument("--out", default=str(OUT), help="export folder ('' to skip the export)")
    ap.add_argument("--base", default=str(BASE))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=1200, help="planned steps (the cosine schedule's length)")
    ap.add_argument("--stop-at", type=int, default=0, help="end early, keeping the --steps schedule")
    ap.add_argument("--time-budget-min", type=float, default=0.0)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--lora-rank", type=int, default=8)
    ap.add_argument("--lora-lr", type=float, default=1e-3)
    ap.add_argument("--emb-lr", type=float, default=3e-3)
    ap.add_argument("--cond", choices=("text", "shipped", "handmade", "handmade-add", "module", "motion-lora"),
                    default="text")
    ap.add_argument("--motion-lora-rank", type=int, default=8, help="--cond motion-lora: rank of each motion's LoRA")
    ap.add_argument("--motion-lora-lr", type=float, default=1e-3)
    ap.add_argument("--adapter-init", choices=("zero", "diffusers"), default="zero",
                    help="fresh adapter: proj_out zeroed (AnimateDiff) or diffusers' default init")
    ap.add_argument("--motion", choices=V.MOTIONS, default="", help="probe: every training clip has this motion")
    ap.add_argument("--motions", type=motion_subset, default="",
                    help="probe: train (and probe) only these motions, in turn, e.g. right,left")
    ap.add_argument("--t-high-frac", type=float, default=0.4)
    ap.add_argument("--t999", action="store_true", help="probe: train the pure-noise step only")
    ap.add_argument("--caption-dropout", type=float, default=0.1)
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--ckpt-min", type=float, default=4.0)
    ap.add_argument("--log-every", type=int, default=10)
    ap.add_argument("--probe-every", type=int, default=0)
    ap.add_argument("--probe-json", default="")
    ap.add_argument("--probe-state", default="", help="run both probes on this saved state.pt and exit")
    ap.add_argument("--probe-ts", type=timesteps, default=tuple(PROBE_TS), help="caption probe's timesteps, e.g. 600,850")
    ap.add_argument("--probe-n", type=int, default=4, help="held-out captions per motion in the probe")
    ap.add_argument("--latent-res", type=int, choices=(16, 32), default=32, help="probes: 16 = 128 px clips")
    args = ap.parse_args(argv)
    if args.motion and args.motions:
        ap.error("--motion and --motions exclude each other (one motion, or a subset in turn)")
    return args


# The shipped weights' stages, each resuming the one before from --work's state.pt (the cosine schedule and the
# clip stream are functions of the step, so the chain is the run that made them).  Why two: 128 px clips
# train 4x faster and learn the direction; a 256 px continuation teaches the motion modules the size the
# studio renders (a 128 px-trained model sampled at 256 px moved as captioned in 1 of 4 clips; after 200
# steps at 256 px, 5 of 6: docs/mini-video-plan.md).
_COMMON = ["--cond", "motion-lora", "--lora-rank", "0", "--batch", "2", "--seed", "0", "--t-high-frac", "0.6"]
RECIPES = {
    "motion-lora": [
        _COMMON + ["--latent-res", "16", "--steps", "6000", "--threads", "1"],
        # a fresh cosine over 12,000 steps: resumed at 6,000 it restarts at 0.55 of the base rate
        # stopped at 6,350: 400 more steps at 256 px (to 6,750) measured no better (docs/mini-video-plan.md)
        _COMMON + ["--latent-res", "32", "--steps", "12000", "--stop-at", "6350", "--threads", "2"],
    ],
}


def run_recipe(name: str, work: str, out: str, probe_every: int = 0) -> None:
    """``--recipe NAME``: every stage in order in one work folder; the last one exports to ``out``."""
    stages = RECIPES[name]
    for i, stage in enumerate(stages):
        last = i == len(stages) - 1
        argv = stage + ["--work", work, "--out", out if last else "", "--resume", "--probe-every", str(probe_every)]
        log(f"recipe {name}: stage {i + 1}/{len(stages)}: {' '.join(stage)}")
        args = parse(argv)
        args.recipe_stages = [" ".join(s) for s in stages]
        train(args)


def main(argv=None) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    argv = sys.argv[1:] if argv is None else argv
    if "--recipe" in argv:
        ap = argparse.ArgumentParser(description="run the shipped weights' training stages in order")
        ap.add_argument("--recipe", choices=sorted(RECIPES), required=True)
        ap.add_argument("--work", default="/tmp/mini_video_work")
        ap.add_argument("--out", default=str(OUT))
        ap.add_argument("--probe-every", type=int, default=0)
        r = ap.parse_args(argv)
        return run_recipe(r.recipe, r.work, r.out, r.probe_every)
    train(parse(argv))


if __name__ == "__main__":
    main()
