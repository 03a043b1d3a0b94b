"""Cross-item batching (issue 19): compatible items of a job render in one pipeline call, each with its own seed,
record and seal; the call's composition is recorded and `studio replay` reruns it to identical pixels; a failed
batched call falls back to one item at a time; kill -9 during a batched job loses no finished item and
duplicates none. The runner's logic runs on a fake engine (fast); pixels, seeds and replay on a tiny
random-weight SD model saved to disk (64x64, 2 steps: below the watermark's minimum size, so delivered pixels are
deterministic)."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from batch_fakes import BatchingFakeStudio
from studio.batching import batch_key, group
from studio.errors import RequestError
from studio.jobs import read_manifest, render, replay
from studio.jobs.manifest import MANIFEST, WRITING
from studio.schema import GenerationRequest

HERE = Path(__file__).parent


def _lines(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / MANIFEST).read_text().splitlines()]


def _items(out: Path) -> dict:
    return {e["id"]: e for e in _lines(out) if e["type"] == "item"}


# -- grouping -------------------------------------------------------------------------------------------------
def test_only_requests_that_differ_in_prompt_and_seed_share_a_key():
    base = GenerationRequest.build(prompt="a", width=64, height=64, steps=2, seed=1)
    assert batch_key(base) == batch_key(base.model_copy(update={"prompt": "b", "seed": 9, "negative_prompt": "x"}))
    for change in ({"steps": 3}, {"width": 128}, {"guidance": 2.0}, {"sampler": "DPM++ 2M"}, {"model": "other"}):
        assert batch_key(base.model_copy(update=change)) != batch_key(base), change
    assert batch_key(base.model_copy(update={"init_image": "x.png"})) is None  # img2img renders alone
    assert batch_key(base.model_copy(update={"prompt": "a (red:1.3) cube"})) is None  # weighting: per prompt
    keyed = ["a1", "b1", "a2", "a3", "b2", "a4"]
    assert group(keyed, 3, key=lambda s: s[0]) == [["a1", "a2", "a3"], ["b1", "b2"], ["a4"]]
    assert group(keyed, 1, key=lambda s: s[0]) == [[k] for k in keyed]
    assert group(["x", "y"], 4, key=lambda s: None) == [["x"], ["y"]]


# -- the runner, on a fake engine ----------------------------------------------------------------------------
def _job(n=5, extra=()):
    return [{"prompt": f"item {i}", "id": f"i{i}"} for i in range(n)] + list(extra)


def test_compatible_items_run_as_batches_with_their_own_records(tmp_path):
    studio = BatchingFakeStudio()
    odd = {"prompt": "other steps", "id": "odd", "steps": 3}
    s = render(_job(5, [odd]), tmp_path, studio=studio, seed=4, batch_items=2)
    assert s.succeeded == 6 and s.failed == 0
    assert studio.batch_calls == [["i0", "i1"], ["i2", "i3"]]  # i4 and odd are alone: no batched call
    items = _items(tmp_path)
    assert _lines(tmp_path)[0]["batch_items"] == 2
    for key, partner, index in (("i0", "i1", 0), ("i1", "i0", 1), ("i2", "i3", 0)):
        batch = items[key]["batch"]
        assert batch["size"] == 2 and batch["index"] == index
        members = {m["key"]: m for m in batch["members"]}
        assert set(members) == {key, partner}
        assert members[key]["seed"] == items[key]["request"]["seed"]  # each member keeps its own seed
        assert members[partner]["seed"] == items[partner]["request"]["seed"] != members[key]["seed"]
    assert "batch" not in items["i4"] and "batch" not in items["odd"]
    paths = [o["path"] for e in items.values() for o in e["outputs"]]
    assert len(paths) == len(set(paths)) == 6 and all((tmp_path / p).is_file() for p in paths)


def test_batch_items_1_is_the_unbatched_job(tmp_path):
    batched, plain = BatchingFakeStudio(), BatchingFakeStudio()
    render(_job(4), tmp_path / "b", studio=batched, seed=4, batch_items=4)
    render(_job(4), tmp_path / "p", studio=plain, seed=4)
    assert plain.batch_calls == [] and batched.batch_calls == [["i0", "i1", "i2", "i3"]]
    b, p = _items(tmp_path / "b"), _items(tmp_path / "p")
    assert not any("batch" in e for e in p.values())
    assert {k: e["request"]["seed"] for k, e in b.items()} == {k: e["request"]["seed"] for k, e in p.items()}
    with pytest.raises(RequestError, match="batch_items must be an integer >= 1"):
        render(_job(1), tmp_path / "z", studio=plain, seed=4, batch_items=0)


def test_failed_batched_call_falls_back_to_one_item_at_a_time(tmp_path):
    # the call for all four fails (the batch is too large), each alone succeeds
    studio = BatchingFakeStudio(batch_fail_on="item 2")
    s = render(_job(4), tmp_path / "oom", studio=studio, seed=4, batch_items=4)
    assert s.succeeded == 4 and s.failed == 0
    assert not any("batch" in e for e in _items(tmp_path / "oom").values())  # rendered alone: recorded alone
    # one bad item inside a batch: it fails alone with its own one-line error, its batch-mates are kept
    job = _job(2) + [{"prompt": "FAIL here", "id": "bad"}] + [{"prompt": "item 9", "id": "i9"}]
    s = render(job, tmp_path / "bad", studio=BatchingFakeStudio(), seed=4, batch_items=4)
    assert s.succeeded == 3 and s.failed == 1
    items = _items(tmp_path / "bad")
    assert items["bad"]["status"] == "failed" and "\n" not in items["bad"]["error"]
    assert "out of memory" in items["bad"]["error"]
    assert all(items[k]["status"] == "ok" for k in ("i0", "i1", "i9"))


def test_a_studio_without_generate_batch_renders_one_by_one(tmp_path, fake):
    s = render(_job(3), tmp_path, studio=fake, seed=4, batch_items=3)
    assert s.succeeded == 3 and sorted(fake.calls) == ["item 0", "item 1", "item 2"]


_CRASH = textwrap.dedent("""
    import sys
    sys.path.insert(0, {here!r})
    from batch_fakes import BatchingFakeStudio
    from studio.jobs import render
    render({job!r}, {out!r}, studio=BatchingFakeStudio(delay=0.05, seal_delay=0.2, die_on={die_on!r},
           die_marker={marker!r}, seal_die_on={seal_die_on!r}), seed=8, batch_items=3)
