"""The studio's own learned reward: a small head over frozen features (`features`), fitted with the
Bradley-Terry loss on preference pairs (a pick in a best-of-N grid gives N-1 of them) plus a logistic loss
on likes/dislikes, on CPU in seconds. Saved as a safetensors state dict with its config and held-out accuracy
in the metadata. No studio imports (see `base`)."""
from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .base import Prompts, Reward, RewardError, prompt_list
from .features import PROMPT_BUCKETS, PROMPT_FEATURES_VERSION, prompt_features
from .modalities import REWARD_MODALITIES, features, learned_name

FORMAT = "diffusion-studio-learned-reward"
# modality -> (features version, dim), from the table
FEATURES = {n: (m.features.version, m.features.dim) for n, m in REWARD_MODALITIES.items() if m.features is not None}


def featurize(media, modality: str) -> torch.Tensor:
    return features(modality).compute(media)


class RewardNet(nn.Module):
    """score = linear(z) + MLP(z) + <P prompt, Q z> with z the standardised features: the last term lets a
    taste depend on the prompt (low rank, so a few hundred ratings do not overfit it)."""

    def __init__(self, in_dim: int, hidden: int = 32, rank: int = 8, prompt_dim: int = PROMPT_BUCKETS):
        super().__init__()
        self.register_buffer("mu", torch.zeros(in_dim))
        self.register_buffer("sigma", torch.ones(in_dim))
        self.linear = nn.Linear(in_dim, 1)
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden), nn.SiLU(), nn.Linear(hidden, 1))
        self.prompt_proj = nn.Linear(prompt_dim, rank, bias=False)
        self.feature_proj = nn.Linear(in_dim, rank, bias=False)
        self.like_bias = nn.Parameter(torch.zeros(()))  # where "liked" starts on the score scale

    def forward(self, feats: torch.Tensor, pfeats: torch.Tensor) -> torch.Tensor:
        z = (feats - self.mu) / self.sigma
        inter = (self.prompt_proj(pfeats) * self.feature_proj(z)).sum(-1)
        return self.linear(z)[:, 0] + self.mlp(z)[:, 0] + inter


@dataclass
class TrainReport:
    modality: str
    pairs: int
    likes: int
    heldout_pairs: int
    heldout_accuracy: Optional[float]  # share of held-out pairs whose winner scores higher
    heldout_like_accuracy: Optional[float]
    train_accuracy: Optional[float]
    seconds: float
    path: Optional[str] = None
    skipped: int = 0  # rated items whose media could not be read (moved, deleted, changed)
    notes: list = field(default_factory=list)
    gate: Optional[dict] = None  # the eval gate's verdict and figures on this fit (`gate.gate_reward`), if run

    def to_dict(self) -> dict:
        return asdict(self)


