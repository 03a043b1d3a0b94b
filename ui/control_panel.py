"""The Generate tab's ControlNet panel: a control image uploaded or sketched in the browser, a preprocessor
(`studio.schema.CONTROL_PREPROCESSORS`), the ControlNet (only those that would run on the picked model are
offered, `studio.counterparts`), weight and start/end, and the preprocessed map shown before generating,
sealed like every image the app shows (`studio.control.preprocess_file`: the control image is its parentOf
ingredient). The unit becomes the request's `controls`, the same field the API, the CLI and job files fill."""
from __future__ import annotations

import hashlib
import uuid
from pathlib import Path
from typing import Optional

from studio import RequestError
from studio.counterparts import controlnet_for, controlnet_options
from studio.schema import CONTROL_PREPROCESSORS

WEIGHTLESS = ("none", "canny", "shuffle", "lineart_standard")  # run offline; the others need annotator weights
SKETCH = "#000000"


def preprocessor_choices() -> list[tuple[str, str]]:
    return [(p if p in WEIGHTLESS else f"{p} (needs its weights)", p) for p in CONTROL_PREPROCESSORS]


def _strokes(editor_value: Optional[dict]) -> bool:
    from PIL import Image

    for layer in (editor_value or {}).get("layers") or []:
        if layer:
            with Image.open(layer) as im:
                if im.convert("RGBA").getchannel("A").getbbox() is not None:
                    return True
    return False


def control_image(h, editor_value: Optional[dict], upload: Optional[str]) -> str:
    """The unit's source image: the uploaded file itself when nothing was drawn over it (so it is the map's
    ingredient byte for byte), else the canvas flattened onto white and saved in the output folder."""
    from PIL import Image

    if upload and not _strokes(editor_value):
        return upload
    value = editor_value or {}
    drawn = value.get("composite") or value.get("background")
    if not drawn:
        raise RequestError("the ControlNet needs a control image: upload one or sketch on the canvas")
    with Image.open(drawn) as im:
        rgba = im.convert("RGBA")
    flat = Image.new("RGB", rgba.size, "white")
    flat.paste(rgba, mask=rgba.getchannel("A"))
    if all(lo == hi for lo, hi in flat.getextrema()):
        raise RequestError("the control image is blank: upload one or sketch on the canvas")
    folder = h.out_dir / "controls"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"source-{hashlib.sha256(flat.tobytes()).hexdigest()[:16]}.png"
    if not path.exists():
        flat.save(path)
    return str(path)


def unit_fields(h, model: Optional[str], *, on, guess, editor, upload, preprocessor, controlnet, weight, start,
                end) -> dict:
    """The request fields of the panel (nothing when it is off), each value checked in one line."""
    from .handlers import _number

    if not on:
        return {}
    if preprocessor not in CONTROL_PREPROCESSORS:
        raise RequestError(f"unknown preprocessor {str(preprocessor)[:20]!r}")
    model = model or h.default_model("image")
    unit = {"image": control_image(h, editor, upload), "preprocessor": preprocessor,
            "model": controlnet_for(h.registry, model, controlnet, preprocessor, h.models_dir),
            "weight": _number(weight, "control weight", minimum=0), "start": _number(start, "control start"),
            "end": _number(end, "control end")}
    return {"controls": [{k: v for k, v in unit.items() if v is not None}], **({"guess_mode": True} if guess else {})}


def preview_map(h, editor, upload, preprocessor, width, height, seed) -> tuple[str, str]:
    """(path of the sealed control map at the output size, a status line): what the ControlNet will see."""
    from studio.control import preprocess_file

    from .handlers import _number

    if preprocessor not in CONTROL_PREPROCESSORS:
        raise RequestError(f"unknown preprocessor {str(preprocessor)[:20]!r}")
    source = control_image(h, editor, upload)
    w = _number(width, "width", whole=True, minimum=64)
    hh = _number(height, "height", whole=True, minimum=64)
    seed = _number(seed, "seed", whole=True)
    out = h.out_dir / "controls" / f"map-{preprocessor}-{uuid.uuid4().hex[:10]}.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    sealed = preprocess_file(preprocessor, source, out, width=w, height=hh, seed=max(seed or 0, 0))
    size = f"{sealed.record.width}×{sealed.record.height}"
    return str(out), (f"{preprocessor} map, {size} (sealed; the control image is its ingredient, and the map "
                      f"becomes an ingredient of the output)")


