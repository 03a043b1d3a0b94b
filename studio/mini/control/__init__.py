"""mini-control: the project's own ControlNet for the ``mini`` model (edges and layout maps of mini-world scenes).

``world`` makes the control maps, ``train`` trains the ControlNet on the frozen mini model, ``evaluate`` measures
it with the analytic judge, ``card`` writes its model card; the weights live in ``weights/``.
"""
from pathlib import Path

WEIGHTS = Path(__file__).parent / "weights"