class LearnedReward(Reward):
    def __init__(self, net: RewardNet, modality: str = "image", name: Optional[str] = None,
                 info: Optional[dict] = None, path: Optional[str] = None):
        self.net = net.eval()
        self.modality = modality
        self.name = name or learned_name(modality)
        entry = REWARD_MODALITIES.get(modality)
        self.differentiable = entry is not None and entry.differentiable
        self.info = dict(info or {})
        self.path = path

    @property
    def hash(self) -> str:
        h = hashlib.sha256(FORMAT.encode())
        for k, v in sorted(self.net.state_dict().items()):
            h.update(k.encode())
            h.update(v.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()

    @property
    def source(self) -> str:
        return self.path or "trained in memory"

    def score(self, media, prompts: Prompts) -> torch.Tensor:
        feats = featurize(media, self.modality)
        pf = prompt_features(prompt_list(prompts, feats.shape[0])).to(feats.device)
        if self.net.mu.device != feats.device:  # follow the media (a guided sampler's x0 lives on its GPU)
            self.net.to(feats.device)
        if self.differentiable and isinstance(media, torch.Tensor) and media.requires_grad:
            return self.net(feats, pf)
        with torch.no_grad():
            return self.net(feats, pf)

    # -- persistence ---------------------------------------------------------------------------------------
    def save(self, path: os.PathLike | str) -> Path:
        from safetensors.torch import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"format": FORMAT, "modality": self.modality, "features": FEATURES[self.modality][0],
                "prompt_features": PROMPT_FEATURES_VERSION, "config": json.dumps(self.config()),
                "info": json.dumps(self.info)}
        tmp = path.with_name(f".{path.name}.tmp")
        save_file({k: v.detach().contiguous() for k, v in self.net.state_dict().items()}, str(tmp), metadata=meta)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        self.path = str(path)
        return path

    def config(self) -> dict:
        return {"in_dim": self.net.mu.numel(), "hidden": self.net.mlp[0].out_features,
                "rank": self.net.prompt_proj.out_features, "prompt_dim": self.net.prompt_proj.in_features}

    @classmethod
    def load(cls, path: os.PathLike | str, name: Optional[str] = None) -> "LearnedReward":
        from safetensors import safe_open

        from .weights import load_state_dict

        path = Path(path).expanduser()
        if path.suffix != ".safetensors":
            raise RewardError(f"learned reward weights must be .safetensors, got {path.name}")
        state = load_state_dict(path)
        with safe_open(str(path), "pt") as fh:
            meta = fh.metadata() or {}
        if meta.get("format") != FORMAT:
            raise RewardError(f"{path.name} is not a studio learned reward (no {FORMAT!r} metadata)")
        modality = meta.get("modality", "image")
        if modality not in FEATURES or meta.get("features") != FEATURES[modality][0]:
            raise RewardError(f"{path.name} was trained on features {meta.get('features')!r}; this studio computes "
                              f"{FEATURES.get(modality, ('?',))[0]!r}: retrain it")
        net = RewardNet(**json.loads(meta["config"]))
        try:
            net.load_state_dict(state)
        except RuntimeError as exc:
            raise RewardError(f"{path.name} does not fit the learned reward: {str(exc).splitlines()[0]}") from None
        return cls(net, modality, name=name, info=json.loads(meta.get("info") or "{}"), path=str(path))


# -- training -----------------------------------------------------------------------------------------------
def _pairwise_accuracy(net, fw, fl, pw, pl) -> Optional[float]:
    if fw.shape[0] == 0:
        return None
    with torch.no_grad():
        return float((net(fw, pw) > net(fl, pl)).float().mean())


def _loss(net, win, lose, pp, liked, pk, labels) -> torch.Tensor:
    n_pairs, n_likes = win.shape[0], liked.shape[0]
    loss = torch.zeros(())
    if n_pairs:
        loss = loss + F.softplus(-(net(win, pp) - net(lose, pp))).mean() * (n_pairs / (n_pairs + n_likes))
    if n_likes:
        logits = net(liked, pk) + net.like_bias
        loss = loss + F.binary_cross_entropy_with_logits(logits, labels) * (n_likes / (n_pairs + n_likes))
    return loss


def fit(win: torch.Tensor, lose: torch.Tensor, pair_prompts: torch.Tensor, liked: torch.Tensor,
        liked_prompts: torch.Tensor, labels: torch.Tensor, *, steps: int = 400, lr: float = 0.01,
        weight_decay: float = 0.01, hidden: int = 32, rank: int = 8, seed: int = 0,
        val_fraction: float = 0.15, patience: int = 30) -> RewardNet:
    """Bradley-Terry on (winner, loser) feature pairs plus a logistic loss on liked (1) / disliked (0) items;
    full batch Adam (the data are a few thousand rows at most). Early stopping on a seeded `val_fraction` of
    the rows: the head memorises a few hundred noisy pairs within ~100 steps (measured: 0.59 held-out
    accuracy after 300 steps vs 0.71 after 60 on 800 pairs at 80% rater consistency)."""
    in_dim = (win if win.shape[0] else liked).shape[1]
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):  # seeded init without moving the caller's global RNG
        torch.manual_seed(seed)
        net = RewardNet(in_dim, hidden=hidden, rank=rank)
    everything = torch.cat([win, lose, liked])
    net.mu.copy_(everything.mean(0))
    net.sigma.copy_(everything.std(0).clamp(min=1e-4) if everything.shape[0] > 1 else torch.ones(in_dim))

    def split(n):
        val = torch.zeros(n, dtype=torch.bool)
        if n >= 20:
            val[torch.randperm(n, generator=gen)[: int(n * val_fraction)]] = True
        return val

    pv, lv = split(win.shape[0]), split(liked.shape[0])
    train_set = (win[~pv], lose[~pv], pair_prompts[~pv], liked[~lv], liked_prompts[~lv], labels[~lv])
    val_set = (win[pv], lose[pv], pair_prompts[pv], liked[lv], liked_prompts[lv], labels[lv])
    validate = bool(pv.any() or lv.any())
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    best, best_state, since = float("inf"), None, 0
    for _ in range(steps):
        loss = _loss(net, *train_set)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if validate:
            with torch.no_grad():
                v = float(_loss(net, *val_set))
            if v < best - 1e-5:
                best, since = v, 0
                best_state = {k: t.detach().clone() for k, t in net.state_dict().items()}
            else:
                since += 1
                if since >= patience:
                    break
    if best_state is not None:
        net.load_state_dict(best_state)
    return net.eval()


