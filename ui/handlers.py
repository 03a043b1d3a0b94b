"""The web app's actions, free of Gradio: each takes plain values and returns paths of sealed files inside the
output folder (never pixels), so what leaves the server is the signed, watermarked file itself."""
from __future__ import annotations

import hashlib
import os
import html
import math
import re
import shutil
import threading
import time
import uuid
from pathlib import Path
from typing import Callable, Optional

import studio
from studio import GenerationRequest, RequestError, StudioError
from studio.modalities import MODALITIES, modality as modality_of

from .browser_paths import checked_path, upload_dir
from .errors import Cancelled, sanitize, step_callback
from .history import History

ProgressFn = Callable[[int, int, str], None]  # (done, total, description)

SIZE_PRESETS = {
    "Model default": (None, None),
    "256 × 256": (256, 256),
    "512 × 512": (512, 512),
    "768 × 768": (768, 768),
    "1024 × 1024": (1024, 1024),
    "832 × 1216 portrait": (832, 1216),
    "1216 × 832 landscape": (1216, 832),
    "Custom": (None, None),
}
DEFAULT_SAMPLER = "Model default"
VERIFY_GOOD = ("trusted", "valid")
# watermark statuses of an output sealed without the mark, as the signed manifest records them
UNMARKED = {"too_small": "it was too small to carry one", "too_short": "it was too short to carry one",
            "not_embeddable": "the mark could not be embedded in it"}
MUSIC_EDITS = ("continue", "span", "vary")  # the Music tab's edits of a source clip, in the form's order
MUSIC_EDIT_LABELS = {"continue": "Continue it", "span": "Regenerate a span", "vary": "Vary it"}


