"""The Video tab's handlers with a real studio and tiny random video pipelines (issue 15): every clip that
reaches the browser is the sealed file (C2PA valid), its record says what it is (modality, mode, format,
frames, fps), the mode follows the source given (txt2vid, img2vid from a still, vid2vid from a clip), the
Gallery and Verify show clips, and a bad request fails in one line. No browser (tests/ui/test_browser_video.py
drives the same in chromium)."""
from __future__ import annotations

import inspect
import shutil
from pathlib import Path

import pytest

gr = pytest.importorskip("gradio")

from studio import RequestError  # noqa: E402
from ui.errors import user_message  # noqa: E402
from ui_testutil import VIDEO_FRAMES, VIDEO_SIZE, add_tiny_video_model  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def video_demo(tmp_path_factory, _studio_home):
    """The app over a studio whose registry holds a tiny AnimateDiff (txt2vid/vid2vid), a tiny SVD (img2vid)
    and an image model; (demo, handlers)."""
    import studio
    from pipelines.tiny import save_tiny, tiny_sd
    from studio import Registry
    from ui.app import build_app

    root = tmp_path_factory.mktemp("video-ui")
    registry = Registry(user_file=root / "models.toml")
    add_tiny_video_model(registry, root / "tiny-ad", "tiny-video", "animatediff")
    add_tiny_video_model(registry, root / "tiny-svd", "tiny-svd", "svd")
    save_tiny(tiny_sd(seed=0), root / "tiny-sd")
    registry.add("tiny-image", str(root / "tiny-sd"), "sd1", width=64, height=64, steps=2)
    demo = build_app(studio.Studio(registry, quiet=True), root / "out")
    return demo, demo.ui_handlers


@pytest.fixture(scope="module")
def first_clip(video_demo):
    """One txt2vid clip through the handler, with its progress calls and live previews."""
    _, h = video_demo
    steps, previews = [], []
    fields = h.video_fields(prompt="a red ball bouncing", model="tiny-video", steps=6, seed=7, frames=VIDEO_FRAMES,
                            fps=8)
    entries = h.video(fields, progress=lambda d, t, desc: steps.append((d, t, desc)), preview=previews.append,
                      session="test")
    return entries, steps, previews


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


def test_txt2vid_clip_is_sealed_and_recorded(video_demo, first_clip):
    import studio

    _, h = video_demo
    entries, steps, previews = first_clip
    assert len(entries) == 1
    e = entries[0]
    path = Path(e["file"])
    assert path.suffix == ".mp4" and path.resolve().is_relative_to(h.out_dir / "clips")
    report = studio.verify(path)
    assert report.state in ("trusted", "valid"), report.render()
    assert report.video["frames"] == VIDEO_FRAMES
    assert e["sha256"] == __import__("hashlib").sha256(path.read_bytes()).hexdigest()
    assert (e["modality"], e["mode"], e["format"], e["frames"], e["fps"]) == ("video", "txt2vid", "mp4", 8, 8.0)
    assert (e["width"], e["height"], e["source"], e["model"]) == (VIDEO_SIZE, VIDEO_SIZE, "video", "tiny-video")
    assert e["request"]["frames"] == 8 and e["request"]["steps"] == 6 and e["verify"] in ("trusted", "valid")
    # progress: the load, then every step; previews: sealed PNGs of the clip in flight (every 5th step)
    assert steps[0][2].startswith("loading") and (6, 6, "denoising") in steps
    assert previews and all(studio.verify(p).state in ("trusted", "valid") for p in previews)
    assert all(Path(p).resolve().is_relative_to(h.out_dir / "previews") for p in previews)
    # the history (Gallery) lists it with what the Gallery shows about a clip
    hist = h.history_entries()
    assert hist[0]["id"] == e["id"] and hist[0]["modality"] == "video"
    from ui.handlers import caption, params_view

    assert caption(hist[0]).startswith("clip 8 frames @ 8 fps")
    view = params_view(hist[0])
    assert view["frames"] == 8 and view["fps"] == 8.0 and view["format"] == "mp4"
    assert "/" not in str(view.get("request", {}).get("model"))


def test_gif_format(video_demo):
    import studio

    _, h = video_demo
    fields = h.video_fields(prompt="a spinning cube", model="tiny-video", seed=3, fmt="gif")
    e = h.video(fields)[0]
    assert e["file"].endswith(".gif") and e["format"] == "gif" and e["frames"] == VIDEO_FRAMES
    assert studio.verify(e["file"]).state in ("trusted", "valid")


