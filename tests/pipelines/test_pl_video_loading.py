"""Video models load offline like image models: diffusers folders (family from model_index.json), an SD1.5 base
plus a separate motion adapter, pickle refused, missing hub ids named, hashes covering the adapter."""
import json

import numpy as np
import pytest
from _pl_helpers import pattern

from pipelines import (ModelLoadError, ModelNotAvailable, UnsafeCheckpoint, from_pipeline, inspect_source,
                       load_model, run_video, tiny, tiny_video)

K = dict(prompt="a red fox running", steps=2, guidance=5.0, fps=8)
ROUND_TRIP = {
    "animatediff": (tiny_video.tiny_animatediff, {}, "txt2vid", 32, 8),
    "svd": (tiny_video.tiny_svd, {}, "img2vid", 32, 4),
    "cogvideox": (tiny_video.tiny_cogvideox, {}, "txt2vid", 16, 9),
    "cogvideox-i2v": (tiny_video.tiny_cogvideox, {"i2v": True}, "img2vid", 16, 9),
    "ltx": (tiny_video.tiny_ltx, {}, "txt2vid", 32, 9),
    "wan": (tiny_video.tiny_wan, {}, "txt2vid", 16, 9),
    "wan-i2v": (tiny_video.tiny_wan, {"i2v": True}, "img2vid", 16, 9),
}


def frames_of(model, mode, size, n, seed=3):
    init = pattern(size) if mode == "img2vid" else None
    clip = run_video(model, mode=mode, width=size, height=size, frames=n, seeds=[seed], init_image=init, **K)[0]
    return np.stack([np.asarray(f) for f in clip])


@pytest.fixture(scope="module")
def sd_base(tmp_path_factory):
    return tiny.save_tiny(tiny.tiny_sd(), tmp_path_factory.mktemp("vid-sd") / "base")


@pytest.fixture(scope="module")
def adapters(tmp_path_factory):
    d = tmp_path_factory.mktemp("adapters")
    a = tiny_video.tiny_motion_adapter(seed=10)
    a.save_pretrained(d / "a", safe_serialization=True)
    tiny_video.tiny_motion_adapter(seed=11).save_pretrained(d / "b", safe_serialization=True)
    a.save_pretrained(d / "pickle", safe_serialization=False)
    return d / "a", d / "b", d / "pickle"


@pytest.mark.parametrize("key", list(ROUND_TRIP))
def test_saved_folder_round_trips_offline(key, tmp_path):
    build, kw, mode, size, n = ROUND_TRIP[key]
    pipe = build(**kw)
    family = key.split("-")[0]
    expected = frames_of(from_pipeline(pipe), mode, size, n)
    folder = tiny_video.save_tiny_video(pipe, tmp_path / key)
    info = inspect_source(folder)
    assert info.kind == "folder" and info.family == family
    assert info.scheduler_config and info.scheduler_config["_class_name"] == type(pipe.scheduler).__name__
    m = load_model(folder)
    assert m.family == family and m.modality == "video" and m.kind == "folder"
    assert m.supports(mode)
    got = frames_of(m, mode, size, n)
    if family == "svd":
        # the CLIP image encoder's matmuls round differently on mmapped (safetensors) weights than on freshly
        # allocated ones (3.6e-7; cloning the loaded weights makes it exact): at most one level, rarely
        assert np.abs(got.astype(int) - expected).max() <= 1 and (got != expected).mean() < 0.01
    else:
        assert np.array_equal(got, expected)
    assert load_model(folder, family=family).family == family


def test_inspect_reports_video_vae_scales(tmp_path):
    assert inspect_source(tiny_video.save_tiny_video(tiny_video.tiny_ltx(), tmp_path / "ltx")).vae_scale_factor == 32
    wan_cfg = {"_class_name": "AutoencoderKLWan", "scale_factor_spatial": 16}
    folder = tiny_video.save_tiny_video(tiny_video.tiny_wan(), tmp_path / "wan")
    assert inspect_source(folder).vae_scale_factor == 8
    (folder / "vae" / "config.json").write_text(json.dumps(wan_cfg))  # Wan2.2-TI2V-5B's 16x VAE
    assert inspect_source(folder).vae_scale_factor == 16


