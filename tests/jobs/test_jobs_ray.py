"""The Ray executor (optional extra): same files as the local executor, and a dying worker's item is retried."""
import json

import pytest

import fakes
from fakes import FakeStudio
from studio.jobs import read_manifest, render
from studio.jobs.manifest import MANIFEST

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _fakes_by_value():
    import ray.cloudpickle as cp

    cp.register_pickle_by_value(fakes)  # the actors cannot import tests/jobs/fakes.py by name
    yield
    cp.unregister_pickle_by_value(fakes)


def _hashes(out):
    return {e["id"]: [(o["path"], o["pixel_sha256"]) for o in e["outputs"]]
            for e in read_manifest(out / MANIFEST).done().values()}


def test_local_and_ray_two_workers_give_identical_files(tmp_path):
    items = [{"prompt": f"item {i}", "batch": 1 + i % 2} for i in range(6)] + [{"prompt": "r", "repeats": 2}]
    local = render(items, tmp_path / "local", seed=5, studio=FakeStudio())
    remote = render(items, tmp_path / "ray", seed=5, executor="ray", workers=2,
                    studio_factory=lambda: FakeStudio(delay=0.05))
    assert local.succeeded == remote.succeeded == 8
    assert _hashes(tmp_path / "local") == _hashes(tmp_path / "ray")
    workers = {e["worker"] for e in read_manifest(tmp_path / "ray" / MANIFEST).done().values()}
    assert len(workers) == 2 and all(w.startswith("ray-") for w in workers)
    import os

    homes = {e["model_source"].split("@", 1)[1] for e in read_manifest(tmp_path / "ray" / MANIFEST).done().values()}
    assert homes == {str(__import__("pathlib").Path(os.environ["DIFFUSION_STUDIO_HOME"]).resolve())}


def test_ray_worker_dying_mid_item_is_retried_once_elsewhere(tmp_path):
    marker = tmp_path / "died"
    items = [f"p{i}" for i in range(4)] + ["die here"]
    s = render(items, tmp_path / "out", seed=1, executor="ray", workers=2,
               studio_factory=lambda: FakeStudio(die_on="die here", die_marker=str(marker)))
    assert marker.exists()  # a worker really died
    assert (s.succeeded, s.failed) == (5, 0)
    lines = [json.loads(l) for l in (tmp_path / "out" / MANIFEST).read_text().splitlines()]
    ids = [l["id"] for l in lines if l["type"] == "item"]
    assert len(ids) == len(set(ids)) == 5
    dead = next(l for l in lines if l["type"] == "item" and l["request"]["prompt"] == "die here")
    assert dead["attempts"] == 2
