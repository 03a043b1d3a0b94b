"""mini-video: the mini world in motion (issue 15).

world.py renders seeded 16-frame clips with captions, judge.py scores clips analytically, train.py
trains an AnimateDiff motion adapter (plus cross-attention LoRA and learned motion-word embeddings) on
the frozen mini image model, evaluate.py measures the targets and writes the card.
"""