class ControlPanel:
    """The accordion in the Generate tab's form column (one unit)."""

    def __init__(self, h, model0: Optional[str]):
        import gradio as gr

        choices, line = self._options(h, model0)
        with gr.Accordion("ControlNet: steer the layout with an edge map, lines or a sketch", open=False,
                          elem_id="cn-box"):
            with gr.Row():
                self.on = gr.Checkbox(False, label="Enable", elem_id="cn-on")
                self.guess = gr.Checkbox(False, label="Guess mode (SD/SDXL: follow the map without the prompt)",
                                         elem_id="cn-guess")
            self.upload = gr.File(label="Control image (kept byte-for-byte as the map's C2PA ingredient)",
                                  file_types=["image"], type="filepath", elem_id="cn-upload", height=100)
            self.editor = gr.ImageEditor(
                label="…or sketch (over the upload, or on the blank canvas)", type="filepath", format="png",
                sources=["upload"], layers=False, transforms=(), image_mode="RGBA", canvas_size=(512, 512),
                brush=gr.Brush(colors=[SKETCH, "#ffffff"], default_color=SKETCH, default_size=6),
                eraser=gr.Eraser(default_size=16), elem_id="cn-editor", height=340)
            with gr.Row():
                self.preprocessor = gr.Dropdown(preprocessor_choices(), value="canny", label="Preprocessor",
                                                elem_id="cn-preprocessor")
                self.controlnet = gr.Dropdown(choices, value="auto", label="ControlNet", elem_id="cn-net")
            self.note = gr.Markdown(line, elem_id="cn-note", elem_classes="ds-status")
            with gr.Row():
                self.weight = gr.Slider(0.0, 2.0, value=1.0, step=0.05, label="Weight", elem_id="cn-weight")
                self.start = gr.Slider(0.0, 1.0, value=0.0, step=0.05, label="Start", elem_id="cn-start")
                self.end = gr.Slider(0.0, 1.0, value=1.0, step=0.05, label="End", elem_id="cn-end")
            self.show = gr.Button("Show the control map", size="sm", elem_id="cn-show")
            self.status = gr.Markdown("", elem_id="cn-status", elem_classes="ds-status")
            self.map = gr.Image(label="Control map (sealed)", type="filepath", interactive=False, height=260,
                                elem_id="cn-map", buttons=["download"])

    @staticmethod
    def _options(h, model):
        try:
            choices, line = controlnet_options(h.registry, model or h.default_model("image"), h.models_dir)
        except Exception as exc:  # noqa: BLE001 - an unknown model: the run says so in one line
            return [("auto (for the preprocessor)", "auto")], str(exc).splitlines()[0]
        return choices or [("auto (for the preprocessor)", "auto")], line

    @property
    def inputs(self) -> list:
        return [self.on, self.guess, self.editor, self.upload, self.preprocessor, self.controlnet, self.weight,
                self.start, self.end]

    def fields(self, h, roots, model, values) -> dict:
        """`values`: this panel's `inputs`, in order, as the event received them (browser paths checked)."""
        from .browser_paths import checked_editor, checked_path

        on, guess, editor, upload, prep, net, weight, start, end = values
        if not on:
            return {}
        return unit_fields(h, model, on=on, guess=guess, editor=checked_editor(editor, roots),
                           upload=checked_path(upload, "control image", roots), preprocessor=prep,
                           controlnet=net, weight=weight, start=start, end=end)

    def wire(self, h, roots, *, model, width, height, seed, guarded) -> None:
        import gradio as gr

        from .browser_paths import checked_editor, checked_path

        def on_model(name):
            choices, line = self._options(h, name)
            return gr.update(choices=choices, value="auto"), line

        model.change(on_model, [model], [self.controlnet, self.note], queue=False)
        self.upload.change(lambda p: p, [self.upload], [self.editor], queue=False)

        @guarded(status=1, outputs=2)
        def do_show(editor, upload, prep, w, hh, s):
            path, line = preview_map(h, checked_editor(editor, roots), checked_path(upload, "control image", roots),
                                     prep, w, hh, s)
            return path, line

        self.show.click(do_show, [self.editor, self.upload, self.preprocessor, width, height, seed],
                        [self.map, self.status])


def status_note(entry: dict) -> str:
    """The Generate status line's note for a controlled output."""
    units = (entry.get("request") or {}).get("controls") or []
    if not units:
        return ""
    return " · ControlNet " + ", ".join(f"{u.get('model')} ({u.get('preprocessor')}, weight {u.get('weight'):g})"
                                        for u in units) + "; the control map is its C2PA ingredient"


__all__ = ["ControlPanel", "WEIGHTLESS", "control_image", "preprocessor_choices", "preview_map", "status_note",
           "unit_fields"]
