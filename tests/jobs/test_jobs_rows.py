"""Issue 13: no job parser silently merges, drops or reinterprets rows; validation refuses what the render
would refuse (samplers the model cannot use, unreadable inputs); file size and item caps; existing outputs."""
import json

import pytest

from studio.jobs import InvalidJob, read_manifest, render
from studio.jobs import spec as spec_mod
from studio.jobs.manifest import MANIFEST, WRITING
from studio.jobs.runner import item_output_names
from studio.jobs.spec import JobFileError, load_job
from studio.registry import Registry


def _png(path, size=(16, 16)):
    from PIL import Image

    Image.new("RGB", size, "red").save(path)
    return path


def _invalid(spec):
    return [(i.line, i.message) for i in spec.invalid]


# -- parsers ----------------------------------------------------------------------------------------------------
def test_txt_refuses_json_lines_duplicate_and_prompt_overrides(tmp_path):
    f = tmp_path / "p.txt"
    f.write_text('a red circle\n{"prompt": "meant for jsonl", "steps": 4}\n["a", "b"]\n'
                 "{a|b} wildcard stays a prompt\nx | steps=3 | steps=4\ny | prompt=z\n[cat:dog:5] editing\n")
    spec = load_job(f)
    assert [i.request.prompt for i in spec.items] == ["a red circle", "{a|b} wildcard stays a prompt",
                                                      "[cat:dog:5] editing"]
    got = _invalid(spec)
    assert [g[0] for g in got] == [2, 3, 5, 6]
    assert "is JSON" in got[0][1] and "set twice" in got[2][1] and "the prompt is the text" in got[3][1]


def test_csv_short_and_long_rows_are_invalid_not_padded(tmp_path):
    f = tmp_path / "c.csv"
    f.write_text('prompt,steps,seed\nok,2,1\nshort,2\nlong,2,1,9\n"multi\nline",3,4\nlast,,\n')
    spec = load_job(f)
    assert [i.request.prompt for i in spec.items] == ["ok", "multi\nline", "last"]
    assert [i.line for i in spec.items] == [2, 5, 7]  # a quoted cell over two lines: where the row starts
    assert _invalid(spec) == [(3, "2 cells but the header has 3 columns"), (4, "4 cells but the header has 3 columns")]


@pytest.mark.parametrize("header, needle", [
    ("prompt,stpes", "job.csv:1: unknown CSV column(s) 'stpes'"),
    ("prompt,steps,steps", "job.csv:1: CSV column 'steps' appears twice"),
    ("prompt,init,init_image", "CSV column 'init_image' appears twice (as 'init' and 'init_image')"),
    ("prompt,,steps", "job.csv:1: the CSV header has an empty column name"),
    ("# a comment\nsteps,seed", "job.csv:2: the CSV header row needs a 'prompt' column"),
])
def test_csv_header_problems_name_file_and_line(tmp_path, header, needle):
    f = tmp_path / "job.csv"
    f.write_text(header + "\nx,1,2\n")
    with pytest.raises(JobFileError) as exc:
        load_job(f)
    assert needle in str(exc.value) and str(exc.value).startswith(str(f))


def test_jsonl_duplicate_keys_are_invalid(tmp_path):
    f = tmp_path / "j.jsonl"
    f.write_text('{"prompt": "a", "steps": 2, "steps": 9}\n{"prompt": "b"}\n{"prompt": "c", "prompt": "d"}\n')
    spec = load_job(f)
    assert [i.request.prompt for i in spec.items] == ["b"]
    assert [(line, "'steps' appears twice" in m or "'prompt' appears twice" in m) for line, m in _invalid(spec)] == \
        [(1, True), (3, True)]


@pytest.mark.parametrize("text, line", [
    ("items:\n  - prompt: a\n    steps: 2\n    steps: 9\n", 4),
    ("seed: 1\nitems:\n  - a\nseed: 2\n", 4),
    ("defaults:\n  steps: 2\n  steps: 3\nitems: [a]\n", 3),
])
def test_yaml_duplicate_keys_are_refused(tmp_path, text, line):
    f = tmp_path / "job.yaml"
    f.write_text(text)
    with pytest.raises(JobFileError, match=rf"job\.yaml:{line}: key '\w+' appears twice"):
        load_job(f)


