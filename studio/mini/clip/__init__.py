"""mini-clip: the mini world's prompt-fidelity model (a tiny CLIP on mini's frozen text encoder), registered as
the reward ``mini-clip``. The model and the reward live in ``studio/rewards/mini_clip.py``; training and its
evaluation here (``train``, ``evaluate``); the shipped weights and card in ``weights/``."""
from pathlib import Path

WEIGHTS = Path(__file__).resolve().parent / "weights"
