"""The Generate tab's LoRA picker and Hires fix accordion, on the same request, engine and seal as the rest.

LoRAs come from the server's LoRA folder (`studio ui --loras-dir DIR`, `DIFFUSION_STUDIO_LORAS_DIR`, default
`loras/` in the config dir) or from the registry's `[loras.NAME]` entries (`studio.addons`). A browser names a
LoRA by its path relative to that folder or by `registry:NAME`, never by a server path: anything else is refused
(`ui.browser_paths`), and the history shows the same names back. Upscalers are the two built-in methods or a
registry upscaler's name.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import studio
from studio import RequestError, addons
from studio.schema import HIRES_BUILTIN_UPSCALERS, LORA_WEIGHT_MAX, LORA_WEIGHT_MIN, hires_size

from .browser_paths import PathRefused, checked_path

MAX_LORAS = 4  # weight sliders on the form; the schema itself takes any number
MAX_LISTED = 500  # files listed from the LoRA folder
MAX_WALKED = 20_000  # entries looked at while listing it
REGISTRY = "registry:"
LORA_SUFFIXES = (".safetensors",)  # pickle LoRAs can run code: the browser never picks one
UPSCALER_LABELS = {"latent": "Latent (interpolated latents)", "pixel-lanczos": "Lanczos (pixels)"}


def default_loras_dir() -> Path:
    """`DIFFUSION_STUDIO_LORAS_DIR`, else `loras` in the studio's config dir."""
    env = os.environ.get("DIFFUSION_STUDIO_LORAS_DIR")
    return (Path(env) if env else studio.config_dir() / "loras").expanduser().resolve()


def _inside(path: Path, root: Path) -> bool:
    return path == root or path.is_relative_to(root)


def lora_choices(loras_dir: Path, registry) -> list[tuple[str, str]]:
    """(label, value) of every LoRA a browser may pick: `.safetensors` files inside the folder (links that
    lead outside it left out) and the registry's LoRAs."""
    out = []
    root = Path(loras_dir)
    if root.is_dir():
        files = []
        for seen, p in enumerate(root.rglob("*")):
            if len(files) >= MAX_LISTED or seen >= MAX_WALKED:  # a folder set too wide must not stall the page
                break
            rel = p.relative_to(root)
            if p.suffix.lower() in LORA_SUFFIXES and p.is_file() and not any(s.startswith(".") for s in rel.parts) \
                    and _inside(p.resolve(), root.resolve()):
                files.append(rel.as_posix())
        out += [(f"{Path(f).stem} ({f})", f) for f in sorted(files)]
    try:
        named = addons.loras(registry)
    except studio.StudioError:
        named = {}
    out += [(f"{name} (registry)", REGISTRY + name) for name in named]
    return out


def resolve_lora(value: str, loras_dir: Path, registry) -> str:
    """The server path of a picked LoRA (a name from `lora_choices`); PathRefused for anything else."""
    value = str(value or "")
    if value.startswith(REGISTRY):
        name = value[len(REGISTRY):]
        named = addons.loras(registry)
        if name not in named:
            raise PathRefused(f"LoRA {name[:80]!r} is not in this server's registry (pick one from the LoRA menu)")
        return named[name].path
    path = Path(checked_path(value, "LoRA", [loras_dir], base=loras_dir,
                             allowed=f"in the server's LoRA folder ({Path(loras_dir).name}/; set with "
                                     f"`studio ui --loras-dir`)"))
    if path.suffix.lower() not in LORA_SUFFIXES:
        raise PathRefused(f"LoRA {Path(value).name!r}: only .safetensors LoRAs can be picked here")
    if not path.is_file():
        raise RequestError(f"LoRA {Path(value).name!r} is not in the LoRA folder (any more): refresh the list")
    return str(path)


def lora_refs(selected, weights, loras_dir: Path, registry) -> list[dict]:
    """The form's picked LoRAs and their sliders -> the request's `loras` (weights checked, named)."""
    selected = [s for s in (selected or []) if s]
    if len(selected) > MAX_LORAS:
        raise RequestError(f"pick at most {MAX_LORAS} LoRAs here (a job file takes more)")
    if len(set(selected)) != len(selected):
        raise RequestError("the same LoRA is picked twice")
    out = []
    for value, weight in zip(selected, list(weights or []) + [None] * MAX_LORAS):
        shown = value[len(REGISTRY):] if value.startswith(REGISTRY) else Path(value).stem
        if weight is None or isinstance(weight, bool):
            weight = 1.0
        try:
            w = float(weight)
        except (TypeError, ValueError):
            raise RequestError(f"LoRA {shown} weight must be a number") from None
        if not LORA_WEIGHT_MIN <= w <= LORA_WEIGHT_MAX:
            raise RequestError(f"LoRA {shown} weight must be in [{LORA_WEIGHT_MIN:g}, {LORA_WEIGHT_MAX:g}]")
        out.append({"path": resolve_lora(value, loras_dir, registry), "weight": w})
    return out