class Handlers:
    """One per app: the studio (registry + loaded model), the output folder and its history."""

    def __init__(self, studio_obj=None, out_dir: Path | str = "studio-ui-out", verify_on_write: bool = True,
                 models_dir: Path | str | None = None, loras_dir: Path | str | None = None):
        from .lora_hires import default_loras_dir

        self.studio = studio_obj if studio_obj is not None else _default_studio()
        self.out_dir = Path(out_dir).expanduser().resolve()
        self.models_dir = default_models_dir() if models_dir is None else Path(models_dir).expanduser().resolve()
        # the only folder the Generate tab's LoRA picker lists and accepts files from (ui.lora_hires)
        self.loras_dir = default_loras_dir() if loras_dir is None else Path(loras_dir).expanduser().resolve()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.history = History(self.out_dir)
        self.verify_on_write = verify_on_write
        self._cancel: dict[str, threading.Event] = {}
        self._cancel_lock = threading.Lock()
        from .ratings_panel import ShownResults

        self.shown = ShownResults()  # each page's tab's last results: the Edit/Video/Music 👍 / 👎 rate these

    # -- cancel ---------------------------------------------------------------------------------------------
    def cancel_event(self, session: str, *, reset: bool = False) -> threading.Event:
        with self._cancel_lock:
            ev = self._cancel.setdefault(session or "-", threading.Event())
            if reset:
                ev.clear()
            return ev

    def cancel(self, session: str) -> None:
        self.cancel_event(session).set()

    # -- models ---------------------------------------------------------------------------------------------
    @property
    def registry(self):
        return self.studio.registry

    def registry_problems(self) -> list[str]:
        """Entries of models.toml the registry ignored, each with its reason."""
        return list(getattr(self.registry, "problems", []))

    def model_choices(self, modality: Optional[str] = "image") -> list[tuple[str, str]]:
        """The menu of models making `modality` (None: every model): an image model in the Video tab (or a clip
        model in Generate) would only be refused by the engine after the user filled the form."""
        out = []
        for e in self.registry.entries.values():
            if modality is None or entry_modality(e) == modality:
                out.append((f"{e.name}" + ("" if _available(e) else "  (not downloaded)"), e.name))
        return out

    def default_model(self, modality: str = "image") -> str:
        entries = {n: e for n, e in self.registry.entries.items() if entry_modality(e) == modality}
        name = self.registry.default_name()
        if modality != "image":  # the registry names the image default; a modality's own is "<default>-<name>"
            name = next((n for n in entries if n == f"{name}-{modality}"), next(iter(entries), name))
        if name in entries and _available(entries[name]):
            return name
        user = [e.name for e in entries.values() if not e.builtin and _available(e)]
        local = [e.name for e in entries.values() if _available(e)]
        return (user or local or [name])[0]

    def model_rows(self) -> list[list]:
        rows = []
        for e in self.registry.entries.values():
            source = e.source
            if e.is_path:  # never show a server path to the browser: the folder/file name is enough
                source = "local: " + Path(source).name
            rows.append([e.name, e.family or "auto", "yes" if _available(e) else "no", source,
                         "built-in" if e.builtin else "user", e.description])
        return rows

    def add_model(self, name: str, path: str, family: Optional[str]) -> str:
        """Register a local model; the registry checks that it would load (complete .safetensors, readable
        model_index.json, known family) before anything is saved."""
        name = (name or "").strip()
        path = (path or "").strip()
        if not name or not all(c.isalnum() or c in "-_." for c in name):
            raise RequestError("model name must be non-empty and use only letters, digits, '-', '_' and '.'")
        self.registry.check_name(name)  # a reserved name is the first thing to say, whatever the path
        if not path:
            raise RequestError("give the path of a diffusers folder or a .safetensors file in the models folder")
        # A browser may register only what the server's owner put in the models folder: any other path would let
        # a logged-in visitor make the server read (and load, and hash) whatever file it names.
        p = Path(checked_path(path, "model path", [self.models_dir], base=self.models_dir,
                              allowed=f"inside the server's models folder ({self.models_dir.name}/; "
                                      f"set with `studio ui --models-dir`)"))
        if not p.exists():
            raise RequestError(f"{Path(path).name} does not exist in the models folder")
        if p.is_file() and p.suffix.lower() != ".safetensors":
            raise RequestError("only .safetensors files or diffusers folders can be added here "
                               "(pickle checkpoints can run code)")
        if p.is_dir() and not (p / "model_index.json").exists():
            raise RequestError(f"{p.name} is not a diffusers folder (no model_index.json)")
        family = None if family in (None, "", "auto") else family
        self.registry.add(name, str(p.resolve()), family)
        return name

    def samplers(self) -> list[str]:
        return [DEFAULT_SAMPLER] + studio.samplers()

    # -- generation -----------------------------------------------------------------------------------------
    def request_fields(self, *, prompt, negative="", model=None, sampler=None, steps=None, guidance=None,
                       size="Model default", width=None, height=None, seed=None, batch=1) -> dict:
        """Form values -> GenerationRequest fields (None: the model's default). Values arrive from the browser or
        straight through the API, so each is checked here with a line naming the field: Gradio's own bound checks
        do not name it, and its sliders clamp a typed 0 to their minimum without saying so."""
        w, h = SIZE_PRESETS.get(size, (None, None))
        if size == "Custom":
            w = _number(width, "width", whole=True, minimum=64)
            h = _number(height, "height", whole=True, minimum=64)
        seed = _number(seed, "seed", whole=True)
        if seed is not None and seed < 0:
            seed = None  # -1: random
        batch = _number(batch, "number of images", whole=True, minimum=1)
        return {
            "prompt": prompt or "",
            "negative_prompt": negative or "",
            "model": model or None,
            "sampler": None if sampler in (None, "", DEFAULT_SAMPLER) else sampler,
            "steps": _number(steps, "steps", whole=True, minimum=1),
            "guidance": _number(guidance, "guidance", minimum=0),
            "width": w,
            "height": h,
            "seed": seed,
            "batch": 1 if batch is None else batch,
        }

    def generate(self, fields: dict, *, init_image: Optional[str] = None, mask: Optional[str] = None,
                 init_video: Optional[str] = None, init_audio: Optional[str] = None,
                 progress: Optional[ProgressFn] = None, cancel: Optional[threading.Event] = None,
                 source: str = "generate", out_stem: Optional[Path] = None,
                 preview: Optional[Callable[[str], None]] = None, session: str = "-") -> list[dict]:
        """Run one request and return the history entries of its sealed outputs (with `file`, an absolute
        path inside the output folder). `preview(path)` gets sealed live previews, written under
        `previews/<session>/` (cleared at the start of the session's next run)."""
        fields = dict(fields)
        if init_image is not None:
            fields["init_image"] = str(init_image)
        if mask is not None:
            fields["mask"] = str(mask)
        if init_video is not None:
            fields["init_video"] = str(init_video)
        if init_audio is not None:
            fields["init_audio"] = str(init_audio)
        request = GenerationRequest.build(**fields)
        if request.model is None:
            request = GenerationRequest.build(**{**fields, "model": self.default_model(request.modality or "image")})
        entry = self.registry.resolve(request.model)  # UnknownModel before anything slow
        # The engine decides the modality from the model; deciding it here too names the file (folder, mode,
        # extension) and refuses an image model in the Video tab, or a clip model in Generate, before any load.
        decided = request.with_modality(request.modality or entry_modality(entry))
        kind = modality_of(decided.modality)
        doing = kind.working

        on_step = step_callback(progress, cancel, doing)
        if cancel is not None and cancel.is_set():
            raise Cancelled("cancelled")
        if progress is not None:
            progress(0, 1, f"loading {request.model}")
        stem = out_stem or (self.out_dir / kind.folder / time.strftime("%Y%m%d") /
                            f"{time.strftime('%H%M%S')}-{decided.mode}-{uuid.uuid4().hex[:6]}"
                            f"{kind.extensions[decided.output_format]}")
        stem.parent.mkdir(parents=True, exist_ok=True)
        on_preview = None
        if preview is not None:
            preview_dir = self.out_dir / "previews" / (re.sub(r"[^A-Za-z0-9_-]", "", session)[:64] or "-")
            shutil.rmtree(preview_dir, ignore_errors=True)
            run_id = uuid.uuid4().hex[:8]

            def on_preview(step: int, total: int, output) -> None:
                preview(str(output.save(preview_dir / f"{run_id}-{step:04d}.png")))

        result = self.studio.generate(request, out=stem, progress=on_step, preview=on_preview,
                                      init_image=init_image, mask=mask, init_video=init_video,
                                      **({"init_audio": init_audio} if init_audio is not None else {}))
        entries = [self._record(result, o, source) for o in result.outputs]
        self.shown.put(session, source, entries)
        return entries

    # -- video ----------------------------------------------------------------------------------------------
    def video_fields(self, *, prompt, negative="", model=None, sampler=None, steps=None, guidance=None,
                     width=None, height=None, seed=None, frames=None, fps=None, fmt=None) -> dict:
        """The Video tab's form -> request fields; `modality` is set so an image model is refused in one line
        (by the schema's `with_modality`) instead of rendering a still where a clip was asked for."""
        fields = self.request_fields(prompt=prompt, negative=negative, model=model, sampler=sampler, steps=steps,
                                     guidance=guidance, size="Custom", width=width, height=height, seed=seed,
                                     batch=1)
        kind = MODALITIES["video"]
        fps = _number(fps, "fps")
        if fps is not None and fps <= 0:
            raise RequestError("fps must be above 0")
        if fmt not in (None, "") and fmt not in kind.formats:
            raise RequestError(f"format must be one of {', '.join(kind.formats)}, not {str(fmt)[:20]!r}")
        return {**fields, "modality": kind.name, "frames": _number(frames, "frames", whole=True, minimum=1),
                "fps": fps, "output_format": fmt or None}

    def video(self, fields: dict, *, image: Optional[str] = None, clip: Optional[str] = None,
              strength: Optional[float] = None, progress: Optional[ProgressFn] = None,
              cancel: Optional[threading.Event] = None, preview: Optional[Callable[[str], None]] = None,
              session: str = "-") -> list[dict]:
        """A clip from a prompt (txt2vid), from a still it animates (img2vid) or from a clip it restyles at
        `strength` (vid2vid): the mode follows the source given. The source file is passed as it was uploaded,
        so it becomes the clip's C2PA ingredient."""
        if image and clip:
            raise RequestError("give either an image to animate or a clip to restyle, not both")
        fields = dict(fields)
        if clip:
            fields["strength"] = _number(strength, "strength", minimum=0)
        return self.generate(fields, init_image=image or None, init_video=clip or None, progress=progress,
                             cancel=cancel, source="video", preview=preview, session=session)

    # -- music ----------------------------------------------------------------------------------------------
    def music_fields(self, *, prompt, negative="", model=None, steps=None, guidance=None, seed=None,
                     duration=None, fmt=None) -> dict:
        """The Music tab's form -> request fields, `modality` set so an image or video model is refused in one
        line before anything loads. No sampler: every audio backend runs its own."""
        fields = self.request_fields(prompt=prompt, negative=negative, model=model, steps=steps,
                                     guidance=guidance, seed=seed, batch=1)
        kind = MODALITIES["audio"]
        duration = _number(duration, "duration")
        if duration is not None and duration <= 0:
            raise RequestError("duration must be above 0 seconds")
        if fmt not in (None, "") and fmt not in kind.formats:
            raise RequestError(f"format must be one of {', '.join(kind.formats)}, not {str(fmt)[:20]!r}")
        fields.pop("width"), fields.pop("height"), fields.pop("sampler")
        return {**fields, "modality": kind.name, "duration": duration, "output_format": fmt or None}

    def music(self, fields: dict, *, source: Optional[str] = None, edit: str = MUSIC_EDITS[0],
              extend=None, span_start=None, span_end=None, strength=None,
              progress: Optional[ProgressFn] = None, cancel: Optional[threading.Event] = None,
              session: str = "-") -> list[dict]:
        """Music from a prompt (txt2audio), or an edit of an uploaded `source` clip: `edit` continues it by
        `extend` seconds, regenerates the span `span_start`-`span_end`, or varies it at `strength`. The source
        goes to the engine as uploaded, so it becomes the C2PA ingredient. Each entry gets a `waveform` picture
        (for an edit: the source above the result, with the regenerated or added part shaded)."""
        fields = dict(fields)
        before = None
        if source:
            from studio.inputs import read_audio  # bounded like the engine's own read

            clip = read_audio(source, "source clip", shown=Path(source).name)
            before = (clip.samples, clip.rate)
            fields["duration"] = None  # an edit's length follows its source (plus the continuation)
            if edit == "continue":
                fields["extend"] = _number(extend, "continue by (seconds)")
                if fields["extend"] is None or fields["extend"] <= 0:
                    raise RequestError("continue by (seconds) must be above 0")
            elif edit == "span":
                start, end = _number(span_start, "span start"), _number(span_end, "span end")
                if start is None or end is None:
                    raise RequestError("give the span to regenerate: its start and end in seconds")
                fields["span"] = {"start": start, "end": end}
            elif edit == "vary":
                fields["strength"] = _number(strength, "strength", minimum=0)  # None: the model's way to vary
            else:
                raise RequestError(f"unknown edit {str(edit)[:20]!r} (one of {', '.join(MUSIC_EDITS)})")
        entries = self.generate(fields, init_audio=source or None, progress=progress, cancel=cancel,
                                source="music", session=session)
        for e in entries:
            shade = None
            if before is not None:
                src_s = len(before[0]) / before[1]
                if e["mode"] == "audio_extend":
                    shade = [(src_s, e.get("duration_s") or src_s)]
                elif e["mode"] == "audio_inpaint":
                    shade = [(fields["span"]["start"], fields["span"]["end"])]
            self.waveform(e, before=before, shade=shade, redraw=True)
        return entries

    def varies_at_strength(self, model: Optional[str]) -> bool:
        """Whether the model's audio-to-audio takes a strength: Stable Audio re-noises the clip that far;
        MusicGen-Melody keeps the clip's melody and refuses one (its pipeline says so, after loading)."""
        entry = self.registry.entries.get(model or "")
        return getattr(entry, "family", None) not in ("musicgen",)

    def waveform(self, entry: dict, *, before=None, shade=None, redraw: bool = False) -> str:
        """The picture of an audio entry (`waveforms/<id>.png` in the output folder), drawn from the samples
        decoded out of its sealed file."""
        path = self.out_dir / "waveforms" / f"{entry['id']}.png"
        if path.exists() and not redraw:
            return str(path)
        from .waveform import draw_waveform

        try:
            data = Path(entry["file"]).read_bytes()
            samples, rate = MODALITIES["audio"].decode(data)
        except Exception:  # noqa: BLE001 -- a damaged file still gets a tile in the Gallery, saying so
            return str(draw_waveform(path, [0.0], 1, title="this file could not be decoded"))
        labels = {"audio_extend": "after: continued (added part shaded)",
                  "audio_inpaint": "after: span regenerated (shaded)", "audio2audio": "after: varied"}
        title = labels.get(entry.get("mode"), "sealed clip") if before is not None else "sealed clip"
        draw_waveform(path, samples, int(rate), before=before, shade=shade,
                      title=f"{title} · {audio_line(entry)}", source=data, source_format=entry.get("format"))
        return str(path)

    def _record(self, result, output, source: str) -> dict:
        path = Path(output.path).resolve()
        if not _inside(path, self.out_dir):  # never hand out a file from elsewhere
            raise StudioError("the studio wrote an output outside the UI's output folder")
        rec = result.record
        req = rec.request.model_dump(mode="json")
        for key in ("init_image", "mask", "init_video", "init_audio"):
            if req.get(key):
                req[key] = Path(req[key]).name
        for unit in req.get("controls") or []:  # ui.control_panel: the control image's and a local net's names
            unit["image"] = Path(unit["image"]).name
            if unit.get("model") and os.path.isabs(unit["model"]):
                unit["model"] = Path(unit["model"]).name
        if req.get("loras"):  # the picker's names (folder-relative, registry:NAME), never a server path
            from .lora_hires import browser_loras

            req["loras"] = browser_loras(req["loras"], self.loras_dir, self.registry)
        entry = {
            "id": output.record.sha256[:16],
            "path": str(path.relative_to(self.out_dir)),
            "source": source,
            "mode": rec.mode,
            "model": rec.model_name,
            "family": rec.model_family,
            "sampler": rec.sampler,
            "seed": output.record.seed,
            "width": output.record.width,
            "height": output.record.height,
            "elapsed_s": rec.elapsed_s,
            "sha256": output.record.sha256,
            "watermark_id": output.record.watermark_id,
            "watermark_status": output.record.watermark_status,
            "request": {**req, "seed": output.record.seed, "batch": 1},
        }
        entry.update(modality=req.get("modality") or "image", format=getattr(output.record, "format", None))
        if rec.warnings or rec.styles:  # the prompt tools' notes (ui.prompt_extras shows them)
            entry.update(warnings=list(rec.warnings), styles=rec.styles)
        for key in ("frames", "fps", "duration_s", "sample_rate", "channels"):  # a clip's; an image has none
            if getattr(output.record, key, None) is not None:
                entry[key] = getattr(output.record, key)
        if self.verify_on_write:
            entry.update(self._quick_verify(path))
        entry = self.history.add(entry)
        return {**entry, "file": str(path)}

    def _quick_verify(self, path: Path) -> dict:
        try:
            rep = studio.verify(path)
            return {"verify": rep.state, "watermark_found": bool(rep.watermark_found)}
        except Exception as exc:  # a verify problem must not lose the output
            return {"verify": "unknown", "verify_error": sanitize(str(exc), self.out_dir)}

    # -- edit -----------------------------------------------------------------------------------------------
    def edit(self, fields: dict, *, source: Optional[str], mode: str, editor_value: Optional[dict] = None,
             mask_file: Optional[str] = None, strength: Optional[float] = None,
             outpaint: tuple[int, int, int, int] = (0, 0, 0, 0), image_guidance: Optional[float] = None,
             progress: Optional[ProgressFn] = None, cancel: Optional[threading.Event] = None,
             preview: Optional[Callable[[str], None]] = None, session: str = "-") -> list[dict]:
        """img2img / inpaint / outpaint / instruct of `source` (the uploaded file itself, so it becomes the C2PA
        ingredient with its own manifest if it has one)."""
        if not source and editor_value and editor_value.get("background"):
            source = editor_value["background"]  # uploaded into the editor: re-encoded by the browser
        if not source:
            raise RequestError("upload a source image first (or send one from the Generate tab)")
        fields = dict(fields)
        mask = None
        if mode in ("img2img", "inpaint"):
            fields["strength"] = _number(strength, "strength", minimum=0)
        if mode == "inpaint":
            mask = mask_file or self.mask_from_editor(editor_value, source)
        elif mode == "outpaint":
            left, top, right, bottom = (_number(v, f"{side} padding", whole=True, minimum=0) or 0
                                        for v, side in zip(outpaint, ("left", "top", "right", "bottom")))
            fields["outpaint"] = {"left": left, "top": top, "right": right, "bottom": bottom}
            if fields.get("width") is None or fields.get("height") is None:
                fields["width"] = fields["height"] = None
        elif mode == "instruct":  # ui.edit_instruct_panel: the model's instruct counterpart, image guidance
            from .edit_instruct_panel import instruct_fields

            fields = instruct_fields(self, fields, image_guidance)
        elif mode != "img2img":
            raise RequestError(f"unknown edit mode {mode!r}")
        from .edit_instruct_panel import source_field  # a clip: an instruction edit of every frame

        return self.generate(fields, **source_field(mode, source), mask=mask, progress=progress, cancel=cancel,
                             source="edit", preview=preview, session=session)

    def mask_from_editor(self, editor_value: Optional[dict], source: str) -> str:
        """The strokes drawn in the editor (any layer pixel with alpha > 0) as a white-on-black mask the size of
        the source image, saved in the output folder."""
        from PIL import Image

        layers = [l for l in (editor_value or {}).get("layers") or [] if l]
        if not layers:
            raise RequestError("inpainting needs a mask: paint over the area to repaint, or upload a mask")
        with Image.open(source) as src:
            size = src.size
        mask = Image.new("L", size, 0)
        for layer in layers:
            with Image.open(layer) as im:
                alpha = im.convert("RGBA").getchannel("A")
            if alpha.size != size:
                alpha = alpha.resize(size, Image.NEAREST)
            mask.paste(255, mask=alpha.point(lambda a: 255 if a > 0 else 0))
        if mask.getbbox() is None:
            raise RequestError("the mask is empty: paint over the area to repaint, or upload a mask")
        # an input, kept with the uploads: outputs/ holds only sealed files (the result records the mask's hash)
        path = upload_dir(self.out_dir) / "masks" / f"mask-{uuid.uuid4().hex[:10]}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        mask.save(path)
        return str(path)

    # -- verify ---------------------------------------------------------------------------------------------
    def verify(self, path: Optional[str]) -> tuple[str, str, dict]:
        """(verdict headline, markdown details, sanitized report dict)."""
        if not path:
            raise RequestError("upload a file to verify")
        rep = studio.verify(path)
        data = _sanitize_obj(rep.to_dict(), self.out_dir)
        name = Path(path).name
        audio = _audio_info(path, rep)
        if audio:
            data["audio"] = audio
        return verdict(rep), _render_report(rep, name, self.out_dir, audio), data

    # -- history --------------------------------------------------------------------------------------------
    def history_entries(self, limit: int = 200) -> list[dict]:
        out = [{**e, "file": str(self.history.abspath(e))} for e in self.history.entries(limit)]
        for e in out:
            if is_audio(e):  # the Gallery shows pictures: an audio entry's is its waveform
                e["thumb"] = self.waveform(e)
        return out

    def entry(self, entry_id: str) -> Optional[dict]:
        e = self.history.get(entry_id)
        return {**e, "file": str(self.history.abspath(e))} if e else None


