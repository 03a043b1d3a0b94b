"""Offline word-level CLIP tokenizer for the mini world.

Built with ``CLIPTokenizer(vocab=..., merges=...)`` (transformers 5, no files needed): the vocab is
the two specials, the 256 byte-level characters (plain and with ``</w>``), and every word of the
world's language, with BPE merges that assemble each known word into one token.  Unknown words fall
back to byte-level pieces, so any text tokenizes without errors.
"""

from __future__ import annotations

from . import world as W

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
MAX_LEN = 32


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's byte-to-character map."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    return bytes_to_unicode()


def world_words() -> list[str]:
    words: set[str] = set()
    for group in (W.BACKGROUNDS, W.COLORS, W.SHAPES, W.SIZES):
        words.update(group)
    for phrases in W.POSITION_PHRASES.values():
        for p in phrases:
            words.update(p.split())
    words.update("a an and on with background the in at of image picture".split())
    return sorted(words)


def build_vocab_merges(words: list[str] | None = None) -> tuple[dict[str, int], list[tuple[str, str]]]:
    from transformers import CLIPTokenizer

    words = words or world_words()
    vocab: dict[str, int] = {BOS: 0, EOS: 1}
    for ch in _bytes_to_unicode().values():
        vocab.setdefault(ch, len(vocab))
    for ch in _bytes_to_unicode().values():
        vocab.setdefault(ch + "</w>", len(vocab))
    merges: list[tuple[str, str]] = []
    # Left-to-right chains; then repair any word that still splits (merge-rank interactions).
    for w in words:
        cur = w[0]
        for i, ch in enumerate(w[1:]):
            nxt = ch + ("</w>" if i == len(w) - 2 else "")
            pair = (cur, nxt)
            cur = cur + nxt
            if pair not in merges:
                merges.append(pair)
            vocab.setdefault(cur, len(vocab))
    for _ in range(20):
        tok = CLIPTokenizer(vocab=vocab, merges=merges, bos_token=BOS, eos_token=EOS, pad_token=EOS, unk_token=EOS)
        bad = False
        for w in words:
            pieces = tok.tokenize(w)
            if len(pieces) > 1:
                bad = True
                pair = (pieces[0], pieces[1])
                if pair not in merges:
                    merges.append(pair)
                vocab.setdefault(pieces[0] + pieces[1], len(vocab))
        if not bad:
            break
    return vocab, merges


def build_tokenizer():
    from transformers import CLIPTokenizer

    vocab, merges = build_vocab_merges()
    tok = CLIPTokenizer(
        vocab=vocab, merges=merges, bos_token=BOS, eos_token=EOS, pad_token=EOS, unk_token=EOS,
        model_max_length=MAX_LEN,
    )
    return tok
