"""Fast checks of the web app without a browser or a model: handlers return paths of files inside the output
folder (never pixels), history survives a restart, failures become one sanitized gr.Error line, and the server
serves its output folder and nothing else."""
from __future__ import annotations

import inspect
import json
import socket
from pathlib import Path
from types import SimpleNamespace

import pytest

gr = pytest.importorskip("gradio")

from studio import GenerationRecord, OutputRecord, Registry, RequestError, StudioError  # noqa: E402
from ui.errors import sanitize  # noqa: E402
from ui.handlers import Handlers  # noqa: E402


class FakeStudio:
    """Writes a plain PNG where the engine would write the sealed one; records what it was asked."""

    def __init__(self, registry, fail: Exception | None = None, write_to: Path | None = None):
        self.registry = registry
        self.fail = fail
        self.write_to = write_to
        self.calls = []

    def generate(self, request, *, out=None, progress=None, init_image=None, mask=None, **_):
        from PIL import Image

        self.calls.append({"request": request, "out": out, "init_image": init_image, "mask": mask})
        if self.fail is not None:
            raise self.fail
        if progress:
            progress(1, 2)
            progress(2, 2)
        req = request.model_copy(update={"seed": request.seed if request.seed is not None else 42,
                                         "width": request.width or 64, "height": request.height or 64,
                                         "steps": request.steps or 2, "guidance": request.guidance or 5.0,
                                         "sampler": request.sampler or "Euler"})
        record = GenerationRecord(request=req, mode=req.mode, model_name=req.model or "fake",
                                  model_source="/secret/models/fake", model_family="sd1", model_hash="0" * 64,
                                  sampler=req.sampler, device="cpu", dtype="float32", versions={}, elapsed_s=0.01)
        outputs = []
        for i in range(req.batch):
            path = Path(self.write_to or out)
            path = path.with_name(f"{path.stem}-{i}.png") if req.batch > 1 else path.with_suffix(".png")
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (req.width, req.height), (200, 30, 30)).save(path)
            rec = OutputRecord(index=i, seed=req.seed + i, format="png", sha256=f"{i:02d}" + "a" * 62,
                               pixel_sha256="b" * 64, size_bytes=path.stat().st_size, path=str(path),
                               width=req.width, height=req.height, watermark_id="ff" * 8,
                               watermark_status="embedded")
            outputs.append(SimpleNamespace(path=path, record=rec))
        record.outputs = [o.record for o in outputs]
        return SimpleNamespace(record=record, outputs=outputs)


@pytest.fixture()
def handlers(registry, tmp_path):
    return Handlers(FakeStudio(registry), tmp_path / "out", verify_on_write=False, models_dir=tmp_path)


def app_fn(demo, name):
    """The event function `name`, called to completion: streaming handlers yield previews, then the result."""
    for f in demo.fns.values():
        if f.name == name:
            def run(*args, **kwargs):
                out = f.fn(*args, **kwargs)
                if inspect.isgenerator(out):
                    for out in out:
                        pass
                return out

            return run
    raise KeyError(name)


def test_generate_returns_paths_inside_out_dir_and_history_survives_restart(handlers, registry, tmp_path):
    steps = []
    fields = handlers.request_fields(prompt="a red circle", model="fake", seed=7, batch=2)
    entries = handlers.generate(fields, progress=lambda d, t, desc: steps.append((d, t)))
    assert len(entries) == 2 and steps[-1] == (2, 2)
    for e in entries:
        assert isinstance(e["file"], str)
        assert Path(e["file"]).resolve().is_relative_to(handlers.out_dir) and Path(e["file"]).is_file()
        assert e["seed"] in (7, 8) and e["model"] == "fake"
    again = Handlers(FakeStudio(registry), tmp_path / "out", verify_on_write=False)  # a restart
    assert [e["id"] for e in again.history_entries()] == [e["id"] for e in reversed(entries)]
    assert (handlers.out_dir / "history.jsonl").exists()


def test_history_skips_torn_lines_and_deleted_files(handlers):
    entries = handlers.generate(handlers.request_fields(prompt="x", model="fake", seed=1))
    with open(handlers.out_dir / "history.jsonl", "a") as fh:
        fh.write('{"torn": ')
    assert len(handlers.history_entries()) == 1
    Path(entries[0]["file"]).unlink()
    assert handlers.history_entries() == []


