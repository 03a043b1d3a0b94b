"""Parameters as creators read them: the A1111-style text block (what the studio writes into its PNGs) shown by
default with the JSON behind a toggle, "Send to Generate / Edit" from the Gallery and Verify, and the PNG info
drop that reads any studio or A1111 PNG into the Generate form.

The Gradio-free part (`text_for_view`, `form_from_file`, `form_values`) is what the tests call directly; the
builders below only lay out components and wire them, so ui/app.py keeps a few lines per hook."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from studio.a1111_params import read_png, text_for_file

from .browser_paths import checked_path
from .errors import sanitize, user_message

SIZE_CUSTOM = "Custom"


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except (OSError, ValueError):
        return False


def text_for_view(out_dir: Path, view: Optional[dict]) -> str:
    """The parameters block of the output a params view (ui.handlers.params_view) shows: read from its sealed
    file, which lies in the output folder (a view naming any other file shows nothing)."""
    rel = (view or {}).get("file") if isinstance(view, dict) else None
    if not rel:
        return ""
    path = Path(out_dir) / str(rel)
    if not _inside(path, Path(out_dir)) or not path.is_file():
        return ""
    try:
        return text_for_file(path)
    except Exception:  # noqa: BLE001 -- a display helper: a file it cannot read shows no block
        return ""


def form_from_file(path: str) -> tuple[dict[str, Any], str, list[str]]:
    """(request fields, parameters text, notes) of a file: a PNG's studio record or A1111 text, else the studio
    record in a file's C2PA manifest (JPEG, WebP). Raises RequestError with one line when it carries none."""
    from studio import RequestError
    from studio.metadata import read_info

    name = Path(path).name
    try:
        return read_png(path)
    except RequestError:
        info = read_info(Path(path))
        request = dict((info or {}).get("request") or {})
        if not request.get("prompt"):
            raise
    fields = {k: request[k] for k in ("prompt", "negative_prompt", "steps", "guidance", "sampler", "width",
                                      "height", "strength") if request.get(k) is not None}
    fields["seed"] = info.get("seed", request.get("seed"))
    fields["model"] = info.get("model_name") or request.get("model")
    fields["loras"] = [dict(l) for l in request.get("loras") or []]
    text = ""
    try:
        text = text_for_file(path)
    except Exception:  # noqa: BLE001
        pass
    return fields, text or f"(parameters of {name} from its C2PA manifest)", []


def form_values(fields: dict, *, models, samplers, default_sampler: str) -> tuple[dict[str, Any], list[str]]:
    """The Generate form's values for request `fields`: the model and sampler only where this server has them
    (else a note, and the form keeps its own), the size as Custom width/height, seed -1 when none was recorded."""
    notes = []
    out: dict[str, Any] = {"prompt": fields.get("prompt", ""), "negative_prompt": fields.get("negative_prompt", "")}
    for key in ("steps", "guidance", "width", "height"):
        if fields.get(key) is not None:
            out[key] = fields[key]
    if fields.get("width") and fields.get("height"):
        out["size"] = SIZE_CUSTOM
    out["seed"] = fields["seed"] if fields.get("seed") is not None else -1
    sampler = fields.get("sampler")
    if sampler:
        if sampler in samplers:
            out["sampler"] = sampler
        else:
            notes.append(f"sampler {sampler!r} is not offered for these models: the form keeps its own")
    model = fields.get("model")
    if model:
        if model in models:
            out["model"] = model
        else:
            notes.append(f"model {model!r} is not in this server's registry: pick one in the Model menu")
    if fields.get("loras"):
        out["loras"] = fields["loras"]
    return out, notes


