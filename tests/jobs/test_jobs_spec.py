"""Job files: formats, defaults and overrides, validation with line numbers, identity, seeds, safe names."""
import json
import random
import re
from pathlib import Path

import pytest

from studio.jobs.spec import FORMATS, JobFileError, derive_seed, load_job, safe_name


def _png(path, size=(16, 16)):
    from PIL import Image

    Image.new("RGB", size, "red").save(path)
    return path


def test_txt_comments_blanks_and_overrides(tmp_path):
    f = tmp_path / "p.txt"
    f.write_text("# a comment\n\na red circle\n   \na blue square | steps=4 | width=64 | seed=9\n"
                 "  # indented comment\nthird | negative=blurry | sampler=euler_a\n")
    spec = load_job(f, job_seed=1)
    assert [(i.line, i.request.prompt) for i in spec.items] == [(3, "a red circle"), (5, "a blue square"),
                                                                (7, "third")]
    sq = spec.items[1].request
    assert (sq.steps, sq.width, sq.seed) == (4, 64, 9)
    assert spec.items[2].request.negative_prompt == "blurry"
    assert spec.items[2].request.sampler == "Euler a"  # aliases resolved by the shared schema
    assert not spec.invalid


def test_jsonl_header_defaults_and_item_overrides(tmp_path):
    _png(tmp_path / "init.png")
    f = tmp_path / "j.jsonl"
    lines = [{"defaults": {"steps": 3, "width": 64, "model": "fake"}, "seed": 77},
             {"prompt": "one"},
             {"prompt": "two", "steps": 5, "model": "fake2", "init": "init.png", "strength": 0.5},
             "three"]
    f.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")
    spec = load_job(f)
    assert spec.job_seed == 77
    one, two, three = (i.request for i in spec.items)
    assert (one.steps, one.width, one.model) == (3, 64, "fake")
    assert (two.steps, two.model, two.strength) == (5, "fake2", 0.5)
    assert two.init_image == str((tmp_path / "init.png").resolve())  # relative to the job file
    assert three.prompt == "three" and three.steps == 3


def test_flag_defaults_beat_header_and_items_beat_both(tmp_path):
    f = tmp_path / "j.jsonl"
    f.write_text(json.dumps({"defaults": {"steps": 3, "model": "fake"}}) + "\n"
                 + json.dumps({"prompt": "a"}) + "\n" + json.dumps({"prompt": "b", "model": "fake2"}) + "\n")
    spec = load_job(f, defaults={"model": "mini", "guidance": 2.0})
    a, b = (i.request for i in spec.items)
    assert (a.model, a.steps, a.guidance) == ("mini", 3, 2.0)
    assert b.model == "fake2"


def test_csv_cells_loras_outpaint_and_quotes(tmp_path):
    (tmp_path / "l1.safetensors").write_bytes(b"x")
    (tmp_path / "l2.safetensors").write_bytes(b"y")
    _png(tmp_path / "in.png")
    f = tmp_path / "c.csv"
    f.write_text('prompt,steps,width,loras,init_image,outpaint,id\n'
                 '"a cat, sitting",4,,l1.safetensors:0.5;l2.safetensors,,,cat\n'
                 'wide,,128,,in.png,"8,0,8,0",\n')
    spec = load_job(f, job_seed=0)
    assert not spec.invalid, spec.invalid
    cat, wide = spec.items
    assert cat.request.prompt == "a cat, sitting" and cat.request.steps == 4 and cat.request.width is None
    assert [(l.path.endswith("l1.safetensors"), l.weight) for l in cat.request.loras] == [(True, 0.5), (False, 1.0)]
    assert cat.key == "cat" and cat.line == 2
    assert wide.request.outpaint.as_tuple() == (8, 0, 8, 0) and wide.request.mode == "outpaint"
    assert wide.line == 3