def test_output_outside_the_output_folder_is_refused(registry, tmp_path):
    h = Handlers(FakeStudio(registry, write_to=tmp_path / "elsewhere" / "x.png"), tmp_path / "out",
                 verify_on_write=False)
    with pytest.raises(StudioError, match="outside"):
        h.generate(h.request_fields(prompt="x", model="fake"))


def test_edit_passes_the_uploaded_file_itself_as_init_image(handlers, tmp_path):
    from PIL import Image

    src = tmp_path / "upload.png"
    Image.new("RGB", (64, 64), "blue").save(src)
    fields = handlers.request_fields(prompt="x", model="fake")
    handlers.edit(fields, source=str(src), mode="img2img", strength=0.5)
    call = handlers.studio.calls[-1]
    assert call["init_image"] == str(src) and call["request"].strength == 0.5
    handlers.edit(fields, source=str(src), mode="outpaint", outpaint=(0, 0, 32, 0))
    assert handlers.studio.calls[-1]["request"].outpaint.right == 32


def test_mask_from_editor_strokes(handlers, tmp_path):
    from PIL import Image, ImageDraw

    src = tmp_path / "src.png"
    Image.new("RGB", (64, 48), "blue").save(src)
    layer = Image.new("RGBA", (128, 96), (0, 0, 0, 0))  # the editor's canvas may be scaled
    ImageDraw.Draw(layer).ellipse((20, 20, 60, 60), fill=(255, 255, 255, 255))
    layer.save(tmp_path / "layer.png")
    mask_path = handlers.mask_from_editor({"background": str(src), "layers": [str(tmp_path / "layer.png")]},
                                          str(src))
    with Image.open(mask_path) as m:
        assert m.size == (64, 48) and m.mode == "L" and m.getbbox() is not None
    # an unsealed input: kept with the uploads, never among the outputs a user takes away
    from ui.browser_paths import upload_dir
    assert Path(mask_path).resolve().is_relative_to(upload_dir(handlers.out_dir))
    Image.new("RGBA", (64, 48), (0, 0, 0, 0)).save(tmp_path / "empty.png")
    with pytest.raises(RequestError, match="empty"):
        handlers.mask_from_editor({"layers": [str(tmp_path / "empty.png")]}, str(src))
    with pytest.raises(RequestError, match="mask"):
        handlers.edit(handlers.request_fields(prompt="x", model="fake"), source=str(src), mode="inpaint",
                      editor_value={"layers": []})


def test_sanitize_hides_paths_keys_and_newlines(tmp_path):
    out = tmp_path / "out"
    msg = (f"cannot read /home/alice/.config/diffusion-studio/safety/key.pem and {out}/images/a.png\n"
           "Traceback line\n-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----")
    text = sanitize(msg, out)
    assert "/home/alice" not in text and str(tmp_path) not in text and "MIIE" not in text
    assert "key.pem" in text and "images/a.png" in text and "\n" not in text
    assert len(sanitize("x" * 1000)) <= 300


def test_handler_errors_become_one_line_gr_errors(registry, tmp_path):
    from ui.app import build_app

    boom = StudioError("model /home/alice/models/x.safetensors could not be loaded:\n  details")
    demo = build_app(FakeStudio(registry, fail=boom), tmp_path / "out", verify_on_write=False)
    do_generate = app_fn(demo, "do_generate")
    args = ("a prompt", "", "fake", "Euler", 2, 5.0, 64, 64, -1, 1)
    with pytest.raises(gr.Error) as info:
        do_generate(*args, request=None, progress=lambda *a, **k: None)
    msg = info.value.message
    assert "/home/alice" not in msg and "x.safetensors" in msg and "\n" not in msg
    demo.ui_handlers.studio.fail = RuntimeError("CUDA out of memory at /opt/lib/thing.py")
    with pytest.raises(gr.Error) as info:
        do_generate(*args, request=None, progress=lambda *a, **k: None)
    assert info.value.message.startswith("RuntimeError: CUDA out of memory") and "/opt" not in info.value.message
    with pytest.raises(gr.Error, match="prompt"):
        do_generate("  ", *args[1:], request=None, progress=lambda *a, **k: None)


