"""Motion LoRAs chosen from the prompt: a video folder's table picks one LoRA per motion phrase, the LoRA is
active for that call only (beside the request's own LoRAs), and a prompt without a phrase renders as before."""
import json

import numpy as np
import pytest
import torch

import pipelines
from pipelines import load_model, run_video, tiny, tiny_video
from pipelines.motion_loras import choose_motion, motion_table

TABLE = {"strip_trigger": True, "loras": {
    "right": {"file": "right.safetensors", "triggers": ["moving to the right", "moving right"]},
    "left": {"file": "left.safetensors", "triggers": ["moving to the left", "moving left"]}}}
K = dict(mode="txt2vid", width=32, height=32, frames=8, fps=8, steps=2, guidance=5.0, seeds=[3])


def _motion_lora(unet, path, seed: int, rank: int = 4, scale: float = 0.3) -> None:
    """A random LoRA on the motion modules' attention, in diffusers' key format."""
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(seed)
    sd = {}
    for name, mod in unet.named_modules():
        if "motion_modules" in name and isinstance(mod, torch.nn.Linear) and ".attn" in name:
            sd[f"unet.{name}.lora_A.weight"] = torch.randn(rank, mod.in_features, generator=g) * scale
            sd[f"unet.{name}.lora_B.weight"] = torch.randn(mod.out_features, rank, generator=g) * scale
    save_file(sd, str(path))


@pytest.fixture(scope="module")
def video_dir(tmp_path_factory):
    pipe = tiny_video.tiny_animatediff()
    d = tiny_video.save_tiny_video(pipe, tmp_path_factory.mktemp("motion") / "model")
    (d / "motion_loras").mkdir()
    from diffusers import UNetMotionModel

    unet = UNetMotionModel.from_unet2d(pipe.unet, pipe.motion_adapter)
    for i, m in enumerate(TABLE["loras"]):
        _motion_lora(unet, d / "motion_loras" / f"{m}.safetensors", seed=i)
    (d / "motion_loras" / "motion_loras.json").write_text(json.dumps(TABLE))
    return d


def px(clip):
    return np.stack([np.asarray(f, dtype=np.int16) for f in clip])


def test_the_longest_trigger_wins_and_is_taken_out_of_the_prompt(tmp_path):
    c = choose_motion(TABLE, "A red circle Moving to the Right on a white background", tmp_path)
    assert c.motion == "right" and c.prompt == "A red circle on a white background"
    assert c.file == tmp_path / "motion_loras" / "right.safetensors"
    assert choose_motion(TABLE, "a blue star moving left", tmp_path).prompt == "a blue star"
    assert choose_motion(TABLE, "a circle moving righteously", tmp_path) is None  # whole words only
    assert choose_motion(TABLE, "a red circle", tmp_path) is None
    assert choose_motion(None, "moving right", tmp_path) is None
    kept = choose_motion(dict(TABLE, strip_trigger=False), "a fox moving left fast", tmp_path)
    assert kept.motion == "left" and kept.prompt == "a fox moving left fast"


def test_a_broken_table_is_refused_with_its_path(tmp_path):
    assert motion_table(tmp_path) is None and motion_table(None) is None
    (tmp_path / "motion_loras").mkdir()
    path = tmp_path / "motion_loras" / "motion_loras.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match="motion_loras.json: not a motion-LoRA table"):
        motion_table(tmp_path)
    path.write_text(json.dumps(TABLE))
    with pytest.raises(ValueError, match="motion LoRA 'right' names a missing file 'right.safetensors'"):
        motion_table(tmp_path)


def test_the_prompt_picks_its_motion_lora_for_that_call_only(video_dir):
    m = load_model(video_dir)
    plain = px(run_video(m, prompt="a red circle", **K)[0])
    right = px(run_video(m, prompt="a red circle moving to the right", **K)[0])
    left = px(run_video(m, prompt="a red circle moving left", **K)[0])
    assert np.abs(right - plain).mean() > 0.5 and np.abs(left - right).mean() > 0.5
    assert not m.pipe.get_list_adapters().get("unet")  # nothing stays loaded
    assert np.array_equal(px(run_video(m, prompt="a red circle", **K)[0]), plain)
    assert np.array_equal(px(run_video(m, prompt="a red circle moving to the right", **K)[0]), right)  # replays
    # image-to-video and video-to-video pick it too
    for mode, extra in (("img2vid", {"init_image": right_frame(right)}), ("vid2vid", {"init_video": clip_of(plain)})):
        args = dict(K, mode=mode, **extra)
        a = px(run_video(m, prompt="a red circle", **args)[0])
        b = px(run_video(m, prompt="a red circle moving left", **args)[0])
        assert np.abs(a - b).mean() > 0.2, mode


def right_frame(clip):
    from PIL import Image

    return Image.fromarray(clip[0].astype(np.uint8))


def clip_of(clip):
    from PIL import Image

    return [Image.fromarray(f.astype(np.uint8)) for f in clip]


def test_the_requests_own_lora_stays_on_beside_the_motion_lora(video_dir, tmp_path):
    m = load_model(video_dir)
    style = tiny.make_tiny_lora(tiny.tiny_sd(), tmp_path / "style.safetensors", seed=1, scale=0.5)
    motion_only = px(run_video(m, prompt="a red circle moving left", **K)[0])
    with pipelines.loras_applied(m, [(style, 1.0)]):
        styled = px(run_video(m, prompt="a red circle", **K)[0])
        both = px(run_video(m, prompt="a red circle moving left", **K)[0])
        styled_again = px(run_video(m, prompt="a red circle", **K)[0])
    assert np.abs(both - motion_only).mean() > 0.5 and np.abs(both - styled).mean() > 0.5
    assert np.array_equal(styled_again, styled)  # the style LoRA is back alone after the motion call
