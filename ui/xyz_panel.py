"""The X/Y/Z plot panel of the Generate tab: up to three axes over the Generate form's request, run through
`studio.xyz.plot` (the engine renders and seals every cell; the grid is sealed with the cells as ingredients).
The cells join the Gallery like any output; the grid and the cells download from the panel."""
from __future__ import annotations

import threading
import time
import uuid
from typing import Optional

from studio import GenerationRequest, RequestError

from .errors import Cancelled

AXES = ["none", "seed", "guidance", "steps", "sampler", "lora", "prompt"]
AXIS_LABELS = {"none": "—", "seed": "Seed", "guidance": "CFG (guidance)", "steps": "Steps", "sampler": "Sampler",
               "lora": "LoRA weight (first LoRA)", "prompt": "Prompt S/R (first value is searched for)"}


def axis_specs(choices_and_values) -> list[str]:
    """[(axis, "v1,v2"), ...] from the form -> `NAME=V1,V2` specs; unused rows skipped, a used row without values
    refused in one line."""
    specs = []
    for i, (name, values) in enumerate(choices_and_values):
        if not name or name == "none":
            continue
        if name not in AXES:
            raise RequestError(f"unknown axis {str(name)[:20]!r}")
        if not str(values or "").strip():
            raise RequestError(f"the {'XYZ'[i]} axis ({AXIS_LABELS[name]}) needs values, comma-separated")
        specs.append(f"{name}={values}")
    if not specs:
        raise RequestError("pick at least one axis for the plot")
    return specs


def run_xyz(h, fields: dict, specs: list[str], *, progress=None, cancel: Optional[threading.Event] = None,
            session: str = "-") -> tuple[str, list[str], str, list[dict]]:
    """(grid path, file paths: grid then cells, status line, the cells' history entries)."""
    import studio.xyz as xyz

    fields = dict(fields)
    fields["batch"] = 1
    if not fields.get("model"):
        fields["model"] = h.default_model("image")
    base = GenerationRequest.build(**fields)
    xyz.plan(base, specs)  # a bad plot is refused before any load

    def on_progress(done: int, total: int, what: str) -> None:
        if cancel is not None and cancel.is_set():
            raise Cancelled(f"cancelled at {what}")
        if progress is not None:
            progress(done, total, f"rendering {what}")

    out = h.out_dir / "xyz" / time.strftime("%Y%m%d") / f"{time.strftime('%H%M%S')}-xyz-{uuid.uuid4().hex[:6]}.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    result = xyz.plot(h.studio, base, specs, out=out, progress=on_progress)
    entries = [h._record(r, o, "xyz") for r, o in zip(result.results, result.cells)]
    nx, ny, nz = result.shape
    shape = f"{nx}×{ny}" + (f"×{nz}" if nz > 1 else "")
    status = (f"X/Y/Z plot {shape}: {len(result.cells)} sealed cells (in the Gallery too); the grid is sealed "
              f"with every cell as its C2PA ingredient · {result.results[0].record.model_name}")
    return str(out), [str(out)] + [e["file"] for e in entries], status, entries


class XYZPanel:
    """The accordion in the Generate tab's form column."""

    def __init__(self):
        import gradio as gr

        with gr.Accordion("X/Y/Z plot: sweep parameters into a labelled grid", open=False, elem_id="xyz-box"):
            self.rows = []
            for axis, default, values in (("X", "seed", "1,2,3"), ("Y", "guidance", "3,7"), ("Z", "none", "")):
                with gr.Row(equal_height=True):
                    name = gr.Dropdown([(AXIS_LABELS[a], a) for a in AXES], value=default, label=f"{axis} axis",
                                       elem_id=f"xyz-{axis.lower()}-axis", scale=2, min_width=150)
                    vals = gr.Textbox(values, label=f"{axis} values (comma-separated; seeds/steps take A-B)",
                                      elem_id=f"xyz-{axis.lower()}-values", scale=3)
                self.rows.append((name, vals))
            self.go = gr.Button("Run X/Y/Z plot", variant="secondary", elem_id="xyz-go")
            self.status = gr.Markdown("", elem_id="xyz-status", elem_classes="ds-status")
            self.grid = gr.Image(label="Grid (sealed; the cells are its ingredients)", type="filepath",
                                 show_label=False, interactive=False, elem_id="xyz-grid", buttons=["fullscreen"],
                                 height=360)
            self.files = gr.File(label="Download the sealed grid and cells", file_count="multiple",
                                 interactive=False, elem_id="xyz-files", height=110)

    @property
    def inputs(self) -> list:
        return [c for row in self.rows for c in row]

    def wire(self, h, *, form_inputs: list, fields_of, session_of, progress_of, cancel_of, guarded) -> None:
        """`form_inputs`: the Generate form components whose values `fields_of(values)` turns into request
        fields; `guarded` is the app's one-line-error wrapper."""
        import gradio as gr

        n_form = len(form_inputs)

        @guarded(status=0, outputs=3)
        def do_xyz(*args, request: gr.Request = None, progress=gr.Progress()):
            values, axes = list(args[:n_form]), list(args[n_form:n_form + 6])
            specs = axis_specs(list(zip(axes[0::2], axes[1::2])))
            fields = fields_of(values)
            grid, files, status, _ = run_xyz(h, fields, specs, progress=progress_of(progress),
                                             cancel=cancel_of(request), session=session_of(request))
            return status, grid, files

        self.go.click(do_xyz, form_inputs + self.inputs, [self.status, self.grid, self.files],
                      show_progress_on=[self.grid], concurrency_id="device", concurrency_limit=1)


__all__ = ["AXES", "XYZPanel", "axis_specs", "run_xyz"]
