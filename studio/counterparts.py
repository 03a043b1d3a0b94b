"""Which instruction-editing model and which ControlNets a registry model can use, offline, before anything loads.

The web app asks this to offer only what would run, and to say in one line why nothing is on offer (the model
has no instruct / ControlNet counterpart, it is not downloaded, or it was made for another base) instead of
failing after a load. ControlNets come from `studio.control.CONTROLNETS` (hub ids, used when in the local
cache) and from a local folder the server's owner names (diffusers ControlNet folders, found by their
`config.json`).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from .control import (CONTROL_FAMILIES, CONTROLNETS, EDIT_MODEL_FOR_FAMILY, INSTRUCT_FAMILIES, controlnet_fits,
                      controlnet_source)
from .errors import RequestError

_NET_CLASSES = {"ControlNetModel": ("sd1", "sd2", "sdxl"), "FluxControlNetModel": ("flux",)}
LOCAL_PREFIX = "local:"  # a ControlNet folder in the local folder, named by its folder name


def _available(entry) -> bool:
    try:
        return bool(entry.available_locally())
    except Exception:  # noqa: BLE001 - a broken cache is "not here"
        return False


def instruct_models(registry) -> list[str]:
    """The registry's instruction-editing models that load offline."""
    return [n for n, e in registry.entries.items() if e.family in INSTRUCT_FAMILIES and _available(e)]


def instruct_name_for(registry, name: Optional[str], family: Optional[str]) -> Optional[str]:
    """The instruct model named for model ``name`` of ``family``: ``<name>-instruct`` when registered (the mini
    family's convention), else the one for its family; None when there is neither. Availability is not judged."""
    if name and f"{name}-instruct" in registry.entries:
        return f"{name}-instruct"
    return EDIT_MODEL_FOR_FAMILY.get(family)


def instruct_counterpart(registry, name: Optional[str]) -> str:
    """The instruct model an instruction edit with model ``name`` runs on: the model itself when it edits by
    instruction, else ``<name>-instruct`` when registered (the mini family's convention), else the one for its
    family (as `studio edit` picks). RequestError (one line) when there is none offline."""
    entry = registry.resolve(name)
    if entry.family in INSTRUCT_FAMILIES or entry.family is None:  # None: its files decide at load time
        return entry.name
    wanted = instruct_name_for(registry, entry.name, entry.family)
    others = instruct_models(registry)
    pick = f"; pick one in the Model menu ({', '.join(others)})" if others else \
        "; no instruction model is available offline (download one, or add a local one in the Models tab)"
    if wanted is None:
        raise RequestError(f"{entry.name} ({entry.family}) has no instruction-editing counterpart{pick}")
    if not _available(registry.entries[wanted]):
        raise RequestError(f"{entry.name} ({entry.family}) is not an instruction-editing model and its "
                           f"counterpart {wanted} is not downloaded{pick}")
    return wanted


def image_guidance_default(registry, name: Optional[str]) -> Optional[float]:
    """The default image guidance of the model's family; None where it has none."""
    from .control import IMAGE_GUIDANCE_FAMILIES

    return IMAGE_GUIDANCE_FAMILIES.get(registry.resolve(name).family)


def local_controlnets(folder: Optional[Path]) -> dict[str, Path]:
    """Diffusers ControlNet folders directly inside ``folder``: name -> path."""
    out: dict[str, Path] = {}
    if folder is None or not Path(folder).is_dir():
        return out
    for sub in sorted(Path(folder).iterdir()):
        cfg = sub / "config.json"
        if sub.is_dir() and cfg.is_file():
            try:
                cls = json.loads(cfg.read_text(encoding="utf-8")).get("_class_name")
            except (OSError, ValueError):
                continue
            if cls in _NET_CLASSES:
                out[sub.name] = sub
    return out


def _usable(source: str, family: str, base_source: str) -> Optional[str]:
    """None when ControlNet ``source`` is on disk and fits the base; else why not, in a few words."""
    fits = controlnet_fits(source, family, base_source)
    return None if fits else ("not downloaded" if fits is None else "made for another base")


def controlnet_options(registry, name: Optional[str], local_dir: Optional[Path] = None
                       ) -> tuple[list[tuple[str, str]], str]:
    """(choices, note) for model ``name``: every known ControlNet of its family and every local one, each
    labelled with why it cannot run when it cannot, and a one-line note when none can run."""
    entry = registry.resolve(name)
    if entry.family not in CONTROL_FAMILIES:
        return [], (f"{entry.name} ({entry.family or 'family decided at load'}) has no ControlNet: ControlNet runs "
                    f"on SD 1.x/2.x, SDXL and Flux models")
    choices, usable = [("auto (for the preprocessor)", "auto")], 0
    for net, (_, fam, preps) in CONTROLNETS.items():
        if fam == entry.family:
            why = _usable(controlnet_source(net), fam, entry.source)
            usable += why is None
            choices.append((f"{net} ({', '.join(preps)})" + (f" — {why}" if why else ""), net))
    for net, path in local_controlnets(local_dir).items():
        why = _usable(str(path), entry.family, entry.source)
        usable += why is None
        choices.append((f"{net} (local)" + (f" — {why}" if why else ""), LOCAL_PREFIX + net))
    note = "" if usable else (f"no ControlNet for {entry.name} ({entry.family}) is available offline: download "
                              f"one, or put a diffusers ControlNet folder in the server's models folder")
    return choices, note


def controlnet_for(registry, name: Optional[str], choice: Optional[str], preprocessor: str,
                   local_dir: Optional[Path] = None) -> str:
    """The unit's ControlNet source for a menu ``choice`` ('auto', a known name, 'local:NAME'): a known name or
    a local folder's path, checked to be on disk and to fit the model; RequestError (one line) otherwise."""
    entry = registry.resolve(name)
    if entry.family not in CONTROL_FAMILIES:
        raise RequestError(controlnet_options(registry, name, local_dir)[1])
    choice = choice or "auto"
    if choice == "auto":
        known = [n for n, (_, fam, preps) in CONTROLNETS.items() if fam == entry.family and preprocessor in preps]
        for net in known:
            if _usable(controlnet_source(net), entry.family, entry.source) is None:
                return net
        said = (f" ({', '.join(f'{n}: {_usable(controlnet_source(n), entry.family, entry.source)}' for n in known)})"
                if known else "")
        raise RequestError(f"no {entry.family} ControlNet for {entry.name} and preprocessor {preprocessor!r} is "
                           f"available offline{said}: pick a local one under ControlNet, or download one")
    if choice.startswith(LOCAL_PREFIX):
        path = local_controlnets(local_dir).get(choice[len(LOCAL_PREFIX):])
        if path is None:
            raise RequestError(f"ControlNet {choice[len(LOCAL_PREFIX):]!r} is not in the server's models folder")
        source, shown = str(path), choice[len(LOCAL_PREFIX):]
    elif choice in CONTROLNETS:
        source, shown = choice, choice
    else:
        raise RequestError(f"unknown ControlNet {str(choice)[:60]!r}: pick one from the ControlNet menu")
    why = _usable(controlnet_source(source), entry.family, entry.source)
    if why:
        raise RequestError(f"ControlNet {shown} cannot run on {entry.name} ({entry.family}): {why}")
    return source


__all__ = ["LOCAL_PREFIX", "controlnet_for", "controlnet_options", "image_guidance_default", "instruct_counterpart",
           "instruct_models", "instruct_name_for", "local_controlnets"]
