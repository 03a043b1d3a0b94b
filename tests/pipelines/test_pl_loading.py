"""load_model: folders, single files (shipped / given configs, offline tokenizers), hub ids, pickle policy, hashes."""
import json
import os
import shutil
import time

import numpy as np
import pytest
import torch
from _pl_helpers import KW, px
from safetensors.torch import load_file, save_file

from pipelines import (LoadedModel, MissingTokenizer, ModelLoadError, ModelNotAvailable, UnsafeCheckpoint,
                       content_hash, detect_single_file, file_sha256, from_pipeline, load_model, run_image, tiny)
from pipelines import loading as L


@pytest.fixture(scope="module")
def single_file(tiny_sd_pipe, tmp_path_factory):
    d = tmp_path_factory.mktemp("single")
    f = tiny.save_tiny_single_file(tiny_sd_pipe, d / "tiny-sd1.safetensors")
    cfg = tiny.save_config_folder(tiny_sd_pipe, d / "cfg")
    cfg_no_tok = tiny.save_config_folder(tiny_sd_pipe, d / "cfg-no-tok", with_tokenizers=False)
    return f, cfg, cfg_no_tok


def _img(model, seed=3):
    return px(run_image(model, mode="txt2img", sampler="Euler", seeds=[seed], **KW)[0])


def test_folder_roundtrip_identical_pixels(sd_model, sd_dir):
    loaded = load_model(sd_dir, device="cpu")
    assert isinstance(loaded, LoadedModel)
    assert loaded.family == "sd1" and loaded.kind == "folder" and loaded.source == str(sd_dir)
    assert loaded.device == torch.device("cpu") and loaded.dtype == torch.float32
    assert np.array_equal(_img(sd_model), _img(loaded))


def test_family_from_model_index_and_unet(tmp_path):
    p = tiny.tiny_sdxl()
    d = tiny.save_tiny(p, tmp_path / "xl")
    assert L.folder_family(d) == "sdxl"
    assert load_model(d).family == "sdxl"
    assert L.family_from_pipeline("StableDiffusion3Pipeline") == "sd3"
    assert L.family_from_pipeline("FluxPipeline") == "flux"
    assert L.family_from_pipeline("StableDiffusionPipeline", {"cross_attention_dim": 1024}) == "sd2"
    assert L.family_from_pipeline("PixArtSigmaPipeline") == "other"


def test_pipeline_for_shares_components_and_is_cached(sd_dir):
    m = load_model(sd_dir)
    i2i = m.pipeline_for("img2img")
    inp = m.pipeline_for("inpaint")
    assert type(i2i).__name__ == "StableDiffusionImg2ImgPipeline"
    assert type(inp).__name__ == "StableDiffusionInpaintPipeline"
    assert i2i.unet is m.pipe.unet and inp.vae is m.pipe.vae and inp.text_encoder is m.pipe.text_encoder
    assert m.pipeline_for("img2img") is i2i and m.pipeline_for("outpaint") is inp
    assert m.supports("txt2img") and m.supports("inpaint") and not m.supports("video")
    with pytest.raises(ValueError):
        m.pipeline_for("video")


def test_content_hash_stable_cached_and_changes_with_weights(sd_dir, tmp_path):
    d = tmp_path / "copy"
    shutil.copytree(sd_dir, d)
    h1 = content_hash(d)
    assert h1 == content_hash(d) == load_model(d).content_hash
    assert len(h1) == 64 and int(h1, 16) >= 0
    # renaming/moving the folder does not change it (relative paths are hashed)
    d2 = tmp_path / "moved"
    shutil.copytree(d, d2)
    assert content_hash(d2) == h1
    # change one weight
    f = d / "unet" / "diffusion_pytorch_model.safetensors"
    sd = load_file(str(f))
    k = sorted(sd)[0]
    sd[k] = sd[k] + 1
    save_file(sd, str(f))
    assert content_hash(d) != h1
    # a config-only change does not (the hash is over weights)
    cfg = d2 / "unet" / "config.json"
    cfg.write_text(cfg.read_text().replace('"act_fn"', '"act_fn" ', 1))
    assert content_hash(d2) == h1


