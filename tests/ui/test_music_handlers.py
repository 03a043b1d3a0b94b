"""The Music tab's handlers with a real studio and tiny random MusicGen models (issue 16): every clip that
reaches the browser is the sealed file (C2PA valid), its record says what it is (modality, mode, format,
duration, sample rate, channels), each edit of a source clip (continue, regenerate a span, vary) comes back
sealed with the source as its ingredient, a waveform picture is drawn from the sealed samples, the Gallery
and Verify show music, and a bad request fails in one line. No browser (tests/ui/test_browser_music.py
drives the same in chromium)."""
from __future__ import annotations

import hashlib
import inspect
import shutil
from pathlib import Path

import numpy as np
import pytest

gr = pytest.importorskip("gradio")

from studio import RequestError  # noqa: E402
from ui.errors import user_message  # noqa: E402
from ui_testutil import MUSIC_SECONDS, add_tiny_music_model  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
RATE = 32000  # the tiny MusicGen's, as the released models'


@pytest.fixture(scope="module")
def music_demo(tmp_path_factory, _studio_home):
    """The app over a studio whose registry holds a tiny MusicGen, a tiny MusicGen-Melody (audio2audio) and an
    image model; (demo, handlers)."""
    import studio
    from pipelines.tiny import save_tiny, tiny_sd
    from studio import Registry
    from ui.app import build_app

    root = tmp_path_factory.mktemp("music-ui")
    registry = Registry(user_file=root / "models.toml")
    add_tiny_music_model(registry, root / "tiny-mg", "tiny-music")
    add_tiny_music_model(registry, root / "tiny-mgm", "tiny-melody", melody=True)
    save_tiny(tiny_sd(seed=0), root / "tiny-sd")
    registry.add("tiny-image", str(root / "tiny-sd"), "sd1", width=64, height=64, steps=2)
    demo = build_app(studio.Studio(registry, quiet=True), root / "out")
    return demo, demo.ui_handlers


@pytest.fixture(scope="module")
def first_tune(music_demo):
    """One txt2audio clip through the handler, with its progress calls."""
    _, h = music_demo
    steps = []
    fields = h.music_fields(prompt="a slow sine melody", model="tiny-music", seed=7, duration=MUSIC_SECONDS)
    entries = h.music(fields, progress=lambda d, t, desc: steps.append((d, t, desc)), session="test")
    return entries, steps


def uploaded(h, entry, name):
    """The sealed clip copied to where Gradio keeps an upload (the browser's only way to name a file)."""
    path = h.out_dir / ".gradio" / f"upload-{name}" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(entry["file"], path)
    return str(path)


def event_fn(demo, name):
    return next(f for f in demo.fns.values() if f.name == name).fn


def run_all(demo, name, *args, **kwargs):
    out = event_fn(demo, name)(*args, **kwargs)
    if not inspect.isgenerator(out):
        return [out], None
    seen = []
    try:
        for v in out:
            seen.append(v)
    except Exception as exc:  # noqa: BLE001
        return seen, exc
    return seen, None


def is_sealed(path):
    import studio

    report = studio.verify(path)
    assert report.state in ("trusted", "valid"), report.render()
    return report


def test_menu_lists_audio_models_only(music_demo):
    _, h = music_demo
    names = [v for _, v in h.model_choices("audio")]
    assert {"tiny-music", "tiny-melody", "musicgen-small"} <= set(names)
    assert "tiny-image" not in names and "mini" not in names
    assert "tiny-music" not in [v for _, v in h.model_choices("image")]
    # the bundled mini-music is on disk, so it is the offline default; the hub built-ins are not downloaded
    assert h.default_model("audio") == "mini-music"


