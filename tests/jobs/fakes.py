"""A `Studio`-like engine for job tests: deterministic pixels from (prompt, seed, size, steps), no model.

Its "sealed" bytes carry the render time in a PNG text chunk, so, as with real C2PA signatures, two renders of
the same item have equal pixels but different file bytes.
"""
from __future__ import annotations

import hashlib
import io
import os
import time
from pathlib import Path

from studio.errors import RequestError, UnknownModel
from studio.schema import GenerationRecord, GenerationRequest, OutputRecord


class FakeRegistry:
    known = {"fake", "fake2", "mini"}

    def resolve(self, name):
        if name is None or name in self.known or Path(name).exists():
            return name
        raise UnknownModel(f"unknown model {name!r}")


class _Out:
    def __init__(self, data, record):
        self.data, self.record = data, record


class _Result:
    def __init__(self, record, outputs):
        self.record, self.outputs = record, outputs


class _Generated:
    """`deliver=False`: pixels made, the "seal" (PNG encode + record) left to `finish()`, like the engine."""

    def __init__(self, seal):
        self._seal, self._result = seal, None

    def finish(self):
        if self._result is None:
            self._result = self._seal()
        return self._result


def pixel_hash(data: bytes) -> str:
    from studio.writer import pixel_sha256

    return pixel_sha256(data)


class FakeStudio:
    def __init__(self, delay: float = 0.0, model_hash: str = "ab" * 32, die_on: str | None = None,
                 die_marker: str | None = None, watermark: bool = False, seal_delay: float = 0.0,
                 seal_fail_on: str | None = None, seal_die_on: str | None = None):
        self.watermark = watermark  # like the real seal: a random id changes a few pixels of every output
        self.registry = FakeRegistry()
        self.delay = delay
        self.model_hash = model_hash
        self.die_on, self.die_marker = die_on, die_marker
        self.calls: list[str] = []
        self.seal_delay = seal_delay  # seconds per item spent "sealing" (after the pixels, before the bytes)
        self.seal_fail_on = seal_fail_on  # a prompt containing it fails in the seal
        self.seal_die_on = seal_die_on  # a prompt containing it kills the process in its seal
        self.events: list[tuple] = []  # (what, prompt, time.monotonic()): gen-start/gen-end/seal-start/seal-end

    def generate(self, request: GenerationRequest, *, out=None, progress=None, init_image=None, mask=None,
                 deliver: bool = True, **_):
        import numpy as np
        from PIL import Image, PngImagePlugin

        started = time.perf_counter()
        self.calls.append(request.prompt)
        self.events.append(("gen-start", request.prompt, time.monotonic()))
        steps = request.steps or 2
        for s in range(1, steps + 1):
            if self.delay:
                time.sleep(self.delay / steps)
            if progress is not None:
                progress(s, steps)
        if self.die_on and self.die_on in request.prompt and self.die_marker and not Path(self.die_marker).exists():
            Path(self.die_marker).write_text("died once")
            os._exit(1)  # a worker dying mid-item
        if "FAIL" in request.prompt:
            raise RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB")
        inputs = {}
        if request.init_image:
            raw = Path(request.init_image).read_bytes()
            try:
                Image.open(io.BytesIO(raw)).load()
            except Exception as exc:
                raise RequestError(f"init image {request.init_image!r} is not a readable image ({exc})") from None
            inputs["init_image"] = hashlib.sha256(raw).hexdigest()
        resolved = request.model_copy(update={
            "model": request.model or "mini", "width": request.width or 64, "height": request.height or 64,
            "steps": steps, "guidance": 5.0 if request.guidance is None else request.guidance,
            "sampler": request.sampler or "Euler"})
        if resolved.seed is None:
            raise AssertionError("jobs must always pass a seed")
        seeds = [resolved.seed + i for i in range(resolved.batch)]
        arrays = []
        for seed in seeds:
            h = hashlib.sha256(f"{resolved.prompt}|{seed}|{resolved.steps}|{resolved.model}".encode()).digest()
            rng = np.random.default_rng(int.from_bytes(h[:8], "big"))
            arrays.append(rng.integers(0, 256, size=(resolved.height, resolved.width, 3), dtype=np.uint8))
        self.events.append(("gen-end", request.prompt, time.monotonic()))

        def seal():
            self.events.append(("seal-start", request.prompt, time.monotonic()))
            if self.seal_delay:
                time.sleep(self.seal_delay)
            if self.seal_die_on and self.seal_die_on in request.prompt:
                os._exit(3)  # killed while sealing
            if self.seal_fail_on and self.seal_fail_on in request.prompt:
                raise RuntimeError("c2pa signing failed: the signer refused")
            outputs = []
            for i, (seed, arr) in enumerate(zip(seeds, arrays)):
                generated = hashlib.sha256(f"RGB:{resolved.width}x{resolved.height}:".encode()
                                           + arr.tobytes()).hexdigest()
                wm_id = None
                if self.watermark:
                    wm = np.frombuffer(os.urandom(8), dtype=np.uint8)
                    arr = arr.copy()
                    arr[0, :8, 0] ^= wm
                    wm_id = wm.tobytes().hex()
                info = PngImagePlugin.PngInfo()
                info.add_text("signed-at", repr(time.time()))
                buf = io.BytesIO()
                Image.fromarray(arr).save(buf, format="PNG", pnginfo=info)
                data = buf.getvalue()
                rec = OutputRecord(index=i, seed=seed, format="png", sha256=hashlib.sha256(data).hexdigest(),
                                   pixel_sha256=pixel_hash(data), generated_sha256=generated,
                                   size_bytes=len(data), width=resolved.width, height=resolved.height,
                                   watermark_id=wm_id, watermark_status="embedded" if wm_id else "fake")
                outputs.append(_Out(data, rec))
            record = GenerationRecord(
                request=resolved, mode=resolved.mode, model_name=resolved.model,
                model_source=f"{resolved.model}@{os.environ.get('DIFFUSION_STUDIO_HOME')}",
                model_family="sd1", model_hash=self.model_hash, sampler=resolved.sampler, device="cpu",
                dtype="float32", versions={"fake-engine": "1"}, elapsed_s=round(time.perf_counter() - started, 3),
                input_hashes=inputs, outputs=[o.record for o in outputs])
            self.events.append(("seal-end", request.prompt, time.monotonic()))
            return _Result(record, outputs)

        generated = _Generated(seal)
        return generated.finish() if deliver else generated
