"""mini v3's text encoder: a CLIPTextModel that carries every caption word, trained alone before the UNet.

The v1/v2 encoder was trained jointly with the UNet and learned to drop the words the UNet did not use
early on (position: "top" vs "bottom" moved the states by 0.25 L2, a colour swap by 11-14).  Here the
encoder is trained first, on captions only, and then frozen for the UNet (as Stable Diffusion's UNet
is trained on a frozen CLIP).

Supervision (``caption_targets``): one linear head reads *every* token state and predicts, for both
object slots (first- and second-mentioned object), the colour, shape, size and position, plus the
background and the object count.  A token is only asked about what the caption has already said before
it (causal attention: it cannot see later words), so the state after an object's phrase, the
end-of-text state and all the padding states after it (which the UNet's cross-attention also sees) must
carry every attribute of every object mentioned so far.  Labels are known from the token *after* the
phrase that states them ("at the top" / "at the top left" differ only at the next token).

    python -m studio.mini.train --stage text --work /tmp/mini_v3   # -> /tmp/mini_v3/text_encoder/
    python -m studio.mini.train --stage unet --work /tmp/mini_v3 --text-encoder /tmp/mini_v3/text_encoder

``position_separation`` is the distance probe of issue 14: how far the token states move when only the
position words change, relative to changing only the colour word.
"""

from __future__ import annotations

import json
import math
import random
import time
from pathlib import Path

from . import world as W
from .tokenizer import MAX_LEN

TEXT_SEED_BASE = 3 * 10**8  # training caption scene seeds (the UNet stage uses 10**7 * (seed + 1) on)
EVAL_SEED_BASE = 50_000  # held-out caption scenes (split "holdout": a colour-shape pair never trained)

# Label sets; index 0 "none" = no such object / not said (and the empty caption)
LABELS: dict[str, tuple[str, ...]] = {
    "color": ("none",) + tuple(W.COLORS),
    "shape": ("none",) + tuple(W.SHAPES),
    "size": ("none", "unspecified") + tuple(W.SIZES),
    "position": ("none",) + tuple(W.POSITIONS),
}
SCENE_LABELS: dict[str, tuple[str, ...]] = {
    "background": ("none",) + tuple(W.BACKGROUNDS),
    "count": ("0", "1", "2"),
}
OBJ_ATTRS = tuple(LABELS)
N_SLOTS = 2
# "cumulative" (v3): every token after an object's phrase is asked about all objects said so far, so the
# second object's tokens carry both objects, entangled.  "per-object" (v4): the tokens of object k's
# phrase (through the token that follows it) are asked about object k alone, through heads shared by
# both objects ("cur_*"), and the slot heads are asked only from the end-of-text token on; each object
# then has tokens that speak for it alone, which the UNet's cross-attention can bind to one place.
TARGET_MODES = ("cumulative", "per-object")


def head_layout(targets: str = "cumulative") -> list[tuple[str, int]]:
    """(name, number of classes) of every head, in the order of the logits."""
    out = [(f"obj{k}_{a}", len(LABELS[a])) for k in range(N_SLOTS) for a in OBJ_ATTRS]
    out += [(a, len(v)) for a, v in SCENE_LABELS.items()]
    if targets == "per-object":
        out += [(f"cur_{a}", len(LABELS[a])) for a in OBJ_ATTRS]
    elif targets != "cumulative":
        raise ValueError(f"text targets {targets!r}: expected one of {', '.join(TARGET_MODES)}")
    return out


# ---------------------------------------------------------------- caption parsing
def _word(tok_str: str) -> str:
    return tok_str[:-4] if tok_str.endswith("</w>") else tok_str


def _longest_phrase(words: list[str], j: int) -> tuple[str, int] | None:
    best = None
    for name, phrases in W.POSITION_PHRASES.items():
        for p in phrases:
            pw = p.split()
            if words[j : j + len(pw)] == pw and (best is None or len(pw) > best[1]):
                best = (name, len(pw))
    return best


def parse_caption(words: list[str]) -> dict:
    """Attributes said in a world caption and the index of the word that completes each.

    Returns {"objects": [{attr: (label, word_index)}], "background": (label, word_index) | None}.
    Unspecified size completes with the colour word (nothing before it named a size)."""
    objs, bg, i, n = [], None, 0, len(words)
    while i < n:
        w = words[i]
        if w == "background" and i > 0 and words[i - 1] in W.BACKGROUNDS:
            bg = (words[i - 1], i - 1)
        if w in ("a", "an"):
            j, size = i + 1, None
            if j < n and words[j] in W.SIZES:
                size, j = (words[j], j), j + 1
            if j + 1 < n and words[j] in W.COLORS and words[j + 1] in W.SHAPES:
                o = {"size": size or ("unspecified", j), "color": (words[j], j), "shape": (words[j + 1], j + 1)}
                j += 2
                ph = _longest_phrase(words, j)
                if ph:
                    o["position"] = (ph[0], j + ph[1] - 1)
                    j += ph[1]
                objs.append(o)
                i = j
                continue
        i += 1
    return {"objects": objs, "background": bg}