def test_txt2audio_clip_is_sealed_and_recorded(music_demo, first_tune):
    from PIL import Image

    _, h = music_demo
    entries, steps = first_tune
    (e,) = entries
    path = Path(e["file"])
    assert path.suffix == ".wav" and path.resolve().is_relative_to(h.out_dir / "music")
    report = is_sealed(path)
    assert report.manifest["watermark_status"] == "too_short"  # 1 s: signed, below the audio mark's minimum
    assert e["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert (e["modality"], e["mode"], e["format"], e["source"], e["model"]) == ("audio", "txt2audio", "wav", "music",
                                                                                "tiny-music")
    assert (e["duration_s"], e["sample_rate"], e["channels"]) == (1.0, RATE, 1)
    assert e["watermark_status"] == "too_short" and e["verify"] in ("trusted", "valid")
    assert e["request"]["duration"] == 1.0 and e["request"]["seed"] == 7 and e.get("width") is None
    # progress: the load, then every sampling step, said as generating (MusicGen does not denoise)
    assert steps[0][2].startswith("loading") and steps[-1][0] == steps[-1][1] and steps[-1][2] == "generating"
    # the waveform picture, drawn from the sealed file's samples
    wave = Path(h.waveform(e))
    assert wave == h.out_dir / "waveforms" / f"{e['id']}.png"
    with Image.open(wave) as im:
        assert im.format == "PNG" and im.width >= 600 and im.height >= 150
        px = im.convert("RGB")
        assert len(set(px.get_flattened_data())) > 4  # something drawn, not a blank tile
    # the picture leaves sealed like every served file, with the clip it shows as its ingredient
    report = is_sealed(wave)
    (ingredient,) = report.manifest["ingredients"]
    assert ingredient["relationship"] == "parentOf" and ingredient["has_manifest"]


def test_every_edit_is_sealed_with_the_source_as_ingredient(music_demo, first_tune):
    from PIL import Image

    _, h = music_demo
    src = uploaded(h, first_tune[0][0], "my tune.wav")
    cases = [("tiny-music", "continue", dict(extend=0.5), "audio_extend", 1.5, "flac"),
             ("tiny-music", "span", dict(span_start=0.2, span_end=0.6), "audio_inpaint", 1.0, "mp3"),
             ("tiny-melody", "vary", dict(strength=None), "audio2audio", 1.0, "wav")]
    for model, edit, kw, mode, seconds, fmt in cases:
        fields = h.music_fields(prompt="more of it", model=model, seed=2, fmt=fmt, duration=99)  # ignored by edits
        (e,) = h.music(fields, source=src, edit=edit, **kw)
        assert e["mode"] == mode and e["format"] == fmt and Path(e["file"]).suffix == "." + fmt, e
        assert abs(e["duration_s"] - seconds) < 0.05 and e["sample_rate"] == RATE, e
        assert e["request"]["init_audio"] == "my tune.wav"  # the name only, never the server path
        assert e["request"].get("duration") is None or mode == "audio2audio"
        report = is_sealed(e["file"])
        (ingredient,) = report.manifest["ingredients"]
        assert ingredient["relationship"] == "parentOf" and ingredient["has_manifest"]  # the sealed source
        if mode == "audio_inpaint":
            assert e["request"]["span"] == {"start": 0.2, "end": 0.6}
        if mode == "audio2audio":  # MusicGen-Melody keeps the melody: no strength is sent or recorded
            assert e["request"].get("strength") is None and not h.varies_at_strength(model)
        with Image.open(h.waveform(e)) as im:  # before above, after below: taller than a single panel
            assert im.height > 300
            if mode in ("audio_extend", "audio_inpaint"):  # the regenerated/added part is shaded
                # the watermark moves pixels a little: the shade is there within a few levels per channel
                shade = np.array((255, 228, 170))
                px = np.asarray(im.convert("RGB")).reshape(-1, 3).astype(int)
                assert (np.abs(px - shade).max(axis=1) <= 12).sum() > 100


def test_mode_follows_the_source_and_edit():
    from ui.handlers import music_mode

    assert music_mode() == "txt2audio"
    assert [music_mode("a.wav", e) for e in ("continue", "span", "vary")] == ["audio_extend", "audio_inpaint",
                                                                              "audio2audio"]


