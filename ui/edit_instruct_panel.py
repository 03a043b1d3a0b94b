"""The Edit tab's instruction mode ("make the circle blue"): the prompt is the instruction, an image-guidance
slider (InstructPix2Pix: how closely to keep the source) and a before/after view of the source and the sealed
result: an image slider for an image, two players side by side for a clip (MP4, WebM, animated GIF), which is
edited frame by frame. The edit is the same request as everywhere (`instruct=True`, `image_guidance`; a clip is
`init_video`); a model that does not edit by instruction runs on its counterpart (`studio.counterparts`), or is
refused in one line when it has none offline. Which modes take a clip is the capability table's say
(`studio.modalities.CAPABILITIES`), not this module's."""
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


def takes_clips(mode: str) -> bool:
    """Whether the Edit mode `mode` edits a clip: a video request in that mode has a module that runs it."""
    from studio.modalities import CAPABILITIES

    return ("video", mode) in CAPABILITIES


def source_types(modes, clip_types) -> list[str]:
    """What the Edit tab's upload box takes: images, and the clip suffixes `clip_types` when one of `modes`
    edits clips (a clip in another mode is refused by `source_field` in one line)."""
    return ["image", *clip_types] if any(takes_clips(m) for m in modes) else ["image"]


def source_label(modes) -> str:
    clips = [m for m in modes if takes_clips(m)]
    also = f", or a clip in {' / '.join(clips)} mode" if clips else ""
    return f"Source image{also} (kept byte-for-byte as the C2PA ingredient)"


def still(path: Optional[str]) -> Optional[str]:
    """`path` when it is a still the mask editor and the source preview can show; None for a clip."""
    from studio.control_cli import is_clip_file

    return None if not path or is_clip_file(path) else path


def source_field(mode: str, source: str) -> dict:
    """The Edit run's source as a request field: a clip (MP4, MOV, WebM, GIF) is an edit of every frame
    (`init_video`) in a mode that takes clips; any other mode edits an image, and a clip there is refused in one
    line."""
    from studio.control_cli import is_clip_file

    if not is_clip_file(source):
        return {"init_image": source}
    if not takes_clips(mode):
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

    def view(self, player):
        """The before/after views, built in the results column: a slider for an image, two `player`s (a
        `gr.Video` that hands over the file untouched: `ui.app.SealedVideo`) for a clip, with a GIF source shown
        in an image element (a <video> cannot play one). The "before" is the user's own upload as it arrived,
        the "after" the sealed file: both are served as they are, nothing is re-encoded."""
        import gradio as gr

        self.before_after = gr.ImageSlider(label="Before / after (drag the handle)", type="filepath",
                                           interactive=False, visible=False, elem_id="e-before-after",
                                           buttons=["fullscreen"], max_height=360)
        with gr.Row(visible=False, elem_id="e-clip-before-after") as self.clip_pair:
            self.clip_before = player(label="Before (your clip)", interactive=False, autoplay=True, loop=True,
                                      height=300, elem_id="e-clip-before", buttons=[])
            self.clip_before_gif = gr.Image(label="Before (your clip)", type="filepath", interactive=False,
                                            height=300, visible=False, elem_id="e-clip-before-gif", buttons=[])
            self.clip_after = player(label="After (sealed clip)", interactive=False, autoplay=True, loop=True,
                                     height=300, elem_id="e-clip-after", buttons=["download"])
        return self.before_after

    @property
    def views(self) -> list:
        return [self.before_after, self.clip_pair, self.clip_before, self.clip_before_gif, self.clip_after]

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
                return before_after(None, None)
            after = results[0] if isinstance(results, list) else results
            return before_after(checked_path(src, "source", roots), checked_path(after, "result", roots))

        event.success(show, [mode, source, files], self.views, queue=False)


def before_after(before: Optional[str], after: Optional[str]) -> tuple:
    """Updates of `InstructControls.views` showing the source `before` next to the sealed result `after`: the
    image slider for an image, the two players for a clip (a GIF source in its image element); all hidden when
    there is nothing to show."""
    import gradio as gr

    from .served_files import served_type

    hide = gr.update(value=None, visible=False)
    if not before or not after:
        return hide, gr.update(visible=False), hide, hide, hide
    if still(after):
        return gr.update(value=(before, after), visible=True), gr.update(visible=False), hide, hide, hide
    # a clip: the result is the video default (MP4, `studio.modalities.video`), which every browser plays
    playable = served_type(before)[0].startswith("video/")
    return (hide, gr.update(visible=True), gr.update(value=before if playable else None, visible=playable),
            gr.update(value=None if playable else before, visible=not playable), gr.update(value=after, visible=True))


__all__ = ["InstructControls", "MODE", "before_after", "instruct_fields", "note", "source_field", "source_label",
           "source_types", "still", "takes_clips"]
