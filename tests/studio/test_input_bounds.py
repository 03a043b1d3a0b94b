"""Resource bounds (issue 13): nothing a user sends can exhaust the machine. Input files are bounded in bytes
before they are read and in pixels before they are decoded, verify likewise, and a request's size against
the device's pixel budget; each refusal is one line naming the limit."""
import struct
import zlib

import pytest
import torch
from PIL import Image

import pipelines
import studio
from studio import RequestError, limits
from studio.cli import main


def declared_png(path, width, height):
    """A valid PNG header declaring width x height 1-bit pixels, with almost no pixel data: a few dozen
    bytes that would decode to hundreds of MB."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))
    return path


def sparse_file(path, size):
    """A file of `size` bytes that takes no disk space (the byte cap must be checked before reading it)."""
    with open(path, "wb") as f:
        f.truncate(size)
    return path


@pytest.fixture
def inputs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    declared_png(tmp_path / "bomb.png", 20000, 20000)  # past twice PIL's own limit: PIL raises
    declared_png(tmp_path / "big.png", 9000, 9000)  # under PIL's limit, over ours
    sparse_file(tmp_path / "huge.png", limits.MAX_INPUT_BYTES + 1)
    Image.new("RGB", (64, 64), "red").save(tmp_path / "i.png")
    return tmp_path


@pytest.mark.parametrize("args, needle", [
    (["--init", "bomb.png"], f"declares more than {limits.MAX_INPUT_PIXELS:,} pixels"),
    (["--init", "big.png"], f"is 9000x9000 = 81,000,000 pixels, over the input limit of {limits.MAX_INPUT_PIXELS:,}"),
    (["--init", "huge.png"], f"over the input limit of {limits.MAX_INPUT_BYTES >> 20} MiB"),
    (["--init", "i.png", "--mask", "bomb.png"], "mask 'bomb.png' declares more than"),
    (["--device", "cpu", "--width", "4096", "--height", "4096"], "over the CPU budget of 4.2 megapixels"),
])
def test_cli_refuses_over_the_limits_in_one_line(args, needle, inputs, no_load, capsys):
    code = main(["generate", "a red circle", "-o", "out.png", "--seed", "1", *args])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: "), err
    assert needle in err, err
    assert "Error" not in err and "Traceback" not in err


def test_declared_size_is_checked_before_decoding(inputs, no_load, monkeypatch):
    """Neither limit may be enforced by decoding first: fail if the pixels are ever loaded."""

    def no_decode(self, *a, **k):
        raise AssertionError("pixels decoded")

    monkeypatch.setattr(Image.Image, "load", no_decode)
    for name in ("big.png", "bomb.png"):
        with pytest.raises(RequestError, match="pixels"):
            studio.Studio().generate(prompt="x", init_image=str(inputs / name))


def test_in_memory_inputs_are_bounded_too(monkeypatch, no_load):
    monkeypatch.setattr(limits, "MAX_INPUT_BYTES", 1 << 20)
    with pytest.raises(RequestError, match=r"init image \(bytes\) is 3 MiB, over the input limit of 1 MiB"):
        studio.Studio().generate(prompt="x", init_image=b"\0" * (3 << 20))
    monkeypatch.setattr(limits, "MAX_INPUT_PIXELS", 32 * 32)
    with pytest.raises(RequestError, match=r"init image \(PIL image\) is 64x64 = 4,096 pixels, over the input"):
        studio.Studio().generate(prompt="x", init_image=Image.new("RGB", (64, 64)))


def test_cuda_budget_comes_from_free_memory(monkeypatch):
    from studio.engine import _pixel_budget

    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (8 << 30, 80 << 30))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 2 << 30)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: 1 << 30)
    budget, what = _pixel_budget(torch.device("cuda"), torch.float16)
    assert budget == (9 << 30) // limits.CUDA_BYTES_PER_PIXEL["fp16"]
    assert "9.0 GiB free" in what
    assert _pixel_budget(torch.device("cuda"), torch.float32)[0] == budget // 2
    assert _pixel_budget(torch.device("cpu"), torch.float32) == (limits.CPU_PIXEL_BUDGET, "the CPU budget")


def test_mini_fits_its_largest_batch_on_cpu(no_load):
    """The budget does not refuse what the bundled model is made for: 256x256 x 64."""
    with pytest.raises(AssertionError, match="model load reached"):
        studio.Studio().generate(prompt="x", batch=limits.MAX_BATCH, device="cpu", seed=1)


# -- verify -----------------------------------------------------------------------------------------------------
def test_verify_bounds_bytes_before_reading(tmp_path):
    report = studio.verify(sparse_file(tmp_path / "huge.png", limits.MAX_VERIFY_BYTES + 1))
    assert report.state == "unreadable" and report.exit_code == 3
    assert f"over the verify limit of {limits.MAX_VERIFY_BYTES >> 20} MiB" in report.error


@pytest.mark.parametrize("size, needle", [
    ((20000, 20000), "declares more than"),
    ((9000, 9000), "9000x9000 = 81,000,000 pixels, over the verify limit"),
])
def test_verify_bounds_pixels_before_decoding(tmp_path, size, needle):
    report = studio.verify(declared_png(tmp_path / "bomb.png", *size))
    assert report.state == "unreadable" and report.exit_code == 3
    assert needle in report.error and "Error" not in report.error


def test_verify_cli_on_a_bomb_exits_3(tmp_path, capsys):
    assert main(["verify", str(declared_png(tmp_path / "bomb.png", 20000, 20000))]) == 3
    assert "verify limit" in capsys.readouterr().out


def test_limits_are_stated_in_one_place():
    assert limits.MAX_INPUT_BYTES == 64 << 20 and limits.MAX_INPUT_PIXELS == 8192 * 8192
    assert limits.CPU_PIXEL_BUDGET == 2048 * 2048 and limits.MAX_SIDE == 4096
    assert limits.MAX_VERIFY_BYTES >= limits.MAX_INPUT_BYTES and limits.MAX_VERIFY_PIXELS >= limits.MAX_INPUT_PIXELS


# -- progress: the phases after the last denoising step show as what they are --------------------------------
def test_cli_progress_names_the_decode_phase(tmp_path, monkeypatch, capsys):
    import studio.cli as cli

    updates = []

    class Bar:
        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

        def add_task(self, description, total=None):
            updates.append(description)
            return 0

        def update(self, task, description=None, **k):
            updates.append(description)

    def fake_generate(self, request, *, progress=None, **kw):
        progress(1, 2)
        progress(2, 2)
        raise RequestError("stop here")

    monkeypatch.setattr(cli, "_progress_bar", Bar)
    monkeypatch.setattr(studio.Studio, "generate", fake_generate)
    assert main(["generate", "x", "-o", str(tmp_path / "o.png")]) == 2
    assert updates == ["loading model", "denoising", "decoding and sealing"]
