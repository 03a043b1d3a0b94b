"""The CLI's error contract: a malformed request prints one `error:` line and exits non-zero."""
import json

import pytest

from studio.cli import main


@pytest.mark.parametrize("args, needle", [
    (["generate", "a cat", "-o", "x.png", "--width", "250"], "width 250 is not a multiple of 8"),
    (["generate", "a cat", "-o", "x.png", "--steps", "0"], "steps"),
    (["generate", "a cat", "-o", "x.png", "--sampler", "nonsense"], "unknown sampler"),
    (["generate", "a cat", "-o", "x.png", "--init", "a.png", "--strength", "2"], "strength"),
    (["generate", "a cat", "-o", "x.png", "--outpaint", "1,2"], "LEFT,TOP,RIGHT,BOTTOM"),
    (["generate", "a cat", "-o", "x.png", "--mask", "m.png"], "mask given without init_image"),
    (["generate", "a cat", "-o", "x.png", "--model", "no-such-model"], "unknown model 'no-such-model'"),
])
def test_malformed_request_one_line_nonzero(args, needle, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = main(args)
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert err.count("\n") == 0, err
    assert err.startswith("error:") and needle in err
    assert not (tmp_path / "x.png").exists()


def test_models_lists_builtins_as_json(capsys):
    assert main(["models", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert {"mini", "sd15", "sdxl", "sd35-medium", "flux-schnell"} <= set(rows)
    assert rows["sdxl"]["available"] is False


def test_info_on_missing_file_exits_3(capsys, tmp_path):
    assert main(["info", str(tmp_path / "nope.png")]) == 3
    assert "does not exist" in capsys.readouterr().err


def test_models_warns_about_an_ignored_models_toml_entry(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFUSION_STUDIO_HOME", str(tmp_path))
    (tmp_path / "models.toml").write_text('[models.mini]\nsource = "/elsewhere/x.safetensors"\n')
    assert main(["models", "--json"]) == 0
    captured = capsys.readouterr()
    assert captured.err.startswith("warning: ") and "'mini' is a built-in model name" in captured.err
    assert {r["name"]: r for r in json.loads(captured.out)}["mini"]["origin"] == "builtin"