def caption_targets(token_strs: list[str], length: int = MAX_LEN, targets: str = "cumulative") -> list[list[int]]:
    """Per-token labels (``length`` x heads, -100 = not asked) for one tokenized caption.

    token_strs: the tokenizer's tokens with BOS and EOS (``convert_ids_to_tokens``), unpadded.  Token t
    is asked about an attribute whose words end at token e iff t > e; slot 2 "none", background "none"
    and the count are asked from the end-of-text token on (only then is the caption known to be over).
    ``targets="per-object"``: see ``TARGET_MODES``; an object's span ends at the token after its phrase."""
    words = [_word(s) for s in token_strs[1:-1]]
    eos = len(token_strs) - 1
    parsed = parse_caption(words)
    names = [h for h, _ in head_layout(targets)]
    rows = [[-100] * len(names) for _ in range(length)]

    def put(head: str, label: int, first: int, last: int = length - 1) -> None:
        c = names.index(head)
        for t in range(max(first, 1), min(last, length - 1) + 1):
            rows[t][c] = label

    per_object = targets == "per-object"
    for k in range(N_SLOTS):
        if k < len(parsed["objects"]):
            o = parsed["objects"][k]
            span_end = max(wi for _, wi in o.values()) + 2  # the token after the phrase's last word
            for a in OBJ_ATTRS:
                if a in o:
                    lab, wi = o[a]
                    # word i is token i+1; an attribute is known from the next token on
                    put(f"obj{k}_{a}", LABELS[a].index(lab), eos if per_object else wi + 2)
                    if per_object:
                        put(f"cur_{a}", LABELS[a].index(lab), wi + 2, span_end)
        else:
            for a in OBJ_ATTRS:
                put(f"obj{k}_{a}", 0, eos)
    if parsed["background"] is not None:
        lab, wi = parsed["background"]
        put("background", SCENE_LABELS["background"].index(lab), wi + 2)
    else:
        put("background", 0, eos)
    put("count", min(len(parsed["objects"]), 2), eos)
    return rows


# ---------------------------------------------------------------- data
def caption_batch(seeds, rng: random.Random, split: str = "train", p_empty: float = 0.05) -> list[str]:
    """Captions of the scenes for ``seeds`` (random phrasing from ``rng``; ``p_empty`` of them "",
    the UNet's caption dropout) with a tenth in the canonical form ``evaluate`` prompts with."""
    caps = []
    for s in seeds:
        sc = W.sample_scene(int(s), split)
        r = rng.random()
        caps.append("" if r < p_empty else W.caption(sc, full=True) if r < p_empty + 0.1 else W.caption(sc, rng))
    return caps


def encode_batch(tok, caps: list[str], targets: str = "cumulative"):
    """(input_ids, labels) tensors: (N, MAX_LEN) and (N, MAX_LEN, heads)."""
    import torch

    enc = tok(caps, padding="max_length", max_length=MAX_LEN, truncation=True, return_tensors="pt")
    labels = []
    for c in caps:
        strs = tok.convert_ids_to_tokens(tok(c, truncation=True, max_length=MAX_LEN).input_ids)
        labels.append(caption_targets(strs, targets=targets))
    return enc.input_ids, torch.tensor(labels)


class Heads:
    """One linear layer over the 128-d token states; logits split per head."""

    def __init__(self, hidden: int, targets: str = "cumulative"):
        import torch

        self.targets = targets
        self.layout = head_layout(targets)
        self.linear = torch.nn.Linear(hidden, sum(n for _, n in self.layout))

    def _stacked(self, states):
        """Logits (..., heads, max classes), each head's missing classes at -1e4."""
        import torch
        import torch.nn.functional as F

        logits, out, o = self.linear(states), [], 0
        width = max(n for _, n in self.layout)
        for _, n in self.layout:
            out.append(F.pad(logits[..., o : o + n], (0, width - n), value=-1e4))
            o += n
        return torch.stack(out, -2)

    def loss(self, states, labels):
        """Mean cross-entropy over the asked (token, head) pairs."""
        import torch.nn.functional as F

        x = self._stacked(states)
        return F.cross_entropy(x.reshape(-1, x.shape[-1]), labels.reshape(-1), ignore_index=-100)

    def predict(self, states):
        return self._stacked(states).argmax(-1)

    def accuracy(self, states, labels) -> dict:
        """{head: (correct, asked)} over the asked (token, head) pairs."""
        pred = self.predict(states)
        acc = {}
        for c, (name, _) in enumerate(self.layout):
            m = labels[..., c] != -100
            if m.any():
                acc[name] = (int((pred[..., c][m] == labels[..., c][m]).sum()), int(m.sum()))
        return acc


