from pathlib import Path

import pytest

from studio import StudioError, UnknownModel
from studio.registry import Registry

SD1_KEY = "model.diffusion_model.output_blocks.11.0.skip_connection.weight"
SDXL_KEY = "conditioner.embedders.1.model.transformer.resblocks.9.mlp.c_proj.bias"


def checkpoint(path: Path, *keys: str) -> Path:
    """A small but complete .safetensors file holding `keys` (the keys alone decide the detected family)."""
    import torch
    from safetensors.torch import save_file

    save_file({k: torch.zeros(4, 4) for k in keys or (SD1_KEY,)}, str(path))
    return path


def test_builtins_and_default(tmp_path):
    reg = Registry(user_file=tmp_path / "models.toml")
    assert reg.resolve(None).name == "mini"
    assert reg.resolve("sdxl").source == "stabilityai/stable-diffusion-xl-base-1.0"
    assert reg.resolve("flux-schnell").steps == 4
    assert not reg.resolve("sdxl").available_locally()  # no hub cache on a fresh machine


def test_user_toml_entries_override_and_persist(tmp_path):
    user = tmp_path / "models.toml"
    user.write_text('[models.mine]\nsource = "/nowhere/x.safetensors"\nfamily = "sdxl"\nwidth = 832\n')
    reg = Registry(user_file=user)
    assert reg.resolve("mine").width == 832 and reg.resolve("mine").family == "sdxl"
    ckpt = checkpoint(tmp_path / "m.safetensors")
    reg.add("other", str(ckpt), "sd1", steps=20)
    assert Registry(user_file=user).resolve("other").steps == 20
    assert Registry(user_file=user).resolve("other").available_locally()


def test_unknown_model_lists_known_names(tmp_path):
    reg = Registry(user_file=tmp_path / "models.toml")
    with pytest.raises(UnknownModel, match="unknown model 'nope'.*mini"):
        reg.resolve("nope")
    with pytest.raises(UnknownModel, match="does not exist"):
        reg.resolve(str(tmp_path / "missing.safetensors"))


def test_direct_paths_and_hub_ids(tmp_path):
    reg = Registry(user_file=tmp_path / "models.toml")
    folder = tmp_path / "model"
    folder.mkdir()
    assert reg.resolve(str(folder)).source == str(folder.resolve())
    assert reg.resolve("org/some-model").source == "org/some-model"


@pytest.mark.parametrize("text, needle", [
    ("[models.x]\nfamily='sd1'\n", "needs a 'source'"),
    ("[models.x]\nsource='a'\nfamly='sd1'\n", "unknown keys"),
    ("[models.x]\nsource='a'\nfamily='sd9'\n", "family must be one of"),
    ("not toml [", "not valid TOML"),
])
def test_bad_user_file_is_reported(tmp_path, text, needle):
    user = tmp_path / "models.toml"
    user.write_text(text)
    with pytest.raises(StudioError, match=needle):
        Registry(user_file=user)


def test_builtin_names_are_reserved(tmp_path):
    user = tmp_path / "models.toml"
    reg = Registry(user_file=user)
    ckpt = checkpoint(tmp_path / "m.safetensors")
    with pytest.raises(StudioError, match="'mini' is a built-in model name"):
        reg.add("mini", str(ckpt), "sd1")
    assert not user.exists()  # nothing was persisted
    assert reg.resolve("mini").builtin and reg.resolve("mini").source.endswith("weights")


def test_user_file_entry_named_like_a_builtin_is_ignored_and_reported(tmp_path, caplog):
    user = tmp_path / "models.toml"
    user.write_text('[models.mini]\nsource = "/elsewhere/evil.safetensors"\n'
                    '[models.mine]\nsource = "/nowhere/x.safetensors"\nfamily = "sdxl"\n')
    with caplog.at_level("WARNING", logger="studio.registry"):
        reg = Registry(user_file=user)
    assert reg.resolve("mini").builtin and "evil" not in reg.resolve("mini").source
    assert reg.resolve("mine").family == "sdxl"  # the rest of the file still loads
    assert len(reg.problems) == 1 and "'mini' is a built-in model name" in reg.problems[0]
    assert "ignoring model 'mini'" in caplog.text