@pytest.mark.parametrize("fields, music, needle", [
    (dict(model="tiny-image"), {}, "the model makes image"),
    (dict(model="tiny-music", duration=0), {}, "duration must be above 0"),
    (dict(model="tiny-music", duration="long"), {}, "duration must be a number"),
    (dict(model="tiny-music", duration=99), {}, "seconds"),
    (dict(model="tiny-music", fmt="ogg"), {}, "format must be one of wav, flac, mp3"),
    (dict(model="tiny-music", steps=0), {}, "steps must be at least 1"),
    (dict(model="tiny-music"), {"edit": "span", "span_start": 0.5, "span_end": 3}, "ends after the init audio"),
    (dict(model="tiny-music"), {"edit": "span", "span_start": 0.6, "span_end": 0.2}, "must be after its start"),
    (dict(model="tiny-music"), {"edit": "span", "span_start": None, "span_end": 0.2}, "give the span"),
    (dict(model="tiny-music"), {"edit": "continue", "extend": 0}, "continue by (seconds) must be above 0"),
    (dict(model="tiny-music"), {"edit": "vary"}, "does not support audio2audio"),
    (dict(model="tiny-melody"), {"edit": "vary", "strength": 0.5}, "strength does not apply here"),
    (dict(model="tiny-music"), {"edit": "remix"}, "unknown edit"),
])
def test_bad_requests_fail_in_one_line(music_demo, first_tune, fields, music, needle):
    _, h = music_demo
    if music:
        music = {"source": uploaded(h, first_tune[0][0], "src.wav"), **music}
    before = len(h.history_entries())
    with pytest.raises((RequestError, ValueError)) as info:
        h.music(h.music_fields(prompt="a tune", **fields), **music)
    msg = user_message(info.value, h.out_dir)
    assert needle in msg and "\n" not in msg and "/tmp" not in msg, msg
    assert len(h.history_entries()) == before


def test_a_source_that_is_not_audio_says_so(music_demo):
    _, h = music_demo
    bad = h.out_dir / ".gradio" / "upload-bad" / "noise.wav"
    bad.parent.mkdir(parents=True, exist_ok=True)
    bad.write_bytes(b"RIFF....not audio at all")
    with pytest.raises(RequestError) as info:
        h.music(h.music_fields(prompt="x", model="tiny-music"), source=str(bad), edit="continue", extend=1)
    msg = user_message(info.value, h.out_dir)
    assert "noise.wav" in msg and "not a readable audio file" in msg and str(h.out_dir) not in msg


def test_the_event_streams_progress_and_ends_with_the_sealed_clip(music_demo):
    demo, h = music_demo
    outputs, exc = run_all(demo, "do_music", "a tune", "", "tiny-music", 30, 3.0, 1, 5, "flac", None, "continue",
                           2, 0, 1, 0.5, request=None, progress=lambda *a, **k: None)
    assert exc is None, exc
    lines = [o[3] for o in outputs[:-1] if isinstance(o[3], str)]
    assert any("step " in s and "elapsed" in s for s in lines), lines
    player, wave, files, status, params = outputs[-1]
    assert player == files[0] and player.endswith(".flac")
    assert status.startswith("txt2audio: sealed clip (1 s · 32 kHz mono, flac)") and "seed 5" in status, status
    assert "too short to carry the watermark" in status
    assert Path(wave).is_file() and Path(wave).parent == h.out_dir / "waveforms"
    assert params["mode"] == "txt2audio" and params["sample_rate"] == RATE and params["duration_s"] == 1.0
    assert "/" not in str(params.get("request", {}).get("model"))


def test_the_event_writes_the_error_into_the_status_and_refuses_foreign_paths(music_demo, tmp_path):
    demo, _ = music_demo
    outside = tmp_path / "elsewhere.wav"
    outside.write_bytes(b"\x00" * 64)
    for source, duration, needle in [(str(outside), 1, "is not a file uploaded to this app"),
                                     (None, -1, "duration must be above 0")]:
        outputs, exc = run_all(demo, "do_music", "a tune", "", "tiny-music", 30, 3.0, duration, 1, "wav", source,
                               "continue", 1, 0, 1, 0.5, request=None, progress=lambda *a, **k: None)
        assert isinstance(exc, gr.Error), outputs
        status = outputs[-1][3]
        assert status.startswith("**Error:**") and needle in status, status
        assert str(tmp_path) not in status and "\n" not in status


