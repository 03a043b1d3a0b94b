"""Hardening of the web app (issue 13): a failure shows its reason in the tab's status (not a bare "Error"), form
values are refused with one line naming the field (never clamped or rounded into something else), the Models
tab refuses what would not load and reserved names, and progress is one bar with step i/N, elapsed and ETA.
Fast: a fake studio, no browser (tests/ui/test_browser_progress.py shows the same in chromium)."""
from __future__ import annotations

import inspect
import json
import math

import pytest

gr = pytest.importorskip("gradio")

from studio import Registry, RequestError  # noqa: E402
from test_handlers import FakeStudio  # noqa: E402
from ui_testutil import free_port  # noqa: E402

SD1_KEY = "model.diffusion_model.output_blocks.11.0.skip_connection.weight"


@pytest.fixture()
def demo(registry, tmp_path):
    from ui.app import build_app

    return build_app(FakeStudio(registry), tmp_path / "out", verify_on_write=False, models_dir=tmp_path)


def event_fn(demo, name):
    return next(f for f in demo.fns.values() if f.name == name)


def run_all(demo, name, *args, **kwargs):
    """(every value the event yielded or returned, the exception it ended with or None)."""
    out = event_fn(demo, name).fn(*args, **kwargs)
    if not inspect.isgenerator(out):
        return [out], None
    seen = []
    try:
        for v in out:
            seen.append(v)
    except Exception as exc:  # noqa: BLE001
        return seen, exc
    return seen, None


def checkpoint(path, *keys):
    import torch
    from safetensors.torch import save_file

    save_file({k: torch.zeros(4, 4) for k in keys or (SD1_KEY,)}, str(path))
    return path


# ------------------------------------------------------------------------------------------- form values
@pytest.mark.parametrize("field, value, needle", [
    ("steps", 0, "steps must be at least 1"),
    ("steps", -3, "steps must be at least 1"),
    ("steps", 2.5, "steps must be a whole number"),
    ("guidance", math.nan, "guidance must be a finite number"),
    ("guidance", "NaN", "guidance must be a finite number"),
    ("guidance", -1, "guidance must be at least 0"),
    ("width", "abc", "width must be a number"),
    ("height", "12px", "height must be a number"),
    ("width", 32, "width must be at least 64"),
    ("batch", 0, "number of images must be at least 1"),
])
def test_bad_form_values_are_refused_naming_the_field(registry, tmp_path, field, value, needle):
    from ui.handlers import Handlers

    h = Handlers(FakeStudio(registry), tmp_path / "out", verify_on_write=False)
    fields = dict(prompt="x", model="fake", size="Custom", width=64, height=64)
    fields[field] = value
    with pytest.raises(RequestError, match=needle):
        h.request_fields(**fields)
    assert h.request_fields(prompt="x", steps=1, guidance=0, batch=1)["steps"] == 1


def test_zero_steps_and_bad_numbers_through_the_api_are_refused(registry, tmp_path):
    """What the browser cannot send (its slider clamps), a client can: the server refuses it with the field's
    name, and nothing runs."""
    import httpx
    from gradio_client import Client

    from ui.app import build_app, launch

    studio_obj = FakeStudio(registry)
    demo = build_app(studio_obj, tmp_path / "out", verify_on_write=False)
    port = free_port()
    launch(demo=demo, port=port, block=False, quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{port}", verbose=False)
        base = ["a prompt", "", "fake", "Euler", 2, 5.0, 64, 64, 5, 1]
        for index, value, needle in [(4, 0, "steps must be at least 1"), (6, "abc", "width must be a number")]:
            args = list(base)
            args[index] = value
            with pytest.raises(Exception) as info:
                client.predict(*args, api_name="/do_generate")
            assert needle in str(info.value), (value, str(info.value))
        # NaN is not JSON, so no client library sends it; Python's json (the server's parser) reads it.
        # a raw call sends every input: the form's other fields (LoRAs, hires, ...) at their initial values
        fn = next(f for f in demo.fns.values() if f.name == "do_generate")
        rest = [getattr(b, "value", None) for b in fn.inputs[len(base):]]
        body = json.dumps({"data": [*base[:5], math.nan, *base[6:], *rest]})
        r = httpx.post(f"http://127.0.0.1:{port}/gradio_api/call/do_generate", content=body,
                       headers={"content-type": "application/json"}, timeout=30)
        event = r.json()["event_id"]
        stream = httpx.get(f"http://127.0.0.1:{port}/gradio_api/call/do_generate/{event}", timeout=30).text
        assert "event: error" in stream and "guidance must be a finite number" in stream, stream
        assert studio_obj.calls == []
    finally:
        demo.close()


def test_steps_slider_lets_zero_reach_the_check(demo):
    """A slider clamps a typed value to its minimum in the browser; with minimum 1 a typed 0 ran 1 step."""
    for elem in ("g-steps", "e-steps"):
        slider = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == elem)
        assert slider.minimum == 0, elem


# ------------------------------------------------------------------------------------------- status lines
def test_edit_failure_is_written_into_the_status(demo):
    outputs, exc = run_all(demo, "do_edit", None, "img2img", None, None, 0.6, 0, 0, 64, 0, "a prompt", "",
                           "fake", "Euler", 2, 5.0, -1, request=None, progress=lambda *a, **k: None)
    assert isinstance(exc, gr.Error) and "upload a source image" in exc.message  # the toast
    status = [o[2] for o in outputs if isinstance(o, tuple) and isinstance(o[2], str)]
    assert status and status[-1].startswith("**Error:**") and "upload a source image" in status[-1]