# -- helpers ------------------------------------------------------------------------------------------------
def default_models_dir() -> Path:
    """`DIFFUSION_STUDIO_MODELS_DIR`, else `models` in the studio's config dir."""
    env = os.environ.get("DIFFUSION_STUDIO_MODELS_DIR")
    return (Path(env) if env else studio.config_dir() / "models").expanduser().resolve()


def _default_studio():
    try:
        return studio.Studio(quiet=True)  # the page shows progress; keep diffusers' tqdm out of the server log
    except TypeError:
        return studio.Studio()


def entry_modality(entry) -> str:
    """What a registry entry makes; an entry whose family is decided at load time is taken for an image model
    (the engine says otherwise, in one line, if its files turn out to be a video pipeline)."""
    return getattr(entry, "modality", None) or "image"


def video_mode(image=None, clip=None) -> str:
    """The mode a Video tab request runs in, as the schema decides it from the source given."""
    return GenerationRequest.build(prompt="-", modality="video", init_image=str(image) if image else None,
                                   init_video=str(clip) if clip and not image else None).mode


def music_mode(source=None, edit: str = MUSIC_EDITS[0]) -> str:
    """The mode a Music tab request runs in, as the schema decides it from the source and the edit."""
    if not source:
        return "txt2audio"
    extra = {"continue": {"extend": 1.0}, "span": {"span": {"start": 0, "end": 1}}}.get(edit, {})
    return GenerationRequest.build(prompt="-", modality="audio", init_audio=str(source), **extra).mode