def test_yaml_defaults_items_and_line_numbers(tmp_path):
    f = tmp_path / "j.yaml"
    f.write_text("seed: 5\ndefaults:\n  steps: 2\n  height: 64\nitems:\n  - a plain prompt\n"
                 "  - prompt: with overrides\n    steps: 7\n    repeats: 2\n  - id: named\n    prompt: n\n")
    spec = load_job(f)
    assert spec.job_seed == 5
    assert [(i.key, i.line) for i in spec.items][2:] == [(spec.items[2].key, 7), ("named", 10)]
    assert spec.items[1].key.startswith("h-") and spec.items[2].key == spec.items[1].key + "#1"
    assert spec.items[1].request.steps == 7 and spec.items[0].request.steps == 2
    assert spec.items[0].request.height == 64


def test_yaml_plain_list_and_json(tmp_path):
    (tmp_path / "l.yml").write_text("- one\n- prompt: two\n")
    assert [i.request.prompt for i in load_job(tmp_path / "l.yml").items] == ["one", "two"]
    (tmp_path / "j.json").write_text(json.dumps({"defaults": {"steps": 2}, "items": ["x", {"prompt": "y"}]}))
    assert [i.request.steps for i in load_job(tmp_path / "j.json").items] == [2, 2]


@pytest.mark.parametrize("name, text, expected", [
    ("bad.txt", "ok\nbad | width=250\nok2 | nokv\nfine | frobnicate=1\n",
     [(2, "width 250 is not a multiple of 8"), (3, "not key=value"), (4, "unknown field")]),
    ("bad.jsonl", '{"prompt": "ok"}\n{"prompt": "x", "steps": 0}\n{broken\n{"prompt": "m", "mask": "m.png"}\n',
     [(2, "steps"), (3, "not valid JSON"), (4, "mask given without init_image")]),
    ("bad.csv", "prompt,steps\nok,2\n,3\nx,abc\n", [(3, "prompt"), (4, "steps")]),
    ("bad.yaml", "items:\n  - ok\n  - prompt: x\n    init_image: missing.png\n  - 42\n  - prompt: y\n    model: no-such\n",
     [(3, "does not exist"), (5, "must be a mapping"), (6, "unknown model")]),
    ("dup.jsonl", '{"id": "a", "prompt": "x"}\n{"id": "a", "prompt": "y"}\n{"prompt": "z", "repeats": 0}\n',
     [(2, "duplicate id 'a' (first used on line 1)"), (3, "repeats")]),
])
def test_invalid_items_listed_with_line_numbers(tmp_path, name, text, expected):
    from fakes import FakeRegistry

    f = tmp_path / name
    f.write_text(text)
    spec = load_job(f, check_model=FakeRegistry().resolve)
    got = [(i.line, i.message) for i in spec.invalid]
    assert [g[0] for g in got] == [e[0] for e in expected], got
    for (line, msg), (_, needle) in zip(got, expected):
        assert needle in msg, (line, msg)


def test_unreadable_files(tmp_path):
    with pytest.raises(JobFileError, match="unknown job file type"):
        load_job(tmp_path / "x.docx")
    (tmp_path / "b.yaml").write_text("items: [unclosed\n")
    with pytest.raises(JobFileError, match="not valid YAML"):
        load_job(tmp_path / "b.yaml")
    (tmp_path / "n.txt").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(JobFileError, match="UTF-8"):
        load_job(tmp_path / "n.txt")


def test_seeds_depend_on_job_seed_and_identity_not_order():
    items = [{"prompt": f"p{i}", "steps": 2} for i in range(8)] + [{"prompt": "r", "repeats": 3}]
    a = {i.key: i.request.seed for i in load_job(items, job_seed=11).items}
    shuffled = items[:]
    random.Random(3).shuffle(shuffled)
    b = {i.key: i.request.seed for i in load_job(shuffled, job_seed=11).items}
    assert a == b and len(set(a.values())) == len(a)
    c = {i.key: i.request.seed for i in load_job(items, job_seed=12).items}
    assert set(a) == set(c) and all(a[k] != c[k] for k in a)
    key = next(k for k in a if k.endswith("#2"))
    assert a[key] == derive_seed(11, key)