def test_generate_failure_is_written_into_the_status_too(demo):
    outputs, exc = run_all(demo, "do_generate", "a prompt", "", "fake", "Euler", 0, 5.0, 64, 64, -1, 1,
                           request=None, progress=lambda *a, **k: None)
    assert isinstance(exc, gr.Error)
    assert "steps must be at least 1" in outputs[-1][2]


def test_models_tab_refusals_show_their_reason(demo, tmp_path):
    good = checkpoint(tmp_path / "good.safetensors")
    short = tmp_path / "short.safetensors"
    short.write_bytes(good.read_bytes()[:-16])
    weird = tmp_path / "lora.safetensors"
    checkpoint(weird, "lora_unet_down.alpha")
    cases = [(("mini", str(good), "auto"), "built-in model name"),
             (("cut", str(short), "sd1"), "truncated"),
             (("lora", str(weird), "auto"), "cannot tell the model family"),
             (("gone", str(tmp_path / "nope.safetensors"), "auto"), "does not exist")]
    for args, needle in cases:
        (result,), exc = run_all(demo, "add_model", *args)
        assert exc is None
        status = result[3]
        assert status.startswith("**Error:**") and needle in status, (args, status)
        assert str(tmp_path) not in status
    assert demo.ui_handlers.registry.resolve("mini").builtin
    assert set(demo.ui_handlers.registry.entries) == set(Registry(user_file=tmp_path / "models.toml").entries)
    (result,), exc = run_all(demo, "add_model", "good", str(good), "auto")
    assert "added **good**" in result[3] and demo.ui_handlers.registry.resolve("good").family == "sd1"


def test_ignored_models_toml_entry_is_reported_in_the_models_tab(tmp_path):
    from ui.app import build_app

    user = tmp_path / "models.toml"
    user.write_text('[models.mini]\nsource = "/elsewhere/taken_over.safetensors"\nfamily = "sd1"\n')
    demo = build_app(FakeStudio(Registry(user_file=user)), tmp_path / "out", verify_on_write=False)
    assert demo.ui_handlers.registry.resolve("mini").builtin
    status = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "m-status")
    assert "Ignored" in status.value and "'mini' is a built-in model name" in status.value
    assert "/elsewhere" not in status.value


# ------------------------------------------------------------------------------------------- progress
class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_progress_line_has_count_elapsed_and_eta(monkeypatch):
    import ui.app as app

    clock = Clock()
    monkeypatch.setattr(app.time, "monotonic", clock)
    calls, lines = [], []
    p = app._progress(lambda *a, **k: calls.append((a, k)), unit="steps", on_line=lines.append)
    clock.t += 2
    p(0, 1, "loading mini")
    assert lines[-1] == "loading mini · 2.0s elapsed"
    clock.t += 1
    p(1, 10, "denoising")
    clock.t += 2
    p(3, 10, "denoising")  # 1 s a step since step 1
    assert lines[-1] == "denoising · step 3/10 · 5.0s elapsed · ETA 7.0s"
    assert calls[-1] == (((3, 10),), {"desc": lines[-1], "unit": "steps"})
    clock.t += 7
    p(10, 10, "denoising")
    assert lines[-1] == "denoising · step 10/10 · 12.0s elapsed"


def test_batch_progress_counts_items_not_steps(monkeypatch):
    """ui/batch.py reports thousandths of an item and names the item itself: no "1500/3000 steps"."""
    import ui.app as app

    clock = Clock()
    monkeypatch.setattr(app.time, "monotonic", clock)
    calls, lines = [], []
    p = app._progress(lambda *a, **k: calls.append((a, k)), unit=None, on_line=lines.append)
    p(0, 3000, "item 1/3: step 0/4")
    clock.t += 10
    p(1500, 3000, "item 2/3: step 2/4")
    assert calls[-1] == ((0.5,), {"desc": lines[-1]})
    assert lines[-1] == "item 2/3: step 2/4 · 10.0s elapsed · ETA 10.0s" and "steps" not in lines[-1]


def test_generate_streams_its_progress_into_the_status(demo):
    outputs, exc = run_all(demo, "do_generate", "a prompt", "", "fake", "Euler", 2, 5.0, 64, 64, 3, 1,
                           request=None, progress=lambda *a, **k: None)
    assert exc is None
    lines = [o[2] for o in outputs[:-1] if isinstance(o[2], str)]
    assert any("step 2/2" in s and "elapsed" in s for s in lines), lines
    assert "sealed image" in outputs[-1][2]


def test_one_progress_bar_per_run_on_the_results(demo):
    """The live preview and the status are outside the progress overlay, so both show while sampling."""
    for name, gallery in (("do_generate", "g-gallery"), ("do_edit", "e-gallery")):
        fn = event_fn(demo, name)
        assert [b.elem_id for b in fn.show_progress_on or []] == [gallery], name


def test_send_to_edit_and_reuse_with_nothing_selected_say_why(demo):
    """queue=False events never show a gr.Error's text: the reason must land in a status line."""
    (result,), exc = run_all(demo, "send_to_edit", [], 0)
    assert exc is None and "generate an image first" in result[-1] and result[-1].startswith("**Error:**")
    (result,), exc = run_all(demo, "reuse", None)
    assert exc is None and "pick an image in the gallery first" in result[-1]
    history_event = next(f for f in demo.fns.values() if f.name == "<lambda>" and  # the Gallery's "Send to Edit"
                         {"e-source", "h-count"} <= {getattr(o, "elem_id", None) for o in f.outputs})
    result = history_event.fn(None)
    assert "pick an image in the gallery first" in result[-1]