def is_audio(entry: dict) -> bool:
    return entry.get("modality") == "audio"


def is_video(entry: dict) -> bool:
    return entry.get("modality") == "video"


def audio_line(entry_or_info: dict) -> str:
    """"1.0 s · 32 kHz mono" for an audio entry or a verify report's audio info."""
    seconds, rate, ch = (entry_or_info.get(k) for k in ("duration_s", "sample_rate", "channels"))
    parts = [f"{seconds:g} s" if seconds is not None else None,
             (f"{rate / 1000:g} kHz" if rate else None),
             {1: "mono", 2: "stereo"}.get(ch, f"{ch} channels" if ch else None)]
    text = " ".join(p for p in parts[1:] if p)
    return " · ".join(p for p in (parts[0], text) if p)


def _audio_info(path, rep) -> Optional[dict]:
    """Duration, rate and channels of an audio file, decoded within the studio's input limits (the verify
    report itself carries them for clips only); None for other files or when it cannot be decoded."""
    if not str(rep.mime or "").startswith("audio/"):
        return None
    try:
        from studio.inputs import read_audio

        clip = read_audio(str(path), "file", shown=Path(path).name)
    except Exception as exc:  # noqa: BLE001 -- the verdict stands without the numbers
        return {"error": str(exc).split("\n")[0][:200]}
    x = clip.samples
    return {"duration_s": round(len(x) / clip.rate, 3), "sample_rate": int(clip.rate),
            "channels": 1 if getattr(x, "ndim", 1) == 1 else int(x.shape[1]), "format": clip.fmt}


