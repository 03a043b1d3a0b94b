"""What an output records about itself: package versions, A1111-style `parameters` text, the JSON record,
and reading them back (`studio info`)."""
from __future__ import annotations

import json
from functools import lru_cache
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, Optional

from .schema import GenerationRecord

STUDIO_VERSION = "0.1.0"
PNG_JSON_KEY = "diffusion-studio"
PNG_PARAMS_KEY = "parameters"
_PACKAGES = ("diffusion-studio", "torch", "diffusers", "transformers", "safetensors", "peft", "accelerate",
             "c2pa-python", "invisible-watermark", "numpy", "pillow")


@lru_cache(maxsize=1)
def package_versions() -> dict[str, str]:
    out = {}
    for name in _PACKAGES:
        try:
            out[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            out[name] = "absent"
    import platform

    out["python"] = platform.python_version()
    return out


def claim_generator(model_name: str) -> str:
    return f"diffusion-studio/{STUDIO_VERSION} (model: {model_name})"


def a1111_parameters(record: GenerationRecord, seed: int) -> str:
    """The `parameters` text chunk other tools (A1111, civitai, image browsers) already parse."""
    req = record.request
    lines = [req.prompt]
    if req.negative_prompt:
        lines.append(f"Negative prompt: {req.negative_prompt}")
    fields = [
        ("Steps", req.steps), ("Sampler", record.sampler), ("CFG scale", req.guidance), ("Seed", seed),
        ("Size", f"{req.width}x{req.height}"), ("Model hash", record.model_hash[:10]), ("Model", record.model_name),
    ]
    if req.strength is not None:
        fields.append(("Denoising strength", req.strength))
    if getattr(req, "inpaint", None) is not None:  # A1111's own inpaint keys
        o = req.inpaint
        fields += [("Mask blur", o.mask_blur), ("Masked content", o.masked_content.replace("_", " ")),
                   ("Inpaint area", "Only masked" if o.only_masked else "Whole picture")]
        if o.only_masked:
            fields.append(("Only masked padding, pixels", o.padding))
    if req.hires is not None:  # A1111's own hires fix keys ("Denoising strength" is the refine pass's there)
        if req.strength is None:
            fields.append(("Denoising strength", req.hires.strength))
        fields += [("Hires upscale", f"{req.hires.scale:g}"), ("Hires steps", req.hires.steps),
                   ("Hires upscaler", req.hires.upscaler)]
    if req.variation_seed is not None and req.variation_strength > 0:  # A1111's keys for its subseed
        fields += [("Variation seed", req.variation_seed), ("Variation seed strength", req.variation_strength)]
    if record.styles:
        fields.append(("Styles", ", ".join(record.styles.get("names", []))))
    if record.lora_hashes:
        loras = ", ".join(f"{Path(l.path).stem}: {h[:12]}" for l, h in zip(req.loras, record.lora_hashes))
        fields.append(("Lora hashes", f'"{loras}"'))
    fields.append(("Version", f"diffusion-studio {STUDIO_VERSION}"))
    lines.append(", ".join(f"{k}: {v}" for k, v in fields))
    return "\n".join(lines)


def output_params(record: GenerationRecord, index: int, seed: int) -> dict[str, Any]:
    """The per-output record: the resolved request with this output's seed, and what produced it."""
    data = record.model_dump(mode="json", exclude={"outputs"})
    data["index"] = index
    data["seed"] = seed
    if record.reward is not None:  # best-of-N: this candidate's own score and rank next to the group's
        r = record.reward
        data["reward"] = {"name": r.name, "hash": r.hash, "n": r.n, "score": r.scores[index],
                          "rank": r.ranks[index], "scores": r.scores}
    return data


def png_text_for(record: GenerationRecord, index: int, seed: int) -> dict[str, str]:
    return {
        PNG_PARAMS_KEY: a1111_parameters(record, seed),
        PNG_JSON_KEY: json.dumps(output_params(record, index, seed), sort_keys=True),
    }


def read_info(path: Path) -> Optional[dict[str, Any]]:
    """The studio's JSON record from a PNG's text chunks, or the generation assertion of its C2PA manifest."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            text = dict(getattr(im, "text", {}) or {})
    except Exception:
        text = {}
    if PNG_JSON_KEY in text:
        info = json.loads(text[PNG_JSON_KEY])
        info["_source"] = "png-text"
        info["_parameters"] = text.get(PNG_PARAMS_KEY, "")
        return info
    try:
        import safety

        from .writer import safety_config

        report = safety.verify(path, config=safety_config())
        params = (report.to_dict().get("manifest") or {}).get("params")
        if params:
            params = dict(params)
            params["_source"] = "c2pa"
            return params
    except Exception:
        pass
    return None
