"""The LoRA picker and the Hires fix form without a browser: what the picker lists, that a browser can name
only files inside the LoRA folder or registry LoRAs, that the history shows names (never server paths), and
that a picked LoRA and hires reach the one engine (a real render on the UI test model)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

gr = pytest.importorskip("gradio")

from studio import Registry, RequestError  # noqa: E402
from ui import lora_hires as lh  # noqa: E402
from ui.browser_paths import PathRefused  # noqa: E402


@pytest.fixture()
def setup(tmp_path):
    loras = tmp_path / "loras"
    (loras / "styles").mkdir(parents=True)
    (loras / "ink.safetensors").write_bytes(b"x")
    (loras / "styles" / "pastel.safetensors").write_bytes(b"x")
    (loras / "unsafe.pt").write_bytes(b"x")
    (loras / ".hidden.safetensors").write_bytes(b"x")
    outside = tmp_path / "secret.safetensors"
    outside.write_bytes(b"x")
    os.symlink(outside, loras / "link.safetensors")  # leads out of the folder: not listed, refused
    reg_lora = tmp_path / "elsewhere" / "grain.safetensors"
    reg_lora.parent.mkdir()
    reg_lora.write_bytes(b"x")
    toml = tmp_path / "models.toml"
    toml.write_text(f'[loras.grain]\npath = "{reg_lora}"\nweight = 0.6\n\n'
                    f'[upscalers.my-x2]\nsource = "{tmp_path / "no-such-upscaler"}"\n')
    return loras, Registry(user_file=toml), reg_lora


def test_picker_lists_folder_files_and_registry_loras(setup):
    loras, registry, _ = setup
    values = [v for _, v in lh.lora_choices(loras, registry)]
    assert values == ["ink.safetensors", "styles/pastel.safetensors", "registry:grain"]


def test_browser_names_resolve_inside_the_folder_only(setup, tmp_path):
    loras, registry, reg_lora = setup
    refs = lh.lora_refs(["styles/pastel.safetensors", "registry:grain"], [0.7, -1.5], loras, registry)
    assert refs == [{"path": str(loras / "styles" / "pastel.safetensors"), "weight": 0.7},
                    {"path": str(reg_lora), "weight": -1.5}]
    for bad in ("../secret.safetensors", str(tmp_path / "secret.safetensors"), "link.safetensors"):
        with pytest.raises(PathRefused, match="LoRA folder"):
            lh.lora_refs([bad], [1.0], loras, registry)
    with pytest.raises(PathRefused, match="only .safetensors"):
        lh.lora_refs(["unsafe.pt"], [1.0], loras, registry)
    with pytest.raises(PathRefused, match="not in this server's registry"):
        lh.lora_refs(["registry:nope"], [1.0], loras, registry)
    with pytest.raises(RequestError, match=r"weight must be in \[-4, 4\]"):
        lh.lora_refs(["ink.safetensors"], [9], loras, registry)
    with pytest.raises(RequestError, match="at most 4"):
        lh.lora_refs(["a", "b", "c", "d", "e"], [], loras, registry)


def test_history_shows_picker_names_not_server_paths(setup):
    loras, registry, reg_lora = setup
    shown = lh.browser_loras([{"path": str(loras / "ink.safetensors"), "weight": 0.5},
                              {"path": str(reg_lora), "weight": 1.0},
                              {"path": "/srv/other/x.safetensors", "weight": 1.0}], loras, registry)
    assert shown == [{"path": "ink.safetensors", "weight": 0.5}, {"path": "registry:grain", "weight": 1.0},
                     {"path": "x.safetensors", "weight": 1.0}]


def test_hires_form(setup):
    _, registry, _ = setup
    values = [v for _, v in lh.upscaler_choices(registry)]
    assert values[:2] == ["latent", "pixel-lanczos"] and {"sd-x2-latent-upscaler", "my-x2"} <= set(values)
    labels = dict((v, k) for k, v in lh.upscaler_choices(registry))
    assert "not downloaded" in labels["my-x2"]
    assert lh.hires_fields(False, 2, 0.5, "latent", 0, registry) is None
    assert lh.hires_fields(True, 2, 0.4, "pixel-lanczos", 0, registry) == {
        "scale": 2, "strength": 0.4, "upscaler": "pixel-lanczos", "steps": None}
    with pytest.raises(PathRefused, match="not one of this server's upscalers"):
        lh.hires_fields(True, 2, 0.4, "/models/x4", 0, registry)
    assert "512×512" in lh.hires_note(256, 256, True, 2)
    assert "not a multiple of 8" in lh.hires_note(256, 256, True, 1.3)


@pytest.mark.timeout(300)
def test_a_picked_lora_and_hires_render_through_the_engine(test_studio, test_model, tmp_path):
    from pipelines.tiny import make_tiny_lora
    from ui.handlers import Handlers

    registry, model = test_model
    loaded = test_studio.load(registry.resolve(model))
    loras = tmp_path / "loras"
    make_tiny_lora(loaded.pipe, loras / "style.safetensors", seed=1)
    h = Handlers(test_studio, tmp_path / "out", verify_on_write=True, loras_dir=loras)
    fields = h.request_fields(prompt="a red circle", model=model, steps=2, size="Custom", width=128, height=128,
                              seed=7)
    fields["loras"] = lh.lora_refs(["style.safetensors"], [0.8], loras, registry)
    fields["hires"] = lh.hires_fields(True, 2, 0.5, "latent", 2, registry)
    (entry,) = h.generate(fields)
    assert (entry["width"], entry["height"]) == (256, 256) and entry["verify"] in ("trusted", "valid")
    assert entry["request"]["loras"] == [{"path": "style.safetensors", "weight": 0.8}]
    assert entry["request"]["hires"]["scale"] == 2 and str(tmp_path) not in str(entry["request"])
    # reuse settings brings the LoRA, its weight and the hires options back into the form
    picked, w0, *rest = lh.reuse_values(entry, lh.lora_choices(loras, registry))
    assert picked == ["style.safetensors"] and w0["value"] == 0.8 and w0["visible"]
    assert rest[-5:] == [True, 2.0, 0.5, "latent", 2]


def test_batch_file_upscalers_are_names_only(setup, tmp_path):
    from ui.batch import validate

    _, registry, _ = setup
    job = tmp_path / "out" / ".gradio" / "job.jsonl"
    job.parent.mkdir(parents=True)
    job.write_text('{"prompt": "a", "hires": {"scale": 2, "upscaler": "/models/x4"}}\n'
                   '{"prompt": "b", "hires": {"scale": 2, "upscaler": "stabilityai/stable-diffusion-x4-upscaler"}}\n'
                   '{"prompt": "c", "hires": "2:0.4:pixel-lanczos"}\n')
    rows, errors = validate(str(job), registry, tmp_path / "out")
    assert [r[0] for r in rows] == [3]
    assert len(errors) == 2 and all("is not one of this server's upscalers" in e for e in errors)
    assert "/models" not in " ".join(errors)


def test_generate_event_refuses_lora_paths_and_upscaler_paths_before_rendering(registry, tmp_path):
    from test_handlers import FakeStudio, app_fn
    from ui.app import build_app

    loras = tmp_path / "loras"
    loras.mkdir()
    (loras / "ok.safetensors").write_bytes(b"x")
    secret = tmp_path / "server" / "secret.safetensors"
    secret.parent.mkdir()
    secret.write_bytes(b"x")
    app = build_app(FakeStudio(registry), tmp_path / "out", verify_on_write=False, loras_dir=loras)
    gen = app_fn(app, "do_generate")
    base = ("a prompt", "", "fake", "Euler", 2, 5.0, 64, 64, -1, 1)
    noprog = dict(request=None, progress=lambda *a, **k: None)
    for extra, needle in [((["../server/secret.safetensors"], 1.0), "LoRA folder"),
                          (([str(secret)], 1.0), "LoRA folder"),
                          (([], 1.0, 1.0, 1.0, 1.0, True, 2, 0.5, str(tmp_path / "server")), "upscalers")]:
        with pytest.raises(gr.Error) as info:
            gen(*base, *extra, **noprog)
        assert needle in info.value.message and str(tmp_path) not in info.value.message, info.value.message
    assert app.ui_handlers.studio.calls == []  # nothing was rendered from a refused request
    gen(*base, ["ok.safetensors"], 0.5, 1.0, 1.0, 1.0, True, 2, 0.4, "pixel-lanczos", 0, **noprog)
    request = app.ui_handlers.studio.calls[-1]["request"]
    assert request.loras[0].path == str(loras / "ok.safetensors") and request.loras[0].weight == 0.5
    assert request.hires.scale == 2 and request.hires.upscaler == "pixel-lanczos" and request.hires.steps is None
