"""`studio replay DIR`: re-render a finished job's items from its manifest and say which outputs are identical.

Identical means equal `pixel_sha256` (the decoded pixels of the sealed file), or, where only the invisible
watermark differs (e.g. another watermark id or algorithm), equal `generated_sha256` (the pixels the model
generated, hashed before the seal); the report says which. The sealed files themselves always
differ byte-wise: their C2PA signatures carry the signing time (and a fresh manifest id), so `sha256` is never
compared.
When pixels differ the report names what changed between the two renders: model hash, LoRA hashes, input
(init image / mask) hashes, package versions, device class, dtype.
"""
from __future__ import annotations

import json
import random
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Union

from ..errors import StudioError
from ..modalities import EXTENSIONS
from ..schema import GenerationRequest
from .manifest import MANIFEST, read_manifest
from .runner import current_cpu_threads, execute, set_cpu_threads, start_batch

NOTE = ("sealed-file bytes always differ between renders (the C2PA signature carries the signing time); "
        "outputs are compared by pixel_sha256, or by generated_sha256 (pixels before the seal) where only "
        "the watermark differs")


@dataclass
class ReplayItem:
    key: str
    status: str  # identical | differs | failed
    reasons: list[str] = field(default_factory=list)
    original: list[str] = field(default_factory=list)  # pixel hashes
    replayed: list[str] = field(default_factory=list)
    error: Optional[str] = None


@dataclass
class ReplayReport:
    manifest: Path
    render_dir: Path
    items: list[ReplayItem] = field(default_factory=list)
    note: str = NOTE

    def count(self, status: str) -> int:
        return sum(1 for i in self.items if i.status == status)

    @property
    def exit_code(self) -> int:
        return 0 if self.items and all(i.status == "identical" for i in self.items) else 1

    def to_dict(self) -> dict:
        return {"manifest": str(self.manifest), "render_dir": str(self.render_dir), "note": self.note,
                "identical": self.count("identical"), "differs": self.count("differs"),
                "failed": self.count("failed"),
                "items": [{"id": i.key, "status": i.status, "reasons": i.reasons, "error": i.error,
                           "original": i.original, "replayed": i.replayed} for i in self.items]}


def _device_class(device: Optional[str]) -> str:
    return (device or "?").split(":")[0]


def explain(old: dict, new: dict) -> list[str]:
    """What differs between the recorded render (`old`, a manifest entry) and the replay (`new`, a record)."""
    reasons = []
    if old.get("model_hash") != new.get("model_hash"):
        reasons.append(f"model hash {str(old.get('model_hash'))[:12]} -> {str(new.get('model_hash'))[:12]}")
    if list(old.get("lora_hashes") or []) != list(new.get("lora_hashes") or []):
        reasons.append("LoRA file hashes differ")
    if (old.get("input_hashes") or {}) != (new.get("input_hashes") or {}):
        changed = sorted(k for k in set(old.get("input_hashes") or {}) | set(new.get("input_hashes") or {})
                         if (old.get("input_hashes") or {}).get(k) != (new.get("input_hashes") or {}).get(k))
        reasons.append(f"input file(s) changed: {', '.join(changed)}")
    ov, nv = old.get("versions") or {}, new.get("versions") or {}
    changed = [f"{k} {ov.get(k)} -> {nv.get(k)}" for k in sorted(set(ov) | set(nv)) if ov.get(k) != nv.get(k)]
    if changed:
        reasons.append("versions: " + ", ".join(changed))
    if _device_class(old.get("device")) != _device_class(new.get("device")):
        reasons.append(f"device class {_device_class(old.get('device'))} -> {_device_class(new.get('device'))}")
    if old.get("dtype") != new.get("dtype"):
        reasons.append(f"dtype {old.get('dtype')} -> {new.get('dtype')}")
    if _device_class(new.get("device")) == "cpu" and old.get("cpu_threads") and new.get("cpu_threads") \
            and old["cpu_threads"] != new["cpu_threads"]:
        reasons.append(f"CPU threads {old['cpu_threads']} -> {new['cpu_threads']}")
    return reasons