def test_yaml_merge_keys_still_override(tmp_path):
    f = tmp_path / "job.yaml"
    f.write_text("items:\n  - &b {prompt: a, steps: 2}\n  - <<: *b\n    steps: 5\n")
    spec = load_job(f)
    assert [i.request.steps for i in spec.items] == [2, 5]


# -- caps ---------------------------------------------------------------------------------------------------------
def test_file_size_and_item_caps_checked_before_parsing(tmp_path, monkeypatch):
    monkeypatch.setattr(spec_mod, "MAX_FILE_BYTES", 100)
    big = tmp_path / "big.txt"
    big.write_text("a red circle\n" * 20)
    with pytest.raises(JobFileError, match="larger than the 0 MiB limit") as exc:
        load_job(big)
    assert str(exc.value).count("\n") == 0
    monkeypatch.setattr(spec_mod, "MAX_FILE_BYTES", 2**20)
    monkeypatch.setattr(spec_mod, "MAX_ITEMS", 5)
    monkeypatch.setattr(spec_mod, "READERS", {})  # proves the count comes before any parsing
    with pytest.raises(JobFileError, match="over the limit of 5 items"):
        load_job(big)


def test_item_cap_counts_repeats_and_yaml_items(tmp_path, monkeypatch):
    monkeypatch.setattr(spec_mod, "MAX_ITEMS", 5)
    f = tmp_path / "r.jsonl"
    f.write_text('{"prompt": "a", "repeats": 3}\n{"prompt": "b", "repeats": 3}\n')
    with pytest.raises(JobFileError, match=r"r\.jsonl:2: more than 5 items after repeats"):
        load_job(f)
    y = tmp_path / "y.yaml"
    y.write_text("items: [a, b, c, d, e, f]\n")  # one line, six items
    with pytest.raises(JobFileError, match="6 items, over the limit of 5"):
        load_job(y)
    with pytest.raises(JobFileError, match="over the limit"):
        load_job(["x"] * 6)


# -- what the render would refuse -----------------------------------------------------------------------------
def test_samplers_the_model_refuses_are_invalid_up_front(tmp_path):
    f = tmp_path / "s.jsonl"
    f.write_text("\n".join(json.dumps(x) for x in [
        {"prompt": "a", "sampler": "DPM++ 2M Karras"}, {"prompt": "b", "sampler": "Heun", "model": "mini"},
        {"prompt": "c", "sampler": "DPM++ 2M"}, {"prompt": "d", "sampler": "Euler a"},
        {"prompt": "e", "sampler": "Flow-match Euler"}, {"prompt": "f"}]))
    spec = load_job(f, check_model=Registry().resolve)
    got = _invalid(spec)
    assert [g[0] for g in got] == [1, 2, 5], got
    assert "model mini refuses sampler 'DPM++ 2M Karras'" in got[0][1] and "'DPM++ 2M'" in got[0][1]
    assert "Heun" in got[1][1] and "flow-matching" in got[2][1]
    assert [i.request.prompt for i in spec.items] == ["c", "d", "f"]


def test_sampler_checked_against_a_folder_models_own_scheduler_config(tmp_path):
    """A diffusers folder the registry does not know: its scheduler config on disk decides."""
    import shutil

    model = tmp_path / "zsnr"
    shutil.copytree(Registry().resolve("mini").source, model,
                    ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))
    f = tmp_path / "s.jsonl"
    f.write_text(json.dumps({"prompt": "a", "sampler": "DPM++ 2M Karras", "model": "./zsnr"}) + "\n"
                 + json.dumps({"prompt": "b", "sampler": "DPM++ 2M", "model": "./zsnr"}) + "\n")
    spec = load_job(f, check_model=Registry().resolve)
    assert [g[0] for g in _invalid(spec)] == [1] and "zero terminal SNR" in spec.invalid[0].message


