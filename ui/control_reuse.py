"""Reuse ("Send to Generate") for the ControlNet units: the units recorded in a gallery image (image, preprocessor,
ControlNet, weight, start/end) and guess mode fill the Generate tab's Control panel, so a controlled image is
re-made or varied without rebuilding its units by hand. The gallery entry keeps names only (no server path reaches
the browser), so the units are read from the output's own record, and a control image is reused only while it is
still on the server, inside the app's folders, with the bytes the record hashed; otherwise that unit is left off
and its note says so (the rest of the settings still arrive).
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterable, Optional

from studio.counterparts import LOCAL_PREFIX, local_controlnets


def _net_choice(recorded: Optional[str], models_dir) -> str:
    """The ControlNet menu value for a recorded (resolved) unit model: its known name, `local:NAME` for a folder
    of the server's models folder, else `auto` (the run picks the family's default again)."""
    from studio.control import CONTROLNETS

    if not recorded:
        return "auto"
    if recorded in CONTROLNETS:
        return recorded
    for name, path in local_controlnets(models_dir).items():
        try:
            if Path(recorded).resolve() == path.resolve():
                return LOCAL_PREFIX + name
        except OSError:
            continue
    return "auto"


def _still_there(path: Optional[str], sha256: Optional[str], roots: Iterable[Path]) -> Optional[str]:
    """`path` when it is inside the app's folders and still holds the bytes the record hashed; else None."""
    from .browser_paths import PathRefused, checked_path

    try:
        found = checked_path(path, "control image", roots)
        data = Path(found).read_bytes() if found else None
    except (PathRefused, OSError):
        return None
    return found if data is not None and (sha256 is None or hashlib.sha256(data).hexdigest() == sha256) else None


def reuse_control_values(entry: Optional[dict], n_units: int, roots: Iterable[Path], models_dir=None) -> list:
    """[guess mode] + per unit [on, upload, preprocessor, controlnet, weight, start, end, note] for the panel,
    from a history entry; gr.skip() throughout for an entry that is not an image."""
    import gradio as gr

    import studio

    per_unit = 8
    if not entry or (entry.get("modality") or "image") != "image":
        return [gr.skip()] * (1 + per_unit * n_units)
    try:
        record = studio.info(entry["file"]) or {}
    except Exception:  # noqa: BLE001 -- an unreadable record: nothing to restore, the panel is switched off
        record = {}
    req, hashes = record.get("request") or {}, record.get("input_hashes") or {}
    units = list(req.get("controls") or [])
    out: list = [bool(req.get("guess_mode"))]
    for i in range(n_units):
        if i >= len(units):
            out += [False] + [gr.update()] * (per_unit - 1)
            continue
        u = units[i]
        image = _still_there(u.get("image"), hashes.get(f"control_{i}_source"), roots)
        note = gr.update() if image else (
            f"unit {i + 1}'s control image ({Path(str(u.get('image'))).name}) is no longer on the server: "
            f"upload it again to use this unit")
        out += [image is not None, image, u.get("preprocessor", "none"), _net_choice(u.get("model"), models_dir),
                u.get("weight", 1.0), u.get("start", 0.0), u.get("end", 1.0), note]
    return out


def wire_reuse(panel, h, roots, reuse_button, selected_entry) -> None:
    """Reuse fills `panel` (the Generate tab's ControlPanel) from the selected gallery entry."""
    outputs = [panel.guess] + [c for u in panel.units for c in (u.on, u.upload, u.preprocessor, u.controlnet,
                                                               u.weight, u.start, u.end, u.note)]
    reuse_button.click(lambda e: reuse_control_values(e, len(panel.units), roots, h.models_dir),
                       [selected_entry], outputs, queue=False)


__all__ = ["reuse_control_values", "wire_reuse"]