def is_clip(entry: dict) -> bool:
    """A history entry of a clip (entries written before video had no modality: images)."""
    return (entry.get("modality") or "image") != "image"


def _available(entry) -> bool:
    try:
        return bool(entry.available_locally())
    except Exception:
        return False


def _number(v, name: str, *, whole: bool = False, minimum=None):
    """A form value as a number (int when `whole`), None when empty; RequestError naming the field otherwise.
    Nothing is rounded or clamped: a value the user did not ask for must not run silently."""
    if v is None or (isinstance(v, str) and not v.strip()):
        return None
    if isinstance(v, bool):
        raise RequestError(f"{name} must be a number")
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise RequestError(f"{name} must be a number, not {str(v)[:20]!r}") from None
    if not math.isfinite(x):
        raise RequestError(f"{name} must be a finite number")
    if whole:
        if x != int(x):
            raise RequestError(f"{name} must be a whole number, not {x:g}")
        x = int(x)
    if minimum is not None and x < minimum:
        raise RequestError(f"{name} must be at least {minimum}")
    return x


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except ValueError:
        return False


def _sanitize_obj(obj, out_dir):
    if isinstance(obj, dict):
        return {k: _sanitize_obj(v, out_dir) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_sanitize_obj(v, out_dir) for v in obj]
    if isinstance(obj, str) and ("/" in obj or "\\" in obj or "BEGIN" in obj) and not obj.startswith("http"):
        return sanitize(obj, out_dir) if len(obj) < 2000 else sanitize(obj[:2000], out_dir)
    return obj


