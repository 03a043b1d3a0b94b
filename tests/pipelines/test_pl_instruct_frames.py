"""Instruction edits of a clip's frames (issue 17): one pipeline batch per chunk, every frame seeded alike."""
import numpy as np
import pytest
from PIL import Image, ImageDraw

import pipelines
from pipelines.instruct import INSTRUCT_FAMILIES, run_instruct, run_instruct_frames
from pipelines.tiny_control import tiny_ip2p, tiny_kontext


def _frame(x: int) -> Image.Image:
    im = Image.new("RGB", (32, 32), "white")
    ImageDraw.Draw(im).ellipse((x, 8, x + 12, 20), fill="red")
    return im


@pytest.fixture(scope="module")
def ip2p():
    return pipelines.from_pipeline(tiny_ip2p())


KW = dict(prompt="make the circle blue", width=32, height=32, steps=2, guidance=4.0)


def test_frames_share_their_noise_so_a_still_clip_stays_still(ip2p):
    still = [_frame(4)] * 3
    calls = []
    (clip,) = run_instruct_frames(ip2p, frames=still, seeds=[5], chunk=2,
                                  callback=lambda s, t, lat: calls.append((s, t)), **KW)
    arr = [np.asarray(f) for f in clip]
    assert len(clip) == 3 and all(np.array_equal(arr[0], a) for a in arr[1:])  # across chunks too
    assert calls[-1] == (4, 4)  # two chunks of two steps
    # the frame's edit is the image edit with the same seed
    assert np.abs(arr[0].astype(int) - np.asarray(run_instruct(ip2p, init_image=still[0], seeds=[5], **KW)[0])
                  .astype(int)).max() <= 2
    moving = run_instruct_frames(ip2p, frames=[_frame(4), _frame(14)], seeds=[5, 6], **KW)
    assert len(moving) == 2 and not np.array_equal(np.asarray(moving[0][0]), np.asarray(moving[0][1]))
    assert not np.array_equal(np.asarray(moving[0][0]), np.asarray(moving[1][0]))  # each seed its own clip


def test_families_that_edit_single_images_and_long_clips_are_refused(ip2p):
    assert INSTRUCT_FAMILIES["flux-kontext"].max_frames == INSTRUCT_FAMILIES["qwen-edit"].max_frames == 0
    kontext = pipelines.from_pipeline(tiny_kontext())
    with pytest.raises(ValueError, match="FLUX.1 Kontext edits single images"):
        run_instruct_frames(kontext, frames=[_frame(4)], **KW)
    limit = INSTRUCT_FAMILIES["ip2p"].max_frames
    with pytest.raises(ValueError, match=f"{limit + 1} frames is over the {limit}"):
        run_instruct_frames(ip2p, frames=[_frame(4)] * (limit + 1), **KW)
