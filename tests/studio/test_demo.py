import json

import pytest

from studio import RequestError
from studio.cli import main
from studio.demo import SAMPLES, parse_prompt_file


def test_prompt_file_parsing(tmp_path):
    f = tmp_path / "p.txt"
    f.write_text("# comment\n\na red circle\na blue star | init=@1 | strength=0.5 | steps=12\n")
    items = parse_prompt_file(f)
    assert [i.fields["prompt"] for i in items] == ["a red circle", "a blue star"]
    assert items[1].fields == {"prompt": "a blue star", "init_image": "@1", "strength": "0.5", "steps": "12"}
    assert items[1].line == 4
    f.write_text("a red circle | strength\n")
    with pytest.raises(RequestError, match=r"p.txt:1: override 'strength' is not key=value"):
        parse_prompt_file(f)


@pytest.fixture
def few_steps(monkeypatch):
    """mini and mini-video at 2 sampling steps instead of their defaults (30 and 25): what the demo test checks
    (every prompt rendered, sealed, recorded, the edit's and the clip's ingredients) does not depend on how
    many steps the sampler takes, and 30 steps cost CI ~2 minutes. The registry's entries are swapped only for
    this test, so `studio demo` runs its own unchanged path (default prompt file, default models)."""
    import dataclasses

    from studio.engine import default_studio

    entries = default_studio().registry.entries
    for name in ("mini", "mini-video"):  # mini-music keeps its 20 steps (~2 s a tune): at 2 its noise clips
        monkeypatch.setitem(entries, name, dataclasses.replace(entries[name], steps=2))


@pytest.mark.slow
def test_demo_renders_sealed_outputs_with_mini(tmp_path, capsys, few_steps):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out)]) == 0
    items = parse_prompt_file(SAMPLES)
    pngs = sorted(p for p in out.glob("[0-9][0-9]-*.png"))
    assert len(pngs) == len(items)
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    images = [r for r in records if r["request"]["modality"] == "image"]
    assert [r["request"]["prompt"] for r in images] == [i.fields["prompt"] for i in items]
    assert all(r["model_name"] == "mini" for r in records if r["request"]["modality"] == "image")
    import studio

    sheet = studio.verify(out / "contact-sheet.png")
    assert sheet.exit_code == 0
    edit = next(p for p, r in zip(pngs, records) if r["mode"] == "img2img")
    report = studio.verify(edit).to_dict()
    assert report["exit_code"] == 0 and "parentOf" in json.dumps(report)
    out_text = capsys.readouterr().out
    assert "contact sheet" in out_text and "2 sealed clips" in out_text
    clips = [r for r in records if r["request"]["modality"] == "video"]
    assert [r["mode"] for r in clips] == ["txt2vid", "img2vid"] and all(r["model_name"] == "mini-video" for r in clips)
    for name in ("clip-text-to-video.mp4", "clip-image-to-video.mp4"):
        assert studio.verify(out / name).exit_code == 0
    animated = studio.verify(out / "clip-image-to-video.mp4").to_dict()
    assert "parentOf" in json.dumps(animated)  # the first image is the clip's ingredient
    assert "2 sealed tunes" in out_text
    tunes = [r for r in records if r["request"]["modality"] == "audio"]
    assert [r["mode"] for r in tunes] == ["txt2audio", "audio_extend"]
    assert all(r["model_name"] == "mini-music" for r in tunes)
    for name in ("tune-text-to-music.wav", "tune-continuation.wav"):
        report = studio.verify(out / name).to_dict()
        # 8 s at 16 kHz carries the mark; the continuation's too (its source is unmarked before the model hears it)
        assert report["exit_code"] == 0 and report["watermark_found"], name
    assert "parentOf" in json.dumps(studio.verify(out / "tune-continuation.wav").to_dict())  # the first tune


def test_demo_runs_again_into_its_own_folder(tmp_path, capsys):
    """Outputs are never replaced silently, but the demo's folder is its own: a second run re-renders it."""
    prompts = tmp_path / "p.txt"
    prompts.write_text("a red circle | steps=2\n")
    out = tmp_path / "demo"
    for _ in range(2):
        # the folder rule is the images' as much as the clips' and tunes': those are checked by the test above
        assert main(["demo", "--out", str(out), "--prompts", str(prompts), "--video-model", "none",
                     "--music-model", "none"]) == 0
    assert "replaced 1 image(s) of an earlier demo run" in capsys.readouterr().out
    assert len(list(out.glob("01-*.png"))) == 1
