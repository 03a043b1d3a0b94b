"""Fixtures shared by the reward tests."""
import pytest


@pytest.fixture
def no_load(monkeypatch):
    """A request that reaches the model load was not refused up front: fail loudly instead of loading."""
    import pipelines
    import studio

    def refuse(*a, **k):
        raise AssertionError("model load reached")

    monkeypatch.setattr(studio.Studio, "load", refuse)
    monkeypatch.setattr(pipelines, "load_model", refuse)
