"""Music through the Python API, the CLI and batch jobs on a tiny random-weight MusicGen saved to disk: each
mode (text-to-music, continuation, span inpainting, audio-to-audio) comes back sealed, verifies, records
what made it and names its source as the C2PA ingredient."""
import hashlib
import json

import numpy as np
import pytest

import studio
from studio.cli import main
from studio.errors import RequestError

pipelines = pytest.importorskip("pipelines")
if not hasattr(pipelines, "run_audio"):  # pragma: no cover
    pytest.skip("pipelines.run_audio not available", allow_module_level=True)
import safety  # noqa: E402


@pytest.fixture(scope="module")
def tiny_music_model(tmp_path_factory):
    from pipelines.tiny_audio import save_tiny_audio, tiny_musicgen

    return str(save_tiny_audio(tiny_musicgen(), tmp_path_factory.mktemp("tiny-mg") / "model"))


@pytest.fixture(scope="module")
def tune(tmp_path_factory, tiny_music_model):
    out = tmp_path_factory.mktemp("tune") / "tune.wav"
    studio.generate("a fast plucked melody", model=tiny_music_model, duration=1.0, seed=3, out=out)
    return out


def test_text_to_music_is_sealed_recorded_and_reproducible(tmp_path, tiny_music_model):
    r = studio.generate("a slow sine melody", model=tiny_music_model, duration=1.0, seed=5, out=tmp_path / "a.flac")
    o = r.outputs[0].record
    assert r.record.mode == "txt2audio" and r.record.request.modality == "audio"
    assert (o.format, o.sample_rate, o.channels, o.duration_s) == ("flac", 32000, 1, 1.0)
    assert o.width is None and o.frames is None
    report = safety.verify(tmp_path / "a.flac")
    assert report.exit_code == 0, report.to_dict()
    assert report.to_dict()["manifest"]["params"]["request"]["duration"] == 1.0
    samples, rate = r.outputs[0].audio
    assert rate == 32000 and abs(len(samples) - 32000) <= 1
    again = studio.generate("a slow sine melody", model=tiny_music_model, duration=1.0, seed=5)
    assert again.outputs[0].record.generated_sha256 == o.generated_sha256
    other = studio.generate("a slow sine melody", model=tiny_music_model, duration=1.0, seed=6)
    assert other.outputs[0].record.generated_sha256 != o.generated_sha256


@pytest.mark.parametrize("fields, mode, seconds", [
    (dict(extend=0.5), "audio_extend", 1.5),
    (dict(span={"start": 0.2, "end": 0.6}), "audio_inpaint", 1.0),
])
def test_edits_record_their_source_as_the_ingredient(tmp_path, tiny_music_model, tune, fields, mode, seconds):
    out = tmp_path / "edit.mp3"
    r = studio.generate("more of it", model=tiny_music_model, init_audio=tune, seed=2, out=out, **fields)
    assert r.record.mode == mode and r.record.input_hashes["init_audio"] == \
        hashlib.sha256(tune.read_bytes()).hexdigest()
    assert abs(r.outputs[0].record.duration_s - seconds) < 0.05
    report = safety.verify(out).to_dict()
    assert report["exit_code"] == 0
    (ingredient,) = report["manifest"]["ingredients"]
    assert ingredient["relationship"] == "parentOf"


def test_inpainting_keeps_the_audio_outside_the_span(tiny_music_model, tune):
    src, rate = safety.media.decode_audio(tune.read_bytes(), "wav")
    r = studio.generate("x", model=tiny_music_model, init_audio=tune, span={"start": 0.4, "end": 0.7}, seed=1)
    out, out_rate = r.outputs[0].audio
    assert out_rate == rate
    keep = np.r_[0:int(0.35 * rate), int(0.75 * rate):len(src)]
    err = out[keep] - src[keep]
    snr = 10 * np.log10(np.sum(src[keep] ** 2) / max(np.sum(err ** 2), 1e-12))
    assert snr >= 30, snr


def test_audio_errors_are_one_line_before_loading(tmp_path, tiny_music_model, tune, no_load):
    with pytest.raises(RequestError, match="span 0.5:3 s ends after the init audio"):
        studio.generate("x", model=tiny_music_model, init_audio=tune, span={"start": 0.5, "end": 3})
    with pytest.raises(RequestError, match="renders .* seconds"):
        studio.generate("x", model=tiny_music_model, duration=99)
    with pytest.raises(RequestError, match="audio request but the model makes image"):
        studio.generate("x", model="mini", duration=2)
    with pytest.raises(RequestError, match="not a readable audio file"):
        bad = tmp_path / "bad.wav"
        bad.write_bytes(b"RIFF....not audio")
        studio.generate("x", model=tiny_music_model, init_audio=bad)


def test_cli_and_batch_music(tmp_path, tiny_music_model, tune, capsys):
    out = tmp_path / "cli.wav"
    code = main(["generate", "a fast plucked melody", "--model", tiny_music_model, "--duration", "1", "--seed",
                 "7", "-o", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "1 clip(s)" in captured.out and "1 s at 32000 Hz" in captured.out
    assert safety.verify(out).exit_code == 0
    code = main(["generate", "more", "--model", tiny_music_model, "--init-audio", str(out), "--span", "0.2:0.5",
                 "-o", str(tmp_path / "span.wav")])
    assert code == 0, capsys.readouterr().err
    code = main(["generate", "more", "--model", tiny_music_model, "--init-audio", str(out), "--span", "0.5",
                 "-o", str(tmp_path / "bad.wav")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "span must be START:END" in err
    job = tmp_path / "job.jsonl"
    job.write_text(json.dumps({"defaults": {"duration": 1.0}}) + "\n"
                   + json.dumps({"id": "t", "prompt": "a sine melody"}) + "\n"
                   + json.dumps({"id": "e", "prompt": "on", "init_audio": str(tune), "extend": 0.5}) + "\n")
    renders = tmp_path / "renders"
    assert main(["render", str(job), "--out", str(renders), "--model", tiny_music_model, "--seed", "1"]) == 0
    entries = {e["id"]: e for e in map(json.loads, (renders / "manifest.jsonl").read_text().splitlines())
               if e.get("type") == "item"}
    assert entries["t"]["mode"] == "txt2audio" and entries["e"]["mode"] == "audio_extend"
    for e in entries.values():
        assert safety.verify(renders / e["outputs"][0]["path"]).exit_code == 0
    capsys.readouterr()
    assert main(["replay", str(renders), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["identical"] == 2


def test_audio_to_audio_keeps_the_melody_and_takes_no_strength(tmp_path, tune):
    from pipelines.tiny_audio import save_tiny_audio, tiny_musicgen_melody

    melody = str(save_tiny_audio(tiny_musicgen_melody(), tmp_path / "melody"))
    r = studio.generate("a square melody", model=melody, init_audio=tune, seed=3, out=tmp_path / "v.wav")
    assert r.record.mode == "audio2audio" and r.record.request.strength is None
    assert safety.verify(tmp_path / "v.wav").exit_code == 0
