"""The mini music model: its world (procedural melodies with captions), analytic judge and closed-form codec
(phase 1), and the StableAudioPipeline components, hand-made text conditioning, trainer and evaluation
(phase 2: ``text``, ``model``, ``train``, ``evaluate``).  See docs/mini-music-plan.md.

``world`` and ``judge`` need only numpy and scipy; the other modules import torch and diffusers lazily.
"""
