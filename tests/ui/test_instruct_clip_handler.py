"""The Edit tab's instruct mode given a clip (issue 17), at handler level: the real mini-instruct edits every frame
(64 px, 2 frames, 2 steps), the result is a sealed clip filed with the clips whose ingredient is the upload; a clip
in another edit mode is refused in one line."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

pytest.importorskip("gradio")

import studio  # noqa: E402
from studio import RequestError  # noqa: E402
from ui.handlers import Handlers  # noqa: E402


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    from safety.media import encode_mp4

    frames = []
    for x in (8, 24):
        im = Image.new("RGB", (64, 64), "white")
        ImageDraw.Draw(im).ellipse((x, 20, x + 24, 44), fill=(220, 30, 30))
        frames.append(np.asarray(im))
    path = tmp_path_factory.mktemp("ui-iv") / "upload.mp4"
    path.write_bytes(encode_mp4(np.stack(frames), 8.0, None))
    return str(path)


def test_edit_tab_instruct_mode_edits_an_uploaded_clip(clip, tmp_path):
    h = Handlers(studio.Studio(quiet=True), tmp_path / "out")
    fields = h.request_fields(prompt="make the circle blue", model="mini-instruct", steps=2, seed=3)
    [entry] = h.edit(fields, source=clip, mode="instruct", image_guidance=1.5)
    assert entry["mode"] == "instruct" and entry["model"] == "mini-instruct" and entry["source"] == "edit"
    assert entry["request"]["init_video"] == "upload.mp4" and entry["request"]["frames"] == 2  # the name only
    assert entry["file"].endswith(".mp4") and "/clips/" in entry["file"]
    report = studio.verify(entry["file"]).to_dict()
    assert report["state"] == "trusted"
    assert [i["relationship"] for i in report["manifest"]["ingredients"]] == ["parentOf"]
    with pytest.raises(RequestError) as exc:
        h.edit(fields, source=clip, mode="img2img", strength=0.5)
    assert "img2img edits an image: a clip is edited by instruction" in str(exc.value)
    assert "\n" not in str(exc.value)