def clip_line(entry_or_info: dict) -> str:
    """"16 frames @ 8 fps" (and the duration when known) for a clip entry or a verify report's clip info."""
    frames, fps = entry_or_info.get("frames"), entry_or_info.get("fps")
    if not frames:
        return ""
    text = f"{frames} frames" + (f" @ {fps:g} fps" if fps else "")
    if entry_or_info.get("duration_s"):
        text += f" ({entry_or_info['duration_s']:g}s)"
    return text


def caption(entry: dict) -> str:
    signed = entry.get("verify") in VERIFY_GOOD
    if signed and entry.get("watermark_found", True):
        mark = "✓ sealed"
    elif signed and entry.get("watermark_status") == "too_small":  # signed; the mark needs >= 256 px
        mark = "✓ signed, too small to mark"
    elif signed and entry.get("watermark_status") == "too_short":  # signed; the audio mark needs a few seconds
        mark = "✓ signed, too short to mark"
    elif signed and entry.get("watermark_status") == "not_embeddable":
        mark = "✓ signed, mark not embeddable"
    else:
        mark = "? " + str(entry.get("verify", "unverified"))
    if is_audio(entry):
        what = f"♪ music {audio_line(entry)} · "
    else:
        what = f"{modality_of(entry.get('modality')).noun} {clip_line(entry)} · " if is_clip(entry) else ""
    return f"{what}seed {entry.get('seed')} · {entry.get('model')} · {mark}"


