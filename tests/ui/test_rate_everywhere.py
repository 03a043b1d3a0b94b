"""Rating buttons on the Edit, Video and Music tabs, through the app's own event functions: a click rates the
sealed file the tab shows for this page (never a browser-sent path), the stored item's sha256 is the sealed
file's and its record is the one the seal carries, and a bad click (nothing shown yet, another page's result,
a file changed since it was sealed) answers one line. The engine is faked, the seal is the real one: the
fake studio seals tiny media with `studio.writer.seal_outputs`, as the engine does."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

gr = pytest.importorskip("gradio")

from studio import GenerationRecord  # noqa: E402
from studio.metadata import output_params  # noqa: E402
from studio.registry import ModelEntry  # noqa: E402
from studio.rewards import RatingStore  # noqa: E402

from test_handlers import app_fn  # noqa: E402


class SealingStudio:
    """Seals a 4-frame clip, a 1 s tone or a still where the engine would render one; remembers what it sealed."""

    def __init__(self, registry):
        self.registry = registry
        self.sealed = []  # (path, the params the seal carries)

    def generate(self, request, *, out=None, **_):
        from PIL import Image

        from studio.writer import seal_outputs

        mod = request.modality or "image"
        req = request.model_copy(update={"seed": 3, "steps": 2, "guidance": 5.0, "sampler": "Euler", "width": 64,
                                         "height": 64, "output_format": request.output_format or "png",
                                         **({"fps": 8.0, "frames": 4} if mod == "video" else {})})
        record = GenerationRecord(request=req, mode=req.mode, model_name=req.model, model_source="/m",
                                  model_family={"video": "animatediff", "audio": "musicgen"}.get(mod, "sd1"),
                                  model_hash="7" * 64, sampler="Euler", device="cpu", dtype="float32", versions={},
                                  elapsed_s=0.01)
        if mod == "video":
            media = [Image.new("RGB", (64, 64), (200, 30, 20 * i)) for i in range(4)]
        elif mod == "audio":
            media = ((0.3 * np.sin(np.arange(16000) / 5.0)).astype(np.float32), 16000)
        else:
            media = Image.new("RGB", (256, 256), (30, 200, 30))
        outs = seal_outputs([media], record, seeds=[3], out=Path(out))
        record.outputs = [o.record for o in outs]
        self.sealed.append((Path(outs[0].record.path), output_params(record, 0, 3)))
        return SimpleNamespace(record=record, outputs=[SimpleNamespace(path=o.record.path, record=o.record)
                                                       for o in outs])


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The app over the sealing studio, in a home of its own (the default rating store is this module's)."""
    from studio import Registry
    from ui.app import build_app

    tmp_path = tmp_path_factory.mktemp("rate-everywhere")
    mp = pytest.MonkeyPatch()
    mp.setenv("DIFFUSION_STUDIO_HOME", str(tmp_path / "home"))
    registry = Registry(user_file=tmp_path / "models.toml")
    registry.entries["fake"] = ModelEntry(name="fake", source="/m", family="sd1", width=64, height=64, origin="test")
    registry.entries["fake-video"] = ModelEntry(name="fake-video", source="/m", family="animatediff", origin="test")
    registry.entries["fake-music"] = ModelEntry(name="fake-music", source="/m", family="musicgen", origin="test")
    yield build_app(SealingStudio(registry), tmp_path / "out", verify_on_write=False)
    mp.undo()


def page(session: str):
    return SimpleNamespace(session_hash=session)  # what Gradio hands an event as its gr.Request


def stored(demo, kind: str):
    path, params = demo.ui_handlers.studio.sealed[-1]
    r = RatingStore().ratings()[-1]
    assert r["kind"] == kind
    item = r["item"]
    assert item["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()  # the sealed file, as written
    assert item["record"] == json.loads(json.dumps(params))  # what the seal carries, read back verified
    return item


def test_a_rating_on_a_clip_or_a_music_result_stores_the_sealed_file_and_its_record(demo):
    h = demo.ui_handlers
    before = RatingStore().count()["total"]
    h.video(h.video_fields(prompt="a red ball bouncing", model="fake-video", fmt="mp4"), session="A")
    line = app_fn(demo, "video_rate_up")(request=page("A"))
    assert line.startswith("👍 thumbs up recorded for seed 3") and f"Ratings so far: {before + 1}" in line
    item = stored(demo, "like")
    assert (item["modality"], item["format"], item["prompt"]) == ("video", "mp4", "a red ball bouncing")
    h.video(h.video_fields(prompt="a red ball bouncing", model="fake-video", fmt="gif"), session="A")
    assert "thumbs up recorded" in app_fn(demo, "video_rate_up")(request=page("A"))
    assert stored(demo, "like")["format"] == "gif"  # an animated GIF's seal reads back too

    h.music(h.music_fields(prompt="a slow sine melody", model="fake-music", fmt="wav"), session="A")
    assert "thumbs down recorded" in app_fn(demo, "music_rate_down")(request=page("A"))
    item = stored(demo, "dislike")
    assert (item["modality"], item["format"], item["record"]["model_hash"]) == ("audio", "wav", "7" * 64)
    assert RatingStore().count()["total"] == before + 3
    assert app_fn(demo, "video_rate_up")(request=page("B")) == "**Error:** generate a clip first"  # not B's


def test_an_edit_result_is_rated_and_bad_clicks_are_one_line(demo, tmp_path):
    """Page C: a fresh page (session) of the same app."""
    from PIL import Image

    h = demo.ui_handlers
    for tab, noun in (("edit", "run an edit"), ("video", "generate a clip"), ("music", "generate music")):
        line = app_fn(demo, f"{tab}_rate_up")(request=page("C"))  # nothing shown on this page yet
        assert line == f"**Error:** {noun} first"
    src = tmp_path / "src.png"
    Image.new("RGB", (64, 64), (10, 10, 200)).save(src)
    fields = h.request_fields(prompt="make it green", model="fake", seed=3)
    h.edit(fields, source=str(src), mode="img2img", strength=0.5, session="C")
    assert "thumbs up recorded" in app_fn(demo, "edit_rate_up")(request=page("C"))
    rec = stored(demo, "like")["record"]
    assert rec["mode"] == "img2img" and rec["request"]["strength"] == 0.5

    # a result changed since its seal is refused, and nothing is stored
    before = RatingStore().count()["total"]
    path, _ = h.studio.sealed[-1]
    path.write_bytes(path.read_bytes()[:-40] + b"\0" * 40)
    line = app_fn(demo, "edit_rate_down")(request=page("C"))
    assert line.startswith("**Error:** cannot rate ") and "\n" not in line
    assert RatingStore().count()["total"] == before