def test_vid2vid_from_an_uploaded_clip(video_demo, first_clip):
    import studio

    _, h = video_demo
    upload = h.out_dir / ".gradio" / "upload-1" / "my clip.mp4"  # where Gradio keeps an upload
    upload.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(first_clip[0][0]["file"], upload)
    fields = h.video_fields(prompt="the same ball, in blue", model="tiny-video", seed=9)
    e = h.video(fields, clip=str(upload), strength=0.5)[0]
    assert e["mode"] == "vid2vid" and e["request"]["strength"] == 0.5
    assert e["request"]["init_video"] == "my clip.mp4"  # the name only, never the server path
    report = studio.verify(e["file"])
    assert report.state in ("trusted", "valid"), report.render()
    ingredients = (report.manifest or {}).get("ingredients") or []
    assert ingredients and ingredients[0].get("has_manifest"), report.to_dict()  # the sealed source clip


def test_img2vid_animates_a_still(video_demo, tmp_path):
    import studio
    from PIL import Image

    _, h = video_demo
    still = h.out_dir / ".gradio" / "upload-2" / "still.png"
    still.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (VIDEO_SIZE, VIDEO_SIZE), (200, 30, 30)).save(still)
    fields = h.video_fields(prompt="the ball rolls away", model="tiny-svd", seed=1)
    e = h.video(fields, image=str(still))[0]
    assert e["mode"] == "img2vid" and e["frames"] == VIDEO_FRAMES and e["request"]["init_image"] == "still.png"
    assert studio.verify(e["file"]).state in ("trusted", "valid")


def test_mode_follows_the_source():
    from ui.handlers import video_mode

    assert (video_mode(), video_mode("a.png"), video_mode(None, "b.mp4")) == ("txt2vid", "img2vid", "vid2vid")


@pytest.mark.parametrize("kwargs, source, needle", [
    (dict(model="tiny-image"), {}, "the model makes image"),
    (dict(model="tiny-video", fps=0), {}, "fps must be above 0"),
    (dict(model="tiny-video", frames="many"), {}, "frames must be a number"),
    (dict(model="tiny-video", frames=2.5), {}, "frames must be a whole number"),
    (dict(model="tiny-video", fmt="webm"), {}, "format must be one of mp4, gif"),
    (dict(model="tiny-video"), {"image": "x.png", "clip": "y.mp4"}, "not both"),
    (dict(model="tiny-video", width=70), {}, "multiple of"),
])
def test_bad_requests_fail_in_one_line(video_demo, kwargs, source, needle):
    _, h = video_demo
    before = len(h.history_entries())
    with pytest.raises((RequestError, ValueError)) as info:
        h.video(h.video_fields(prompt="a ball", **kwargs), **source)
    msg = user_message(info.value, h.out_dir)
    assert needle in msg and "\n" not in msg and "/tmp" not in msg, msg
    assert len(h.history_entries()) == before


def test_img2vid_on_a_text_to_video_model_says_why(video_demo):
    _, h = video_demo
    still = h.out_dir / ".gradio" / "upload-3" / "still.png"
    still.parent.mkdir(parents=True, exist_ok=True)
    from PIL import Image

    Image.new("RGB", (VIDEO_SIZE, VIDEO_SIZE), (20, 30, 200)).save(still)
    try:
        e = h.video(h.video_fields(prompt="a ball", model="tiny-video"), image=str(still))[0]
    except RequestError as exc:  # AnimateDiff without an image-to-video path
        msg = user_message(exc, h.out_dir)
        assert "img2vid" in msg and "\n" not in msg and str(h.out_dir) not in msg
    else:  # AnimateDiff that animates a still (pipelines.animatediff_i2v)
        assert e["mode"] == "img2vid"


def test_the_event_writes_the_error_into_the_status_and_refuses_foreign_paths(video_demo, tmp_path):
    demo, h = video_demo
    outside = tmp_path / "elsewhere.mp4"
    outside.write_bytes(b"\x00" * 64)
    args = ["a ball", "", "tiny-video", "Model default", 2, 5.0, 8, 8, 64, 64, 1, "mp4"]
    for image, clip, needle in [(None, str(outside), "is not a file uploaded to this app"),
                                (None, None, None)]:
        bad = args if needle else args[:4] + [0] + args[5:]  # steps 0
        outputs, exc = run_all(demo, "do_video", *bad, image, clip, 0.6, request=None,
                               progress=lambda *a, **k: None)
        assert isinstance(exc, gr.Error), outputs
        status = outputs[-1][3]
        assert status.startswith("**Error:**") and (needle or "steps must be at least 1") in status, status
        assert str(tmp_path) not in status and "\n" not in status