""")


@pytest.mark.parametrize("where", ["generate", "seal"])
def test_kill_9_in_a_batched_job_loses_no_finished_item_and_duplicates_none(tmp_path, where):
    job = tmp_path / "p.txt"
    job.write_text("".join(f"item {i} | id=i{i}\n" for i in range(4)) + "crash here | id=i4\n"
                   + "".join(f"after {i} | id=j{i}\n" for i in range(3)))
    out = tmp_path / "out"
    script = tmp_path / "run.py"
    script.write_text(_CRASH.format(here=str(HERE), job=str(job), out=str(out), marker=str(tmp_path / "died"),
                                    die_on="crash" if where == "generate" else None,
                                    seal_die_on="crash" if where == "seal" else None))
    env = dict(os.environ, PYTHONPATH=str(HERE.parent.parent))
    proc = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, timeout=120)
    assert proc.returncode != 0, proc.stderr.decode()[-2000:]
    done = read_manifest(out / MANIFEST).done()
    # batches i0-i2, i3-j0, j1-j2: killed inside the second call, none of its members is listed (their pixels
    # never left it); killed in i4's seal, i3 may be listed, i4 is not
    assert set(done) <= ({"i0", "i1", "i2"} if where == "generate" else {"i0", "i1", "i2", "i3"})
    for e in done.values():  # listed => its sealed file is complete on disk
        assert all((out / o["path"]).read_bytes() for o in e["outputs"])
    s = render(job, out, studio=BatchingFakeStudio(), seed=8, batch_items=3)
    assert s.skipped == len(done) and s.succeeded == 8 - len(done) and s.failed == 0
    ids = [e["id"] for e in _lines(out) if e["type"] == "item"]
    assert sorted(ids) == sorted(set(ids)) and len(ids) == 8  # each item exactly once
    assert not (out / WRITING).exists()


# -- the real engine, on a tiny model ------------------------------------------------------------------------
pipelines = pytest.importorskip("pipelines")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from pipelines.tiny import save_tiny, tiny_sd

    from studio.engine import Studio

    model = str(save_tiny(tiny_sd(), tmp_path_factory.mktemp("tiny-sd") / "model"))
    return model, Studio(quiet=True)


@pytest.fixture(scope="module")
def batched_job(tiny, tmp_path_factory):
    model, studio = tiny
    out = tmp_path_factory.mktemp("batched") / "out"
    items = [{"prompt": "a red circle", "id": "a"}, {"prompt": "a blue square", "id": "b"},
             {"prompt": "twins", "id": "t", "repeats": 2},  # one prompt, two seeds, same batch
             {"prompt": "other steps", "id": "odd", "steps": 3}]
    s = render(items, out, model=model, defaults={"width": 64, "height": 64, "steps": 2}, seed=5, studio=studio,
               batch_items=4)
    assert s.succeeded == 5 and s.failed == 0
    return out


def _pixels(out: Path, entry: dict):
    import numpy as np
    from PIL import Image

    return np.asarray(Image.open(out / entry["outputs"][0]["path"]).convert("RGB"))


def test_engine_batch_gives_each_item_its_seed_and_records_the_call(batched_job):
    items = _items(batched_job)
    members = ["a", "b", "t", "t#1"]
    for i, key in enumerate(members):
        batch = items[key]["batch"]
        assert [m["key"] for m in batch["members"]] == members and batch["size"] == 4 and batch["index"] == i
        assert batch["members"][i]["seed"] == items[key]["outputs"][0]["seed"] == items[key]["request"]["seed"]
    assert len({items[k]["request"]["seed"] for k in members}) == 4
    assert (_pixels(batched_job, items["t"]) != _pixels(batched_job, items["t#1"])).any()  # own noise
    assert "batch" not in items["odd"] and items["odd"]["request"]["steps"] == 3
    from studio.metadata import read_info

    info = read_info(batched_job / items["b"]["outputs"][0]["path"])  # the composition is in the file too
    assert [m["key"] for m in info["batch"]["members"]] == members and info["batch"]["index"] == 1


def test_replay_reruns_the_batch_to_identical_pixels(batched_job, tiny):
    model, studio = tiny
    report = replay(batched_job, studio=studio)
    assert report.count("identical") == 5 and report.count("differs") == 0, report.to_dict()
    # and the same pixels as the composition rendered directly through the engine's batched entry point
    items = _items(batched_job)
    requests = [GenerationRequest.build(**{**items[k]["request"], "model": model}) for k in ("a", "b", "t", "t#1")]
    again = studio.generate_batch(requests, keys=["a", "b", "t", "t#1"])
    for key, result in zip(("a", "b", "t", "t#1"), again):
        assert result.outputs[0].record.pixel_sha256 == items[key]["outputs"][0]["pixel_sha256"]


def test_engine_refuses_a_request_that_cannot_join_the_batch(tiny):
    model, studio = tiny
    one = GenerationRequest.build(prompt="x", model=model, width=64, height=64, steps=2, seed=1)
    with pytest.raises(RequestError, match="request 2 of the batch cannot join it: its settings differ"):
        studio.generate_batch([one, one.model_copy(update={"steps": 3, "seed": 2})])
    with pytest.raises(RequestError, match="request 2 of the batch cannot join it: img2img"):
        studio.generate_batch([one, one.model_copy(update={"init_image": "x.png", "seed": 2})])