# -- Gradio builders -------------------------------------------------------------------------------------------
def params_block(out_dir: Path, prefix: str, label: str = "Parameters"):
    """The A1111-style block (copyable text) and, behind "Show JSON", the JSON view; returns the gr.JSON, which
    the app's events fill as before: the text follows it."""
    import gradio as gr

    text = gr.Textbox(label=label, lines=4, max_lines=12, interactive=False, buttons=["copy"],
                      elem_id=f"{prefix}-params-text", placeholder="the parameters of the selected output")
    show = gr.Checkbox(False, label="Show JSON", elem_id=f"{prefix}-params-json-toggle", container=False)
    view = gr.JSON(label=f"{label} (JSON)", elem_id=f"{prefix}-params", visible=False)
    show.change(lambda on: gr.update(visible=bool(on)), show, view, queue=False)
    view.change(lambda v: text_for_view(out_dir, v), view, text, queue=False)
    return view


def png_info_box():
    """The PNG info drop (Generate tab): (file, note Markdown)."""
    import gradio as gr

    with gr.Accordion("PNG info: drop a studio or A1111 PNG to read its parameters into this form", open=False,
                      elem_id="g-pnginfo-box"):
        drop = gr.File(label="PNG with parameters", file_types=[".png"], type="filepath", elem_id="g-pnginfo",
                       height=110)
        text = gr.Textbox(label="Parameters read", lines=3, max_lines=8, interactive=False,
                          elem_id="g-pnginfo-text")
        note = gr.Markdown("", elem_id="g-pnginfo-note", elem_classes="ds-status")
    return drop, text, note


def verify_block():
    """The Verify tab's parameters block and send buttons: (text, send to Generate, send to Edit, note)."""
    import gradio as gr

    text = gr.Textbox(label="Parameters", lines=4, max_lines=12, interactive=False, buttons=["copy"],
                      elem_id="v-params-text", placeholder="the generation parameters the file carries")
    with gr.Row():
        to_gen = gr.Button("Send to Generate", elem_id="v-to-generate")
        to_edit = gr.Button("Send to Edit", elem_id="v-to-edit")
    note = gr.Markdown("", elem_id="v-params-note", elem_classes="ds-status")
    return text, to_gen, to_edit, note


def picker_values(loras: list[dict], choices: list[tuple[str, str]]) -> tuple[list[dict], list[str]]:
    """The LoRA picker's entries ({"path": choice value, "weight"}) for recorded or A1111 LoRAs, matched by name
    (an A1111 `<lora:NAME:W>` tag, or the file a studio record names), and the names this server lacks."""
    by_name = {}
    for _, value in choices:
        name = value.split(":", 1)[1] if value.startswith("registry:") else Path(value).stem
        by_name.setdefault(name, value)
    picked, missing = [], []
    for l in loras:
        name = Path(str(l.get("path", ""))).stem
        value = next((v for _, v in choices if v == l.get("path")), None) or by_name.get(name)
        if value is None:
            missing.append(name)
        else:
            picked.append({"path": value, "weight": float(l.get("weight", 1.0))})
    return picked, missing


