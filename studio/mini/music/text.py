"""The mini music model's text conditioning, designed in closed form and frozen: a stock ``T5EncoderModel``
whose output is one fixed vector per caption attribute value.

Why hand-made: the image mini's lesson (docs/mini-v3-plan.md) is that a text encoder trained jointly with the
denoiser drops the words the denoiser does not use yet.  The music world's language is 14 attribute words
(and synonyms) in a few phrasings, so the conditioning is written down instead of learnt:

- the vocabulary (``T5Tokenizer`` built offline from a word list, unigram pieces) holds each word of the
  language, in lower and Title case, plus single characters so any text tokenizes;
- each attribute value owns one of ``DIM`` orthonormal directions (times sqrt(DIM), so unit RMS); its words
  (synonyms too: "moderate" is "medium") embed to that vector, every other token to zero;
- the one T5 block has its attention and feed-forward output projections zeroed, so the residual stream
  carries the embeddings through unchanged and the final RMS norm leaves a unit-RMS vector as it is.

So "a fast plucked melody rising in a high register, minor" encodes to five non-zero token vectors, one
per attribute, whatever the phrasing or word order (the DiT's cross-attention has no positions), and
unknown words add only zero tokens.  The DiT's own cross-attention projection learns what to read.
"""

from __future__ import annotations

import string

import numpy as np

from . import world as W

DIM = 64
MAX_LEN = 24  # tokens; the longest world phrasing is 17 with </s>
SEED = 0

#: word -> (attribute, value) for every attribute word of the world's language
CONCEPT_WORDS: dict[str, tuple[str, str]] = {}
for _t, _words in W.TEMPO_WORDS.items():
    for _w in _words:
        CONCEPT_WORDS[_w] = ("tempo", _t)
for _i, _words in W.INSTRUMENT_WORDS.items():
    for _w in _words:
        CONCEPT_WORDS[_w] = ("instrument", _i)
for _r in W.REGISTERS:
    CONCEPT_WORDS[_r] = ("register", _r)
for _c in W.CONTOURS:
    CONCEPT_WORDS[_c] = ("contour", _c)
for _m in W.MODES:
    CONCEPT_WORDS[_m] = ("mode", _m)

#: (attribute, value) in a fixed order: row i of the concept basis
CONCEPTS: tuple[tuple[str, str], ...] = tuple(
    [("instrument", v) for v in W.INSTRUMENTS] + [("tempo", v) for v in W.TEMPI]
    + [("register", v) for v in W.REGISTERS] + [("contour", v) for v in W.CONTOURS]
    + [("mode", v) for v in W.MODES])
FILLER = "a an the in of and with melody tune register key".split()


def _pieces() -> list[str]:
    words = sorted(set(CONCEPT_WORDS) | set(FILLER))
    out = []
    for w in words:
        out += ["\u2581" + w, "\u2581" + w.title()]
    return out


def build_tokenizer():
    """Offline ``T5Tokenizer`` (transformers 5, unigram model from a list): every word of the world's language
    is one piece; anything else falls back to single characters or <unk>."""
    from transformers import T5Tokenizer

    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    vocab += [(p, -1.0) for p in _pieces()]
    vocab += [("\u2581", -5.0)] + [(c, -10.0) for c in string.ascii_letters + string.digits + string.punctuation]
    return T5Tokenizer(vocab=vocab, extra_ids=0, model_max_length=MAX_LEN)


def concept_basis(dim: int = DIM, seed: int = SEED) -> np.ndarray:
    """(len(CONCEPTS), dim) orthonormal rows times sqrt(dim): unit RMS, so T5's final RMS norm keeps them."""
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((dim, dim)))
    return (q[: len(CONCEPTS)] * np.sqrt(dim)).astype(np.float32)


def build_text_encoder(tokenizer=None, dim: int = DIM):
    import torch
    from transformers import T5Config, T5EncoderModel

    tok = tokenizer or build_tokenizer()
    cfg = T5Config(vocab_size=len(tok), d_model=dim, d_kv=dim // 4, d_ff=dim, num_layers=1, num_heads=4,
                   dropout_rate=0.0, feed_forward_proj="relu", pad_token_id=tok.pad_token_id,
                   eos_token_id=tok.eos_token_id, decoder_start_token_id=tok.pad_token_id)
    te = T5EncoderModel(cfg)
    basis = torch.from_numpy(concept_basis(dim))
    emb = torch.zeros(len(tok), dim)
    vocab = tok.get_vocab()
    for word, concept in CONCEPT_WORDS.items():
        for piece in ("\u2581" + word, "\u2581" + word.title()):
            emb[vocab[piece]] = basis[CONCEPTS.index(concept)]
    with torch.no_grad():
        te.shared.weight.copy_(emb)
        for block in te.encoder.block:
            block.layer[0].SelfAttention.o.weight.zero_()
            block.layer[1].DenseReluDense.wo.weight.zero_()
        te.encoder.final_layer_norm.weight.fill_(1.0)
    return te.eval().requires_grad_(False)


def encode(tokenizer, text_encoder, prompts: list[str]):
    """(B, MAX_LEN, DIM) exactly as ``StableAudioPipeline.encode_prompt`` computes it (max-length padding, no
    mask downstream: the DiT sees the pad tokens, which encode to zero)."""
    import torch

    ids = tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                    return_tensors="pt")
    with torch.no_grad():
        return text_encoder(input_ids=ids.input_ids, attention_mask=ids.attention_mask)[0]


def read_concepts(hidden: np.ndarray, dim: int = DIM) -> dict[str, str]:
    """Inverse of the encoding for tests and the card: which attribute values a (L, dim) output names."""
    basis = concept_basis(dim)
    out: dict[str, str] = {}
    for row in np.asarray(hidden, np.float32):
        if np.abs(row).max() < 1e-3:
            continue
        attr, value = CONCEPTS[int(np.argmax(basis @ row))]
        out[attr] = value
    return out