def test_wrapped_handlers_return_file_paths_not_pixels(registry, tmp_path):
    from ui.app import build_app

    demo = build_app(FakeStudio(registry), tmp_path / "out", verify_on_write=False)
    gallery, files, status, seed, entries, params, idx, live = app_fn(demo, "do_generate")(
        "a prompt", "", "fake", "Euler", 2, 5.0, 64, 64, 5, 2, request=None, progress=lambda *a, **k: None)
    out = (tmp_path / "out").resolve()
    assert all(isinstance(p, str) and Path(p).resolve().is_relative_to(out) for p, _ in gallery)
    assert all(isinstance(p, str) and Path(p).resolve().is_relative_to(out) for p in files)
    assert seed == 5 and "seed 5, 6" in status
    assert live["value"] is None and live["visible"] is False  # the preview goes once the results are in
    assert "file" in params and not str(params["file"]).startswith("/")  # relative to the output folder
    assert "/secret" not in json.dumps(params)


def test_batch_validation_lists_bad_lines(handlers, tmp_path):
    from ui import batch

    job = tmp_path / "job.jsonl"
    job.write_text(json.dumps({"prompt": "ok", "model": "fake"}) + "\n" +
                   json.dumps({"prompt": "bad", "model": "fake", "steps": 0}) + "\n" +
                   json.dumps({"prompt": "who", "model": "no-such-model"}) + "\n", encoding="utf-8")
    rows, errors = batch.validate(str(job), handlers.registry, handlers.out_dir)
    assert len(rows) == 1 and rows[0][2] == "ok"
    assert any(e.startswith("line 2") for e in errors) and any(e.startswith("line 3") for e in errors)
    rows, errors = batch.validate(str(tmp_path / "nope.exe"), handlers.registry, handlers.out_dir)
    assert rows == [] and errors and str(tmp_path) not in errors[0]


def test_add_model_validates_the_path(handlers, tmp_path):
    with pytest.raises(RequestError, match="does not exist"):
        handlers.add_model("m1", str(tmp_path / "missing"), "sd1")
    pickle = tmp_path / "m.ckpt"
    pickle.write_bytes(b"x")
    with pytest.raises(RequestError, match="safetensors"):
        handlers.add_model("m2", str(pickle), None)
    import torch
    from safetensors.torch import save_file

    st = tmp_path / "m.safetensors"  # a complete SD checkpoint (header and data): the family is detected
    save_file({"model.diffusion_model.output_blocks.11.0.skip_connection.weight": torch.zeros(4, 4)}, str(st))
    assert handlers.add_model("m3", str(st), "auto") == "m3"
    assert "m3" in dict((v, k) for k, v in handlers.model_choices())
    row = next(r for r in handlers.model_rows() if r[0] == "m3")
    assert row[3] == "local: m.safetensors"  # no server path in the table
    assert handlers.add_model("m4", "m.safetensors", "auto") == "m4"  # relative to the models folder


