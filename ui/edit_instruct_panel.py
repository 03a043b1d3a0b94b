"""The Edit tab's instruction mode ("make the circle blue"): the prompt is the instruction, an image-guidance
slider (InstructPix2Pix: how closely to keep the source) and a before/after view of the source and the sealed
result. The edit is the same request as everywhere (`instruct=True`, `image_guidance`); a model that does not
edit by instruction runs on its counterpart (`studio.counterparts`), or is refused in one line when it has none
offline."""
from __future__ import annotations

from typing import Optional

from studio import RequestError
from studio.counterparts import image_guidance_default, instruct_counterpart

MODE = "instruct"


def instruct_fields(h, fields: dict, image_guidance=None) -> dict:
    """The Edit form's fields as an instruction edit: the instruct model to run (RequestError naming why there
    is none), `instruct=True`, and the image guidance where the model's family has one."""
    from .handlers import _number

    picked = fields.get("model") or h.default_model("image")
    model = instruct_counterpart(h.registry, picked)
    out = {**fields, "model": model, "instruct": True}
    if image_guidance_default(h.registry, model) is not None:
        out["image_guidance"] = _number(image_guidance, "image guidance", minimum=0)
    return out


def source_field(mode: str, source: str) -> dict:
    """The Edit run's source as a request field: a clip (MP4, MOV, WebM, GIF) is an instruction edit of every
    frame (`init_video`); any other mode edits an image, and a clip there is refused in one line."""
    from studio.control_cli import is_clip_file

    if not is_clip_file(source):
        return {"init_image": source}
    if mode != MODE:
        raise RequestError(f"{mode} edits an image: a clip is edited by instruction (pick the Instruct mode)")
    return {"init_video": source}


def note(h, mode: str, model: Optional[str]) -> tuple[str, Optional[float]]:
    """(the line under the slider, the model's default image guidance or None) for the picked model."""
    if mode != MODE:
        return "", None
    try:
        target = instruct_counterpart(h.registry, model or h.default_model("image"))
    except RequestError as exc:
        return f"**Cannot edit by instruction:** {exc}", None
    default = image_guidance_default(h.registry, target)
    via = "" if target == model else f" (the instruction model for {model})"
    guidance = "" if default is not None else "; this model has no image guidance"
    return f"Edits with **{target}**{via}{guidance}.", default


class InstructControls:
    """Built in the Edit tab's settings column; shown in instruct mode."""

    def __init__(self):
        import gradio as gr

        with gr.Group(visible=False, elem_id="e-instruct-box") as self.box:
            self.image_guidance = gr.Slider(0.0, 10.0, value=1.5, step=0.1, elem_id="e-image-guidance",
                                            label="Image guidance (how closely to keep the source)")
            self.note = gr.Markdown("", elem_id="e-instruct-note", elem_classes="ds-status")

    def view(self):
        """The before/after slider, built in the results column. The "before" is the user's own upload as it
        arrived, the "after" the sealed file: both are served as they are, nothing is re-encoded."""
        import gradio as gr

        self.before_after = gr.ImageSlider(label="Before / after (drag the handle)", type="filepath",
                                           interactive=False, visible=False, elem_id="e-before-after",
                                           buttons=["fullscreen"], max_height=360)
        return self.before_after

    @property
    def inputs(self) -> list:
        return [self.image_guidance]

    def wire(self, h, roots, *, mode, model, source, files, event) -> None:
        """`event`: the Edit run; on success the view shows the source next to the first sealed result."""
        import gradio as gr

        from .browser_paths import checked_path

        def on_change(m, name):
            line, default = note(h, m, name)
            slider = gr.update(visible=default is not None, **({"value": default} if default is not None else {}))
            return gr.update(visible=m == MODE), slider, line

        for ctl in (mode, model):
            ctl.change(on_change, [mode, model], [self.box, self.image_guidance, self.note], queue=False)

        def show(m, src, results):
            if m != MODE or not src or not results:
                return gr.update(value=None, visible=False)
            after = results[0] if isinstance(results, list) else results
            return gr.update(value=(checked_path(src, "source image", roots), checked_path(after, "result", roots)),
                             visible=True)

        event.success(show, [mode, source, files], [self.before_after], queue=False)


__all__ = ["InstructControls", "MODE", "instruct_fields", "note", "source_field"]