def test_identity_ignores_model_and_execution_knobs_and_duplicates_continue_repeats():
    spec = load_job([{"prompt": "x", "model": "a"}, {"prompt": "x", "model": "b", "device": "cpu"},
                     {"prompt": "x", "seed": 4, "repeats": 2, "batch": 3}], job_seed=0)
    k0, k1, k2, k3 = (i.key for i in spec.items)
    assert k1 == k0 + "#1"  # same content: a second repeat, not a clash
    assert k2 != k0 and k3 == k2 + "#1"
    assert [spec.items[2].request.seed, spec.items[3].request.seed] == [4, 7]  # explicit seed + r*batch


def test_safe_names_never_escape():
    for label in ["../../etc/passwd", "/abs/olute", "..", "", "a\\b\x00c", "ünïcødé ☃", "x" * 500]:
        name = safe_name(label, label)
        assert "/" not in name and "\\" not in name and not name.startswith(".") and len(name) <= 51
        assert set(name) <= set("abcdefghijklmnopqrstuvwxyz0123456789-")
    assert safe_name("a", "same") != safe_name("b", "same")


ROOT = Path(__file__).resolve().parents[2]
SAMPLE_JOBS = sorted(p.name for p in (ROOT / "samples" / "batch").iterdir() if p.suffix in FORMATS)


def _refused_by(model: str, sampler: str):
    """Whether the engine would refuse the sampler, judged from the model's own scheduler config on disk
    (independently of the job validator, so this also holds the validator to it)."""
    import schedulers

    from studio.registry import Registry

    entry = Registry().resolve(model)
    config = json.loads((Path(entry.source) / "scheduler" / "scheduler_config.json").read_text())
    try:
        schedulers.make_scheduler(sampler, config, entry.family)
    except ValueError as exc:
        return str(exc)
    return None


def test_every_sample_job_is_covered():
    assert {"prompts.txt", "job.jsonl", "job.csv", "job.yaml"} <= set(SAMPLE_JOBS)


@pytest.mark.parametrize("name", SAMPLE_JOBS)
def test_shipped_samples_validate(name):
    from studio.registry import Registry

    spec = load_job(ROOT / "samples" / "batch" / name, check_model=Registry().resolve)
    assert spec.items and not spec.invalid, spec.invalid
    refused = {(i.line, i.request.sampler): _refused_by(i.request.model or "mini", i.request.sampler)
               for i in spec.items if i.request.sampler}
    assert not {k: v for k, v in refused.items() if v}, refused


def test_readme_samplers_are_accepted_by_the_model_they_run_on():
    import shlex

    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```(?:bash|sh)?\n(.*?)```", readme, flags=re.S)
    checked = 0
    for line in (l for b in blocks for l in b.splitlines() if "--sampler" in l):
        args = shlex.split(line.split("  #")[0])
        sampler = args[args.index("--sampler") + 1]
        model = args[args.index("--model") + 1] if "--model" in args else "mini"  # the default model
        assert _refused_by(model, sampler) is None, (line, _refused_by(model, sampler))
        checked += 1
    assert checked, "the README shows no --sampler example any more: drop this test"


def test_samplers_command_shows_what_a_model_refuses_and_its_real_default(capsys):
    from studio.cli import main

    assert main(["samplers"]) == 0
    listing = capsys.readouterr().out
    assert "DPM++ 2M Karras" in listing and "default" not in listing.split("\n\n")[0].lower()
    assert main(["samplers", "--model", "mini"]) == 0
    rows = {line[:22].strip(): line[22:].split()[1] for line in capsys.readouterr().out.splitlines()[1:]}
    assert rows["Euler"] == "default" and rows["DPM++ 2M"] == "ok"
    assert rows["DPM++ 2M Karras"] == rows["Heun"] == rows["Flow-match Euler"] == "refused"
    assert main(["samplers", "--model", "mini", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["default"] == "Euler" and all(r["accepted"] == (_refused_by("mini", r["name"]) is None)
                                              for r in data["samplers"])
