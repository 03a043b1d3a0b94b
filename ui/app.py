"""The Gradio web app: Generate, Edit, Video, Music, Batch, Gallery, Tune, Verify, Models.

Every handler returns *file paths of sealed outputs* (never PIL/numpy: Gradio would re-encode pixels and strip
the C2PA manifest), the server serves only its output folder, and a failure reaches the browser as one
sanitized line (`gr.Error`), never a stack trace, a key or a server path outside the output folder.
"""
import abc
import contextvars
import functools
import inspect
import logging
import os
import queue
import threading
import time
from pathlib import Path
from typing import Optional

import ui  # noqa: F401  (sets GRADIO_ANALYTICS_ENABLED=False before gradio is imported)

import gradio as gr
from starlette.middleware import Middleware
from studio.modalities import MODALITIES
from studio.registry import FAMILIES

from . import batch as batch_mod
from . import lora_hires
from . import inpaint_panel, params_panel, xyz_panel
from . import control_panel, control_reuse, edit_instruct_panel
from . import ratings_panel
from . import tune_panel
from . import prompt_extras
from .browser_paths import browser_roots, checked_editor, checked_model, checked_path
from .errors import Cancelled, sanitize, user_message
from .login_throttle import LoginThrottle, LoginThrottleMiddleware
from .served_files import ServedFilesGuard, served_type
from .handlers import (DEFAULT_SAMPLER, MUSIC_EDIT_LABELS, MUSIC_EDITS, SIZE_PRESETS, Handlers, audio_line, caption,
                       clip_line, is_audio, is_clip, music_mode, params_view, verdict_html, video_mode)

log = logging.getLogger("ui")
DEFAULT_MAX_FILE_SIZE = "50mb"
_FAMILIES = ["auto", *FAMILIES]
_VIDEO = MODALITIES["video"]
_AUDIO = MODALITIES["audio"]
# What the Music tab takes as a source clip: the audio formats the engine reads and the upload guard lets in.
AUDIO_UPLOADS = [".wav", ".flac", ".mp3"]
# What the Video tab takes as a clip to restyle: the video formats the upload guard lets in (ui.served_files).
CLIP_UPLOADS = [".mp4", ".gif", ".webm"]
EDIT_MODES = ["img2img", "inpaint", "outpaint", "instruct"]


def _sealed_player_class(base: type, name: str, block: str, doc: str) -> type:
    """A `base` player (gr.Video / gr.Audio) that hands the browser the sealed file itself, untouched.

    A class, not a patched instance: Gradio rebuilds a component from its class for every `gr.update`. Built
    without running gradio's ComponentMeta.__new__, which would write a .pyi copy of this module next to it
    (its stub generator for custom components); that hook adds nothing this class needs (no new __init__ or
    events)."""
    from gradio.data_classes import FileData

    def postprocess(self, value):
        return None if value is None else FileData(path=str(value), orig_name=Path(str(value)).name)

    def get_block_name(self) -> str:
        return block  # the stock frontend component

    attrs = {"postprocess": postprocess, "get_block_name": get_block_name, "__module__": __name__,
             "__qualname__": name, "__doc__": doc}
    return abc.ABCMeta.__new__(type(base), name, (base,), attrs)


SealedVideo = _sealed_player_class(gr.Video, "SealedVideo", "video", """gr.Video that hands the browser the
    sealed file itself. Stock gr.Video re-encodes a clip it judges unplayable (a GIF, or an MP4 ffprobe does not
    call H.264) with ffmpeg when ffmpeg is on the PATH: the player would then show an unsealed copy, without the
    C2PA manifest. Only MP4 reaches this player (a GIF clip plays in an image element), and it goes out
    untouched.""")
SealedAudio = _sealed_player_class(gr.Audio, "SealedAudio", "audio", """gr.Audio that hands the browser the
    sealed file itself. Stock gr.Audio re-encodes a file whose suffix differs from its `format`, or that ffprobe
    calls unplayable when ffmpeg is on the PATH (decoding it to numpy and writing a new WAV/MP3 into its cache):
    the player would then play an unsealed copy, at whatever rate the conversion chose. WAV (16-bit PCM), FLAC
    and MP3 all play in browsers as they are.""")
NATIVE_PLAYER = gr.WaveformOptions(show_recording_waveform=False)


CSS = """
.gradio-container {max-width: 1440px !important; width: 100% !important; margin: auto;}
#ds-header {display:flex; align-items:baseline; gap:14px; padding: 6px 2px 2px 2px;}
#ds-header h1 {font-size: 1.55rem; margin: 0; font-weight: 700; letter-spacing: -0.01em;}
#ds-header .tag {color: var(--body-text-color-subdued); font-size: 0.95rem;}
#ds-header .seal {margin-left:auto; font-size: 0.85rem; padding: 3px 10px; border-radius: 999px;
  background: var(--color-accent-soft); color: var(--color-accent);}
.verdict {font-size: 1.15rem; font-weight: 600; padding: 12px 16px; border-radius: 10px; margin: 4px 0;}
.verdict-good {background: #e7f7ec; color: #11622f; border: 1px solid #9ad8ad;}
.verdict-bad {background: #fde8e8; color: #8a1c1c; border: 1px solid #f1a7a7;}
.verdict-warn {background: #fff6e0; color: #7a5300; border: 1px solid #f0cf7a;}
.ds-status {min-height: 1.6em; color: var(--body-text-color-subdued);}
footer {display: none !important;}
"""


def default_out_dir() -> Path:
    """`DIFFUSION_STUDIO_UI_OUT`, else `studio-outputs` in the current directory."""
    return Path(os.environ.get("DIFFUSION_STUDIO_UI_OUT") or "studio-outputs").expanduser().resolve()


def _gradio_dirs(out: Path) -> None:
    """Gradio serves its upload/cache folder; keep it inside the output folder, so the server serves that
    folder and nothing else."""
    cache = out / ".gradio"
    cache.mkdir(parents=True, exist_ok=True)
    os.environ["GRADIO_TEMP_DIR"] = str(cache)
    os.environ["GRADIO_EXAMPLES_CACHE"] = str(cache / "examples")


