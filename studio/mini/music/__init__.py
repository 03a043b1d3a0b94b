"""The mini music model's world (procedural melodies with captions), its analytic judge and its codec.

``world`` and ``judge`` need only numpy and scipy; ``codec`` imports torch and diffusers lazily.
"""
