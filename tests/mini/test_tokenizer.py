"""Offline word-level CLIP tokenizer."""

from studio.mini.tokenizer import MAX_LEN, build_tokenizer, world_words


def test_world_words_are_single_tokens():
    tok = build_tokenizer()
    for w in world_words():
        assert len(tok.tokenize(w)) == 1, (w, tok.tokenize(w))


def test_arbitrary_text_does_not_crash():
    tok = build_tokenizer()
    for text in ["", "A HUGE Ünïcode 🙂 zebra!!", "x" * 500, "a large red circle at the top left, white background"]:
        ids = tok(text, padding="max_length", max_length=MAX_LEN, truncation=True).input_ids
        assert len(ids) == MAX_LEN and max(ids) < len(tok)