def params_view(entry: dict) -> dict:
    """What the browser is shown about one output (no server paths)."""
    keys = ("id", "time", "source", "modality", "mode", "model", "family", "sampler", "seed", "width", "height",
            "format", "frames", "fps", "duration_s", "sample_rate", "channels", "elapsed_s", "sha256",
            "watermark_id", "watermark_status", "verify", "watermark_found", "request")
    view = {k: entry[k] for k in keys if k in entry}
    view["file"] = entry.get("path")
    return view


def verdict(rep) -> str:
    """A one-line verdict (kept plain so tests and screen readers can read it)."""
    wm = f"watermark found (ID {rep.watermark_id})" if rep.watermark_found else "no watermark found"
    status = (rep.manifest or {}).get("watermark_status")
    if not rep.watermark_found and status in UNMARKED:
        wm += f" (the signed manifest says {UNMARKED[status]})"
    if rep.state in VERIFY_GOOD:
        head = "Authentic: C2PA " + rep.state + ", " + wm if rep.watermark_found else \
            "C2PA " + rep.state + ", but " + wm
    elif rep.state == "invalid":
        head = "TAMPERED: C2PA credentials are invalid; " + wm
    elif rep.state == "none":
        head = "No C2PA credentials; " + wm
    else:
        head = "Unreadable file"
    if rep.ledger_match:
        head += "; issued by this studio (ledger match)"
    return head


def verdict_html(rep_or_head, state: Optional[str] = None) -> str:
    head = rep_or_head if isinstance(rep_or_head, str) else verdict(rep_or_head)
    kind = "good" if head.startswith("Authentic") else ("bad" if head.startswith(("TAMPERED", "Unreadable"))
                                                         else "warn")
    return f'<div class="verdict verdict-{kind}" id="verdict-text">{html.escape(head)}</div>'