def test_unreadable_or_mismatched_inputs_are_invalid_up_front(tmp_path):
    (tmp_path / "text.png").write_text("not an image")
    png = _png(tmp_path / "ok.png")
    (tmp_path / "cut.png").write_bytes(png.read_bytes()[:40])
    _png(tmp_path / "small.png", (8, 8))
    f = tmp_path / "i.jsonl"
    f.write_text("\n".join(json.dumps(x) for x in [
        {"prompt": "a", "init_image": "text.png"}, {"prompt": "b", "init_image": "ok.png", "mask": "text.png"},
        {"prompt": "c", "init_image": "cut.png"}, {"prompt": "d", "init_image": "ok.png", "mask": "small.png"},
        {"prompt": "e", "init_image": "ok.png", "mask": "ok.png"}, {"prompt": "f", "init_image": "gone.png"}]))
    spec = load_job(f)
    got = _invalid(spec)
    assert [g[0] for g in got] == [1, 2, 3, 4, 6], got
    assert "init_image 'text.png' is not a readable image" in got[0][1]
    assert "mask 'text.png' is not a readable image" in got[1][1]
    assert "not a readable image" in got[2][1]
    assert "mask is 8x8 but init image is 16x16" in got[3][1] and "does not exist" in got[4][1]


# -- existing outputs -------------------------------------------------------------------------------------------
def test_existing_output_not_in_manifest_refused_unless_overwrite(tmp_path, fake):
    out = tmp_path / "out"
    out.mkdir()
    spec = load_job(["keep me", "new"], job_seed=0)
    victim = out / item_output_names(spec.items[0])[0]
    victim.write_bytes(b"someone's file")
    with pytest.raises(InvalidJob) as exc:
        render(["keep me", "new"], out, studio=fake, seed=3)
    assert f"job:1: {victim} already exists: pass --overwrite" in str(exc.value)
    assert victim.read_bytes() == b"someone's file" and fake.calls == []
    s = render(["keep me", "new"], out, studio=fake, seed=3, skip_invalid=True)
    assert s.succeeded == 1 and victim.read_bytes() == b"someone's file"
    s = render(["keep me", "new"], out, studio=fake, seed=3, overwrite=True)
    assert (s.succeeded, s.skipped) == (1, 1) and victim.read_bytes() != b"someone's file"
    s = render(["keep me", "new"], out, studio=fake, seed=3)  # resuming: done items skipped, nothing refused
    assert (s.succeeded, s.skipped) == (0, 2)
    assert not (out / WRITING).exists()  # settled once every item is recorded done


def test_interrupted_write_is_the_jobs_own_and_resumes_without_overwrite(tmp_path, fake):
    out = tmp_path / "out"
    render(["first"], out, studio=fake, seed=3)
    # a run killed after renaming the second item's file into place, before its manifest line
    spec = load_job(["first", "second"], job_seed=3)
    name = item_output_names(spec.items[1])[0]
    (out / name).write_bytes(b"half-recorded")
    (out / WRITING).write_text(json.dumps({"id": spec.items[1].key, "paths": [name]}) + "\n")
    s = render(["first", "second"], out, studio=fake, seed=3)
    assert (s.succeeded, s.skipped) == (1, 1) and (out / name).read_bytes() != b"half-recorded"
    assert {e["id"] for e in read_manifest(out / MANIFEST).done().values()} == {i.key for i in spec.items}


def test_cli_render_overwrite_flag(tmp_path, fake, monkeypatch, capsys):
    import studio.jobs.runner as runner
    from studio.cli import main

    monkeypatch.setattr(runner, "_model_checker", lambda studio: fake.registry.resolve)
    real = runner.render
    monkeypatch.setattr(runner, "render", lambda *a, **k: real(*a, **{**k, "studio": fake}))
    job = tmp_path / "p.txt"
    job.write_text("a\n")
    out = tmp_path / "o"
    out.mkdir()
    (out / item_output_names(load_job(job, job_seed=0).items[0])[0]).write_bytes(b"x")
    assert main(["render", str(job), "--out", str(out), "--seed", "1"]) == 2
    assert "already exists: pass --overwrite" in capsys.readouterr().err
    assert main(["render", str(job), "--out", str(out), "--seed", "1", "--overwrite"]) == 0
