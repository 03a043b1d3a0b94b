"""Output targets (issue 13): an existing file is never replaced silently, an input is never written over,
an unwritable name or folder fails before any model loads, and files get the user's permissions."""
import os
import stat

import pytest

import studio
from studio.cli import main
from studio.errors import RequestError, StudioError
from studio.writer import OutputExists, check_output_targets, output_paths, write_atomic


@pytest.fixture
def no_load(monkeypatch):
    """Loading a model means the up-front checks let the request through: say so instead of loading."""

    def load(self, *a, **k):
        raise StudioError("LOAD-REACHED")

    monkeypatch.setattr(studio.Studio, "load", load)


def _png(path):
    from PIL import Image

    Image.new("RGB", (16, 16), "red").save(path)
    return path


def test_existing_file_refused_unless_overwrite(tmp_path):
    target = tmp_path / "a.png"
    target.write_bytes(b"precious")
    with pytest.raises(OutputExists, match=r"a\.png already exists: pass --overwrite"):
        check_output_targets(target)
    assert check_output_targets(target, overwrite=True) == [target]
    with pytest.raises(OutputExists, match="b-1.png already exists"):  # any image of a batch
        (tmp_path / "b-1.png").write_bytes(b"x")
        check_output_targets(tmp_path / "b.png", count=3)
    with pytest.raises(OutputExists):  # the final write refuses too, whatever happened since the check
        write_atomic(target, b"new", overwrite=False)
    assert target.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b-1.png"]  # no temp file left behind


def test_output_that_is_an_input_is_refused_even_with_overwrite(tmp_path, monkeypatch):
    init = _png(tmp_path / "in.png")
    monkeypatch.chdir(tmp_path)
    for out in (init, "in.png", tmp_path / "." / "in.png"):
        with pytest.raises(RequestError, match="is the init image"):
            check_output_targets(out, overwrite=True, inputs={"init image": str(init), "mask": None})
    (tmp_path / "link.png").symlink_to(init)
    with pytest.raises(RequestError, match="is the mask"):
        check_output_targets(tmp_path / "link.png", overwrite=True, inputs={"mask": init})


@pytest.mark.parametrize("name, fmt, needle", [
    ("x.bmp", "png", "cannot write 'x.bmp'"),
    ("x.tiff", "png", "cannot write"),
    ("x.gif", "png", "names a gif file but the output format is png"),  # a clip format, for video
    ("x.mp4", "jpeg", "names a mp4 file but the output format is jpeg"),
    ("x.jpg", "png", "names a jpeg file but the output format is png"),
])
def test_unwritable_extension_is_an_error(tmp_path, name, fmt, needle):
    with pytest.raises(RequestError, match=needle):
        check_output_targets(tmp_path / name, fmt)
    assert not list(tmp_path.iterdir())


def test_names_keep_the_users_extension_and_a_bare_name_gets_the_formats(tmp_path):
    assert output_paths(tmp_path / "a.jpeg", "jpeg", [1]) == [tmp_path / "a.jpeg"]
    assert output_paths(tmp_path / "a.JPG", "jpeg", [1, 2]) == [tmp_path / "a-0.JPG", tmp_path / "a-1.JPG"]
    assert output_paths(tmp_path / "star", "png", [1]) == [tmp_path / "star.png"]
    assert output_paths(tmp_path / "star", "webp", [1]) == [tmp_path / "star.webp"]


def test_written_files_get_umask_permissions_not_0600(tmp_path):
    old = os.umask(0o022)
    try:
        write_atomic(tmp_path / "a.png", b"x")
        write_atomic(tmp_path / "a.png", b"y")  # replacing too
        assert stat.S_IMODE((tmp_path / "a.png").stat().st_mode) == 0o644
        os.umask(0o077)
        write_atomic(tmp_path / "b.png", b"x")
        assert stat.S_IMODE((tmp_path / "b.png").stat().st_mode) == 0o600
    finally:
        os.umask(old)