def test_the_player_never_re_encodes_the_sealed_clip(music_demo, first_tune, monkeypatch):
    """Stock gr.Audio converts a file ffprobe calls unplayable when ffmpeg is installed (or whose suffix is not
    its `format`): the browser would play an unsealed copy. The player (and the copy Gradio rebuilds from its
    class on every gr.update) hands out the sealed file."""
    from gradio import processing_utils

    demo, _ = music_demo
    clip = first_tune[0][0]["file"]
    monkeypatch.setattr(processing_utils, "ffmpeg_installed", lambda: True)
    monkeypatch.setattr(processing_utils, "audio_is_playable", lambda *_: False)
    monkeypatch.setattr(processing_utils, "convert_audio_to_playable",
                        lambda *a, **k: pytest.fail("the sealed clip was handed to ffmpeg"))
    monkeypatch.setattr(processing_utils, "audio_from_file",
                        lambda *a, **k: pytest.fail("the sealed clip was decoded for re-encoding"))
    for elem in ("mu-player", "h-audio"):
        block = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == elem)
        rebuilt = type(block)(label="x", interactive=False, format="mp3")
        for b in (block, rebuilt):
            assert b.get_block_name() == "audio"
            assert b.postprocess(clip).path == clip
    assert not list(Path(__import__("ui.app").app.__file__).parent.glob("*.pyi"))  # no stub written


def test_gallery_shows_music_and_reuse_fills_the_music_form(music_demo, first_tune):
    from ui.handlers import caption

    demo, h = music_demo
    hist = h.history_entries()
    e = next(x for x in hist if x["id"] == first_tune[0][0]["id"])
    assert e["thumb"] == h.waveform(e) and e["thumb"].endswith(".png")
    assert caption(e).startswith("♪ music 1 s · 32 kHz mono") and "too short to mark" in caption(e)
    idx = [x["id"] for x in hist].index(e["id"])
    evt = gr.SelectData(None, {"index": idx, "value": None})
    verdict, file, params, selected, video = event_fn(demo, "on_hist_select")(hist, evt)
    assert "C2PA" in verdict and file == e["file"] and not video["visible"] and params["sample_rate"] == RATE
    player = event_fn(demo, "on_hist_audio")(hist, evt)
    assert player["visible"] and player["value"] == e["file"]
    gallery = event_fn(demo, "load_history")()[0]
    assert gallery[idx][0] == e["thumb"]  # a picture tile for the clip, not the WAV
    (image_video,), exc = run_all(demo, "reuse", e)
    assert exc is None and all(v == gr.skip() for v in image_video)  # leaves Generate and Video alone
    (result,), exc = run_all(demo, "reuse_music", e)
    assert exc is None
    prompt, negative, model, steps, guidance, duration, seed, fmt, tabs, _ = result
    assert (prompt, model, duration, seed, fmt) == ("a slow sine melody", "tiny-music", 1.0, 7, "wav")
    assert tabs.selected == "music"
    to_edit = next(f for f in demo.fns.values() if f.name == "<lambda>" and  # the Gallery's "Send to Edit"
                   {"e-source", "h-count"} <= {getattr(o, "elem_id", None) for o in f.outputs}).fn
    assert "Music tab" in to_edit(e)[-1]


def test_verify_reports_music(music_demo, first_tune):
    _, h = music_demo
    head, details, data = h.verify(first_tune[0][0]["file"])
    assert head.startswith(("C2PA trusted, but no watermark found", "C2PA valid, but no watermark found")), head
    assert "too short to carry one" in head, head
    assert "**Audio:** 1 s · sample rate 32000 Hz · mono" in details, details
    assert "audio/wav" in details and "`too_short`" in details and "duration `1.0`" in details, details
    assert data["audio"] == {"duration_s": 1.0, "sample_rate": RATE, "channels": 1, "format": "wav"}
    assert str(h.out_dir) not in details


def test_served_types_for_music():
    from ui.served_files import UPLOAD_SUFFIXES, served_type

    assert served_type("a.wav") == ("audio/wav", "inline")
    assert served_type("a.flac") == ("audio/flac", "inline")
    assert served_type("a.mp3") == ("audio/mpeg", "inline")
    assert {".wav", ".flac", ".mp3"} <= UPLOAD_SUFFIXES
