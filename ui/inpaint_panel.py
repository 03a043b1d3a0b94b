"""The Edit tab's inpaint canvas controls: a see-through brush over the image (the strokes become the mask),
brush size, mask blur, what the masked area starts from, and inpaint-only-masked at full resolution. They
become the request's `inpaint` options (studio.schema.InpaintOptions), so the engine records and replays them."""
from __future__ import annotations

from typing import Optional

from studio import RequestError

# Half-transparent: the picture shows through the strokes. Any painted pixel (alpha > 0) is masked.
SEE_THROUGH = "rgba(255, 0, 140, 0.45)"
CONTENT = [("original", "original"), ("fill", "fill"), ("latent noise", "latent_noise")]
AREAS = ["Whole picture", "Only masked"]


def brush(size: int = 28):
    import gradio as gr

    return gr.Brush(colors=[SEE_THROUGH], default_color=SEE_THROUGH, color_mode="fixed", default_size=int(size))


def inpaint_fields(mode: str, blur, content, area, padding) -> Optional[dict]:
    """The request's `inpaint` options from the controls (None outside inpaint mode); each checked in one line."""
    if mode != "inpaint":
        return None
    if content not in {v for _, v in CONTENT}:
        raise RequestError(f"masked content must be one of {', '.join(v for _, v in CONTENT)}")
    if area not in AREAS:
        raise RequestError(f"inpaint area must be one of {', '.join(AREAS)}")
    try:
        blur_px, pad_px = int(round(float(blur or 0))), int(round(float(padding or 0)))
    except (TypeError, ValueError):
        raise RequestError("mask blur and padding must be numbers of pixels") from None
    return {"mask_blur": blur_px, "masked_content": content, "only_masked": area == "Only masked",
            "padding": pad_px}


class InpaintControls:
    """Built inside the Edit tab's source column, under the canvas; shown in inpaint mode."""

    def __init__(self):
        import gradio as gr

        with gr.Group(visible=False, elem_id="e-inpaint-box") as self.box:
            with gr.Row():
                self.brush_size = gr.Slider(2, 160, value=28, step=1, label="Brush size", elem_id="e-brush-size")
                self.blur = gr.Slider(0, 64, value=4, step=1, label="Mask blur (px)", elem_id="e-mask-blur")
            self.content = gr.Radio(CONTENT, value="original", label="Masked content", elem_id="e-masked-content")
            with gr.Row():
                self.area = gr.Radio(AREAS, value=AREAS[0], label="Inpaint area", elem_id="e-inpaint-area",
                                     info="Only masked: the mask's box is inpainted at full resolution and "
                                          "pasted back")
                self.padding = gr.Slider(0, 256, value=32, step=4, label="Only masked padding (px)",
                                         elem_id="e-inpaint-padding")

    @property
    def inputs(self) -> list:
        return [self.blur, self.content, self.area, self.padding]

    def wire(self, editor, mode) -> None:
        import gradio as gr

        self.brush_size.release(lambda v: gr.update(brush=brush(v)), [self.brush_size], [editor], queue=False)
        mode.change(lambda m: gr.update(visible=m == "inpaint"), [mode], [self.box], queue=False)


__all__ = ["InpaintControls", "SEE_THROUGH", "brush", "inpaint_fields"]
