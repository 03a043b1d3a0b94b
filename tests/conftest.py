"""Suite-wide isolation: no network, no hub, and a throw-away studio home (keys, ledger, models.toml)."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import pytest  # noqa: E402


@pytest.fixture(autouse=True, scope="session")
def _studio_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("studio-home")
    old = os.environ.get("DIFFUSION_STUDIO_HOME")
    os.environ["DIFFUSION_STUDIO_HOME"] = str(home)
    yield home
    if old is None:
        os.environ.pop("DIFFUSION_STUDIO_HOME", None)
    else:
        os.environ["DIFFUSION_STUDIO_HOME"] = old


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except Exception:
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


# The tiny random SD model on disk and a studio over it: what most end-to-end tests of the studio render with.
# Module-scoped, as each test module had its own copy (a model saved once per module keeps modules independent).
@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from pipelines.tiny import save_tiny, tiny_sd

    return str(save_tiny(tiny_sd(vae_scale=8), tmp_path_factory.mktemp("tiny-sd") / "model"))


@pytest.fixture(scope="module")
def engine():
    import studio

    return studio.Studio()


@pytest.fixture
def no_load(monkeypatch):
    """A request that reaches the model load was not refused up front: fail loudly instead of loading."""
    import pipelines
    import studio

    def refuse(*a, **k):
        raise AssertionError("model load reached")

    monkeypatch.setattr(studio.Studio, "load", refuse)
    monkeypatch.setattr(pipelines, "load_model", refuse)