# ---------------------------------------------------------------- training
def train_text(args, work: Path, tok, evaluate: bool = True) -> dict:
    """``--stage text``: train the encoder + heads on captions alone; write ``work/text_encoder`` (the
    CLIPTextModel, its ``heads.pt`` and ``text_metrics.json``) and ``work/text_state.pt`` for ``--resume``.
    ``args.text_stop_at`` (``--text-stop-at``) ends a run early at that step with the schedule of
    ``--text-steps`` intact, so that a later ``--resume`` continues it exactly."""
    import torch

    from .train import log, make_text_encoder

    torch.manual_seed(args.seed)
    targets = getattr(args, "text_targets", "cumulative")
    te = make_text_encoder(len(tok))
    heads = Heads(te.config.hidden_size, targets)
    params = list(te.parameters()) + list(heads.linear.parameters())
    opt = torch.optim.AdamW(params, lr=args.text_lr, weight_decay=0.01)
    rng = random.Random(args.seed)
    step, seed, prev_s, runs = 0, TEXT_SEED_BASE + 10**7 * args.seed, 0, 1
    state_path = work / "text_state.pt"
    if args.resume and state_path.exists():
        st = torch.load(state_path, weights_only=False)
        te.load_state_dict(st["te"])
        heads.linear.load_state_dict(st["heads"])
        opt.load_state_dict(st["opt"])
        rng.setstate(st["rng"])
        torch.set_rng_state(st["torch_rng"])
        step, seed, prev_s, runs = st["step"], st["seed"], st["seconds"], st["runs"] + 1
        log(f"text encoder: resuming at step {step}")
    t0 = time.time()
    te.train()

    def save() -> None:
        secs = prev_s + round(time.time() - t0)
        torch.save({"te": te.state_dict(), "heads": heads.linear.state_dict(), "opt": opt.state_dict(),
                    "rng": rng.getstate(), "torch_rng": torch.get_rng_state(), "step": step, "seed": seed,
                    "seconds": secs, "runs": runs, "hparams": text_hparams(args)}, state_path)
        te.save_pretrained(work / "text_encoder")
        torch.save({"heads": heads.linear.state_dict(), "layout": heads.layout, "targets": targets},
                   work / "text_encoder" / "heads.pt")

    warm = max(1, min(100, args.text_steps // 10))  # warm-up steps
    stop = min(args.text_steps, getattr(args, "text_stop_at", 0) or args.text_steps)
    work.mkdir(parents=True, exist_ok=True)
    while step < stop:
        caps = caption_batch(range(seed, seed + args.text_batch), rng)
        seed += args.text_batch
        ids, labels = encode_batch(tok, caps, targets)
        loss = heads.loss(te(ids).last_hidden_state, labels)
        prog = step / args.text_steps
        lr = args.text_lr * min(1.0, (step + 1) / warm) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * prog)))
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        if step % 100 == 0:
            log(f"text step {step}/{args.text_steps} loss {loss.item():.4f} lr {lr:.1e} ({time.time() - t0:.0f}s)")
        if step % 500 == 0:
            save()
    save()
    te.eval()
    metrics = {"steps": step, "seconds": prev_s + round(time.time() - t0), "runs": runs, "seed": args.seed,
               "hparams": text_hparams(args), "final": step >= args.text_steps}
    if evaluate:
        metrics |= {"heldout": heldout_accuracy(te, heads, tok), "position_separation": position_separation(te, tok),
                    "binding_separation": binding_separation(te, tok)}
        log(f"text encoder at step {step}: {json.dumps(metrics['heldout']['summary'])}; "
            f"position/colour shift {metrics['position_separation']['ratio']}")
    (work / "text_encoder" / "text_metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def text_hparams(args) -> dict:
    return {"text_steps_planned": args.text_steps, "text_batch": args.text_batch, "text_lr": args.text_lr,
            "text_targets": getattr(args, "text_targets", "cumulative")}


def load_heads(path: Path, hidden: int = 128) -> Heads:
    import torch

    st = torch.load(Path(path) / "heads.pt", weights_only=False)
    h = Heads(hidden, st.get("targets", "cumulative"))
    h.linear.load_state_dict(st["heads"])
    return h


def heldout_accuracy(te, heads: Heads, tok, n: int = 512) -> dict:
    """Head accuracy on captions of held-out scenes (a colour-shape pair never trained), per head, read
    (a) at every asked token and (b) at the end-of-text token only, where everything is asked."""
    import torch

    caps = caption_batch(range(EVAL_SEED_BASE, EVAL_SEED_BASE + n), random.Random(1), split="holdout", p_empty=0.0)
    ids, labels = encode_batch(tok, caps, heads.targets)
    eos = (ids == tok.eos_token_id).int().argmax(1)
    with torch.no_grad():
        states = te(ids).last_hidden_state
        ar = torch.arange(len(ids))
        acc_all = heads.accuracy(states, labels)
        acc_eos = heads.accuracy(states[ar, eos], labels[ar, eos])
        # every attribute of the caption right at the end-of-text token (the caption fully read)
        lb = labels[ar, eos]
        ok = ((heads.predict(states[ar, eos]) == lb) | (lb == -100)).all(-1)
    pct = lambda d: {k: round(100.0 * a / b, 2) for k, (a, b) in d.items()}  # noqa: E731
    summary = {"caption_all_right_at_eos": round(100.0 * float(ok.float().mean()), 2),
               "min_head_at_eos": min(pct(acc_eos).values()), "min_head_all_tokens": min(pct(acc_all).values())}
    return {"n": n, "summary": summary, "at_eos": pct(acc_eos), "all_asked_tokens": pct(acc_all)}


# ---------------------------------------------------------------- the distance probe
SEPARATION_THRESHOLD = 0.3
_PROBE_SCENES = (("red", "circle", "white", "green"), ("blue", "square", "black", "yellow"),
                 ("yellow", "star", "gray", "pink"))
_PROBE_POSITIONS = (("at the top", "at the bottom"), ("on the left", "on the right"),
                    ("at the top left", "at the bottom right"))


def caption_states(te, tok, caption: str):
    """The encoder's token states (1, MAX_LEN, hidden) for one caption, padded as the pipeline pads it."""
    ids = tok([caption], padding="max_length", max_length=MAX_LEN, truncation=True, return_tensors="pt").input_ids
    return te(ids).last_hidden_state


def position_separation(te, tok) -> dict:
    """Issue 14's distance probe.  For captions "a large C S <position> on a B background", the L2 change
    of each token state when only the position words change (top -> bottom, left -> right, top left ->
    bottom right) and when only the colour word changes, averaged over the tokens from the last position
    word to the end of the sequence (end-of-text and padding included: all of them reach the UNet).

    ``ratio`` = position change / colour change on those tokens; ``separates`` = ratio >= threshold.
    The v2 encoder (shipped before v3) moves the changed position token by ~0.25 and later ones by less,
    a colour swap moves every later token by 11-14."""
    import torch

    def states(cap: str):
        return caption_states(te, tok, cap)[0].float()

    pos_tok, pos_later, col_later = [], [], []
    with torch.no_grad():
        for colour, shape, bg, other in _PROBE_SCENES:
            for p_a, p_b in _PROBE_POSITIONS:
                a = states(f"a large {colour} {shape} {p_a} on a {bg} background")
                b = states(f"a large {colour} {shape} {p_b} on a {bg} background")
                c = states(f"a large {other} {shape} {p_a} on a {bg} background")
                last = 4 + len(p_a.split())  # BOS a large C S + phrase words: the index of the phrase's last token
                d_pos = (a - b).norm(dim=-1)
                pos_tok.append(float(d_pos[last]))
                pos_later.append(float(d_pos[last:].mean()))
                col_later.append(float((a - c).norm(dim=-1)[last:].mean()))
    ratio = sum(pos_later) / max(sum(col_later), 1e-12)
    return {"position_token_l2": round(sum(pos_tok) / len(pos_tok), 3),
            "position_later_l2": round(sum(pos_later) / len(pos_later), 3),
            "colour_later_l2": round(sum(col_later) / len(col_later), 3),
            "ratio": round(ratio, 3), "threshold": SEPARATION_THRESHOLD, "separates": ratio >= SEPARATION_THRESHOLD}


_BINDING_SCENES = (("red", "circle", "at the top left", "blue", "square", "at the bottom right", "white", "green", "yellow"),
                   ("yellow", "star", "on the left", "pink", "ring", "on the right", "black", "cyan", "purple"),
                   ("green", "triangle", "at the top", "orange", "circle", "at the bottom", "gray", "red", "blue"))


def binding_separation(te, tok) -> dict:
    """Do the second object's tokens speak for it alone?  For "a C1 S1 P1 and a C2 S2 P2 on a B background",
    the L2 change of the states of the second object's phrase (its colour word through the token after
    it) when only the *first* object's colour changes, over the change when only the *second* object's
    colour changes.  ``ratio`` near 1: both objects entangled in those tokens (v3); small: bound."""
    import torch

    def states(cap: str):
        return caption_states(te, tok, cap)[0].float()

    first, second = [], []
    with torch.no_grad():
        for c1, s1, p1, c2, s2, p2, bg, o1, o2 in _BINDING_SCENES:
            cap = lambda a, b: f"a large {a} {s1} {p1} and a large {b} {s2} {p2} on a {bg} background"  # noqa: E731
            base = states(cap(c1, c2))
            lo = 1 + 4 + len(p1.split()) + 3  # BOS, "a large C1 S1", P1, "and a large": the second colour word
            hi = lo + 2 + len(p2.split())  # through the token after the second phrase
            first.append(float((states(cap(o1, c2)) - base).norm(dim=-1)[lo : hi + 1].mean()))
            second.append(float((states(cap(c1, o2)) - base).norm(dim=-1)[lo : hi + 1].mean()))
    ratio = sum(first) / max(sum(second), 1e-12)
    return {"first_colour_l2": round(sum(first) / len(first), 3), "second_colour_l2": round(sum(second) / len(second), 3),
            "ratio": round(ratio, 3)}


def load_frozen(path, dtype=None):
    """A CLIPTextModel folder (``--stage text`` output or a shipped ``text_encoder``) in eval mode with
    every parameter frozen."""
    import torch
    from transformers import CLIPTextModel

    te = CLIPTextModel.from_pretrained(str(path), dtype=dtype or torch.float32).eval()
    for p in te.parameters():
        p.requires_grad_(False)
    return te


# ---------------------------------------------------------------- hand-made conditioning (the baseline)
class HandMadeConditioning:
    """Issue 14's baseline: a fixed random 128-d vector per attribute value, no learning, called like a
    text encoder (``enc(ids).last_hidden_state``) so the probe code is shared.

    mode "slots": token 0 holds the background, tokens 1-4 the first object's colour/shape/size/position,
    5-8 the second's, the rest zeros (each token carries one attribute).
    mode "summed": every token holds the same entangled vector, the sum over all said attributes of a
    per-slot random vector, divided by sqrt(their number) (what a CLIP-like state looks like: every
    attribute in one vector)."""

    def __init__(self, tok, dim: int = 128, seed: int = 0, mode: str = "slots"):
        import torch

        if mode not in ("slots", "summed"):
            raise ValueError(mode)
        self.tok, self.dim, self.mode = tok, dim, mode
        g = torch.Generator().manual_seed(seed)
        self.table = {(a, v): torch.randn(dim, generator=g) for a, vs in {**LABELS, **SCENE_LABELS}.items() for v in vs}
        self.slot_table = {(k, a, v): torch.randn(dim, generator=g) for k in range(N_SLOTS) for a, vs in LABELS.items()
                           for v in vs}

    def __call__(self, ids):
        import torch
        from types import SimpleNamespace

        out = torch.zeros(len(ids), MAX_LEN, self.dim)
        for n, row in enumerate(ids.tolist()):
            strs = self.tok.convert_ids_to_tokens(row)
            end = strs.index(self.tok.eos_token) if self.tok.eos_token in strs else len(strs)
            p = parse_caption([_word(s) for s in strs[1:end]])
            vecs = []
            if p["background"]:
                vecs.append(self.table[("background", p["background"][0])])
                out[n, 0] = vecs[-1]
            for k, o in enumerate(p["objects"][:N_SLOTS]):
                for j, a in enumerate(OBJ_ATTRS):
                    if a in o:
                        out[n, 1 + 4 * k + j] = self.table[(a, o[a][0])]
                        vecs.append(self.slot_table[(k, a, o[a][0])])
            if self.mode == "summed":
                out[n] = (torch.stack(vecs).sum(0) / len(vecs) ** 0.5) if vecs else 0.0
        return SimpleNamespace(last_hidden_state=out)

    def eval(self):
        return self

    def train(self, mode: bool = True):
        return self
