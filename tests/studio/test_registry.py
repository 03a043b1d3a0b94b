from pathlib import Path

import pytest

from studio import StudioError, UnknownModel
from studio.registry import Registry


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
    ckpt = tmp_path / "m.safetensors"
    ckpt.write_bytes(b"x")
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