def _theme():
    font = ["ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "Roboto", "sans-serif"]
    mono = ["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace"]
    # Local font stacks only: the default theme would fetch Google Fonts (no internet here).
    return gr.themes.Soft(primary_hue="indigo", secondary_hue="slate", neutral_hue="slate", font=font,
                          font_mono=mono)


def _md_escape(text: str) -> str:
    """A message as literal Markdown text (a file name like my_model.safetensors must not turn italic)."""
    return "".join("\\" + c if c in "\\`*_[]<>#|~" else c for c in text)


def _secs(s: float) -> str:
    return f"{s:.1f}s" if s < 60 else f"{int(s // 60)}m{int(s % 60):02d}s"


class _Progress:
    """The `(done, total, desc)` callback handed to the handlers. It feeds gr.Progress (whose bar shows on the
    results only, see `show_progress_on`) and builds one status line with the count, the elapsed time and an ETA
    for the tab's status text: Gradio's own timer restarts at every streamed preview, so it cannot say either.

    `unit` names what done/total count ("steps", "items"); None when they are not whole units (ui/batch.py
    reports thousandths of an item, and names the item in its description), so the bar shows a fraction."""

    def __init__(self, progress, unit: Optional[str] = "steps", on_line=None, interval: float = 0.25):
        self.progress, self.unit, self.on_line, self.interval = progress, unit, on_line, interval
        self.t0 = time.monotonic()
        self.phase = None  # (key, start time, start fraction): ETA only extrapolates the current phase
        self.last_line_at = float("-inf")
        self.last = None  # the last (done, total, text): see refresh()

    def line(self, done: int, total: int, desc: str, now: float) -> str:
        frac = done / total if total else None
        key = (desc if self.unit else None, total)
        if self.phase is None or self.phase[0] != key:
            self.phase = (key, now, frac or 0.0)
        parts = [desc]
        if self.unit and total and done:
            parts.append(f"{self.unit[:-1] if self.unit.endswith('s') else self.unit} {done}/{total}")
        parts.append(f"{_secs(now - self.t0)} elapsed")
        _, start, start_frac = self.phase
        if frac is not None and done and frac > start_frac and frac < 1:
            parts.append("ETA " + _secs((now - start) / (frac - start_frac) * (1 - frac)))
        return " · ".join(parts)

    def __call__(self, done: int, total: int, desc: str) -> None:
        now = time.monotonic()
        text = self.line(done, total, desc, now)
        self.last = (done, total, text)
        self._send(done, total, text)
        finished = bool(total) and done >= total
        if self.on_line is not None and (finished or now - self.last_line_at >= self.interval):
            self.last_line_at = now
            self.on_line(text)

    def _send(self, done, total, text) -> None:
        try:
            if self.unit:
                self.progress((int(done), int(total) if total else None), desc=text, unit=self.unit)
            else:
                self.progress(done / total if total else None, desc=text)
        except Exception:  # progress is cosmetic
            pass

    def refresh(self) -> None:
        """Send the last state again: the browser drops the bar whenever the event yields an output."""
        if self.last is not None:
            self._send(*self.last)


def _progress(progress, unit: Optional[str] = "steps", on_line=None) -> _Progress:
    return _Progress(progress, unit, on_line)


_DONE = object()


def _streamed(run, tracker: Optional[_Progress] = None):
    """Run `run(on_preview)` in a worker thread; yield ("preview", path) and, from `tracker`, ("status", line)
    as they arrive, then ("done", result). The worker runs in a copy of this context so gr.Progress keeps
    working."""
    updates: queue.Queue = queue.Queue()
    box: dict = {}
    ctx = contextvars.copy_context()

    def work():
        try:
            box["value"] = run(lambda path: updates.put(("preview", path)))
        except BaseException as exc:  # noqa: BLE001 -- re-raised in the event's thread below
            box["error"] = exc
        finally:
            updates.put(_DONE)

    if tracker is not None:
        tracker.on_line = lambda line: updates.put(("status", line))
    threading.Thread(target=ctx.run, args=(work,), daemon=True, name="ui-generate").start()
    while (item := updates.get()) is not _DONE:
        yield item
        if tracker is not None:
            tracker.refresh()
    if "error" in box:
        raise box["error"]
    yield "done", box["value"]


def build_app(studio=None, out_dir=None, *, verify_on_write: bool = True, models_dir=None,
              loras_dir=None) -> gr.Blocks:
    """The web app over `studio` (a `studio.Studio`; a default one when None), writing into `out_dir`; the
    Models tab adds models from `models_dir` only (default: `ui.handlers.default_models_dir()`)."""
    out = Path(out_dir).expanduser().resolve() if out_dir else default_out_dir()
    _gradio_dirs(out)
    h = Handlers(studio, out, verify_on_write=verify_on_write, models_dir=models_dir, loras_dir=loras_dir)
    roots = browser_roots(out)  # the only places a browser-sent path may lead (see ui.browser_paths)

    def as_gr_error(fn, exc):
        msg = user_message(exc, out)
        log.warning("%s failed: %s", fn.__name__, msg)
        return gr.Error(msg, print_exception=False)

    def failure_line(exc, msg):
        if isinstance(exc, Cancelled):
            return msg[:1].upper() + msg[1:] + "."
        return "**Error:** " + _md_escape(msg)

    def guarded(fn=None, *, status: Optional[int] = None, outputs: int = 1):
        """Every failure becomes one sanitized line (the traceback goes to the log only). With `status` (the
        index of the tab's status Markdown among the event's `outputs`), that line is also written there: a
        `queue=False` event's gr.Error never reaches the page (the browser shows a bare "Error"), and a queued
        one's toast disappears after a while. A streaming handler shows the line, then raises gr.Error for the
        toast; a plain one returns the line (the Models tab's events are `queue=False`)."""
        if fn is None:
            return lambda f: guarded(f, status=status, outputs=outputs)

        def status_only(exc, msg):
            line = failure_line(exc, msg)
            if outputs == 1:
                return line
            return tuple(line if i == status else gr.skip() for i in range(outputs))

        def explain(exc):
            if isinstance(exc, gr.Error):
                return exc, exc.message
            err = as_gr_error(fn, exc)
            return err, err.message

        if inspect.isgeneratorfunction(fn):
            @functools.wraps(fn)
            def gen_wrapper(*args, **kwargs):
                try:
                    yield from fn(*args, **kwargs)
                except Exception as exc:  # noqa: BLE001 -- every failure becomes one sanitized line
                    err, msg = explain(exc)
                    if status is not None:
                        yield status_only(exc, msg)
                    raise err from None

            return gen_wrapper

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 -- every failure becomes one sanitized line
                err, msg = explain(exc)
                if status is not None:
                    return status_only(exc, msg)
                raise err from None

        return wrapper

    def entry_defaults(name):
        e = h.registry.entries.get(name)
        if e is None:
            return 30, 7.5, DEFAULT_SAMPLER, 512, 512
        return e.steps, e.guidance, e.sampler or DEFAULT_SAMPLER, e.width, e.height

    def clip_defaults(name):
        """(frames, fps) of a video model; None leaves it to the model's family."""
        e = h.registry.entries.get(name)
        return (getattr(e, "frames", None), getattr(e, "fps", None)) if e is not None else (None, None)

    def music_duration(name):
        """An audio model's default clip length; None leaves it to the model's family."""
        return getattr(h.registry.entries.get(name), "duration", None)

    def model_controls(prefix, modality="image"):
        """Model, sampler, steps and guidance: the same controls on the Generate, Edit and Video tabs."""
        model0 = h.default_model(modality)
        steps0, guid0, sampler0, _, _ = entry_defaults(model0)
        if sampler0 not in samplers:
            sampler0 = DEFAULT_SAMPLER
        with gr.Row():
            model = gr.Dropdown(h.model_choices(modality), value=model0, label="Model", elem_id=f"{prefix}-model")
            sampler = gr.Dropdown(samplers, value=sampler0, label="Sampler", elem_id=f"{prefix}-sampler")
        with gr.Row():
            # Minimum 0, not 1: the slider clamps a typed value to its minimum without a word, so a typed 0 would
            # run 1 step; from 0 it reaches Handlers.request_fields, which refuses it like the CLI does.
            steps = gr.Slider(0, 150, value=steps0, step=1, label="Steps", elem_id=f"{prefix}-steps")
            guidance = gr.Slider(0, 20, value=guid0, step=0.5, label="Guidance (CFG)", elem_id=f"{prefix}-guidance")
        return model, sampler, steps, guidance

    samplers = h.samplers()
    _, _, _, w0, h0 = entry_defaults(h.default_model())
    video0 = h.default_model("video")
    _, _, _, vw0, vh0 = entry_defaults(video0)
    frames0, fps0 = clip_defaults(video0)
    music0 = h.default_model(_AUDIO.name)
    mu_steps0, mu_guid0, _, _, _ = entry_defaults(music0)
    duration0 = music_duration(music0)

    with gr.Blocks(title="diffusion-studio", analytics_enabled=False, fill_width=True) as demo:
        demo.ui_handlers = h
        demo.ui_out_dir = out
        gr.HTML('<div id="ds-header"><h1>diffusion-studio</h1>'
                '<span class="tag">text-to-image, editing, video, music and batch rendering</span>'
                '<span class="seal">every output is watermarked and C2PA-signed</span></div>')
        last_seed = gr.State(None)
        with gr.Tabs(elem_id="tabs") as tabs:
            # ---------------------------------------------------------------------------------- Generate
            with gr.Tab("Generate", id="generate", elem_id="tab-generate"):
                with gr.Row(equal_height=False):
                    with gr.Column(scale=5, min_width=360):
                        g_prompt = gr.Textbox(label="Prompt", lines=3, elem_id="g-prompt",
                                              placeholder="a large red circle in the center on a white background")
                        g_tokens = prompt_extras.PromptExtras.counter()  # "23/77 tokens" from the model's tokenizer
                        g_negative = gr.Textbox(label="Negative prompt", lines=1, elem_id="g-negative")
                        g_model, g_sampler, g_steps, g_guidance = model_controls("g")
                        with gr.Row():
                            g_size = gr.Dropdown(list(SIZE_PRESETS), value="Model default", label="Size",
                                                 elem_id="g-size", scale=2, min_width=150)
                            # No Gradio-side bounds or rounding: their errors name no field and a
                            # non-number sent through the API crashes them; request_fields checks instead.
                            g_width = gr.Number(value=w0, label="Width", precision=None, step=8,
                                                elem_id="g-width", scale=1, min_width=90)
                            g_height = gr.Number(value=h0, label="Height", precision=None, step=8,
                                                 elem_id="g-height", scale=1, min_width=90)
                        with gr.Row(equal_height=True):
                            g_seed = gr.Number(value=-1, label="Seed (-1 = random)", precision=0, elem_id="g-seed",
                                               scale=4)
                            with gr.Column(scale=2, min_width=110):
                                g_seed_rand = gr.Button("Random", size="sm", elem_id="g-seed-random")
                                g_seed_reuse = gr.Button("Reuse last", size="sm", elem_id="g-seed-reuse")
                            g_batch = gr.Slider(1, 8, value=1, step=1, label="Images", elem_id="g-batch", scale=4)
                        g_extras = lora_hires.GenerateExtras(h)  # LoRA picker, Hires fix accordion
                        g_prompt_x = prompt_extras.PromptExtras(h)  # styles, variation seed
                        with gr.Row():
                            g_go = gr.Button("Generate", variant="primary", elem_id="g-go", scale=3)
                            g_cancel = gr.Button("Cancel", variant="stop", elem_id="g-cancel", scale=1)
                        g_pnginfo = params_panel.png_info_box()
                        g_xyz = xyz_panel.XYZPanel()  # X/Y/Z plot over this form's request
                        g_best = ratings_panel.BestOfPanel()  # N candidates ranked by a reward; pick the best
                        g_control = control_panel.ControlPanel(h, h.default_model())  # ControlNet units 1 and 2
                    with gr.Column(scale=7, min_width=420):
                        g_gallery = gr.Gallery(label="Results", columns=2, height=470, object_fit="contain", fit_columns=False,
                                               elem_id="g-gallery", buttons=["download", "fullscreen"],
                                               interactive=False)
                        g_status = gr.Markdown("", elem_classes="ds-status", elem_id="g-status")
                        g_live = gr.Image(label="Live preview (sealed)", type="filepath", interactive=False,
                                          height=160, elem_id="g-live", buttons=[], visible=False)
                        with gr.Row():
                            g_to_edit = gr.Button("Send to Edit", elem_id="g-to-edit")
                        g_rate = ratings_panel.RatingButtons("g")  # thumbs up/down, ratings so far
                        g_files = gr.File(label="Download sealed files", file_count="multiple", interactive=False,
                                          elem_id="g-files")
                        with gr.Accordion("Parameters of the selected image", open=True):
                            g_params = params_panel.params_block(out, "g")  # A1111 text; JSON behind a toggle
                g_entries = gr.State([])
                g_selected = gr.State(0)

            # ---------------------------------------------------------------------------------- Edit
            with gr.Tab("Edit", id="edit", elem_id="tab-edit"):
                with gr.Row(equal_height=False):
                    with gr.Column(scale=6, min_width=360):
                        # a clip too, for the modes the capability table says edit one (instruct)
                        e_source = gr.File(label=edit_instruct_panel.source_label(EDIT_MODES),
                                           file_types=edit_instruct_panel.source_types(EDIT_MODES, CLIP_UPLOADS),
                                           type="filepath", elem_id="e-source", height=110)
                        e_mode = gr.Radio(EDIT_MODES, value="img2img", label="Mode", elem_id="e-mode")
                        e_editor = gr.ImageEditor(
                            label="Mask: paint over the area to repaint", type="filepath", format="png",
                            sources=["upload"], layers=False, transforms=(), image_mode="RGBA",
                            brush=inpaint_panel.brush(28),  # see-through: the picture shows under the mask
                            eraser=gr.Eraser(default_size=28), visible=False, elem_id="e-editor", height=440)
                        e_inpaint = inpaint_panel.InpaintControls()  # brush size, blur, masked content, area
                        e_mask = gr.File(label="…or upload a mask (white = repaint, same size as the source)",
                                         file_types=["image"], type="filepath", visible=False, elem_id="e-mask",
                                         height=150)
                        with gr.Row(visible=False) as e_out_row:
                            e_left = gr.Number(0, label="Left px", precision=0, step=8, minimum=0, elem_id="e-left",
                                               min_width=80)
                            e_top = gr.Number(0, label="Top px", precision=0, step=8, minimum=0, elem_id="e-top",
                                              min_width=80)
                            e_right = gr.Number(64, label="Right px", precision=0, step=8, minimum=0,
                                                elem_id="e-right", min_width=80)
                            e_bottom = gr.Number(0, label="Bottom px", precision=0, step=8, minimum=0,
                                                 elem_id="e-bottom", min_width=80)
                        e_preview = gr.Image(label="Source", type="filepath", interactive=False, height=300,
                                             elem_id="e-preview", buttons=[])
                    with gr.Column(scale=6, min_width=360):
                        e_prompt = gr.Textbox(label="Prompt", lines=2, elem_id="e-prompt")
                        e_negative = gr.Textbox(label="Negative prompt", lines=1, elem_id="e-negative")
                        e_model, e_sampler, e_steps, e_guidance = model_controls("e")
                        with gr.Row():
                            e_strength = gr.Slider(0.0, 1.0, value=0.6, step=0.05, label="Strength",
                                                   elem_id="e-strength")
                            e_seed = gr.Number(value=-1, label="Seed (-1 = random)", precision=0, elem_id="e-seed")
                        e_instruct = edit_instruct_panel.InstructControls()  # image guidance (instruct mode)
                        e_control = control_panel.ControlPanel(h, h.default_model(), prefix="e-cn",
                                                               steers="the edit")  # as on Generate
                        with gr.Row():
                            e_go = gr.Button("Run edit", variant="primary", elem_id="e-go", scale=3)
                            e_cancel = gr.Button("Cancel", variant="stop", elem_id="e-cancel", scale=1)
                        e_instruct.view(SealedVideo)  # instruct mode: the source next to the sealed result
                        e_gallery = gr.Gallery(label="Results", columns=2, height=360, object_fit="contain", fit_columns=False,
                                               elem_id="e-gallery", buttons=["download", "fullscreen"],
                                               interactive=False)
                        e_status = gr.Markdown("", elem_classes="ds-status", elem_id="e-status")
                        e_rate = ratings_panel.RatingButtons("e")  # rates the sealed result shown
                        e_live = gr.Image(label="Live preview (sealed)", type="filepath", interactive=False,
                                          height=160, elem_id="e-live", buttons=[], visible=False)
                        e_files = gr.File(label="Download sealed files", file_count="multiple", interactive=False,
                                          elem_id="e-files", height=110)
                        with gr.Accordion("Parameters", open=False):
                            e_params = params_panel.params_block(out, "e")

            # ---------------------------------------------------------------------------------- Video
            with gr.Tab("Video", id="video", elem_id="tab-video") as video_tab:
                with gr.Row(equal_height=False):
                    with gr.Column(scale=5, min_width=360):
                        vd_prompt = gr.Textbox(label="Prompt", lines=3, elem_id="vd-prompt",
                                               placeholder="a red ball bouncing on a white floor")
                        vd_negative = gr.Textbox(label="Negative prompt", lines=1, elem_id="vd-negative")
                        vd_model, vd_sampler, vd_steps, vd_guidance = model_controls("vd", _VIDEO.name)
                        with gr.Row():
                            # Empty = the model's default; checked (with the field named) by Handlers.video_fields.
                            vd_frames = gr.Number(value=frames0, label="Frames", precision=None, step=1,
                                                  elem_id="vd-frames", min_width=80)
                            vd_fps = gr.Number(value=fps0, label="FPS", precision=None, step=1, elem_id="vd-fps",
                                               min_width=80)
                            vd_width = gr.Number(value=vw0, label="Width", precision=None, step=8,
                                                 elem_id="vd-width", min_width=80)
                            vd_height = gr.Number(value=vh0, label="Height", precision=None, step=8,
                                                  elem_id="vd-height", min_width=80)
                        with gr.Row():
                            vd_seed = gr.Number(value=-1, label="Seed (-1 = random)", precision=0, elem_id="vd-seed")
                            vd_format = gr.Radio(list(_VIDEO.formats), value=_VIDEO.formats[0], label="Format",
                                                 elem_id="vd-format")
                        with gr.Accordion("Source (optional): animate an image, or restyle a clip", open=True):
                            with gr.Row():
                                vd_image = gr.File(label="Image to animate (img2vid)", file_types=["image"],
                                                   type="filepath", elem_id="vd-image", height=130)
                                vd_clip = gr.File(label="Clip to restyle (vid2vid)", file_types=CLIP_UPLOADS,
                                                  type="filepath", elem_id="vd-clip", height=130)
                            vd_strength = gr.Slider(0.0, 1.0, value=0.6, step=0.05, visible=False,
                                                    label="Strength (how far the clip is restyled)",
                                                    elem_id="vd-strength")
                        vd_mode = gr.Markdown(f"**Mode:** {video_mode()}", elem_id="vd-mode")
                        with gr.Row():
                            vd_go = gr.Button("Generate clip", variant="primary", elem_id="vd-go", scale=3)
                            vd_cancel = gr.Button("Cancel", variant="stop", elem_id="vd-cancel", scale=1)
                    with gr.Column(scale=7, min_width=420):
                        vd_player = SealedVideo(label="Sealed clip", interactive=False, autoplay=True, loop=True,
                                                height=400, elem_id="vd-player", buttons=["download"])
                        vd_gif = gr.Image(label="Sealed clip (GIF)", type="filepath", interactive=False,
                                          height=400, elem_id="vd-gif", buttons=[], visible=False)
                        vd_status = gr.Markdown("", elem_classes="ds-status", elem_id="vd-status")
                        vd_rate = ratings_panel.RatingButtons("vd")  # rates the sealed result shown
                        vd_live = gr.Image(label="Live preview (sealed, first frame)", type="filepath",
                                           interactive=False, height=160, elem_id="vd-live", buttons=[],
                                           visible=False)
                        vd_files = gr.File(label="Download the sealed clip", file_count="multiple",
                                           interactive=False, elem_id="vd-files", height=90)
                        with gr.Accordion("Parameters", open=True):
                            vd_params = gr.JSON(label="Parameters", elem_id="vd-params")

            # ---------------------------------------------------------------------------------- Music
            with gr.Tab("Music", id="music", elem_id="tab-music") as music_tab:
                with gr.Row(equal_height=False):
                    with gr.Column(scale=5, min_width=360):
                        mu_prompt = gr.Textbox(label="Prompt", lines=3, elem_id="mu-prompt",
                                               placeholder="a slow piano melody in a minor key")
                        mu_negative = gr.Textbox(label="Negative prompt", lines=1, elem_id="mu-negative")
                        mu_model = gr.Dropdown(h.model_choices(_AUDIO.name), value=music0, label="Model",
                                               elem_id="mu-model")
                        with gr.Row():
                            # Minimum 0 for the reason model_controls gives: a typed 0 must be refused, not run.
                            mu_steps = gr.Slider(0, 500, value=mu_steps0, step=1, label="Steps", elem_id="mu-steps",
                                                 info="diffusion models (Stable Audio, AudioLDM 2); MusicGen "
                                                      "samples tokens and ignores it")
                            mu_guidance = gr.Slider(0, 20, value=mu_guid0, step=0.5, label="Guidance (CFG)",
                                                    elem_id="mu-guidance")
                        with gr.Row():
                            # Empty = the model's default length; checked (field named) by Handlers.music_fields.
                            mu_duration = gr.Number(value=duration0, label="Duration (s)", precision=None, step=1,
                                                    elem_id="mu-duration", min_width=90)
                            mu_seed = gr.Number(value=-1, label="Seed (-1 = random)", precision=0, elem_id="mu-seed",
                                                min_width=90)
                            mu_format = gr.Radio(list(_AUDIO.formats), value=_AUDIO.formats[0], label="Format",
                                                 elem_id="mu-format")
                        with gr.Accordion("Source clip (optional): continue it, regenerate a span, or vary it",
                                          open=True):
                            mu_source = gr.File(label="Source clip (WAV, FLAC or MP3; kept byte-for-byte as the "
                                                      "C2PA ingredient)", file_types=AUDIO_UPLOADS,
                                                type="filepath", elem_id="mu-source", height=110)
                            mu_edit = gr.Radio([(MUSIC_EDIT_LABELS[k], k) for k in MUSIC_EDITS], value=MUSIC_EDITS[0],
                                               label="Edit", visible=False, elem_id="mu-edit")
                            mu_extend = gr.Number(value=2, label="Continue by (s)", precision=None, step=0.5,
                                                  visible=False, elem_id="mu-extend")
                            with gr.Row(visible=False) as mu_span_row:
                                mu_span_start = gr.Number(value=0, label="Span start (s)", precision=None, step=0.1,
                                                          elem_id="mu-span-start", min_width=90)
                                mu_span_end = gr.Number(value=1, label="Span end (s)", precision=None, step=0.1,
                                                        elem_id="mu-span-end", min_width=90)
                            mu_strength = gr.Slider(0.0, 1.0, value=0.5, step=0.05, visible=False,
                                                    label="Strength (how far the clip is varied)",
                                                    elem_id="mu-strength")
                        mu_mode = gr.Markdown(f"**Mode:** {music_mode()}", elem_id="mu-mode")
                        with gr.Row():
                            mu_go = gr.Button("Generate music", variant="primary", elem_id="mu-go", scale=3)
                            mu_cancel = gr.Button("Cancel", variant="stop", elem_id="mu-cancel", scale=1)
                    with gr.Column(scale=7, min_width=420):
                        # The browser's own player: it plays the served file as it is, where Gradio's waveform
                        # player decodes it with WebAudio (resampled to its editing rate); the picture below
                        # stands in for that waveform.
                        mu_player = SealedAudio(label="Sealed clip", interactive=False, elem_id="mu-player",
                                                buttons=["download"], waveform_options=NATIVE_PLAYER)
                        mu_status = gr.Markdown("", elem_classes="ds-status", elem_id="mu-status")
                        mu_rate = ratings_panel.RatingButtons("mu")  # rates the sealed result shown
                        mu_wave = gr.Image(label="Waveform of the sealed clip (edits: source above, result below)",
                                           type="filepath", interactive=False, elem_id="mu-wave", buttons=[],
                                           height=260, show_label=False)  # its panels carry their own titles
                        mu_files = gr.File(label="Download the sealed clip", file_count="multiple",
                                           interactive=False, elem_id="mu-files", height=90)
                        with gr.Accordion("Parameters", open=True):
                            mu_params = gr.JSON(label="Parameters", elem_id="mu-params")

            # ---------------------------------------------------------------------------------- Batch
            with gr.Tab("Batch", id="batch", elem_id="tab-batch"):
                with gr.Row(equal_height=False):
                    with gr.Column(scale=5, min_width=360):
                        b_file = gr.File(label="Prompt file (.txt, .jsonl, .csv, .yaml, .json)",
                                         file_types=[".txt", ".jsonl", ".csv", ".yaml", ".yml", ".json"],
                                         type="filepath", elem_id="b-file")
                        gr.Markdown("One prompt per line (`.txt`), or one request per line/row with any of the "
                                    "Generate fields (`prompt`, `model`, `steps`, `seed`, `width`, …). "
                                    "The file is checked before anything renders.", elem_classes="ds-status")
                        b_check = gr.Markdown("", elem_id="b-check")
                        with gr.Row():
                            b_go = gr.Button("Start batch", variant="primary", interactive=False, elem_id="b-go",
                                             scale=3)
                            b_cancel = gr.Button("Cancel", variant="stop", elem_id="b-cancel", scale=1)
                        b_table = gr.Dataframe(headers=["line", "id", "prompt", "model", "mode", "size", "steps",
                                                        "images"], value=[], interactive=False, wrap=True,
                                               label="Items", elem_id="b-table", max_height=360)
                    with gr.Column(scale=7, min_width=420):
                        b_status = gr.Markdown("", elem_id="b-status")
                        b_zip = gr.File(label="Download outputs + manifest.jsonl (zip)", interactive=False,
                                        elem_id="b-zip")
                        b_gallery = gr.Gallery(label="Outputs", columns=4, height=420, object_fit="contain", fit_columns=False,
                                               elem_id="b-gallery", interactive=False)

            # ---------------------------------------------------------------------------------- Gallery
            with gr.Tab("Gallery", id="history", elem_id="tab-history") as hist_tab:
                with gr.Row(equal_height=False):
                    with gr.Column(scale=8, min_width=420):
                        with gr.Row():
                            h_count = gr.Markdown("", elem_id="h-count")
                            h_refresh = gr.Button("Refresh", size="sm", scale=0, elem_id="h-refresh")
                        h_gallery = gr.Gallery(label="Every output of this server", columns=5, height=560,
                                               object_fit="cover", fit_columns=False, elem_id="h-gallery", interactive=False,
                                               buttons=["download", "fullscreen"])
                    with gr.Column(scale=4, min_width=320):
                        h_verdict = gr.HTML('<div class="ds-status">Select an image to see its parameters '
                                            'and check its seal.</div>', elem_id="h-verdict")
                        with gr.Row():
                            h_reuse = gr.Button("Send to Generate", variant="primary", elem_id="h-reuse")
                            h_to_edit = gr.Button("Send to Edit", elem_id="h-to-edit")
                        h_rate = ratings_panel.RatingButtons("h")  # thumbs for the selected output
                        h_video = SealedVideo(label="Sealed clip", interactive=False, autoplay=True, loop=True,
                                              height=240, elem_id="h-video", visible=False, buttons=[])
                        h_audio = SealedAudio(label="Sealed music clip", interactive=False, elem_id="h-audio",
                                              visible=False, buttons=[], waveform_options=NATIVE_PLAYER)
                        h_file = gr.File(label="Sealed file", interactive=False, elem_id="h-file", height=90)
                        h_params = params_panel.params_block(out, "h")
                h_entries = gr.State([])
                h_selected = gr.State(None)

            # ---------------------------------------------------------------------------------- Tune
            with gr.Tab("Tune", id="tune", elem_id="tab-tune") as tune_tab:
                t_panel = tune_panel.TunePanel(h)  # ratings so far, DPO/KTO LoRA, eval gate, before / after

            # ---------------------------------------------------------------------------------- Verify
            with gr.Tab("Verify", id="verify", elem_id="tab-verify"):
                with gr.Row(equal_height=False):
                    with gr.Column(scale=4, min_width=320):
                        v_file = gr.File(label="File to verify (any image, audio or video)", type="filepath",
                                         elem_id="v-file")
                        gr.Markdown("Checks the C2PA content credentials (signature, hashes, actions, "
                                    "ingredients), the invisible watermark, and this studio's ledger of issued "
                                    "watermark IDs.", elem_classes="ds-status")
                    with gr.Column(scale=8, min_width=420):
                        v_verdict = gr.HTML("", elem_id="v-verdict")
                        v_params = params_panel.verify_block()  # the file's parameters, send to Generate/Edit
                        v_details = gr.Markdown("", elem_id="v-details")
                        with gr.Accordion("Full report (JSON)", open=False):
                            v_json = gr.JSON(label="Report", elem_id="v-json")

            # ---------------------------------------------------------------------------------- Models
            with gr.Tab("Models", id="models", elem_id="tab-models"):
                m_table = gr.Dataframe(headers=["name", "family", "local", "source", "origin", "description"],
                                       value=h.model_rows(), interactive=False, wrap=True, label="Registry",
                                       elem_id="m-table", column_widths=["14%", "7%", "6%", "33%", "8%", "32%"])
                with gr.Accordion("Add a local model", open=True):
                    with gr.Row():
                        m_name = gr.Textbox(label="Name", elem_id="m-name", scale=2)
                        m_path = gr.Textbox(label=f"Diffusers folder or .safetensors file in the server's models "
                                                  f"folder ({h.models_dir.name}/)", elem_id="m-path", scale=5,
                                            placeholder="myxl.safetensors")
                        m_family = gr.Dropdown(_FAMILIES, value="auto", label="Family", elem_id="m-family",
                                               scale=1)
                    with gr.Row():
                        m_add = gr.Button("Add model", variant="primary", elem_id="m-add", scale=0)
                        m_refresh = gr.Button("Refresh", elem_id="m-refresh", scale=0)
                    # A models.toml entry the registry ignored (a built-in's name) is said here too.
                    m_status = gr.Markdown("  \n".join("**Ignored:** " + _md_escape(sanitize(p, out))
                                                       for p in h.registry_problems()), elem_id="m-status")

        # ====================================================================================== wiring
        def session(request: Optional[gr.Request]) -> str:
            return getattr(request, "session_hash", None) or "-"

        def gallery_value(entries):
            # An audio entry shows as its waveform picture (a Gallery shows images and videos only); the sealed
            # file itself plays in the Gallery's audio player and downloads from "Sealed file".
            return [(e.get("thumb") or e["file"], caption(e)) for e in entries]

        # -- generate
        def on_model(name):
            steps, guidance, sampler, w, hh = entry_defaults(name)
            if sampler not in samplers:
                sampler = DEFAULT_SAMPLER
            return steps, guidance, sampler

        def on_size(size, model):
            w, hh = SIZE_PRESETS.get(size, (None, None))
            if size in ("Model default",):
                _, _, _, w, hh = entry_defaults(model)
            if w is None:
                return gr.update(), gr.update()
            return w, hh

        g_model.change(on_model, [g_model], [g_steps, g_guidance, g_sampler], queue=False)
        g_model.change(on_size, [g_size, g_model], [g_width, g_height], queue=False)
        g_size.change(on_size, [g_size, g_model], [g_width, g_height], queue=False)
        e_model.change(on_model, [e_model], [e_steps, e_guidance, e_sampler], queue=False)
        g_seed_rand.click(lambda: -1, None, [g_seed], queue=False)
        g_seed_reuse.click(lambda s: s if s is not None else -1, [last_seed], [g_seed], queue=False)

        @guarded(status=2, outputs=8)
        def do_generate(prompt, negative, model, sampler, steps, guidance, width, height, seed, count,
                        loras=None, lw0=1.0, lw1=1.0, lw2=1.0, lw3=1.0, hr_on=False, hr_scale=2.0,
                        hr_strength=0.5, hr_upscaler="latent", hr_steps=0, var_seed=None, var_strength=None,
                        style_names=None, cn_on=False, cn_guess=False, cn_editor=None, cn_upload=None,
                        cn_prep="canny", cn_net="auto", cn_weight=1.0, cn_start=0.0, cn_end=1.0, cn2_on=False,
                        cn2_editor=None, cn2_upload=None, cn2_prep="canny", cn2_net="auto", cn2_weight=1.0,
                        cn2_start=0.0, cn2_end=1.0, request: gr.Request = None, progress=gr.Progress()):
            # the extras default to the form's own defaults (no LoRA, no hires, no variation, no styles): an API
            # caller that sends only the first ten fields gets a plain render
            model = checked_model(model, "model", h.registry)
            cancel = h.cancel_event(session(request), reset=True)
            fields = h.request_fields(prompt=prompt, negative=negative, model=model, sampler=sampler, steps=steps,
                                      guidance=guidance, size="Custom", width=width, height=height, seed=seed,
                                      batch=count)
            fields.update(g_extras.fields([loras, lw0, lw1, lw2, lw3, hr_on, hr_scale, hr_strength, hr_upscaler,
                                           hr_steps]))
            fields.update(g_prompt_x.fields([var_seed, var_strength, style_names]))
            fields.update(g_control.fields(h, roots, model, [cn_on, cn_guess, cn_editor, cn_upload, cn_prep, cn_net,
                                                             cn_weight, cn_start, cn_end, cn2_on, cn2_editor,
                                                             cn2_upload, cn2_prep, cn2_net, cn2_weight, cn2_start,
                                                             cn2_end]))
            sess = session(request)
            tracker = _progress(progress)
            for kind, value in _streamed(lambda on_preview: h.generate(
                    fields, progress=tracker, cancel=cancel, preview=on_preview, session=sess), tracker):
                if kind == "preview":
                    yield (gr.skip(),) * 7 + (gr.update(value=value, visible=True),)
                elif kind == "status":
                    yield (gr.skip(),) * 2 + (value,) + (gr.skip(),) * 5
            entries = value
            first = entries[0]
            seeds = ", ".join(str(e["seed"]) for e in entries)
            status = (f"{len(entries)} sealed image(s) in {first.get('elapsed_s', 0):.1f}s · {first['model']} · "
                      f"{first['sampler']} · {first['request'].get('steps')} steps · "
                      f"{first['width']}×{first['height']} · seed {seeds}") + lora_hires.status_note(first) + \
                prompt_extras.status_note(first) + control_panel.status_note(first)
            yield (gallery_value(entries), [e["file"] for e in entries], status, first["seed"], entries,
                   params_view(first), 0, gr.update(value=None, visible=False))

        g_event = g_go.click(
            do_generate,
            [g_prompt, g_negative, g_model, g_sampler, g_steps, g_guidance, g_width, g_height, g_seed, g_batch,
             *g_extras.inputs, *g_prompt_x.inputs, *g_control.inputs],
            [g_gallery, g_files, g_status, last_seed, g_entries, g_params, g_selected, g_live],
            # One progress bar, on the results: on every output it would cover the live preview and the status.
            show_progress_on=[g_gallery], concurrency_id="device", concurrency_limit=1)
        g_prompt.submit(lambda: None, None, None, queue=False)

        def do_cancel(request: gr.Request):
            h.cancel(session(request))
            return "Cancelled."

        g_cancel.click(do_cancel, None, [g_status], cancels=[g_event], queue=False)

        def on_gen_select(entries, evt: gr.SelectData):
            i = evt.index if isinstance(evt.index, int) else 0
            if not entries or i >= len(entries):
                return gr.update(), 0
            return params_view(entries[i]), i

        g_gallery.select(on_gen_select, [g_entries], [g_params, g_selected], queue=False)

        # These run with queue=False, where a raised gr.Error shows only "Error": the reason goes to a status line.
        @guarded(status=11, outputs=12)
        def send_to_edit(entries, idx, nothing="generate an image first"):
            if not entries:
                raise gr.Error(nothing, print_exception=False)
            e = entries[idx if idx is not None and idx < len(entries) else 0]
            req = e.get("request", {})
            model = e.get("model") if e.get("model") in h.registry.entries else gr.update()
            sampler = req.get("sampler") if req.get("sampler") in samplers else gr.update()
            return (e["file"], e["file"], gr.update(value="img2img"), req.get("prompt", ""),
                    req.get("negative_prompt", ""), model, sampler, req.get("steps") or gr.update(),
                    gr.update() if req.get("guidance") is None else req["guidance"], e.get("seed", -1),
                    gr.Tabs(selected="edit"), gr.skip())

        edit_targets = [e_source, e_editor, e_mode, e_prompt, e_negative, e_model, e_sampler, e_steps, e_guidance,
                        e_seed, tabs]
        g_to_edit.click(send_to_edit, [g_entries, g_selected], edit_targets + [g_status], queue=False)

        # -- edit
        def on_mode(mode):
            return (gr.update(visible=mode == "inpaint"), gr.update(visible=mode == "inpaint"),
                    gr.update(visible=mode not in ("outpaint", "instruct")),
                    gr.update(visible=mode == "outpaint"),
                    gr.update(visible=mode != "inpaint"))

        e_mode.change(on_mode, [e_mode], [e_editor, e_mask, e_strength, e_out_row, e_preview], queue=False)
        e_inpaint.wire(e_editor, e_mode)
        # a clip has no still for the mask editor or the preview: it shows in the before/after players
        e_source.change(lambda p: (edit_instruct_panel.still(p),) * 2, [e_source], [e_editor, e_preview],
                        queue=False)

        @guarded(status=2, outputs=5)
        def do_edit(source, mode, editor, mask, strength, left, top, right, bottom, prompt, negative, model,
                    sampler, steps, guidance, seed, inp_blur=4, inp_content="original", inp_area="Whole picture",
                    inp_padding=32, image_guidance=None, ec_on=None, ec_guess=None, ec_editor=None, ec_upload=None,
                    ec_prep=None, ec_net=None, ec_weight=None, ec_start=None, ec_end=None, ec2_on=None,
                    ec2_editor=None, ec2_upload=None, ec2_prep=None, ec2_net=None, ec2_weight=None, ec2_start=None,
                    ec2_end=None, request: gr.Request = None, progress=gr.Progress()):
            source, mask = checked_path(source, "source image", roots), checked_path(mask, "mask file", roots)
            editor, model = checked_editor(editor, roots), checked_model(model, "model", h.registry)
            cancel = h.cancel_event(session(request), reset=True)
            fields = h.request_fields(prompt=prompt, negative=negative, model=model, sampler=sampler, steps=steps,
                                      guidance=guidance, size="Model default", seed=seed, batch=1)
            inpaint = inpaint_panel.inpaint_fields(mode, inp_blur, inp_content, inp_area, inp_padding)
            if inpaint is not None:
                fields["inpaint"] = inpaint
                if inpaint["only_masked"]:  # the mask's box is inpainted at the model's full resolution
                    *_, fields["width"], fields["height"] = entry_defaults(model)
            if control_panel.controls_applied(mode):  # the ControlNet panel's units (hidden in instruct mode)
                fields.update(e_control.fields(h, roots, model, [
                    ec_on, ec_guess, ec_editor, ec_upload, ec_prep, ec_net, ec_weight, ec_start, ec_end, ec2_on,
                    ec2_editor, ec2_upload, ec2_prep, ec2_net, ec2_weight, ec2_start, ec2_end]))
            sess = session(request)
            tracker = _progress(progress)
            for kind, value in _streamed(lambda on_preview: h.edit(
                    fields, source=source, mode=mode, editor_value=editor, mask_file=mask, strength=strength,
                    outpaint=(left, top, right, bottom), image_guidance=image_guidance, progress=tracker,
                    cancel=cancel, preview=on_preview, session=sess), tracker):
                if kind == "preview":
                    yield (gr.skip(),) * 4 + (gr.update(value=value, visible=True),)
                elif kind == "status":
                    yield gr.skip(), gr.skip(), value, gr.skip(), gr.skip()
            entries = value
            first = entries[0]
            noun = MODALITIES[first.get("modality") or "image"].noun  # an instruction edit of a clip: a clip
            status = (f"{mode}: sealed {noun} in {first.get('elapsed_s', 0):.1f}s · {first['model']} · "
                      f"{first['width']}×{first['height']} · seed {first['seed']} · source recorded as the "
                      f"C2PA ingredient") + control_panel.status_note(first)
            yield (gallery_value(entries), [e["file"] for e in entries], status, params_view(first),
                   gr.update(value=None, visible=False))

        e_event = e_go.click(
            do_edit,
            [e_source, e_mode, e_editor, e_mask, e_strength, e_left, e_top, e_right, e_bottom, e_prompt,
             e_negative, e_model, e_sampler, e_steps, e_guidance, e_seed, *e_inpaint.inputs, *e_instruct.inputs,
             *e_control.inputs],
            [e_gallery, e_files, e_status, e_params, e_live], show_progress_on=[e_gallery],
            concurrency_id="device", concurrency_limit=1)
        e_cancel.click(do_cancel, None, [e_status], cancels=[e_event], queue=False)
        e_instruct.wire(h, roots, mode=e_mode, model=e_model, source=e_source, files=e_files, event=e_event)
        g_control.wire(h, roots, model=g_model, width=g_width, height=g_height, seed=g_seed, guarded=guarded)
        control_reuse.wire_reuse(g_control, h, roots, h_reuse, h_selected)  # Reuse restores the units too
        e_control.wire(h, roots, model=e_model, seed=e_seed, guarded=guarded, source=e_source, mode=e_mode)

        # -- video
        def on_video_model(name):
            steps, guidance, sampler, w, hh = entry_defaults(name)
            if sampler not in samplers:
                sampler = DEFAULT_SAMPLER
            return (steps, guidance, sampler, w, hh, *clip_defaults(name))

        vd_model.change(on_video_model, [vd_model],
                        [vd_steps, vd_guidance, vd_sampler, vd_width, vd_height, vd_frames, vd_fps], queue=False)
        # Models added in the Models tab (or by another visitor) show up without a reload.
        video_tab.select(lambda: gr.update(choices=h.model_choices(_VIDEO.name)), None, [vd_model], queue=False)

        def on_video_source(image, clip):
            both = " — give one source, not both" if image and clip else ""
            return gr.update(visible=bool(clip)), f"**Mode:** {video_mode(image, clip)}{both}"

        for src in (vd_image, vd_clip):
            src.change(on_video_source, [vd_image, vd_clip], [vd_strength, vd_mode], queue=False)

        def clip_views(entry: dict):
            """(player, image) updates showing a sealed clip: what the browser plays as video goes to the player,
            an animated image (GIF) to an image element; the file is the sealed one either way."""
            if served_type(entry["file"])[0].startswith("video/"):
                return gr.update(value=entry["file"], visible=True), gr.update(value=None, visible=False)
            return gr.update(value=None, visible=False), gr.update(value=entry["file"], visible=True)

        @guarded(status=3, outputs=6)
        def do_video(prompt, negative, model, sampler, steps, guidance, frames, fps, width, height, seed, fmt,
                     image, clip, strength, request: gr.Request, progress=gr.Progress()):
            model = checked_model(model, "model", h.registry)
            image = checked_path(image, "image to animate", roots)
            clip = checked_path(clip, "clip to restyle", roots)
            cancel = h.cancel_event(session(request), reset=True)
            fields = h.video_fields(prompt=prompt, negative=negative, model=model, sampler=sampler, steps=steps,
                                    guidance=guidance, width=width, height=height, seed=seed, frames=frames,
                                    fps=fps, fmt=fmt)
            sess = session(request)
            tracker = _progress(progress)
            for kind, value in _streamed(lambda on_preview: h.video(
                    fields, image=image, clip=clip, strength=strength, progress=tracker, cancel=cancel,
                    preview=on_preview, session=sess), tracker):
                if kind == "preview":
                    yield (gr.skip(),) * 5 + (gr.update(value=value, visible=True),)
                elif kind == "status":
                    yield (gr.skip(),) * 3 + (value,) + (gr.skip(),) * 2
            entry = value[0]
            req = entry.get("request", {})
            status = (f"{entry['mode']}: sealed {_VIDEO.noun} ({clip_line(entry)}, {entry['width']}×"
                      f"{entry['height']}, {entry.get('format')}) in {entry.get('elapsed_s', 0):.1f}s · "
                      f"{entry['model']} · {entry['sampler']} · {req.get('steps')} steps · seed {entry['seed']}")
            if req.get("init_image") or req.get("init_video"):
                status += " · source recorded as the C2PA ingredient"
            player, still = clip_views(entry)
            yield (player, still, [entry["file"]], status, params_view(entry), gr.update(value=None, visible=False))

        vd_event = vd_go.click(
            do_video,
            [vd_prompt, vd_negative, vd_model, vd_sampler, vd_steps, vd_guidance, vd_frames, vd_fps, vd_width,
             vd_height, vd_seed, vd_format, vd_image, vd_clip, vd_strength],
            [vd_player, vd_gif, vd_files, vd_status, vd_params, vd_live],
            show_progress_on=[vd_player], concurrency_id="device", concurrency_limit=1)
        vd_cancel.click(do_cancel, None, [vd_status], cancels=[vd_event], queue=False)

        # -- music
        def on_music_model(name):
            steps, guidance, _, _, _ = entry_defaults(name)
            return steps, guidance, music_duration(name)

        mu_model.change(on_music_model, [mu_model], [mu_steps, mu_guidance, mu_duration], queue=False)
        music_tab.select(lambda: gr.update(choices=h.model_choices(_AUDIO.name)), None, [mu_model], queue=False)

        def on_music_source(source, edit, model):
            """Only the controls of the edit asked for: with no source, the duration; with one, the edit and its
            own fields (an edit's length follows its source; a strength only where the model varies by one)."""
            has = bool(source)
            try:
                mode = music_mode(source, edit)
            except Exception:  # noqa: BLE001 -- the label is cosmetic; Generate says what is wrong
                mode = "?"
            at_strength = h.varies_at_strength(model)
            if mode == "audio2audio" and not at_strength:
                mode += " (this model keeps the source's melody; it takes no strength)"
            return (gr.update(visible=has), gr.update(visible=has and edit == "continue"),
                    gr.update(visible=has and edit == "span"),
                    gr.update(visible=has and edit == "vary" and at_strength),
                    gr.update(visible=not has), f"**Mode:** {mode}")

        for ctl in (mu_source, mu_edit, mu_model):
            ctl.change(on_music_source, [mu_source, mu_edit, mu_model],
                       [mu_edit, mu_extend, mu_span_row, mu_strength, mu_duration, mu_mode], queue=False)

        @guarded(status=3, outputs=5)
        def do_music(prompt, negative, model, steps, guidance, duration, seed, fmt, source, edit, extend,
                     span_start, span_end, strength, request: gr.Request, progress=gr.Progress()):
            model = checked_model(model, "model", h.registry)
            source = checked_path(source, "source clip", roots)
            if not h.varies_at_strength(model):
                strength = None  # the slider is hidden for this model: its value was not asked for
            cancel = h.cancel_event(session(request), reset=True)
            fields = h.music_fields(prompt=prompt, negative=negative, model=model, steps=steps, guidance=guidance,
                                    seed=seed, duration=duration, fmt=fmt)
            sess = session(request)
            tracker = _progress(progress)
            for kind, value in _streamed(lambda _on_preview: h.music(
                    fields, source=source, edit=edit, extend=extend, span_start=span_start, span_end=span_end,
                    strength=strength, progress=tracker, cancel=cancel, session=sess), tracker):
                if kind == "status":
                    yield (gr.skip(),) * 3 + (value,) + (gr.skip(),)
            entry = value[0]
            status = (f"{entry['mode']}: sealed {_AUDIO.noun} ({audio_line(entry)}, {entry.get('format')}) in "
                      f"{entry.get('elapsed_s', 0):.1f}s · {entry['model']} · seed {entry['seed']}")
            if entry.get("request", {}).get("init_audio"):
                status += " · source recorded as the C2PA ingredient"
            if entry.get("watermark_status") == "too_short":
                status += " · signed; too short to carry the watermark"
            elif entry.get("watermark_status") == "not_embeddable":
                status += " · signed; the watermark could not be embedded"
            thumb = h.waveform(entry)
            yield (entry["file"], thumb, [entry["file"]], status, params_view(entry))

        mu_event = mu_go.click(
            do_music,
            [mu_prompt, mu_negative, mu_model, mu_steps, mu_guidance, mu_duration, mu_seed, mu_format, mu_source,
             mu_edit, mu_extend, mu_span_start, mu_span_end, mu_strength],
            [mu_player, mu_wave, mu_files, mu_status, mu_params],
            show_progress_on=[mu_player], concurrency_id="device", concurrency_limit=1)
        mu_cancel.click(do_cancel, None, [mu_status], cancels=[mu_event], queue=False)

        # -- batch
        @guarded
        def on_batch_file(path):
            rows, errors = batch_mod.validate_upload(path, h.registry, out)  # the file's and items' paths too
            if not path:
                return [], "", gr.update(interactive=False)
            if errors:
                msg = f"**{len(errors)} problem(s) — fix the file and upload it again:**\n" + "\n".join(
                    f"- {e}" for e in errors[:50])
                return rows, msg, gr.update(interactive=False)
            return rows, f"✓ {len(rows)} valid item(s), ready to start", gr.update(interactive=True)

        b_file.change(on_batch_file, [b_file], [b_table, b_check, b_go], queue=False)

        @guarded
        def do_batch(path, request: gr.Request, progress=gr.Progress()):
            cancel = h.cancel_event(session(request), reset=True)
            zip_path, summary, entries = batch_mod.run(h, path, progress=_progress(progress, unit=None), cancel=cancel)
            return zip_path, summary, gallery_value(entries)

        b_event = b_go.click(do_batch, [b_file], [b_zip, b_status, b_gallery], concurrency_id="device",
                             concurrency_limit=1)
        def do_batch_cancel(request: gr.Request):
            h.cancel(session(request))
            return "Cancelling after the current step…"

        b_cancel.click(do_batch_cancel, None, [b_status], cancels=[b_event], queue=False)

        # -- history
        def load_history():
            entries = h.history_entries()
            return gallery_value(entries), entries, f"**{len(entries)}** output(s) in this server's folder"

        hist_outputs = [h_gallery, h_entries, h_count]
        hist_tab.select(load_history, None, hist_outputs, queue=False)
        h_refresh.click(load_history, None, hist_outputs, queue=False)
        demo.load(load_history, None, hist_outputs, queue=False)

        @guarded
        def on_hist_select(entries, evt: gr.SelectData):
            i = evt.index if isinstance(evt.index, int) else 0
            if not entries or i >= len(entries):
                return gr.update(), gr.update(), gr.update(), None, gr.update()
            e = entries[i]
            head, _details, _data = h.verify(e["file"])
            plays = is_clip(e) and served_type(e["file"])[0].startswith("video/")
            player = gr.update(value=e["file"] if plays else None, visible=plays)
            return verdict_html(head), e["file"], params_view(e), e, player

        h_gallery.select(on_hist_select, [h_entries], [h_verdict, h_file, h_params, h_selected, h_video])

        def on_hist_audio(entries, evt: gr.SelectData):
            """The selected entry's sealed audio in the Gallery's player (hidden for images and clips)."""
            i = evt.index if isinstance(evt.index, int) else 0
            e = entries[i] if entries and i < len(entries) else None
            plays = bool(e) and is_audio(e)
            return gr.update(value=e["file"] if plays else None, visible=plays)

        h_gallery.select(on_hist_audio, [h_entries], [h_audio], queue=False)

        image_form = [g_prompt, g_negative, g_model, g_sampler, g_steps, g_guidance, g_size, g_width, g_height,
                      g_seed, g_batch]
        video_form = [vd_prompt, vd_negative, vd_model, vd_sampler, vd_steps, vd_guidance, vd_frames, vd_fps,
                      vd_width, vd_height, vd_seed, vd_format]

        @guarded(status=len(image_form) + len(video_form) + 1, outputs=len(image_form) + len(video_form) + 2)
        def reuse(e):
            """An image's settings fill the Generate form, a clip's the Video form (the other one is left as
            it is)."""
            if not e:
                raise gr.Error("pick an image in the gallery first", print_exception=False)
            if is_audio(e):  # reuse_music fills the Music form
                return (gr.skip(),) * (len(image_form) + len(video_form) + 2)
            r = e.get("request", {})
            model = e.get("model") if e.get("model") in h.registry.entries else gr.update()
            common = (r.get("prompt", ""), r.get("negative_prompt", ""), model, r.get("sampler") or DEFAULT_SAMPLER,
                      r.get("steps"), r.get("guidance"))
            if is_clip(e):
                fmt = e.get("format") if e.get("format") in _VIDEO.formats else gr.update()
                values = common + (r.get("frames"), r.get("fps"), r.get("width"), r.get("height"),
                                   r.get("seed", -1), fmt)
                return (gr.skip(),) * len(image_form) + values + (gr.Tabs(selected="video"), gr.skip())
            values = common + ("Custom", r.get("width"), r.get("height"), r.get("seed", -1), 1)
            return values + (gr.skip(),) * len(video_form) + (gr.Tabs(selected="generate"), gr.skip())

        h_reuse.click(reuse, [h_selected], image_form + video_form + [tabs, h_count], queue=False)
        g_extras.wire(demo, g_width, g_height, h_reuse, h_selected)  # reuse fills the LoRAs and hires fix too
        g_prompt_x.wire(demo, g_tokens, g_prompt, g_negative, g_model, h_reuse, h_selected)
        music_form = [mu_prompt, mu_negative, mu_model, mu_steps, mu_guidance, mu_duration, mu_seed, mu_format]

        @guarded(status=len(music_form) + 1, outputs=len(music_form) + 2)
        def reuse_music(e):
            """A music entry's settings fill the Music form (the source clip of an edit is not re-attached: only
            its name was kept)."""
            if not e or not is_audio(e):
                return (gr.skip(),) * (len(music_form) + 2)
            r = e.get("request", {})
            model = e.get("model") if e.get("model") in h.registry.entries else gr.update()
            fmt = e.get("format") if e.get("format") in _AUDIO.formats else gr.update()
            duration = r.get("duration") if r.get("duration") is not None else e.get("duration_s")
            return (r.get("prompt", ""), r.get("negative_prompt", ""), model, r.get("steps"), r.get("guidance"),
                    duration, r.get("seed", e.get("seed", -1)), fmt, gr.Tabs(selected="music"), gr.skip())

        h_reuse.click(reuse_music, [h_selected], music_form + [tabs, h_count], queue=False)

        def gallery_to_edit(e):
            if e and is_audio(e):
                raise gr.Error("a music clip cannot be edited in the Edit tab: upload it in the Music tab as the "
                               "source clip", print_exception=False)
            if e and is_clip(e):
                raise gr.Error(f"a {_VIDEO.noun} cannot be edited in the Edit tab: upload it in the Video tab as "
                               f"the clip to restyle", print_exception=False)
            return send_to_edit([e] if e else [], 0, "pick an image in the gallery first")

        gallery_to_edit = guarded(gallery_to_edit, status=len(edit_targets), outputs=len(edit_targets) + 1)
        h_to_edit.click(lambda e: gallery_to_edit(e), [h_selected], edit_targets + [h_count], queue=False)

        # -- verify
        @guarded
        def do_verify(path):
            if not path:
                return "", "", None
            path = checked_path(path, "file to verify", roots)
            head, details, data = h.verify(path)
            return verdict_html(head), details, data

        v_file.change(do_verify, [v_file], [v_verdict, v_details, v_json])
        def xyz_fields(values):
            prompt, negative, model, sampler, steps, guidance, width, height, seed = values[:9]
            fields = h.request_fields(prompt=prompt, negative=negative, model=checked_model(model, "model", h.registry),
                                      sampler=sampler, steps=steps, guidance=guidance, size="Custom", width=width,
                                      height=height, seed=seed, batch=1)
            fields.update(g_extras.fields(values[9:]))  # the picked LoRAs (a lora axis sweeps the first one)
            return fields

        g_xyz.wire(h, form_inputs=[g_prompt, g_negative, g_model, g_sampler, g_steps, g_guidance, g_width, g_height,
                                   g_seed, *g_extras.inputs], fields_of=xyz_fields, session_of=session,
                   progress_of=_progress, cancel_of=lambda r: h.cancel_event(session(r), reset=True), guarded=guarded)
        g_rate.wire(demo, g_entries, g_selected, guarded=guarded)
        h_rate.wire(demo, None, h_selected, guarded=guarded, nothing="select an output in the gallery first",
                    name="gallery_rate")
        for rate_buttons, tab, noun in ((e_rate, "edit", "run an edit"), (vd_rate, "video", "generate a clip"),
                                        (mu_rate, "music", "generate music")):
            rate_buttons.wire_shown(demo, h.shown, tab, session_of=session, guarded=guarded, nothing=f"{noun} first",
                                    name=f"{tab}_rate")
        t_panel.wire(demo, tune_tab, guarded=guarded, progress_of=_progress, streamed=_streamed, session_of=session,
                     lora_picker=g_extras.loras, tabs=tabs)
        g_best.wire(h, form_inputs=[g_prompt, g_negative, g_model, g_sampler, g_steps, g_guidance, g_width, g_height,
                                    g_seed, *g_extras.inputs], fields_of=xyz_fields, progress_of=_progress,
                    cancel_of=lambda r: h.cancel_event(session(r), reset=True), guarded=guarded, count=g_rate.count)
        params_panel.wire(
            h, roots, tabs=tabs, samplers=samplers, default_sampler=DEFAULT_SAMPLER, png_info=g_pnginfo,
            verify_parts=v_params, v_file=v_file, lora_picker=(g_extras.loras, g_extras.weights),
            gen=dict(prompt=g_prompt, negative_prompt=g_negative, model=g_model, sampler=g_sampler, steps=g_steps,
                     guidance=g_guidance, size=g_size, width=g_width, height=g_height, seed=g_seed, batch=g_batch),
            edit=dict(source=e_source, editor=e_editor, mode=e_mode, prompt=e_prompt, negative_prompt=e_negative,
                      model=e_model, sampler=e_sampler, steps=e_steps, guidance=e_guidance, seed=e_seed))

        # -- models
        def refresh_models():
            choices = h.model_choices()
            return (h.model_rows(), gr.update(choices=choices), gr.update(choices=choices),
                    gr.update(choices=h.model_choices(_VIDEO.name)), gr.update(choices=h.model_choices(_AUDIO.name)))

        m_refresh.click(refresh_models, None, [m_table, g_model, e_model, vd_model, mu_model], queue=False)

        @guarded(status=3, outputs=6)
        def add_model(name, path, family):
            added = h.add_model(name, path, family)
            rows, g_upd, e_upd, vd_upd, mu_upd = refresh_models()
            return rows, g_upd, e_upd, f"✓ added **{added}**; pick it in the Model menu.", vd_upd, mu_upd

        m_add.click(add_model, [m_name, m_path, m_family],
                    [m_table, g_model, e_model, m_status, vd_model, mu_model], queue=False)

    return demo


def launch(studio=None, out_dir=None, *, host: str = "127.0.0.1", port: Optional[int] = 7860,
           auth: Optional[tuple[str, str]] = None, max_file_size=DEFAULT_MAX_FILE_SIZE, block: bool = True,
           demo: Optional[gr.Blocks] = None, quiet: bool = False, login_throttle: Optional[LoginThrottle] = None,
           models_dir=None, loras_dir=None, **launch_kwargs):
    """Build (unless `demo` is given) and serve the app. Binds 127.0.0.1 unless `host` says otherwise; serves
    only the output folder; uploads are capped at `max_file_size`. With `block=False` returns at once (the
    server runs in a thread; `demo.close()` stops it)."""
    demo = demo or build_app(studio, out_dir, models_dir=models_dir, loras_dir=loras_dir)
    out: Path = demo.ui_out_dir
    _gradio_dirs(out)
    from studio import config_dir

    if host not in ("127.0.0.1", "localhost", "::1") and auth is None:
        log.warning("serving on %s without --auth: anyone who can reach this port can generate", host)
    demo.queue(default_concurrency_limit=1, max_size=64)
    home = config_dir()
    blocked = [str(home)]
    if _inside(home, out):  # the output folder may live in the config dir; keep keys, ledger and registry blocked
        blocked = [str(p) for p in home.iterdir() if not _inside(p, out) and not _inside(out, p)]
    app_kwargs = dict(launch_kwargs.pop("app_kwargs", None) or {})
    # Passed to the FastAPI constructor, so they are in place before the server starts (Starlette refuses
    # middleware added later); Gradio's CORS and compression wrap them.
    app_kwargs["middleware"] = [*app_kwargs.get("middleware", []), Middleware(ServedFilesGuard),
                                Middleware(LoginThrottleMiddleware, throttle=login_throttle or LoginThrottle())]
    demo.launch(
        app_kwargs=app_kwargs,
        server_name=host, server_port=port, auth=auth, allowed_paths=[str(out)], blocked_paths=blocked,
        max_file_size=max_file_size, show_error=False, ssr_mode=False, share=False, inbrowser=False,
        prevent_thread_lock=not block, quiet=quiet, footer_links=[], theme=_theme(), css=CSS + prompt_extras.CSS,
        pwa=False, mcp_server=False, enable_monitoring=False, **_own_reachability_probe(demo), **launch_kwargs)
    if not block:
        wait_reachable(demo.local_url)
    return demo


def _own_reachability_probe(demo) -> dict:
    """Gradio probes its own URL once after starting (a Colab check: unreachable means "use a share link") and
    gives up on one 3 s timeout, which a busy render host hits while the server is fine; the launch then
    raises. Share links are never used here, so skip that probe (a private switch of gradio 6, taken only where
    it exists) and wait for the server ourselves."""
    return {"_frontend": False} if "_frontend" in inspect.signature(demo.launch).parameters else {}


def wait_reachable(url: str, timeout: float = 60.0) -> None:
    """Until the server at `url` answers (any HTTP status: with --auth it is a login redirect)."""
    import httpx

    end = time.monotonic() + timeout
    while True:
        try:
            httpx.head(url, timeout=5, verify=False)
            return
        except httpx.HTTPError as e:
            if time.monotonic() > end:
                raise RuntimeError(f"the web app started but {url} does not answer ({type(e).__name__}): check "
                                   f"that the host and port are reachable from this machine") from None
            time.sleep(0.25)


def _inside(root: Path, path: Path) -> bool:
    try:
        Path(path).resolve().relative_to(Path(root).resolve())
        return True
    except ValueError:
        return False


def parse_auth(text: Optional[str]) -> Optional[tuple[str, str]]:
    """`USER:PASS` (or `USER:` + the `STUDIO_UI_PASSWORD` env var)."""
    if not text:
        return None
    user, sep, password = text.partition(":")
    password = password or os.environ.get("STUDIO_UI_PASSWORD", "")
    if not sep or not user or not password:
        raise ValueError("--auth takes USER:PASS")
    return user, password


__all__ = ["build_app", "launch", "default_out_dir", "parse_auth"]