def test_add_detects_the_family_and_stores_it(tmp_path):
    user = tmp_path / "models.toml"
    reg = Registry(user_file=user)
    assert reg.add("a", str(checkpoint(tmp_path / "a.safetensors", SD1_KEY))).family == "sd1"
    assert reg.add("b", str(checkpoint(tmp_path / "b.safetensors", SDXL_KEY))).family == "sdxl"
    assert Registry(user_file=user).resolve("b").family == "sdxl"
    folder = tmp_path / "xl"
    folder.mkdir()
    (folder / "model_index.json").write_text('{"_class_name": "StableDiffusionXLPipeline"}')
    assert reg.add("c", str(folder)).family == "sdxl"
    assert reg.add("hub", "org/some-model").source == "org/some-model"  # hub ids cannot be checked offline


@pytest.mark.parametrize("make, family, needle", [
    (lambda d: d / "missing.safetensors", "sd1", "does not exist"),
    (lambda d: _write(d / "junk.safetensors", b"x"), "sd1", "not a safetensors file"),
    (lambda d: _write(d / "huge.safetensors", (10 ** 12).to_bytes(8, "little") + b"{}"), "sd1", "implausible"),
    (lambda d: _cut(checkpoint(d / "short.safetensors"), 20), "sd1", "truncated"),  # inside the data
    (lambda d: _cut(checkpoint(d / "head.safetensors"), 60, keep=True), "sd1", "truncated"),  # inside the header
    (lambda d: _write(d / "nojson.safetensors", (4).to_bytes(8, "little") + b"abcd"), "sd1", "not JSON"),
    (lambda d: checkpoint(d / "lora.safetensors", "lora_unet_down.alpha"), None, "cannot tell the model family"),
    (lambda d: _write(d / "w.gguf", b"x"), "sd1", "must be .safetensors"),
    (lambda d: _folder(d / "plain", None), None, "no model_index.json"),
    (lambda d: _folder(d / "broken", "{not json"), "sd1", "not readable JSON"),
    (lambda d: _folder(d / "custom", '{"_class_name": "MyPipeline"}'), None, "cannot tell the model family"),
    (lambda d: Path("no-slash-name"), None, "neither a path"),
])
def test_add_refuses_what_would_not_load(tmp_path, make, family, needle):
    user = tmp_path / "models.toml"
    reg = Registry(user_file=user)
    with pytest.raises(StudioError, match=needle):
        reg.add("x", str(make(tmp_path)), family)
    assert not user.exists() and "x" not in reg.entries


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _cut(path: Path, n: int, keep: bool = False) -> Path:
    """Drop the last `n` bytes (keep=True: keep only the first `n`)."""
    data = path.read_bytes()
    path.write_bytes(data[:n] if keep else data[:-n])
    return path


def _folder(path: Path, index) -> Path:
    path.mkdir()
    if index is not None:
        (path / "model_index.json").write_text(index)
    return path


def test_registry_families_are_the_pipelines_families():
    """The registry names families without importing torch; they must be exactly what pipelines loads."""
    import pipelines
    from studio.registry import AUDIO_FAMILIES, IMAGE_FAMILIES, VIDEO_FAMILIES

    assert set(VIDEO_FAMILIES) == set(pipelines.VIDEO_FAMILIES)
    assert set(AUDIO_FAMILIES) == set(pipelines.AUDIO_FAMILIES)
    assert set(IMAGE_FAMILIES) == set(pipelines.FAMILIES) - set(VIDEO_FAMILIES) - set(AUDIO_FAMILIES)


def test_a_musicgen_folder_can_be_added_and_is_an_audio_model(tmp_path):
    from pipelines.tiny_audio import save_tiny_audio, tiny_musicgen

    from studio.registry import Registry

    folder = save_tiny_audio(tiny_musicgen(), tmp_path / "mg")
    entry = Registry(tmp_path / "models.toml").add("my-tune-model", str(folder))
    assert entry.family == "musicgen" and entry.modality == "audio"
    assert Registry(tmp_path / "models.toml").resolve("my-tune-model").modality == "audio"
