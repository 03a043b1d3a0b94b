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


def test_what_the_edit_box_takes_follows_the_capability_table(clip, monkeypatch, tmp_path):
    from studio import modalities
    from ui import edit_instruct_panel as panel
    from ui.app import CLIP_UPLOADS, EDIT_MODES

    assert [m for m in EDIT_MODES if panel.takes_clips(m)] == ["instruct"]
    assert panel.source_types(EDIT_MODES, CLIP_UPLOADS) == ["image", ".mp4", ".gif", ".webm"]
    assert "or a clip in instruct mode" in panel.source_label(EDIT_MODES)
    still = tmp_path / "still.png"
    Image.new("RGB", (8, 8), "red").save(still)
    assert panel.still(str(still)) == str(still) and panel.still(clip) is None and panel.still(None) is None
    assert panel.source_field("instruct", clip) == {"init_video": clip}
    assert panel.source_field("img2img", str(still)) == {"init_image": str(still)}
    # without the table's clip row no Edit mode takes a clip: the box asks for images, a clip is refused
    monkeypatch.delitem(modalities.CAPABILITIES, ("video", "instruct"))
    assert panel.source_types(EDIT_MODES, CLIP_UPLOADS) == ["image"]
    assert "clip" not in panel.source_label(EDIT_MODES)
    with pytest.raises(RequestError, match="instruct edits an image: a clip is edited by instruction"):
        panel.source_field("instruct", clip)


def test_before_after_shows_a_clip_in_players_a_gif_clip_as_an_image_and_a_still_in_the_slider(clip, tmp_path):
    from ui.edit_instruct_panel import before_after

    still = tmp_path / "still.png"
    Image.new("RGB", (8, 8), "red").save(still)
    gif = tmp_path / "anim.gif"
    Image.new("RGB", (8, 8), "red").save(gif, save_all=True, append_images=[Image.new("RGB", (8, 8), "blue")])
    shown = lambda updates: [u.get("visible") for u in updates]  # noqa: E731
    # (slider, clip row, before player, before GIF, after player)
    assert shown(before_after(str(still), str(still))) == [True, False, False, False, False]
    mp4 = before_after(clip, clip)
    assert shown(mp4) == [False, True, True, False, True] and mp4[2]["value"] == clip and mp4[4]["value"] == clip
    from_gif = before_after(str(gif), clip)
    assert shown(from_gif) == [False, True, False, True, True] and from_gif[3]["value"] == str(gif)
    assert shown(before_after(None, clip)) == [False] * 5
