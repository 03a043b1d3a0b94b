"""The error contract (README): a malformed request prints one `error:` line and exits with status 2, and
everything checkable without the model is checked before it loads (issue 13, "Hardening")."""
import os
import re
import time

import pytest
from PIL import Image

import pipelines
import studio
from studio import RequestError, StudioError
from studio.cli import main
from studio.engine import preflight
from studio.registry import Registry


@pytest.fixture
def files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Image.new("RGB", (64, 64), "red").save("i.png")
    Image.new("L", (32, 32), 255).save("m.png")
    Image.new("RGB", (16, 16), "red").save("small.png")
    (tmp_path / "bad.png").write_bytes(b"not an image at all")
    (tmp_path / "bad.safetensors").write_bytes(b"garbage" * 10)
    (tmp_path / "lora.txt").write_text("x")
    (tmp_path / "x.ckpt").write_bytes(b"pickle")
    return tmp_path


G = ["generate", "a red circle", "-o", "out.png", "--seed", "1"]

CASES = [
    # the text forms the schema parses (pydantic's multi-line report must not leak)
    (["--init", "i.png", "--outpaint", "7,0,0,0"], "left margin 7 is not a multiple of 8"),
    (["--init", "i.png", "--outpaint", "4096,0,0,0"], "must be in [0, 2048]"),
    (["--lora", "x.safetensors:9"], "weight must be in [-4, 4]"),
    (["--lora", "x.safetensors:nan"], "weight is not a number"),
    (["--guidance", "nan"], "guidance is not a number"),
    (["--guidance", "inf"], "guidance must be a finite number"),
    (["--init", "i.png", "--strength", "nan"], "strength is not a number"),
    (["--batch", "x"], "--batch"),
    (["--dtype", "fp64"], "dtype"),
    # LoRA files, before the model loads
    (["--lora", "missing.safetensors"], "LoRA file not found"),
    (["--lora", "bad.safetensors"], "not a valid .safetensors file"),
    (["--lora", "lora.txt"], "not a LoRA weights file"),
    # devices: torch's backend list must not leak
    (["--device", "foo"], "device 'foo' is not a device name"),
    (["--device", "cuda:9"], "'cuda:9' requested"),
    # models
    (["--model", "bad.safetensors"], "not a valid .safetensors file"),
    (["--model", "i.png"], "not a checkpoint file"),
    (["--model", "x.ckpt"], "--allow-unsafe-pickle"),
    (["--model", "no-such-model"], "unknown model 'no-such-model'"),
    # the sampler against the mini model's scheduler config, read from disk
    (["--sampler", "DPM++ 2M Karras"], "infinite"),
    (["--sampler", "Flow-match Euler"], "needs a flow-matching model"),
    # inputs
    (["--init", "bad.png"], "is not a readable image"),
    (["--init", "missing.png"], "does not exist"),
    (["--init", "i.png", "--mask", "m.png"], "must be the same size"),
    (["--init", "small.png"], "width 16 (the init image's size"),
    (["--init", "i.png", "--outpaint", "2048,0,2048,0"], "must be in [64, 4096]"),
    # size against the CPU budget
    (["--device", "cpu", "--width", "4096", "--height", "4096"], "over the CPU budget"),
    (["--device", "cpu", "--width", "2048", "--height", "2048", "--batch", "2"], "over the CPU budget"),
]


def assert_one_error_line(err: str, needle: str) -> None:
    assert err.endswith("\n") and err.count("\n") == 1, repr(err)
    assert err.startswith("error: "), err
    assert needle in err, err
    for leak in ("Traceback", "pydantic", "0x", "errors.pydantic.dev", "[type="):
        assert leak not in err, err
    assert_no_class_names(err)


def assert_no_class_names(err: str) -> None:
    # an exception's class name as a prefix ("ModelNotAvailable:", "SafetensorError:", "BadParameter:") or
    # as the reason ("not available offline: LocalEntryNotFoundError")
    assert not re.search(r"\b[A-Z][a-z]+(?:[A-Z][a-z]*)+:", err), err
    assert not re.search(r"\b[A-Z]\w*(?:Error|Exception)\b", err), err


@pytest.mark.parametrize("args, needle", CASES, ids=[" ".join(a) for a, _ in CASES])
def test_malformed_request_is_one_error_line_exit_2_before_any_load(args, needle, files, no_load, capsys):
    started = time.perf_counter()
    code = main(G + args)
    elapsed = time.perf_counter() - started
    err = capsys.readouterr().err
    assert code == 2, err
    assert_one_error_line(err, needle)
    assert not (files / "out.png").exists()
    # the request is refused from a few small files; what time there is goes to importing torch once
    assert elapsed < 30