def browser_loras(loras: list[dict], loras_dir: Path, registry) -> list[dict]:
    """A record's LoRAs as the browser may see them: the picker's names, never a server path."""
    try:
        named = {str(Path(e.path).resolve()): e.name for e in addons.loras(registry).values()}
    except studio.StudioError:
        named = {}
    root = Path(loras_dir).resolve()
    out = []
    for lora in loras or []:
        p = Path(str(lora.get("path", ""))).resolve()
        if str(p) in named:
            name = REGISTRY + named[str(p)]
        elif _inside(p, root):
            name = p.relative_to(root).as_posix()
        else:
            name = p.name
        out.append({"path": name, "weight": lora.get("weight", 1.0)})
    return out


def upscaler_choices(registry) -> list[tuple[str, str]]:
    out = [(UPSCALER_LABELS[k], k) for k in HIRES_BUILTIN_UPSCALERS]
    try:
        named = addons.upscalers(registry)
    except studio.StudioError:
        named = dict(addons.BUILTIN_UPSCALERS)
    from studio.hires import upscaler_available

    for name, entry in named.items():
        out.append((name + ("" if upscaler_available(entry.source) else " (not downloaded)"), name))
    return out


def hires_fields(enabled, scale, strength, upscaler, steps, registry) -> Optional[dict]:
    """The Hires fix accordion -> the request's `hires` (None when off). Upscalers are names only."""
    if not enabled:
        return None
    from .handlers import _number

    known = [v for _, v in upscaler_choices(registry)] if upscaler not in HIRES_BUILTIN_UPSCALERS else [upscaler]
    if upscaler not in known:
        raise PathRefused(f"hires upscaler {str(upscaler)[:80]!r} is not one of this server's upscalers "
                          "(pick one from the Upscaler menu)")
    steps = _number(steps, "hires steps", whole=True, minimum=0)
    return {"scale": _number(scale, "hires scale"), "strength": _number(strength, "hires strength"),
            "upscaler": upscaler, "steps": steps or None}  # 0: the first pass's steps


def hires_note(width, height, enabled, scale) -> str:
    """The line under the accordion: what size the hires pass renders at (or why it cannot)."""
    if not enabled:
        return "Off: images render at the size above."
    try:
        w, h = int(float(width)), int(float(height))
        tw, th = hires_size(w, h, float(scale))
    except (TypeError, ValueError) as exc:  # RequestError is a ValueError
        return f"**{exc}**" if isinstance(exc, RequestError) else "Set a width and height above."
    return f"First pass {w}×{h}, sealed, then upscaled to **{tw}×{th}** and refined; the first pass is the C2PA " \
           "ingredient of the result."


def reuse_values(entry: Optional[dict], choices: list[tuple[str, str]]) -> tuple:
    """(picked LoRAs, slider updates..., hires on, scale, strength, upscaler, steps) from a history entry."""
    import gradio as gr

    req = (entry or {}).get("request") or {}
    names = {v for _, v in choices}
    loras = [l for l in req.get("loras") or [] if l.get("path") in names][:MAX_LORAS]
    sliders = [gr.update(value=l.get("weight", 1.0), visible=True, label=f"Weight: {_shown(l['path'])}")
               for l in loras]
    sliders += [gr.update(value=1.0, visible=False) for _ in range(MAX_LORAS - len(sliders))]
    hires = req.get("hires") or None
    if hires:
        hr = (True, hires.get("scale", 2.0), hires.get("strength", 0.5), hires.get("upscaler", "latent"),
              hires.get("steps") or 0)
    else:
        hr = (False, gr.update(), gr.update(), gr.update(), gr.update())
    return ([l["path"] for l in loras], *sliders, *hr)


def _shown(value: str) -> str:
    return value[len(REGISTRY):] if value.startswith(REGISTRY) else Path(value).stem