def replay(out_dir: Union[str, Path], *, sample: Optional[int] = None, sample_seed: int = 0, studio=None,
           render_dir: Optional[Union[str, Path]] = None,
           on_item: Optional[Callable[[ReplayItem, int, int], None]] = None) -> ReplayReport:
    """Re-render the finished items of `out_dir/manifest.jsonl` (all, or a reproducible random `sample`)
    into `render_dir` (default: a new temp dir, kept so the outputs can be inspected)."""
    out_dir = Path(out_dir)
    manifest = out_dir / MANIFEST if out_dir.is_dir() else out_dir
    if not manifest.is_file():
        raise StudioError(f"{manifest} does not exist: nothing to replay")
    state = read_manifest(manifest)
    done = state.done()
    if not done:
        raise StudioError(f"{manifest} lists no finished items")
    keys = sorted(done)
    if sample is not None and sample < len(keys):
        keys = sorted(random.Random(sample_seed).sample(keys, max(0, sample)))
    target = Path(render_dir) if render_dir else Path(tempfile.mkdtemp(prefix="studio-replay-"))
    target.mkdir(parents=True, exist_ok=True)
    if studio is None:
        from ..engine import default_studio

        studio = default_studio()
    report = ReplayReport(manifest=manifest, render_dir=target)
    before = current_cpu_threads()
    try:
        _replay_items(report, keys, done, studio, target, on_item)
    finally:
        set_cpu_threads(before)
    return report


def _render(studio, key: str, entry: dict, task: dict, calls: dict, wanted: set) -> dict:
    """The item rendered as it was: alone, or (a manifest `batch` entry) in its recorded batched call, rerun
    once for all of its members (`calls` keeps the results of the `wanted` members not yet compared),
    because batched pixels can differ from lone ones in the last bits."""
    if not entry.get("batch"):
        return execute(studio, task, worker="replay")
    from ..batching import member_requests
    from ..schema import BatchRecord

    batch = BatchRecord.model_validate(entry["batch"])
    request = GenerationRequest.model_validate(task["request"])
    names = [m.key or f"{key}@{i}" for i, m in enumerate(batch.members)]
    mine = names.index(key) if key in names else batch.index // max(1, request.batch)
    call = json.dumps(entry["batch"]["members"], sort_keys=True)
    if call not in calls:
        members = [{"key": k, "request": r.model_dump(mode="json")}
                   for k, r in zip(names, member_requests(request, batch))]
        results = start_batch(studio, {"key": names[0], "batch": members, "cpu_threads": task["cpu_threads"]},
                              worker="replay", fallback=False)  # alone it would be another render
        calls[call] = {i: r for i, r in enumerate(results) if names[i] in wanted or i == mine}
    result = calls[call].pop(mine, None)
    if not calls[call]:
        del calls[call]
    if result is None:  # the same member listed twice: cannot happen in a manifest's done items
        return {"key": key, "status": "failed", "error": "its batched call was already compared"}
    return {**result, "key": key}


def _replay_items(report, keys, done, studio, target, on_item) -> None:
    from ..writer import write_atomic

    calls: dict = {}
    wanted = set(keys)
    for n, key in enumerate(keys, start=1):
        entry = done[key]
        original = [o.get("pixel_sha256") for o in entry.get("outputs", [])]
        try:
            request = GenerationRequest.build(**{**entry["request"], "model": entry.get("model")})
            task = {"key": key, "request": request.model_dump(mode="json"), "cpu_threads": entry.get("cpu_threads")}
        except Exception as exc:
            item = ReplayItem(key, "failed", original=original,
                              error=f"cannot rebuild the request: {' '.join(str(exc).split())}")
        else:
            result = _render(studio, key, entry, task, calls, wanted)
            if result["status"] != "ok":
                item = ReplayItem(key, "failed", original=original, error=result.get("error"))
            else:
                replayed = [o["record"]["pixel_sha256"] for o in result["outputs"]]
                gen_old = [o.get("generated_sha256") for o in entry.get("outputs", [])]
                gen_new = [o["record"].get("generated_sha256") for o in result["outputs"]]
                for i, o in enumerate(result["outputs"]):
                    name = Path(entry["outputs"][i]["path"]).name if i < len(entry.get("outputs", [])) \
                        else f"{key}-{i}{EXTENSIONS[o['record']['format']]}"
                    write_atomic(target / Path(name).name, o["data"])
                reasons = explain(entry, {**result["record"], "cpu_threads": result.get("cpu_threads")})
                if replayed == original:
                    item = ReplayItem(key, "identical", reasons, original, replayed)
                elif gen_old == gen_new and all(gen_old):
                    wm = [o["record"].get("watermark_id") for o in result["outputs"]]
                    note = ("generated pixels identical (generated_sha256); the delivered pixels differ only by "
                            "the invisible watermark (watermark ids differ)") if any(wm) \
                        else "generated pixels identical (generated_sha256); the delivered pixels differ"
                    item = ReplayItem(key, "identical", [note] + reasons, original, replayed)
                else:
                    if not reasons:
                        reasons = ["same model, inputs, versions and device class: non-deterministic kernels "
                                   "(e.g. GPU atomics or a different GPU model) or thread-count effects"]
                    item = ReplayItem(key, "differs", reasons, original, replayed)
        report.items.append(item)
        if on_item is not None:
            on_item(item, n, len(keys))