@pytest.mark.parametrize("args, needle", [
    ([], "Missing option '-o'"),
    (["-o", "x.png", "--bogus"], "No such option"),
])
def test_usage_errors_are_one_line(args, needle, files, capsys):
    assert main(["generate", "a cat", *args]) == 2
    assert_one_error_line(capsys.readouterr().err, needle)


def test_unexpected_bug_exits_1_with_one_readable_line(files, monkeypatch, capsys):
    def boom(self, *a, **k):
        raise KeyError("first line\nsecond line")

    monkeypatch.setattr(studio.Studio, "generate", boom)
    assert main(G) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: internal error (KeyError): "), err
    assert "first line" in err and "Traceback" not in err


def test_python_api_messages_do_not_show_object_reprs(no_load):
    with pytest.raises(RequestError) as exc:
        studio.Studio().generate(prompt="a red circle", init_image=b"garbage bytes", seed=1)
    msg = str(exc.value)
    assert "init image (bytes) is not a readable image" in msg and "0x" not in msg and "BytesIO" not in msg


# -- preflight: public, and used by every generation before the load ------------------------------------------
@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    from pipelines.tiny import save_tiny, tiny_sd

    return save_tiny(tiny_sd(vae_scale=8), tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture
def registry(tmp_path, tiny_folder):
    toml = tmp_path / "models.toml"
    toml.write_text(f'[models.tiny]\nsource = "{tiny_folder}"\nwidth = 256\nheight = 256\nsteps = 2\n')
    return Registry(user_file=toml)


def _req(**kw):
    kw.setdefault("prompt", "a red circle")
    kw.setdefault("model", "tiny")
    return studio.GenerationRequest.build(**kw)


@pytest.mark.parametrize("fields, needle", [
    ({"sampler": "Flow-match Euler"}, "needs a flow-matching model"),
    ({"loras": [{"path": "missing.safetensors"}]}, "LoRA file not found"),
    ({"device": "foo"}, "not a device name"),
    ({"width": 4096, "height": 4096, "device": "cpu"}, "over the CPU budget"),
    ({"init_image": "i.png", "mask": "m.png"}, "must be the same size"),
])
def test_bad_request_on_registered_model_fails_without_loading(fields, needle, files, registry, no_load):
    started = time.perf_counter()
    with pytest.raises(RequestError, match=re.escape(needle)):
        preflight(_req(**fields), registry)
    assert time.perf_counter() - started < 1.0
    with pytest.raises(RequestError, match=re.escape(needle)):
        studio.Studio(registry=registry).generate(_req(**fields))


def test_good_request_passes_preflight_and_reaches_the_load(files, registry, no_load):
    request = _req(sampler="Euler", init_image="i.png", strength=0.5)
    assert preflight(request, registry) is None
    assert studio.Studio(registry=registry).check(request) is None
    with pytest.raises(AssertionError, match="model load reached"):
        studio.Studio(registry=registry).generate(request)


def test_preflight_without_device_checks_for_a_validator_elsewhere(files, registry):
    request = _req(device="cuda:7", width=4096, height=4096)
    preflight(request, registry, check_device=False)  # the renderer, not this machine, has the GPU


def test_load_errors_are_one_line_studio_errors(files, monkeypatch, capsys):
    """What only the load can find (here: a hub id not in the offline cache) is exit 1, one line, no class."""
    assert main(G + ["--model", "nobody/not-cached"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: model 'nobody/not-cached' is not available")
    assert_no_class_names(err)


def test_lora_that_does_not_fit_the_model_is_a_request_error(files, registry, tmp_path):
    from safetensors.torch import save_file
    import torch

    save_file({"lora_unet_nothing_here.lora_down.weight": torch.zeros(2, 2)}, str(tmp_path / "alien.safetensors"))
    with pytest.raises((RequestError, StudioError)) as exc:
        studio.Studio(registry=registry).generate(_req(loras=[{"path": str(tmp_path / "alien.safetensors")}],
                                                       steps=1, width=64, height=64))
    assert "\n" not in str(exc.value) and "alien.safetensors" in str(exc.value)


@pytest.mark.parametrize("extra", [["--device", "cuda:9"], ["--width", "4096", "--height", "4096"]])
def test_cheap_refusals_do_not_wait_for_the_diffusers_import(extra, tmp_path):
    """Importing diffusers costs seconds on a small machine: a request refused on its device or size must not
    pay for it (only the sampler check needs diffusers' scheduler classes, so it runs last)."""
    import subprocess
    import sys

    code = ("import sys; from studio.cli import main; "
            f"rc = main(['generate', 'a red circle', '-o', {str(tmp_path / 'x.png')!r}, *{extra!r}]); "
            "print(rc, 'diffusers' in sys.modules)")
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.stdout.split() == ["2", "False"], (out.stdout, out.stderr)
    assert out.stderr.startswith("error: ") and out.stderr.count("\n") == 1, out.stderr