def wire(h, roots, *, gen: dict, edit: dict, tabs, samplers: list, default_sampler: str, png_info,
         verify_parts, v_file, lora_picker=None):
    """Hook the drop and the Verify buttons to the forms. `gen`/`edit` map field names (prompt, negative_prompt,
    model, sampler, steps, guidance, size, width, height, seed, batch; source, editor, mode for Edit) to the
    form's components; fields a form lacks are skipped, so a form that grows keeps working."""
    import gradio as gr

    out = h.out_dir

    def fill(form: dict, values: dict) -> dict:
        return {form[k]: v for k, v in values.items() if k in form}

    def gen_update(fields):
        values, notes = form_values(fields, models=h.registry.entries, samplers=samplers,
                                    default_sampler=default_sampler)
        if "batch" in gen:
            values["batch"] = 1
        updates = fill(gen, values)
        if lora_picker is not None and "loras" not in gen:
            # the picker's own "reuse" mapping: the picked names, then one weight slider per LoRA
            from .lora_hires import lora_choices, reuse_values

            component, weights = lora_picker
            picked, missing = picker_values(values.get("loras") or [], lora_choices(h.loras_dir, h.registry))
            filled = reuse_values({"request": {"loras": picked}}, lora_choices(h.loras_dir, h.registry))
            updates.update(zip([component, *weights], filled[:1 + len(weights)]))
            if missing:
                notes.append("LoRAs not found in this server's LoRA folder or registry: " + ", ".join(missing))
        elif values.get("loras") and "loras" not in gen:
            notes.append("LoRAs " + ", ".join(f"{Path(str(l.get('path'))).stem} ({l.get('weight', 1.0):g})"
                                              for l in values["loras"]) + " are not set: add them in the LoRA picker")
        return updates, notes

    def note_line(notes):
        return " · ".join(sanitize(n, out) for n in notes)

    drop, drop_text, drop_note = png_info

    def on_drop(path):
        if not path:
            return {drop_text: "", drop_note: ""}
        try:
            path = checked_path(path, "PNG", roots)
            fields, text, notes = form_from_file(path)
        except Exception as exc:  # noqa: BLE001 -- one line in the box, never a trace
            return {drop_text: "", drop_note: "**Error:** " + user_message(exc, out)}
        updates, more = gen_update(fields)
        notes = notes + more
        return {**updates, drop_text: text,
                drop_note: ("✓ read into the form" + (" · " + note_line(notes) if notes else ""))}

    gen_outputs = list(gen.values()) + ([lora_picker[0], *lora_picker[1]] if lora_picker is not None else [])
    drop.change(on_drop, [drop], gen_outputs + [drop_text, drop_note], queue=False)

    v_text, v_to_gen, v_to_edit, v_note = verify_parts

    def on_verify_file(path):
        if not path:
            return ""
        try:
            return form_from_file(checked_path(path, "file to verify", roots))[1]
        except Exception:  # noqa: BLE001 -- a file without parameters shows an empty block
            return ""

    v_file.change(on_verify_file, [v_file], [v_text], queue=False)

    def verify_to_generate(path):
        try:
            path = checked_path(path, "file to verify", roots)
            if not path:
                raise ValueError("upload a file to verify first")
            fields, _, notes = form_from_file(path)
        except Exception as exc:  # noqa: BLE001
            return {v_note: "**Error:** " + user_message(exc, out)}
        updates, more = gen_update(fields)
        return {**updates, tabs: gr.Tabs(selected="generate"), v_note: note_line(notes + more)}

    v_to_gen.click(verify_to_generate, [v_file], gen_outputs + [tabs, v_note], queue=False)

    def verify_to_edit(path):
        try:
            path = checked_path(path, "file to verify", roots)
            if not path:
                raise ValueError("upload a file to verify first")
            if Path(path).suffix.lower() not in (".png", ".jpg", ".jpeg", ".webp"):
                raise ValueError("only an image can be edited in the Edit tab")
            try:
                fields, _, notes = form_from_file(path)
            except Exception:  # noqa: BLE001 -- an image without parameters is still a source to edit
                fields, notes = {}, []
        except Exception as exc:  # noqa: BLE001
            return {v_note: "**Error:** " + user_message(exc, out)}
        return {**edit_update(path, fields), tabs: gr.Tabs(selected="edit"), v_note: note_line(notes)}

    def edit_update(path, fields):
        values, _ = form_values(fields, models=h.registry.entries, samplers=samplers,
                                default_sampler=default_sampler)
        values.update(source=path, editor=path, mode="img2img")
        if not fields.get("prompt"):
            values.pop("prompt", None)
            values.pop("negative_prompt", None)
        return fill(edit, values)

    v_to_edit.click(verify_to_edit, [v_file], list(edit.values()) + [tabs, v_note], queue=False)
    return edit_update


__all__ = ["form_from_file", "form_values", "params_block", "png_info_box", "text_for_view", "verify_block",
           "wire"]
