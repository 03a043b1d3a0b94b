import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"

import numpy as np  # noqa: E402
import torch  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

# 2 shared cores: one intra-op thread avoids oversubscription stalls (results don't depend on it)
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _isolated_caches(tmp_path, monkeypatch):
    # nothing may touch the real HF cache / hash cache; tokenizer search dirs come only from the test
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-home" / "hub"))
    monkeypatch.setenv("DIFFUSION_STUDIO_HASH_CACHE", str(tmp_path / "hash-cache.json"))
    monkeypatch.delenv("DIFFUSION_STUDIO_TOKENIZERS", raising=False)
    import huggingface_hub.constants as hc  # read at import time: patch the resolved value too

    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hf-home" / "hub"))


@pytest.fixture(scope="session")
def tiny_sd_pipe():
    from pipelines import tiny

    return tiny.tiny_sd()


@pytest.fixture(scope="session")
def sd_model(tiny_sd_pipe):
    from pipelines import from_pipeline

    return from_pipeline(tiny_sd_pipe)


@pytest.fixture(scope="session")
def sd_dir(tiny_sd_pipe, tmp_path_factory):
    from pipelines import tiny

    return tiny.save_tiny(tiny_sd_pipe, tmp_path_factory.mktemp("tiny-sd") / "model")


@pytest.fixture(scope="session")
def sd3_model():
    from pipelines import from_pipeline, tiny

    return from_pipeline(tiny.tiny_sd3())


@pytest.fixture(scope="session")
def flux_model():
    from pipelines import from_pipeline, tiny

    return from_pipeline(tiny.tiny_flux())


