"""The Generate tab's prompt tools and variation seed, on the same request, engine and seal as the rest:

* a token counter under the prompt ("23/77 tokens", red when the text encoder would cut it), counted by the
  model's own tokenizer (`studio.prompt_tools.count`);
* styles: a picker of the saved prompt snippets (`studio.styles`, `styles.toml` in the config dir) and
  "save current as style"; the request names the styles, the engine applies and records them;
* a "Variation seed" accordion: the seed to slerp the noise towards and the strength (A1111's subseed).
"""
from __future__ import annotations

import html
from typing import Optional

from studio import RequestError, StudioError
from studio.prompt_tools import count
from studio.styles import load_styles, save_style, styled

CSS = """
#g-tokens {min-height: 1.2em; margin-top: -6px;}
#g-tokens .ds-tokens {font-size: 0.85em; color: var(--body-text-color-subdued);}
#g-tokens .ds-tokens.over {color: #c62828; font-weight: 600;}
"""


def counter_html(studio, model: Optional[str], prompt: str, styles=None) -> str:
    """The counter under the prompt: `N/LIMIT tokens` of the prompt as it will be encoded (the picked styles
    applied), red with what is cut when over the limit."""
    if styles:
        try:
            prompt = styled(prompt or "", "", list(styles))[0]
        except (RequestError, StudioError):
            pass  # a style deleted meanwhile: the render names it
    c = count(studio, model, prompt or "")
    if c is None:
        return '<span class="ds-tokens">tokens: counted once the model is loaded</span>'
    if not c["over"]:
        return f'<span class="ds-tokens" title="{c["kind"]} text encoder">{html.escape(c["text"])}</span>'
    return (f'<span class="ds-tokens over" title="{c["kind"]} text encoder">{html.escape(c["text"])}: over the '
            f'limit, the text encoder ignores the rest</span>')


def style_choices() -> list[str]:
    try:
        return sorted(load_styles())
    except StudioError:
        return []


def variation_fields(seed, strength) -> dict:
    """Form values -> request fields; an empty or negative seed is no variation."""
    from .handlers import _number

    seed = _number(seed, "variation seed", whole=True)
    strength = _number(strength, "variation strength", minimum=0) or 0.0
    if seed is None or seed < 0:
        if strength:
            raise RequestError("variation strength given without a variation seed: set one (or strength 0)")
        return {}
    return {"variation_seed": seed, "variation_strength": strength}


def status_note(entry: dict) -> str:
    """What the Generate status line adds: the variation used, the styles applied, the prompt warnings."""
    req = entry.get("request") or {}
    parts = []
    if req.get("variation_seed") is not None and req.get("variation_strength"):
        parts.append(f"variation seed {req['variation_seed']} at {req['variation_strength']:g}")
    if entry.get("styles"):
        parts.append("styles " + ", ".join(entry["styles"].get("names", [])))
    if req.get("prompt_weighting"):
        parts.append("weighted prompt")
    note = "".join(f" · {p}" for p in parts)
    for w in entry.get("warnings") or []:
        note += f"\n\n⚠ warning: {w}"
    return note


class PromptExtras:
    """Components this module adds to the Generate tab: `counter()` right under the prompt, the rest where the
    object is built (inside the form's column)."""

    def __init__(self, h):
        import gradio as gr

        self.h = h
        with gr.Accordion("Styles", open=False, elem_id="g-styles-box"):
            self.styles = gr.Dropdown(style_choices(), value=[], multiselect=True, label="Styles (applied in order)",
                                      elem_id="g-styles")
            with gr.Row(equal_height=True):
                self.style_name = gr.Textbox(label="Save the current prompt and negative as", scale=4,
                                             placeholder="style name", elem_id="g-style-name")
                self.style_save = gr.Button("Save current as style", size="sm", scale=2, elem_id="g-style-save")
            gr.Markdown("Put `{prompt}` where your prompt goes; without it the style is appended.",
                        elem_classes="ds-status")
            self.style_note = gr.Markdown("", elem_id="g-style-note", elem_classes="ds-status")
        with gr.Accordion("Variation seed", open=False, elem_id="g-variation-box"):
            with gr.Row():
                self.var_seed = gr.Number(-1, label="Variation seed (-1 = none)", precision=0, elem_id="g-var-seed")
                self.var_strength = gr.Slider(0, 1, value=0, step=0.01, label="Variation strength",
                                              elem_id="g-var-strength")

    @staticmethod
    def counter():
        import gradio as gr

        return gr.HTML('<span class="ds-tokens"></span>', elem_id="g-tokens")

    @property
    def inputs(self) -> list:
        return [self.var_seed, self.var_strength, self.styles]

    def fields(self, values) -> dict:
        seed, strength, styles = values
        return {**variation_fields(seed, strength), "styles": list(styles or [])}

    def wire(self, demo, counter, prompt, negative, model, reuse_button, selected_entry) -> None:
        import gradio as gr

        h = self.h

        def on_text(text, name, chosen):
            return counter_html(h.studio, name, text, chosen)

        for ctl in (prompt, model, self.styles):
            ctl.change(on_text, [prompt, model, self.styles], [counter], queue=False, trigger_mode="always_last")
        demo.load(on_text, [prompt, model, self.styles], [counter], queue=False)

        def save(name, text, neg, chosen):
            try:
                style = save_style(name, text, neg)
            except (RequestError, StudioError) as exc:
                return gr.skip(), gr.skip(), f"error: {exc}"
            return (gr.update(choices=style_choices(), value=list(chosen or [])), "",
                    f"Saved style **{html.escape(style.name)}**.")

        self.style_save.click(save, [self.style_name, prompt, negative, self.styles],
                              [self.styles, self.style_name, self.style_note], queue=False)
        demo.load(lambda: gr.update(choices=style_choices()), None, [self.styles], queue=False)

        def reuse(entry):
            if not entry or (entry.get("modality") or "image") != "image":
                return (gr.skip(),) * 3
            req = entry.get("request") or {}
            seed = req.get("variation_seed")
            # the recorded prompt is already styled: reusing it must not apply the styles twice
            return (-1 if seed is None else seed, req.get("variation_strength") or 0, [])

        reuse_button.click(reuse, [selected_entry], self.inputs, queue=False)


__all__ = ["CSS", "PromptExtras", "counter_html", "status_note", "style_choices", "variation_fields"]