def _code(value) -> str:
    """A markdown code span (the browser's Markdown sanitizes HTML; backticks are the only thing to drop)."""
    return "`" + str(value).replace("`", "'").replace("\n", " ")[:300] + "`"


def _render_report(rep, name: str, out_dir: Path, audio: Optional[dict] = None) -> str:
    lines = [f"**File:** {_code(name)}  ", f"**C2PA state:** {_code(rep.state)} (exit code {rep.exit_code})  "]
    if rep.fmt:
        lines.append(f"**Format:** {rep.fmt} ({rep.mime})  ")
    clip = getattr(rep, "video", None)
    if isinstance(clip, dict) and clip.get("frames"):
        size = f", {clip['width']}×{clip['height']}" if clip.get("width") else ""
        lines.append(f"**Clip:** {clip_line(clip)}{size}  ")
    if audio and audio.get("error"):
        lines.append(f"**Audio:** could not be decoded ({sanitize(audio['error'], out_dir)})  ")
    elif audio:
        lines.append(f"**Audio:** {audio['duration_s']:g} s · sample rate {audio['sample_rate']} Hz · "
                     f"{ {1: 'mono', 2: 'stereo'}.get(audio['channels'], str(audio['channels']) + ' channels') }  ")
    if rep.error:
        lines.append(f"**Error:** {sanitize(rep.error, out_dir)}  ")
    for f in rep.failures or []:
        lines.append(f"- failure {_code(f.get('code'))}: {sanitize(f.get('explanation', ''), out_dir)}")
    m = rep.manifest or {}
    if m:
        lines += ["", "#### Active manifest", *_manifest_lines(m, out_dir)]
    lines += ["", "#### Watermark"]
    if rep.watermark_found:
        lines.append(f"Found: ID {_code(rep.watermark_id)} (bit agreement {rep.watermark_confidence:.2f})")
    else:
        status = m.get("watermark_status")
        lines.append("Not found" + (f" (status recorded at signing: {_code(status)})" if status else ""))
    lines += ["", "#### Ledger"]
    if rep.ledger_match:
        rec = rep.recovered_manifest or {}
        lines.append("This watermark ID was issued by this studio. Recorded at signing: "
                     + _params_line(rec.get("params"), out_dir))
    else:
        lines.append("No ledger record for this file")
    for n in rep.notes or []:
        lines.append(f"- note: {sanitize(n, out_dir)}")
    return "\n".join(lines)


def _params_line(params, out_dir: Path) -> str:
    if not isinstance(params, dict):
        return "(no parameters)"
    req = params.get("request") or {}
    parts = [("model", params.get("model_name")), ("mode", params.get("mode")), ("seed", params.get("seed")),
             ("sampler", params.get("sampler")), ("steps", req.get("steps")), ("guidance", req.get("guidance")),
             ("size", f"{req.get('width')}×{req.get('height')}" if req.get("width") else None),
             ("frames", req.get("frames")), ("fps", req.get("fps")), ("duration", req.get("duration")),
             ("extend", req.get("extend")),
             ("span", f"{req['span']['start']:g}–{req['span']['end']:g} s" if isinstance(req.get("span"), dict)
              else None), ("strength", req.get("strength"))]
    text = " · ".join(f"{k} {_code(v)}" for k, v in parts if v is not None)
    if req.get("prompt"):
        text += f" · prompt {_code(sanitize(req['prompt'], out_dir))}"
    return text


def _manifest_lines(m: dict, out_dir: Path) -> list[str]:
    out = [f"- claim generator: {_code(m.get('claim_generator'))}",
           f"- signed by: {sanitize(str(m.get('signer')), out_dir)} (issuer {sanitize(str(m.get('issuer')), out_dir)})"]
    if m.get("signed_at"):
        out.append(f"- signed at: {m.get('signed_at')}")
    for a in m.get("actions", []) or []:
        dst = a.get("digitalSourceType")
        out.append(f"- action: {_code(a.get('action'))}" + (f" — digital source type {_code(dst.rsplit('/', 1)[-1])}"
                                                           if dst else ""))
    for i in m.get("ingredients", []) or []:
        out.append(f"- ingredient: {_code(sanitize(str(i.get('title')), out_dir))} ({i.get('relationship')})"
                   + (" — with its own manifest" if i.get("has_manifest") else ""))
    if m.get("params") is not None:
        out.append("- params: " + _params_line(_sanitize_obj(m["params"], out_dir), out_dir))
    return out


def file_sha256(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
