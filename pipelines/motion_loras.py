"""Motion LoRAs chosen from the prompt: a video model folder may ship one LoRA per motion on its motion modules
(the AnimateDiff form of "pan left" / "zoom in" control) with a table naming the phrases that select each:

    <model>/motion_loras/motion_loras.json
    {"strip_trigger": true,
     "loras": {"right": {"file": "right.safetensors", "triggers": ["moving to the right", "moving right"]}, ...}}

A prompt that contains a trigger phrase gets that motion's LoRA for the call (longest phrase wins; none: the
plain motion adapter), loaded with diffusers' ``load_lora_weights`` beside any LoRAs the request brought and
removed afterwards.  ``strip_trigger`` takes the phrase out of the prompt, for a model whose text encoder was
never taught it (mini-video: its captions were stripped in training too).  The choice is a function of the
prompt and the folder's files, so a replayed record picks the same LoRA.
"""
from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

TABLE = Path("motion_loras") / "motion_loras.json"


@dataclass(frozen=True)
class MotionChoice:
    motion: str
    file: Path
    prompt: str  # the prompt the pipeline gets (the trigger taken out when the table says so)


def motion_table(folder: str | Path | None) -> dict | None:
    """The folder's motion-LoRA table, or None (no folder, a hub id, or no table)."""
    if folder is None:
        return None
    path = Path(folder) / TABLE
    if not path.is_file():
        return None
    try:
        table = json.loads(path.read_text())
        loras = table["loras"]
        if not isinstance(loras, dict) or not all(isinstance(v.get("triggers"), list) for v in loras.values()):
            raise KeyError("loras")
    except (ValueError, KeyError, AttributeError, TypeError) as e:
        raise ValueError(f"{path}: not a motion-LoRA table ({e}): expected "
                         '{"loras": {motion: {"file": ..., "triggers": [...]}}}') from None
    for motion, spec in loras.items():
        if not (path.parent / spec["file"]).is_file():
            raise ValueError(f"{path}: motion LoRA {motion!r} names a missing file {spec['file']!r}")
    return table


def choose_motion(table: dict | None, prompt: str, folder: str | Path) -> MotionChoice | None:
    """The motion LoRA ``prompt`` asks for (its longest trigger phrase, whole words, any case), or None."""
    if not table or not prompt:
        return None
    best = None
    for motion, spec in table["loras"].items():
        for phrase in spec["triggers"]:
            m = re.search(r"(?<!\w)" + re.escape(phrase) + r"(?!\w)", prompt, flags=re.IGNORECASE)
            if m and (best is None or len(phrase) > len(best[1])):
                best = (motion, phrase, m)
    if best is None:
        return None
    motion, _, m = best
    text = prompt
    if table.get("strip_trigger"):
        text = re.sub(r"\s{2,}", " ", prompt[:m.start()].rstrip() + " " + prompt[m.end():].lstrip()).strip()
    return MotionChoice(motion, Path(folder) / TABLE.parent / table["loras"][motion]["file"], text)


def adapter_name(motion: str) -> str:
    return f"motion_{motion}"


@contextlib.contextmanager
def motion_lora_applied(pipe, folder: str | Path | None, prompt: str, *,
                        keep: list[tuple[str, float]] | None = None) -> Iterator[tuple[str, MotionChoice | None]]:
    """``with motion_lora_applied(pipe, folder, prompt) as (prompt, choice):`` the chosen motion LoRA is active
    inside (beside the adapters in ``keep``: [(name, weight)], the request's own LoRAs) and removed after;
    yields the prompt to use and the choice (None: no table or no trigger in the prompt)."""
    choice = choose_motion(motion_table(folder), prompt, folder) if folder is not None else None
    if choice is None:
        yield prompt, None
        return
    keep = list(keep or [])
    name = adapter_name(choice.motion)
    pipe.load_lora_weights(str(choice.file), adapter_name=name)
    try:
        pipe.set_adapters([n for n, _ in keep] + [name], adapter_weights=[w for _, w in keep] + [1.0])
        yield choice.prompt, choice
    finally:
        pipe.delete_adapters([name])
        if keep:
            pipe.set_adapters([n for n, _ in keep], adapter_weights=[w for _, w in keep])