def slider_updates(selected) -> list:
    """One visible weight slider per picked LoRA, labelled with its name (values kept)."""
    import gradio as gr

    selected = list(selected or [])[:MAX_LORAS]
    return [gr.update(visible=True, label=f"Weight: {_shown(v)}") for v in selected] + \
        [gr.update(visible=False) for _ in range(MAX_LORAS - len(selected))]


# -- Gradio parts -------------------------------------------------------------------------------------------
class GenerateExtras:
    """The components this module adds to the Generate tab, built inside its column."""

    def __init__(self, h):
        import gradio as gr

        self.h = h
        with gr.Accordion("LoRA", open=True, elem_id="g-lora-box"):
            with gr.Row(equal_height=True):
                self.loras = gr.Dropdown(lora_choices(h.loras_dir, h.registry), value=[], multiselect=True,
                                         max_choices=MAX_LORAS, label=f"LoRAs (from {h.loras_dir.name}/ and the "
                                                                     "registry)", elem_id="g-loras", scale=6)
                self.refresh = gr.Button("↻", size="sm", elem_id="g-loras-refresh", scale=0, min_width=40)
            self.weights = [gr.Slider(LORA_WEIGHT_MIN, LORA_WEIGHT_MAX, value=1.0, step=0.05, visible=False,
                                      label="Weight", elem_id=f"g-lora-w{i}") for i in range(MAX_LORAS)]
        with gr.Accordion("Hires fix", open=False, elem_id="g-hires-box"):
            self.hires_on = gr.Checkbox(False, label="Upscale and refine (hires fix)", elem_id="g-hires-on")
            with gr.Row():
                self.hires_scale = gr.Slider(1.25, 4, value=2, step=0.25, label="Upscale by",
                                             elem_id="g-hires-scale")
                self.hires_strength = gr.Slider(0.05, 1, value=0.5, step=0.05, label="Denoising strength",
                                                elem_id="g-hires-strength")
            with gr.Row():
                self.hires_upscaler = gr.Dropdown(upscaler_choices(h.registry), value="latent", label="Upscaler",
                                                  elem_id="g-hires-upscaler", scale=3)
                self.hires_steps = gr.Number(0, label="Hires steps (0 = same as Steps)", precision=0, minimum=0,
                                             elem_id="g-hires-steps", scale=2)
            self.hires_note = gr.Markdown(hires_note(None, None, False, 2), elem_id="g-hires-note")

    @property
    def inputs(self) -> list:
        return [self.loras, *self.weights, self.hires_on, self.hires_scale, self.hires_strength,
                self.hires_upscaler, self.hires_steps]

    def fields(self, values) -> dict:
        """do_generate's values of `inputs` -> request fields."""
        selected, weights = values[0], values[1:1 + MAX_LORAS]
        on, scale, strength, upscaler, steps = values[1 + MAX_LORAS:]
        return {"loras": lora_refs(selected, weights, self.h.loras_dir, self.h.registry),
                "hires": hires_fields(on, scale, strength, upscaler, steps, self.h.registry)}

    def wire(self, demo, width, height, reuse_button, selected_entry) -> None:
        import gradio as gr

        h = self.h
        self.loras.change(slider_updates, [self.loras], self.weights, queue=False)

        def refresh():
            return gr.update(choices=lora_choices(h.loras_dir, h.registry)), \
                gr.update(choices=upscaler_choices(h.registry))

        self.refresh.click(refresh, None, [self.loras, self.hires_upscaler], queue=False)
        demo.load(refresh, None, [self.loras, self.hires_upscaler], queue=False)
        for ctl in (self.hires_on, self.hires_scale, width, height):
            ctl.change(hires_note, [width, height, self.hires_on, self.hires_scale], [self.hires_note], queue=False)

        def reuse(entry):
            if not entry or (entry.get("modality") or "image") != "image":
                return (gr.skip(),) * len(self.inputs)
            return reuse_values(entry, lora_choices(h.loras_dir, h.registry))

        reuse_button.click(reuse, [selected_entry], self.inputs, queue=False)


def status_note(entry: dict) -> str:
    """What the Generate status line adds for a hires output."""
    req = entry.get("request") or {}
    hires = req.get("hires")
    if not hires:
        return ""
    return (f" · hires ×{hires['scale']:g} ({hires['upscaler']}, strength {hires['strength']:g}) from "
            f"{req.get('width')}×{req.get('height')}, first pass recorded as the C2PA ingredient")


__all__ = ["GenerateExtras", "browser_loras", "default_loras_dir", "hires_fields", "lora_choices", "lora_refs",
           "resolve_lora", "status_note", "upscaler_choices"]
