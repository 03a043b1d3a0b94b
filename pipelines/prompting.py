"""Prompt tools on a pipeline's own tokenizers and text encoders: token counts against each encoder's limit, and
prompt weighting through compel (`(word:1.2)` A1111 syntax, or compel's own `word++` / `(word)1.2`)."""
from __future__ import annotations

import inspect
import re
from dataclasses import dataclass
from typing import Optional

import torch

_TOKENIZERS = ("tokenizer", "tokenizer_2", "tokenizer_3")
# A1111's explicit weight `(text:1.2)`: the one piece of its syntax people paste from other tools.
_A1111_WEIGHT = re.compile(r"\(([^():]+):\s*(-?\d+(?:\.\d+)?)\s*\)")


@dataclass(frozen=True)
class TokenCount:
    encoder: str  # the tokenizer's attribute on the pipeline: tokenizer, tokenizer_2 ...
    kind: str  # "CLIP", "T5" ...
    tokens: int  # including the start/end tokens the encoder adds
    limit: int  # what the encoder reads; tokens beyond it are cut
    ignored: str = ""  # the text that falls past the limit

    @property
    def over(self) -> bool:
        return self.tokens > self.limit


def has_weights(text: str) -> bool:
    """Whether `text` uses A1111's `(word:1.2)` weighting."""
    return bool(_A1111_WEIGHT.search(text or ""))


def to_compel(text: str) -> str:
    """A1111's `(text:1.2)` written the way compel reads it, `(text)1.2`. compel parses everything else (its own
    `++`/`--`, nesting, blends); this only renames A1111's explicit-weight form, which compel takes literally."""
    return _A1111_WEIGHT.sub(lambda m: f"({m.group(1).strip()}){m.group(2)}", text or "")


def plain_text(text: str) -> str:
    """The words the encoder sees once the weight markup is gone (what the token counter counts)."""
    return _A1111_WEIGHT.sub(lambda m: m.group(1).strip(), text or "")


def _limit(pipe, name: str, tok) -> Optional[int]:
    kind = type(tok).__name__
    if "T5" in kind or "Gemma" in kind or "Llama" in kind:
        # T5 encoders read what the pipeline pads to (`max_sequence_length`: SD3 256, Flux 512), not the
        # tokenizer's nominal length
        param = inspect.signature(type(pipe).__call__).parameters.get("max_sequence_length")
        if param is not None and isinstance(param.default, int):
            return param.default
    limit = getattr(tok, "model_max_length", None)
    return int(limit) if isinstance(limit, int) and 0 < limit < 100_000 else None


def token_counts(pipe, text: str) -> list[TokenCount]:
    """Token count of `text` for each distinct tokenizer of `pipe` (SDXL's two CLIP tokenizers count once)."""
    out: list[TokenCount] = []
    seen = set()
    for name in _TOKENIZERS:
        tok = getattr(pipe, name, None)
        if tok is None or not callable(tok):
            continue
        limit = _limit(pipe, name, tok)
        if limit is None:
            continue
        ids = tok(text, truncation=False, add_special_tokens=True, verbose=False)["input_ids"]
        kind = "T5" if "T5" in type(tok).__name__ else "CLIP" if "CLIP" in type(tok).__name__ else \
            type(tok).__name__.replace("TokenizerFast", "").replace("Tokenizer", "")
        if (kind, len(ids), limit) in seen:
            continue
        seen.add((kind, len(ids), limit))
        ignored = ""
        if len(ids) > limit:
            # the encoder keeps limit-1 tokens and its end token; everything after is what gets lost
            ignored = tok.decode(ids[limit - 1:], skip_special_tokens=True).strip()
        out.append(TokenCount(name, kind, len(ids), limit, ignored))
    return out


def load_tokenizers(folder) -> dict:
    """The tokenizers of a diffusers folder without loading any weights (for a counter before the model loads)."""
    from pathlib import Path

    from transformers import AutoTokenizer

    out = {}
    for name in _TOKENIZERS:
        sub = Path(folder) / name
        if sub.is_dir():
            out[name] = AutoTokenizer.from_pretrained(str(sub), local_files_only=True)
    return out


def weighting_supported(pipe) -> bool:
    name = type(pipe).__name__
    return name.startswith("StableDiffusion") and not name.startswith("StableDiffusion3")


def weighted_embeds(pipe, prompt: str, negative_prompt: str = "") -> dict:
    """Pipeline keyword arguments (`prompt_embeds`, `negative_prompt_embeds`, SDXL's pooled ones) for a weighted
    prompt, built by compel on the pipeline's own tokenizers and text encoders."""
    if not weighting_supported(pipe):
        raise ValueError(f"prompt weighting is supported for SD 1.x/2.x and SDXL models, not {type(pipe).__name__}")
    import compel

    sdxl = getattr(pipe, "text_encoder_2", None) is not None
    with torch.inference_mode():
        if sdxl:
            cond = compel.CompelForSDXL(pipe)(to_compel(prompt), negative_prompt=to_compel(negative_prompt))
            return {"prompt_embeds": cond.embeds, "pooled_prompt_embeds": cond.pooled_embeds,
                    "negative_prompt_embeds": cond.negative_embeds,
                    "negative_pooled_prompt_embeds": cond.negative_pooled_embeds}
        cond = compel.CompelForSD(pipe)(to_compel(prompt), negative_prompt=to_compel(negative_prompt))
        return {"prompt_embeds": cond.embeds, "negative_prompt_embeds": cond.negative_embeds}