def test_file_hash_cache_skips_rehash(tmp_path, monkeypatch):
    f = tmp_path / "w.safetensors"
    save_file({"a": torch.ones(1000)}, str(f))
    h = file_sha256(f)
    import hashlib

    assert h == hashlib.sha256(f.read_bytes()).hexdigest()
    L._HASH_MEM.clear()  # force the on-disk cache
    calls = []
    real_open = open

    def spy(path, *a, **k):
        if str(path) == str(f):
            calls.append(path)
        return real_open(path, *a, **k)

    monkeypatch.setattr("builtins.open", spy)
    assert file_sha256(f) == h and calls == []  # served from the (path, size, mtime) cache
    monkeypatch.setattr("builtins.open", real_open)
    save_file({"a": torch.zeros(1000)}, str(f))
    os.utime(f, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
    assert file_sha256(f) != h


def test_from_pipeline_hash_tracks_weights():
    a = from_pipeline(tiny.tiny_sd(seed=0))
    b = from_pipeline(tiny.tiny_sd(seed=0))
    c = from_pipeline(tiny.tiny_sd(seed=1))
    assert a.content_hash == b.content_hash != c.content_hash


def test_single_file_is_ldm_layout_and_detected(single_file):
    f, _, _ = single_file
    keys = load_file(str(f)).keys()
    assert any(k.startswith("model.diffusion_model.input_blocks.") for k in keys)
    assert any(k.startswith("first_stage_model.encoder.down.") for k in keys)
    assert any(k.startswith("cond_stage_model.transformer.text_model.") for k in keys)
    model_type, family, shipped, _ = detect_single_file(f)
    assert (model_type, family, shipped) == ("v1", "sd1", "sd1")


def test_single_file_offline_with_config_identical_pixels(single_file, sd_model):
    f, cfg, _ = single_file
    m = load_model(f, single_file_config=cfg)
    assert m.family == "sd1" and m.kind == "single_file"
    assert m.content_hash == file_sha256(f)
    assert np.array_equal(_img(m), _img(sd_model))


def test_single_file_tokenizer_from_tokenizers_dir_and_env(single_file, tmp_path, monkeypatch, sd_model):
    f, cfg, cfg_no_tok = single_file
    with pytest.raises(MissingTokenizer) as ei:
        load_model(f, single_file_config=cfg_no_tok)
    msg = str(ei.value)
    assert "openai/clip-vit-large-patch14" in msg and "DIFFUSION_STUDIO_TOKENIZERS" in msg
    assert "huggingface-cli download openai/clip-vit-large-patch14" in msg
    tokdir = tmp_path / "toks"
    shutil.copytree(cfg / "tokenizer", tokdir / "openai" / "clip-vit-large-patch14")
    m = load_model(f, single_file_config=cfg_no_tok, tokenizers_dir=tokdir)
    assert np.array_equal(_img(m), _img(sd_model))
    monkeypatch.setenv("DIFFUSION_STUDIO_TOKENIZERS", str(tokdir))
    assert load_model(f, single_file_config=cfg_no_tok).family == "sd1"


def test_single_file_with_shipped_config_needs_the_real_tokenizer(single_file):
    f, _, _ = single_file
    with pytest.raises(MissingTokenizer, match="openai/clip-vit-large-patch14"):
        load_model(f)  # shipped sd1 config is used; nothing hub-side is touched


def test_single_file_shipped_config_resolves_offline_then_reports_shape_mismatch(single_file, tmp_path):
    f, cfg, _ = single_file
    tokdir = tmp_path / "toks"
    shutil.copytree(cfg / "tokenizer", tokdir / "sd1" / "tokenizer")
    # the shipped SD1.5 config is real-size, the checkpoint tiny: a clear load error, not a download attempt
    with pytest.raises(ModelLoadError, match="StableDiffusionPipeline"):
        load_model(f, tokenizers_dir=tokdir)


@pytest.mark.parametrize("suffix", [".ckpt", ".bin", ".pt", ".pth"])
def test_pickle_single_file_refused(tmp_path, suffix, tiny_sd_pipe):
    f = tmp_path / f"model{suffix}"
    torch.save({"state_dict": {}}, f)
    with pytest.raises(UnsafeCheckpoint) as ei:
        load_model(f)
    assert "allow_pickle" in str(ei.value) and "--allow-unsafe-pickle" in str(ei.value)
    assert isinstance(ei.value, ModelLoadError) and isinstance(ei.value, RuntimeError)


def test_pickle_single_file_allowed_with_flag(single_file, tmp_path, sd_model):
    f, cfg, _ = single_file
    ck = tmp_path / "tiny.ckpt"
    torch.save({"state_dict": load_file(str(f)), "epoch": 3}, ck)
    m = load_model(ck, allow_pickle=True, single_file_config=cfg)
    assert m.family == "sd1"
    assert np.array_equal(_img(m), _img(sd_model))


def test_pickle_only_folder_refused_and_allowed(sd_dir, tmp_path):
    d = tmp_path / "pkl"
    shutil.copytree(sd_dir, d)
    for f in d.rglob("*.safetensors"):
        sd = load_file(str(f))
        name = "pytorch_model.bin" if f.name == "model.safetensors" else f.name.replace(".safetensors", ".bin")
        torch.save(sd, f.with_name(name))
        f.unlink()
    with pytest.raises(UnsafeCheckpoint, match="allow-unsafe-pickle"):
        load_model(d)
    assert load_model(d, allow_pickle=True).family == "sd1"


def test_missing_hub_model_names_it_and_how_to_provide():
    with pytest.raises(ModelNotAvailable) as ei:
        load_model("someone/definitely-not-cached-model")
    msg = str(ei.value)
    assert "someone/definitely-not-cached-model" in msg
    assert "huggingface-cli download someone/definitely-not-cached-model" in msg and "HF_HOME" in msg


def test_hub_id_served_from_offline_cache(sd_dir, tmp_path, monkeypatch, sd_model):
    # lay out an HF cache by hand: hub/models--org--name/snapshots/<rev>/ + refs/main
    rev = "0" * 40
    repo = tmp_path / "hf-home" / "hub" / "models--tiny-org--tiny-sd"
    shutil.copytree(sd_dir, repo / "snapshots" / rev)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(rev)
    m = load_model("tiny-org/tiny-sd")
    assert m.kind == "hub" and m.family == "sd1" and m.source == "tiny-org/tiny-sd"
    assert m.content_hash == content_hash(sd_dir)
    assert np.array_equal(_img(m), _img(sd_model))


@pytest.mark.parametrize("bad", ["/no/such/dir/model.safetensors", "./missing-folder/x", "not a model id!"])
def test_nonexistent_paths_are_clear(bad):
    with pytest.raises(ModelNotAvailable, match="no such file|neither an existing path"):
        load_model(bad)


def test_folder_without_model_index(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="model_index.json"):
        load_model(tmp_path / "empty")


def test_clip_skip_shim_makes_clip_skip_work(sd_model):
    te = sd_model.pipe.text_encoder
    assert hasattr(te, "text_model") and te.text_model.final_layer_norm is te.final_layer_norm
    assert not any(k.startswith("text_model") for k in te.state_dict())  # unregistered alias
    a = run_image(sd_model, mode="txt2img", sampler="Euler", seeds=[1], clip_skip=1, **KW)[0]
    b = run_image(sd_model, mode="txt2img", sampler="Euler", seeds=[1], **KW)[0]
    assert not np.array_equal(px(a), px(b))


def test_device_dtype_strings(sd_dir):
    m = load_model(sd_dir, device="cpu", dtype="fp32")
    assert m.device.type == "cpu" and m.dtype == torch.float32
    assert m.pipe.unet.dtype == torch.float32
    with pytest.raises(ValueError):
        load_model(sd_dir, dtype="int3")


def test_model_index_of_saved_tiny_is_as_expected(sd_dir):
    idx = json.loads((sd_dir / "model_index.json").read_text())
    assert idx["_class_name"] == "StableDiffusionPipeline"
