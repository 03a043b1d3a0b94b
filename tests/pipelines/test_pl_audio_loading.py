"""Music models load offline like image/video models: diffusers audio folders (family from model_index.json) and
transformers MusicGen folders (family from config.json), pickle refused, missing hub ids named, modality "audio"."""
import json
import shutil

import numpy as np
import pytest
import torch

from pipelines import (ModelLoadError, ModelNotAvailable, UnsafeCheckpoint, from_pipeline, inspect_source, load_model,
                       run_audio, tiny, tiny_audio)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
K = dict(prompt="a calm synth pad", steps=2, guidance=3.0, duration=1.0)
BUILDERS = {"musicgen": tiny_audio.tiny_musicgen, "musicgen-melody": tiny_audio.tiny_musicgen_melody,
            "stable-audio": tiny_audio.tiny_stable_audio}


def clip(model, seed=3):
    return run_audio(model, mode="txt2audio", seeds=[seed], **K)[0][0]


@pytest.mark.parametrize("key", list(BUILDERS))
def test_saved_folder_round_trips_offline(key, tmp_path):
    pipe = BUILDERS[key]()
    family = "musicgen" if key.startswith("musicgen") else key
    mem = from_pipeline(pipe)
    expected = clip(mem)
    folder = tiny_audio.save_tiny_audio(pipe, tmp_path / key)
    info = inspect_source(folder)
    assert info.kind == "folder" and info.family == family
    m = load_model(folder)
    assert m.family == family and m.modality == "audio" and m.kind == "folder"
    assert m.supports("txt2audio") and not m.supports("txt2img")
    assert m.supports("audio2audio") == (key != "musicgen")
    np.testing.assert_array_equal(clip(m), expected)
    assert m.content_hash == load_model(folder).content_hash


def test_musicgen_has_no_scheduler_and_image_models_keep_theirs(sd_model):
    m = from_pipeline(tiny_audio.tiny_musicgen())
    assert m.base_scheduler_config == {} and m.modality == "audio"
    assert sd_model.base_scheduler_config["num_train_timesteps"] == 1000
    assert sd_model.modality == "image"
    with pytest.raises(ValueError, match="txt2img is not an audio mode; this is a musicgen audio model"):
        m.pipeline_for("txt2img")
    with pytest.raises(ValueError, match="txt2audio needs an audio model"):
        sd_model.pipeline_for("txt2audio")


def test_musicgen_pickle_folder_refused(tmp_path):
    pipe = tiny_audio.tiny_musicgen()
    folder = tmp_path / "mg-pickle"
    tiny_audio.save_tiny_audio(pipe, folder)
    # transformers 5 writes only safetensors: turn the weights into the pickle file older checkpoints ship
    from safetensors.torch import load_file

    weights = folder / "model.safetensors"
    torch.save(load_file(str(weights)), folder / "pytorch_model.bin")
    weights.unlink()
    assert (folder / "pytorch_model.bin").is_file() and not list(folder.glob("*.safetensors"))
    with pytest.raises(UnsafeCheckpoint, match="allow_pickle"):
        inspect_source(folder)
    with pytest.raises(UnsafeCheckpoint, match="allow_pickle"):
        load_model(folder)
    assert load_model(folder, allow_pickle=True).family == "musicgen"


def test_stable_audio_pickle_folder_refused(tmp_path):
    pipe = tiny_audio.tiny_stable_audio()
    folder = tmp_path / "sa-pickle"
    pipe.save_pretrained(folder, safe_serialization=False)
    with pytest.raises(UnsafeCheckpoint, match="allow_pickle"):
        load_model(folder)


@pytest.mark.parametrize("family", [None, "musicgen", "stable-audio"])
def test_missing_hub_id_is_not_available(family):
    with pytest.raises(ModelNotAvailable, match="facebook/musicgen-small.*huggingface-cli download"):
        load_model("facebook/musicgen-small", family=family)


def test_musicgen_loads_from_the_offline_hub_cache(tmp_path, monkeypatch):
    import huggingface_hub.constants as hc

    pipe = tiny_audio.tiny_musicgen()
    snap = tmp_path / "hf-home" / "hub" / "models--acme--tiny-musicgen" / "snapshots" / ("a" * 40)
    tiny_audio.save_tiny_audio(pipe, snap)
    refs = snap.parent.parent / "refs"
    refs.mkdir()
    (refs / "main").write_text("a" * 40)
    assert hc.HF_HUB_CACHE == str(tmp_path / "hf-home" / "hub")
    assert inspect_source("acme/tiny-musicgen").family == "musicgen"
    m = load_model("acme/tiny-musicgen")
    assert m.kind == "hub" and m.family == "musicgen"
    np.testing.assert_array_equal(clip(m), clip(from_pipeline(pipe)))


def test_family_mismatch_refused(tmp_path):
    folder = tiny_audio.save_tiny_audio(tiny_audio.tiny_musicgen(), tmp_path / "mg")
    with pytest.raises(ModelLoadError, match="MusicGen checkpoint, not a stable-audio model"):
        load_model(folder, family="stable-audio")
    with pytest.raises(ModelLoadError, match="not a musicgen model"):
        from_pipeline(tiny.tiny_sd(), family="musicgen")
    with pytest.raises(ModelLoadError, match=r"StableAudioPipeline \(stable-audio\), not a sd1 model"):
        from_pipeline(tiny_audio.tiny_stable_audio(), family="sd1")


def test_folder_without_model_index_or_musicgen_config(tmp_path):
    folder = tmp_path / "other"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ModelLoadError, match="nor a MusicGen checkpoint"):
        load_model(folder)
    with pytest.raises(ModelLoadError, match="nor a MusicGen checkpoint"):
        inspect_source(folder)
    shutil.rmtree(folder)