def train(pairs: Sequence = (), likes: Sequence = (), *, modality: str = "image", holdout: float = 0.2,
          groups: Optional[Sequence] = None, seed: int = 0, steps: int = 400,
          name: Optional[str] = None, keep_heldout: bool = False) -> tuple[LearnedReward, TrainReport]:
    """Fit the learned reward. `pairs`: (preferred media, other media, prompt); `likes`: (media, prompt,
    liked: bool). A seeded `holdout` share of the pairs (whole `groups`, e.g. one best-of-N pick, stay on one
    side) is kept out to measure accuracy; the returned reward is then refitted on everything. `keep_heldout`:
    the reward also carries `heldout` = {"reward": the fit that did not see them (None when none were held
    out), "pairs": their indices}, for the eval gate."""
    t0 = time.perf_counter()
    pairs, likes = list(pairs), list(likes)
    if not pairs and not likes:
        raise RewardError("no ratings to train on: like, dislike or pick some outputs first")
    dim = features(modality, noun="").dim
    fw = featurize([p[0] for p in pairs], modality) if pairs else torch.zeros(0, dim)
    fl = featurize([p[1] for p in pairs], modality) if pairs else torch.zeros(0, dim)
    pp = prompt_features([p[2] for p in pairs]) if pairs else torch.zeros(0, PROMPT_BUCKETS)
    fk = featurize([x[0] for x in likes], modality) if likes else torch.zeros(0, dim)
    pk = prompt_features([x[1] for x in likes]) if likes else torch.zeros(0, PROMPT_BUCKETS)
    yk = torch.tensor([1.0 if x[2] else 0.0 for x in likes])

    gen = torch.Generator().manual_seed(seed)
    keys = list(groups) if groups is not None else list(range(len(pairs)))
    uniq = sorted(set(keys), key=str)
    order = torch.randperm(len(uniq), generator=gen).tolist()
    n_out = int(math.floor(len(uniq) * holdout)) if len(uniq) >= 5 else 0
    out_keys = {uniq[i] for i in order[:n_out]}
    te = torch.tensor([k in out_keys for k in keys], dtype=torch.bool)
    lk_order = torch.randperm(len(likes), generator=gen)
    lk_te = torch.zeros(len(likes), dtype=torch.bool)
    if len(likes) >= 5:
        lk_te[lk_order[: int(len(likes) * holdout)]] = True

    notes = []
    heldout_acc = heldout_like = train_acc = net = None
    if te.any() or lk_te.any():
        net = fit(fw[~te], fl[~te], pp[~te], fk[~lk_te], pk[~lk_te], yk[~lk_te], steps=steps, seed=seed)
        heldout_acc = _pairwise_accuracy(net, fw[te], fl[te], pp[te], pp[te])
        train_acc = _pairwise_accuracy(net, fw[~te], fl[~te], pp[~te], pp[~te])
        if lk_te.any():
            with torch.no_grad():
                pred = (net(fk[lk_te], pk[lk_te]) + net.like_bias) > 0
            heldout_like = float((pred.float() == yk[lk_te]).float().mean())
    else:
        notes.append("too few ratings to hold any out: accuracy not measured")
    final = fit(fw, fl, pp, fk, pk, yk, steps=steps, seed=seed)
    report = TrainReport(modality=modality, pairs=len(pairs), likes=len(likes), heldout_pairs=int(te.sum()),
                         heldout_accuracy=heldout_acc, heldout_like_accuracy=heldout_like,
                         train_accuracy=train_acc, seconds=round(time.perf_counter() - t0, 3), notes=notes)
    reward = LearnedReward(final, modality, name=name, info={"trained": report.to_dict()})
    if keep_heldout:
        reward.heldout = {"reward": None if net is None else LearnedReward(net, modality, name=name),
                          "pairs": te.nonzero().flatten().tolist()}
    return reward, report