def test_sd_base_plus_motion_adapter_is_animatediff(sd_base, adapters):
    from diffusers import AnimateDiffPipeline

    m = load_model(sd_base, motion_adapter=adapters[0])
    assert m.family == "animatediff" and type(m.pipe).__name__ == "AnimateDiffPipeline"
    assert m.motion_adapter_source == str(adapters[0])
    assert load_model(sd_base, family="animatediff", motion_adapter=adapters[0]).content_hash == m.content_hash
    # the same weights combined in memory give the same clip: the adapter's weights were the ones loaded
    ref = from_pipeline(AnimateDiffPipeline.from_pipe(tiny.tiny_sd(),
                                                      motion_adapter=tiny_video.tiny_motion_adapter(10)))
    assert np.array_equal(frames_of(m, "txt2vid", 32, 8), frames_of(ref, "txt2vid", 32, 8))
    assert m.supports("vid2vid") and m.supports("img2vid")  # img2vid: frame 0 held (animatediff_i2v)
    assert inspect_source(sd_base, motion_adapter=adapters[0]).family == "animatediff"


def test_content_hash_covers_the_adapter(sd_base, adapters):
    a = load_model(sd_base, motion_adapter=adapters[0])
    b = load_model(sd_base, motion_adapter=adapters[1])
    base = load_model(sd_base)
    assert len({a.content_hash, b.content_hash, base.content_hash}) == 3
    assert load_model(sd_base, motion_adapter=adapters[0]).content_hash == a.content_hash


def test_sd_base_without_adapter_is_refused(sd_base):
    with pytest.raises(ValueError, match="AnimateDiff needs motion_adapter=.*guoyww/animatediff-motion-adapter"):
        load_model(sd_base, family="animatediff")


def test_pickle_adapter_refused_unless_allowed(sd_base, adapters):
    assert list(adapters[2].glob("*.bin"))
    with pytest.raises(UnsafeCheckpoint, match="allow_pickle"):
        load_model(sd_base, motion_adapter=adapters[2])
    with pytest.raises(UnsafeCheckpoint):
        inspect_source(sd_base, motion_adapter=adapters[2])
    m = load_model(sd_base, motion_adapter=adapters[2], allow_pickle=True)
    assert m.family == "animatediff"


def test_missing_sources_are_named(sd_base, tmp_path):
    with pytest.raises(ModelNotAvailable) as ei:
        load_model(sd_base, motion_adapter="guoyww/animatediff-motion-adapter-v1-5-2")
    msg = str(ei.value)
    assert "guoyww/animatediff-motion-adapter-v1-5-2" in msg and "huggingface-cli download" in msg
    with pytest.raises(ModelNotAvailable, match="'Lightricks/LTX-Video' is not available offline"):
        load_model("Lightricks/LTX-Video")
    with pytest.raises(ModelNotAvailable, match="motion adapter: no such file"):
        load_model(sd_base, motion_adapter=str(tmp_path / "nope"))
    with pytest.raises(ModelLoadError, match="not a diffusers MotionAdapter"):
        load_model(sd_base, motion_adapter=tmp_path)


def test_wrong_family_and_adapter_combinations(sd_base, adapters, tmp_path):
    folder = tiny_video.save_tiny_video(tiny_video.tiny_animatediff(), tmp_path / "ad")
    assert load_model(folder).family == "animatediff"  # a complete AnimateDiff folder needs no adapter
    with pytest.raises(ValueError, match="already an AnimateDiff pipeline"):
        load_model(folder, motion_adapter=adapters[0])
    with pytest.raises(ModelLoadError, match="not a ltx model"):
        load_model(sd_base, family="ltx")
    with pytest.raises(ModelLoadError, match="not a sd1 model"):
        load_model(folder, family="sd1")
    with pytest.raises(ValueError, match="unknown family 'video'"):
        load_model(folder, family="video")
    sdxl = tiny.save_tiny(tiny.tiny_sdxl(), tmp_path / "sdxl")
    with pytest.raises(ValueError, match="needs an SD1.5 base"):
        load_model(sdxl, motion_adapter=adapters[0])
