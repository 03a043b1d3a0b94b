"""What the studio tells a user about how a prompt is read: token counts against the text encoder's limit (a long
prompt is otherwise cut without a word), and whether `(word:1.2)` weighting applies (compel, `pipelines.prompting`)."""
from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path
from typing import Optional

log = logging.getLogger(__name__)
WEIGHTING_FAMILIES = ("sd1", "sd2", "sdxl")  # compel's CompelForSD / CompelForSDXL


def weighting_for(request, family: str) -> tuple[bool, Optional[str]]:
    """(apply weighting, a warning) for an image request on a model of `family`: an explicit choice wins;
    None turns it on when the prompts use A1111's `(word:1.2)`."""
    from pipelines.prompting import has_weights

    asked = request.prompt_weighting
    detected = has_weights(request.prompt) or has_weights(request.negative_prompt)
    if family not in WEIGHTING_FAMILIES:
        if asked:
            from .errors import RequestError

            raise RequestError(f"prompt weighting is supported for SD 1.x/2.x and SDXL models, not {family}")
        if detected:
            return False, (f"prompt weighting (word:1.2) is not supported for {family} models: the weights are "
                           "read as plain text")
        return False, None
    return (detected if asked is None else bool(asked)), None


def _over_line(count, which: str, model_name: str) -> str:
    cut = count.ignored if len(count.ignored) <= 80 else count.ignored[:77] + "..."
    return (f"{which} is {count.tokens} tokens but {model_name}'s {count.kind} text encoder reads {count.limit}: "
            f"the rest is ignored ({cut!r})")


def prompt_warnings(pipe, request, model_name: str) -> list[str]:
    """One line per prompt (and negative prompt) that is longer than one of the pipeline's text encoders reads."""
    from pipelines.prompting import plain_text, token_counts

    out = []
    for which, text in (("prompt", request.prompt), ("negative prompt", request.negative_prompt)):
        if not text:
            continue
        if request.prompt_weighting:
            text = plain_text(text)
        for count in token_counts(pipe, text):
            if count.over:
                out.append(_over_line(count, which, model_name))
                break  # the first encoder that cuts says it; SDXL's second CLIP cuts at the same place
    return out


@lru_cache(maxsize=16)
def _folder_tokenizers(folder: str, mtime: float):
    from pipelines.prompting import load_tokenizers

    return load_tokenizers(folder)


class _Tokenizers:
    """Stands in for a pipeline in `token_counts`: the tokenizers of a folder, no weights loaded."""

    def __init__(self, toks: dict):
        self.__dict__.update(toks)

    def __call__(self, *a, **k):  # pragma: no cover - token_counts reads max_sequence_length from the type's call
        raise TypeError


def count(studio, model: Optional[str], prompt: str) -> Optional[dict]:
    """{"tokens", "limit", "kind", "over", "text"} for the UI's counter, with the tokenizer(s) of the model that is
    loaded, or of a diffusers folder's files (no weights). None when neither is at hand (a single-file checkpoint
    or a hub model that has not been loaded yet)."""
    from pipelines.prompting import plain_text, token_counts

    try:
        entry = studio.registry.resolve(model) if model else studio.registry.resolve(studio.registry.default_name())
    except Exception:  # noqa: BLE001 - an unknown model: the form says so when it generates
        return None
    pipe = None
    loaded = getattr(studio, "_loaded", None)
    if loaded and loaded[1].source == entry.source:
        pipe = loaded[2].pipe
    elif Path(entry.source).is_dir():
        try:
            toks = _folder_tokenizers(str(entry.source), Path(entry.source).stat().st_mtime)
        except Exception:  # noqa: BLE001 - not a diffusers folder with tokenizers
            return None
        pipe = _Tokenizers(toks) if toks else None
    if pipe is None:
        return None
    counts = token_counts(pipe, plain_text(prompt or ""))
    if not counts:
        return None
    worst = max(counts, key=lambda c: c.tokens / c.limit)
    return {"tokens": worst.tokens, "limit": worst.limit, "kind": worst.kind, "over": worst.over,
            "text": f"{worst.tokens}/{worst.limit} tokens"}


def review(request, model, entry):
    """(request with `prompt_weighting` resolved, warnings) once the model is loaded: the engine's one call."""
    warnings = []
    if request.variation_seed is not None and model.family == "flux":
        from .errors import RequestError

        raise RequestError("variation seeds are not supported for flux models yet (their latents are packed "
                           "patches, not a noise grid)")
    if request.modality == "image":
        on, note = weighting_for(request, model.family)
        if note:
            warnings.append(note)
        if request.prompt_weighting != on:
            request = request.model_copy(update={"prompt_weighting": on})
    elif request.prompt_weighting:
        from .errors import RequestError

        raise RequestError(f"prompt weighting applies to image models, not {request.modality}")
    pipe = getattr(model, "pipe", None)
    if pipe is not None:
        try:
            warnings.extend(prompt_warnings(pipe, request, entry.name))
        except Exception as exc:  # noqa: BLE001 - a tokenizer that cannot count must not stop a render
            log.info("token count failed: %r", exc)
    return request, warnings