def test_uncreatable_folder_fails_up_front(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(RequestError, match="is not a folder"):
        check_output_targets(tmp_path / "file" / "sub" / "x.png")
    made = check_output_targets(tmp_path / "new" / "deep" / "x.png")
    assert made == [tmp_path / "new" / "deep" / "x.png"] and (tmp_path / "new" / "deep").is_dir()


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder_fails_up_front(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(RequestError, match="is not writable"):
            check_output_targets(ro / "x.png")
        with pytest.raises(RequestError, match="is not writable"):
            check_output_targets(ro / "sub" / "x.png")
    finally:
        ro.chmod(0o755)


def test_read_only_folder_check_uses_access(tmp_path, monkeypatch):
    """The same refusal as root would get on a read-only mount (os.access is what reports it there)."""
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **k: False if str(p) == str(tmp_path) else real(p, mode))
    with pytest.raises(RequestError, match=f"{tmp_path} is not writable"):
        check_output_targets(tmp_path / "x.png")


# -- the same rules through the engine (API) and the CLI, before any model loads ------------------------------
def test_api_refuses_existing_output_before_loading(tmp_path, no_load):
    target = tmp_path / "a.png"
    target.write_bytes(b"precious")
    with pytest.raises(OutputExists, match="already exists"):
        studio.generate("a red circle", out=target, seed=1)
    with pytest.raises(StudioError, match="LOAD-REACHED"):  # overwrite=True passes the check
        studio.generate("a red circle", out=target, seed=1, overwrite=True)
    with pytest.raises(RequestError, match="cannot write 'a.bmp'"):
        studio.generate("a red circle", out=tmp_path / "a.bmp", seed=1)
    with pytest.raises(RequestError, match="video request but the model makes image"):
        studio.generate("a red circle", out=tmp_path / "a.mp4", seed=1)  # mini makes images
    assert target.read_bytes() == b"precious"


@pytest.mark.parametrize("extra, needle", [
    (["-o", "exists.png"], "exists.png already exists: pass --overwrite"),
    (["-o", "exists.png", "--batch", "2"], None),  # exists-0.png / exists-1.png: free, reaches the load
    (["-o", "x.bmp"], "cannot write 'x.bmp'"),
    (["-o", "in.png", "--init", "in.png", "--overwrite"], "is the init image"),
    (["-o", "./m.png", "--init", "in.png", "--mask", "m.png"], "is the mask"),
    (["-o", "file/x.png"], "is not a folder"),
    (["-o", "exists.png", "--overwrite"], None),
])
def test_cli_output_checks_one_line_before_loading(tmp_path, monkeypatch, capsys, no_load, extra, needle):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "exists.png").write_bytes(b"precious")
    _png(tmp_path / "in.png")
    _png(tmp_path / "m.png")
    (tmp_path / "file").write_text("x")
    code = main(["generate", "a red circle", "--seed", "1", *extra])
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error:"), err
    if needle is None:
        assert code == 1 and "LOAD-REACHED" in err
    else:
        assert code == 2 and needle in err and "LOAD-REACHED" not in err
    assert (tmp_path / "exists.png").read_bytes() == b"precious" or "--overwrite" in extra


def test_cli_trailing_slash_is_a_folder(tmp_path, monkeypatch, capsys, no_load):
    monkeypatch.chdir(tmp_path)
    assert main(["generate", "a red circle", "-o", "renders/", "--seed", "1"]) == 1
    assert (tmp_path / "renders").is_dir() and not (tmp_path / "renders.png").exists()
    (tmp_path / "renders" / "studio-1.png").write_bytes(b"x")
    assert main(["generate", "a red circle", "-o", "renders/", "--seed", "1"]) == 2
    assert "studio-1.png already exists" in capsys.readouterr().err


def test_api_end_to_end_refuses_then_overwrites(tmp_path):
    """Real renders on a tiny model: refused without overwrite, replaced with it, user permissions."""
    from pipelines.tiny import save_tiny, tiny_sd

    model = str(save_tiny(tiny_sd(vae_scale=8), tmp_path / "model"))
    out = tmp_path / "star.png"
    old = os.umask(0o022)
    try:
        engine = studio.Studio()
        kw = dict(prompt="a star", model=model, width=256, height=256, steps=1, seed=5, out=out)
        first = engine.generate(**kw).outputs[0].record.sha256
        assert stat.S_IMODE(out.stat().st_mode) == 0o644
        with pytest.raises(OutputExists):
            engine.generate(**kw)
        second = engine.generate(**kw, overwrite=True).outputs[0]
        assert out.read_bytes() == second.data and second.record.sha256 != first  # new signing time
    finally:
        os.umask(old)