def test_add_model_takes_paths_only_inside_the_models_folder(registry, tmp_path):
    """A logged-in visitor must not make the server read (load, hash) any file it can name."""
    import torch
    from safetensors.torch import save_file

    models, elsewhere = tmp_path / "models", tmp_path / "elsewhere"
    models.mkdir(), elsewhere.mkdir()
    outside = elsewhere / "x.safetensors"
    save_file({"model.diffusion_model.output_blocks.11.0.skip_connection.weight": torch.zeros(4, 4)}, str(outside))
    (models / "link.safetensors").symlink_to(outside)
    h = Handlers(FakeStudio(registry), tmp_path / "out", verify_on_write=False, models_dir=models)
    for path in (str(outside), "../elsewhere/x.safetensors", "link.safetensors", "/etc/passwd"):
        with pytest.raises(RequestError, match="inside the server's models folder") as info:
            h.add_model("victim", path, "sd1")
        assert str(tmp_path) not in str(info.value)
    assert "victim" not in registry.entries


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_server_binds_loopback_and_serves_only_its_output_folder(registry, tmp_path, _studio_home):
    import httpx

    from ui.app import build_app, launch

    demo = build_app(FakeStudio(registry), tmp_path / "out", verify_on_write=False)
    h = demo.ui_handlers
    inside = h.generate(h.request_fields(prompt="x", model="fake"))[0]["file"]
    port = _free_port()
    launch(demo=demo, port=port, block=False, quiet=True, max_file_size="1mb")
    try:
        assert demo.server_name == "127.0.0.1"
        base = f"http://127.0.0.1:{port}/gradio_api/file="
        assert httpx.get(base + inside, timeout=30).status_code == 200
        secret = tmp_path / "secret.txt"
        secret.write_text("TOPSECRET")
        key = Path(_studio_home) / "safety" / "test-key.pem"
        key.parent.mkdir(parents=True, exist_ok=True)
        key.write_text("-----BEGIN PRIVATE KEY-----")
        for path in ["/etc/passwd", str(secret), str(key), str(Path.cwd() / "pyproject.toml"),
                     f"{h.out_dir}/../secret.txt", str(registry.user_file)]:
            r = httpx.get(base + path, timeout=30)
            assert r.status_code in (403, 404), (path, r.status_code)
            assert b"TOPSECRET" not in r.content and b"root:" not in r.content and b"PRIVATE" not in r.content
        # Uploads above the limit are refused.
        r = httpx.post(f"http://127.0.0.1:{port}/gradio_api/upload",
                       files={"files": ("big.png", b"0" * (2 * 1024 * 1024), "image/png")}, timeout=30)
        assert r.status_code in (400, 413), r.status_code
    finally:
        demo.close()


def test_cancel_stops_between_steps(handlers):
    import threading

    from ui.errors import Cancelled

    ev = threading.Event()
    seen = []

    def progress(done, total, desc):
        seen.append(desc)
        if desc == "denoising":
            ev.set()  # the user presses Cancel during the first step

    with pytest.raises(Cancelled, match="step 2/2"):
        handlers.generate(handlers.request_fields(prompt="x", model="fake"), progress=progress, cancel=ev)
    assert handlers.history_entries() == []


def test_auth_guards_the_app_and_its_files(registry, tmp_path):
    import httpx

    from ui.app import build_app, launch, parse_auth

    assert parse_auth("ann:s3cret") == ("ann", "s3cret") and parse_auth(None) is None
    with pytest.raises(ValueError):
        parse_auth("nopassword")
    demo = build_app(FakeStudio(registry), tmp_path / "out", verify_on_write=False)
    h = demo.ui_handlers
    inside = h.generate(h.request_fields(prompt="x", model="fake"))[0]["file"]
    port = _free_port()
    launch(demo=demo, port=port, block=False, quiet=True, auth=("ann", "s3cret"))
    try:
        r = httpx.get(f"http://127.0.0.1:{port}/gradio_api/file={inside}", timeout=30)
        assert r.status_code in (401, 403), r.status_code
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as c:
            assert c.post("/login", data={"username": "ann", "password": "nope"}).status_code >= 400
            assert c.post("/login", data={"username": "ann", "password": "s3cret"}).status_code == 200
            assert c.get(f"/gradio_api/file={inside}").status_code == 200
    finally:
        demo.close()


def test_cli_registers_the_ui_command():
    from typer.testing import CliRunner

    from studio.cli import app

    result = CliRunner().invoke(app, ["ui", "--help"])
    assert result.exit_code == 0 and "--auth" in result.output and "--host" in result.output


def test_launch_waits_for_its_server_itself_and_names_an_unreachable_one():
    import gradio as gr
    from ui.app import _own_reachability_probe, wait_reachable
    from ui_testutil import free_port

    # gradio's one-shot probe (3 s, then "use a share link") is switched off where this gradio has the switch;
    # if an upgrade drops it, the launch falls back to gradio's probe and this line says so
    assert _own_reachability_probe(gr.Blocks()) == {"_frontend": False}
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(RuntimeError, match=r"does not answer \(ConnectError\)") as err:
        wait_reachable(url, timeout=0.5)
    assert url in str(err.value) and "\n" not in str(err.value)