def test_the_event_streams_progress_and_ends_with_the_sealed_clip(video_demo):
    demo, h = video_demo
    outputs, exc = run_all(demo, "do_video", "a ball", "", "tiny-video", "Model default", 2, 5.0, 8, 8, 64, 64, 5,
                           "mp4", None, None, 0.6, request=None, progress=lambda *a, **k: None)
    assert exc is None
    lines = [o[3] for o in outputs[:-1] if isinstance(o[3], str)]
    assert any("step 2/2" in s and "elapsed" in s for s in lines), lines
    player, still, files, status, params, live = outputs[-1]
    assert player["value"] == files[0] and player["visible"] and not still["visible"]
    assert status.startswith("txt2vid: sealed clip (8 frames @ 8 fps, 64×64, mp4)") and "seed 5" in status
    assert params["frames"] == 8 and params["mode"] == "txt2vid"


def test_the_player_never_re_encodes_the_sealed_clip(video_demo, first_clip, monkeypatch):
    """Stock gr.Video converts a clip ffprobe calls unplayable when ffmpeg is installed: the browser would get
    an unsealed copy. The player (and the copy Gradio rebuilds from its class on every gr.update) does not."""
    from gradio import processing_utils

    demo, _ = video_demo
    clip = first_clip[0][0]["file"]
    monkeypatch.setattr(processing_utils, "ffmpeg_installed", lambda: True)
    monkeypatch.setattr(processing_utils, "video_is_playable", lambda *_: False)
    monkeypatch.setattr(processing_utils, "convert_video_to_playable_mp4",
                        lambda *a, **k: pytest.fail("the sealed clip was handed to ffmpeg"))
    for elem in ("vd-player", "h-video"):
        block = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == elem)
        rebuilt = type(block)(label="x", interactive=False)
        for b in (block, rebuilt):
            assert b.get_block_name() == "video"
            assert b.postprocess(clip).path == clip
    assert not list(Path(__import__("ui.app").app.__file__).parent.glob("*.pyi"))  # no stub written


def test_gallery_shows_a_clip_and_reuse_fills_the_video_form(video_demo, first_clip):
    demo, h = video_demo
    e = next(x for x in h.history_entries() if x["id"] == first_clip[0][0]["id"])
    select = event_fn(demo, "on_hist_select")
    idx = [x["id"] for x in h.history_entries()].index(e["id"])
    verdict, file, params, selected, player = select(h.history_entries(), gr.SelectData(None, {"index": idx, "value": None}))
    assert "C2PA" in verdict and file == e["file"] and params["frames"] == 8
    assert player["visible"] and player["value"] == e["file"]
    (result,), exc = run_all(demo, "reuse", e)
    assert exc is None
    image_part, video_part, tabs = result[:11], result[11:23], result[23]
    assert all(v == gr.skip() for v in image_part)
    prompt, negative, model, sampler, steps, guidance, frames, fps, width, height, seed, fmt = video_part
    assert (prompt, model, steps, frames, fps, width, seed, fmt) == ("a red ball bouncing", "tiny-video", 6, 8, 8.0,
                                                                     64, 7, "mp4")
    assert tabs.selected == "video"


def test_verify_reports_a_clip(video_demo, first_clip):
    _, h = video_demo
    head, details, data = h.verify(first_clip[0][0]["file"])
    assert head.startswith(("Authentic", "C2PA trusted", "C2PA valid")), head
    assert "**Clip:** 8 frames @ 8 fps" in details and "64×64" in details
    assert "frames `8`" in details and "fps `8.0`" in details and "txt2vid" in details
    assert "Watermark" in details and data["video"]["frames"] == 8
    assert str(h.out_dir) not in details


def test_served_types_for_clips():
    from ui.served_files import served_type

    assert served_type("clip.mp4") == ("video/mp4", "inline")
    assert served_type("clip.GIF") == ("image/gif", "inline")
    assert served_type("page.html") == ("application/octet-stream", "attachment")
