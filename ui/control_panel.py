"""The ControlNet panel of the Generate and Edit tabs (one class, its element ids under a prefix): up to
`UNITS` units (multi-ControlNet), each a control image uploaded or sketched in the browser, a preprocessor
(`studio.schema.CONTROL_PREPROCESSORS`), the ControlNet (only those that would run on the picked model are
offered, `studio.counterparts`), weight and start/end, and the preprocessed map shown before the run, sealed
like every image the app shows (`studio.control.preprocess_file`: the control image is its parentOf
ingredient). The units become the request's `controls`, the same field the API, the CLI and job files fill."""
from __future__ import annotations

import hashlib
import uuid
from typing import Optional

from studio import RequestError
from studio.counterparts import controlnet_for, controlnet_options
from studio.schema import CONTROL_PREPROCESSORS

UNITS = 2  # units per panel: unit 1 in the accordion itself, the others in an accordion each
WEIGHTLESS = ("none", "canny", "layout", "shuffle", "lineart_standard")  # run offline; the others need annotator weights
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
    ingredient byte for byte), else the canvas flattened onto white. The flattened sketch is an input like an
    upload, not an output: it is kept with the uploads (never unsealed among the outputs); what the user is
    shown of it is the sealed map, whose ingredient it is."""
    from .browser_paths import upload_dir
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
    folder = upload_dir(h.out_dir) / "control-sketches"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"source-{hashlib.sha256(flat.tobytes()).hexdigest()[:16]}.png"
    if not path.exists():
        flat.save(path)
    return str(path)


def unit_request(h, model: Optional[str], *, editor, upload, preprocessor, controlnet, weight, start, end,
                 unit: int = 1) -> dict:
    """One enabled unit as a request's control unit, each value checked in one line (naming the unit when it is
    not the first)."""
    from .handlers import _number

    where = f"unit {unit}: " if unit > 1 else ""
    try:
        if preprocessor not in CONTROL_PREPROCESSORS:
            raise RequestError(f"unknown preprocessor {str(preprocessor)[:20]!r}")
        model = model or h.default_model("image")
        out = {"image": control_image(h, editor, upload), "preprocessor": preprocessor,
               "model": controlnet_for(h.registry, model, controlnet, preprocessor, h.models_dir),
               "weight": _number(weight, "control weight", minimum=0), "start": _number(start, "control start"),
               "end": _number(end, "control end")}
    except RequestError as exc:
        raise RequestError(f"{where}{exc}") from None
    return {k: v for k, v in out.items() if v is not None}


def unit_fields(h, model: Optional[str], *, on, guess, editor, upload, preprocessor, controlnet, weight, start,
                end) -> dict:
    """The request fields of a one-unit panel (nothing when it is off)."""
    if not on:
        return {}
    unit = unit_request(h, model, editor=editor, upload=upload, preprocessor=preprocessor, controlnet=controlnet,
                        weight=weight, start=start, end=end)
    return {"controls": [unit], **({"guess_mode": True} if guess else {})}


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


def source_size(path: Optional[str]) -> tuple[Optional[int], Optional[int]]:
    """The Edit tab's output size for a source image, as the engine resolves it with no size given
    (`studio.inputs.size_from_source`, at the usual VAE factor 8); (None, None) with no source (the map then
    keeps the control image's size)."""
    from PIL import Image

    from studio.inputs import size_from_source

    if not path:
        return None, None
    try:
        with Image.open(path) as im:
            w, hh = im.size
    except OSError:
        raise RequestError("the source image cannot be read: upload it again") from None
    return size_from_source(w, hh)


class ControlUnit:
    """One unit's widgets (element ids `<prefix>-on`, `-upload`, `-editor`, `-preprocessor`, `-net`, `-note`,
    `-weight`, `-start`, `-end`, `-show`, `-status`, `-map`), built where the panel opens it."""

    def __init__(self, prefix: str, choices, line: str, *, on=None, label: str = "Enable"):
        """`on`: an Enable box already built (unit 1's sits next to guess mode)."""
        import gradio as gr

        self.on = on if on is not None else gr.Checkbox(False, label=label, elem_id=f"{prefix}-on")
        self.upload = gr.File(label="Control image (kept byte-for-byte as the map's C2PA ingredient)",
                              file_types=["image"], type="filepath", elem_id=f"{prefix}-upload", height=100)
        self.editor = gr.ImageEditor(
            label="…or sketch (over the upload, or on the blank canvas)", type="filepath", format="png",
            sources=["upload"], layers=False, transforms=(), image_mode="RGBA", canvas_size=(512, 512),
            brush=gr.Brush(colors=[SKETCH, "#ffffff"], default_color=SKETCH, default_size=6),
            eraser=gr.Eraser(default_size=16), elem_id=f"{prefix}-editor", height=340)
        with gr.Row():
            self.preprocessor = gr.Dropdown(preprocessor_choices(), value="canny", label="Preprocessor",
                                            elem_id=f"{prefix}-preprocessor")
            self.controlnet = gr.Dropdown(choices, value="auto", label="ControlNet", elem_id=f"{prefix}-net")
        self.note = gr.Markdown(line, elem_id=f"{prefix}-note", elem_classes="ds-status")
        with gr.Row():
            self.weight = gr.Slider(0.0, 2.0, value=1.0, step=0.05, label="Weight", elem_id=f"{prefix}-weight")
            self.start = gr.Slider(0.0, 1.0, value=0.0, step=0.05, label="Start", elem_id=f"{prefix}-start")
            self.end = gr.Slider(0.0, 1.0, value=1.0, step=0.05, label="End", elem_id=f"{prefix}-end")
        self.show = gr.Button("Show the control map", size="sm", elem_id=f"{prefix}-show")
        self.status = gr.Markdown("", elem_id=f"{prefix}-status", elem_classes="ds-status")
        self.map = gr.Image(label="Control map (sealed)", type="filepath", interactive=False, height=260,
                            elem_id=f"{prefix}-map", buttons=["download"])

    @property
    def inputs(self) -> list:
        return [self.on, self.editor, self.upload, self.preprocessor, self.controlnet, self.weight, self.start,
                self.end]


class ControlPanel:
    """The accordion of a tab's form column: unit 1 in it, units 2.. in an accordion each ("Unit 2"), one
    guess-mode switch for them all (diffusers takes it per call). `prefix` names the element ids: unit 1's are
    `<prefix>-...`, unit i's `<prefix><i>-...` (Generate: `cn`, `cn2`; Edit: `e-cn`, `e-cn2`); `steers` words
    the title (each tab's its own, so a page has one accordion of each name)."""

    def __init__(self, h, model0: Optional[str], *, prefix: str = "cn", units: int = UNITS,
                 steers: str = "the layout"):
        import gradio as gr

        choices, line = self._options(h, model0)
        with gr.Accordion(f"ControlNet: steer {steers} with an edge map, lines or a sketch", open=False,
                          elem_id=f"{prefix}-box") as self.box:
            with gr.Row():
                first_on = gr.Checkbox(False, label="Enable", elem_id=f"{prefix}-on")
                self.guess = gr.Checkbox(False, label="Guess mode (SD/SDXL: follow the map without the prompt)",
                                         elem_id=f"{prefix}-guess")
            self.units = [ControlUnit(prefix, choices, line, on=first_on)]
            for i in range(2, units + 1):
                with gr.Accordion(f"Unit {i}: another ControlNet, its own image, weight and start/end",
                                  open=False, elem_id=f"{prefix}{i}-box"):
                    self.units.append(ControlUnit(f"{prefix}{i}", choices, line, label=f"Enable unit {i}"))

    @staticmethod
    def _options(h, model):
        try:
            choices, line = controlnet_options(h.registry, model or h.default_model("image"), h.models_dir)
        except Exception as exc:  # noqa: BLE001 - an unknown model: the run says so in one line
            return [("auto (for the preprocessor)", "auto")], str(exc).splitlines()[0]
        return choices or [("auto (for the preprocessor)", "auto")], line

    @property
    def inputs(self) -> list:
        """Unit 1's values with guess mode second (the order API callers of the one-unit panel send), then each
        further unit's `ControlUnit.inputs`."""
        first, *more = self.units
        return [first.on, self.guess, *first.inputs[1:], *(c for u in more for c in u.inputs)]

    def fields(self, h, roots, model, values) -> dict:
        """`values`: this panel's `inputs`, in order, as the event received them (browser paths checked); a
        shorter list (an API caller of the one-unit panel) leaves the remaining units off."""
        from .browser_paths import checked_editor, checked_path

        values = list(values)
        guess = values.pop(1) if len(values) > 1 else False
        size = len(self.units[0].inputs)
        controls = []
        for i in range(len(self.units)):
            part = values[i * size:(i + 1) * size]
            on, editor, upload, prep, net, weight, start, end = part + [None] * (size - len(part))
            if not on:
                continue
            controls.append(unit_request(
                h, model, editor=checked_editor(editor, roots), preprocessor=prep, controlnet=net, weight=weight,
                upload=checked_path(upload, "control image", roots), start=start, end=end, unit=i + 1))
        if not controls:
            return {}
        return {"controls": controls, **({"guess_mode": True} if guess else {})}

    def wire(self, h, roots, *, model, seed, guarded, width=None, height=None, source=None, mode=None) -> None:
        """The map shown at the output size: `width` / `height` (Generate) or that of the `source` image (Edit).
        `mode` (Edit): the panel is hidden in instruct mode, where no ControlNet runs."""
        import gradio as gr

        from .browser_paths import checked_editor, checked_path

        def on_model(name):
            choices, line = self._options(h, name)
            return (gr.update(choices=choices, value="auto"), line) * len(self.units)

        model.change(on_model, [model], [c for u in self.units for c in (u.controlnet, u.note)], queue=False)
        if mode is not None:
            mode.change(lambda m: gr.update(visible=controls_applied(m)), [mode], [self.box], queue=False)
        size_inputs = [source] if source is not None else [width, height]

        @guarded(status=1, outputs=2)
        def do_show(editor, upload, prep, s, *size):
            w, hh = source_size(checked_path(size[0], "source image", roots)) if source is not None else size
            return preview_map(h, checked_editor(editor, roots), checked_path(upload, "control image", roots),
                               prep, w, hh, s)

        for u in self.units:
            u.upload.change(lambda p: p, [u.upload], [u.editor], queue=False)
            u.show.click(do_show, [u.editor, u.upload, u.preprocessor, seed, *size_inputs], [u.map, u.status])


def controls_applied(mode: str) -> bool:
    """Whether an Edit mode takes the panel's units: an instruction edit runs no ControlNet (panel hidden)."""
    return mode != "instruct"


def status_note(entry: dict) -> str:
    """The Generate status line's note for a controlled output."""
    units = (entry.get("request") or {}).get("controls") or []
    if not units:
        return ""
    return " · ControlNet " + ", ".join(f"{u.get('model')} ({u.get('preprocessor')}, weight {u.get('weight'):g})"
                                        for u in units) + "; the control map is its C2PA ingredient"


__all__ = ["ControlPanel", "ControlUnit", "UNITS", "WEIGHTLESS", "control_image", "controls_applied",
           "preprocessor_choices", "preview_map", "source_size", "status_note", "unit_request",
           "unit_fields"]
