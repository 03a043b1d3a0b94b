"""Image seal latency, stock (before issue 19) vs new, side by side in one process, per phase.

    OMP_NUM_THREADS=1 python bench/seal_bench.py [--reps 7] [--sizes 512 1024] [--png] [--profile]

"stock" is the seal as it was before issue 19, kept here as the reference: invisible-watermark's own encoder
(per-block cv2.dct + LAPACK SVD), the pywt + LAPACK read-back, Pillow PNG at compress_level=6, and a c2pa
Context + Signer built for every call. "new" is ``safety.seal_image`` as it is now. Phases: watermark embed,
PNG encode, read-back (decode the PNG bytes + detect the mark), C2PA sign (Builder + verify-after-sign + Reader
validation), ledger + the rest. Stock and new are measured alternately (rep by rep) on the same images, so a
change in machine load hits both. Wall time and this thread's CPU time (time.thread_time), medians.
Offline; throw-away config dir (development CA + ledger).
"""
from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import io
import json
import os
import platform
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from safety import SafetyConfig, seal_image  # noqa: E402
from safety import media as M  # noqa: E402
from safety import seal as S  # noqa: E402
from safety.config import GENERATION_LABEL  # noqa: E402
from safety.ledger import Ledger  # noqa: E402
from safety.pki import c2pa_settings, make_c2pa_signer  # noqa: E402
from safety.watermark import CODEWORD_BITS, ImageWatermarker, encode_codeword  # noqa: E402
from safety_robustness import gen_image  # noqa: E402

CG = "diffusion-studio/0.1.0 (seal bench)"
PNG_TEXT = {"parameters": "a lighthouse at dusk, oil painting\nNegative prompt: blurry\nSteps: 30, Seed: 1"}


# ------------------------------------------------------------------------------------ stock (reference)
class StockImageWatermarker(ImageWatermarker):
    """The image watermarker before issue 19: the library's encoder, pywt + LAPACK per-block read."""

    def embed(self, media, wm_id):
        from imwatermark import WatermarkEncoder
        rgb = self._rgb(media)
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        enc = WatermarkEncoder()
        enc.set_watermark("bits", [int(b) for b in encode_codeword(wm_id, self.key)])
        out = cv2.cvtColor(np.clip(enc.encode(bgr, "dwtDctSvd"), 0, 255).astype(np.uint8), cv2.COLOR_BGR2RGB)
        res = Image.fromarray(out)
        if isinstance(media, Image.Image) and media.mode == "RGBA":
            res.putalpha(media.getchannel("A"))
        return res

    def votes(self, media):
        import pywt
        bgr = cv2.cvtColor(self._rgb(media), cv2.COLOR_RGB2BGR)
        h, w = bgr.shape[:2]
        if h * w < self.MIN_PIXELS:
            return None
        yuv = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV)
        ca, _ = pywt.dwt2(yuv[: h // 4 * 4, : w // 4 * 4, 1], "haar")
        r, c = ca.shape[0] // 4, ca.shape[1] // 4
        blocks = ca[: r * 4, : c * 4].reshape(r, 4, c, 4).transpose(0, 2, 1, 3).reshape(-1, 4, 4)
        s0 = np.linalg.svd(blocks, compute_uv=False)[:, 0]
        v = ((s0 % self.scale) > self.scale * 0.5).astype(np.float64)
        idx = np.arange(v.size) % CODEWORD_BITS
        return np.bincount(idx, weights=v, minlength=CODEWORD_BITS) / np.maximum(
            np.bincount(idx, minlength=CODEWORD_BITS), 1)


def stock_encode_image(img, fmt, png_text=None, quality=None):
    if fmt != "png":
        return _new_encode_image(img, fmt, png_text=png_text, quality=quality)
    from PIL import PngImagePlugin
    info = PngImagePlugin.PngInfo()
    for k, v in (png_text or {}).items():
        v = str(v)
        try:
            v.encode("latin-1")
            info.add_text(str(k), v)
        except UnicodeEncodeError:
            info.add_itxt(str(k), v)
    b = io.BytesIO()
    img.save(b, "PNG", pnginfo=info, compress_level=6)
    return b.getvalue()


def stock_sign(data, fmt, manifest, config, info, parent, parent_format, thumbnail, components=()):
    """The pre-issue-19 ``seal._sign``: settings, Context and Signer built per call (no parent or components
    here)."""
    import c2pa
    mime = M.MIME[fmt]
    settings = c2pa_settings(config, thumbnail=thumbnail)
    ctx = c2pa.Context.from_dict(settings)
    signer = make_c2pa_signer(info)
    try:
        with c2pa.Builder(manifest, ctx) as b:
            dst = io.BytesIO()
            b.sign(signer, mime, io.BytesIO(data), dst)
        out = dst.getvalue()
    finally:
        signer.close()
    reader = c2pa.Reader(mime, io.BytesIO(out), context=c2pa.Context.from_dict(settings))
    store = json.loads(reader.json())
    state = reader.get_validation_state() or ""
    if state not in ("Valid", "Trusted"):
        raise RuntimeError(state)
    return out, store["manifests"][store["active_manifest"]], state


_new_encode_image = M.encode_image
_new_sign = S._sign
IMPLS = {
    "stock": dict(wm=StockImageWatermarker(), encode=stock_encode_image, sign=stock_sign),
    "new": dict(wm=S.WATERMARKERS["image"], encode=_new_encode_image, sign=_new_sign),
}


class use:
    """Swap the implementation ``seal_image`` runs on (for the end-to-end figures)."""

    def __init__(self, name):
        self.impl = IMPLS[name]

    def __enter__(self):
        self.saved = (S.WATERMARKERS["image"], M.encode_image, S._sign)
        S.WATERMARKERS["image"], M.encode_image, S._sign = self.impl["wm"], self.impl["encode"], self.impl["sign"]

    def __exit__(self, *exc):
        S.WATERMARKERS["image"], M.encode_image, S._sign = self.saved
        return False


# ------------------------------------------------------------------------------------------- measuring
class Clock:
    def __init__(self):
        self.t = {}

    def __call__(self, name):
        clock = self

        class _C:
            def __enter__(self):
                self.w, self.c = time.perf_counter(), time.thread_time()

            def __exit__(self, *exc):
                w, c = clock.t.get(name, (0.0, 0.0))
                clock.t[name] = (w + time.perf_counter() - self.w, c + time.thread_time() - self.c)
        return _C()


PHASES = ["embed", "png encode", "read-back (decode + detect)", "c2pa sign + verify", "ledger + rest"]


def seal_phased(name, img, cfg, seed):
    """seal_image's PNG path, step by step, timed (what seal_image does for an image that takes the mark)."""
    impl, clk = IMPLS[name], Clock()
    info = S.signer_for(cfg)
    wm_id = seed.to_bytes(8, "big")
    t0 = (time.perf_counter(), time.thread_time())
    with clk("embed"):
        marked = impl["wm"].embed(img, wm_id)
    with clk("png encode"):
        data = impl["encode"](marked, "png", png_text=PNG_TEXT)
    with clk("read-back (decode + detect)"):
        got, _ = impl["wm"].detect(M.decode_image(data))
    assert got == wm_id.hex(), (name, got)
    with clk("c2pa sign + verify"):
        p = S._prepare_params({"seed": seed}, cfg)
        man = S._build_manifest(fmt="png", kind="image", claim_generator=CG, params=p, source_type=None,
                                has_parent=False, wm=impl["wm"], wm_id=got, wm_status="embedded",
                                description=None, label=GENERATION_LABEL)
        out, active, state = impl["sign"](data, "png", man, cfg, info, None, None, False)
    with clk("ledger + rest"):
        import hashlib
        sha = hashlib.sha256(out).hexdigest()
        Ledger(cfg.ledger_path).record(watermark_id=got, watermark_status="embedded", watermark_alg=impl["wm"].alg,
                                       instance_id=active.get("instance_id"), fmt="png", sha256=sha,
                                       manifest=active)
    clk.t["total"] = (time.perf_counter() - t0[0], time.thread_time() - t0[1])
    return clk.t, len(data), np.asarray(marked)


def end_to_end(name, img, cfg, seed):
    with use(name):
        w, c = time.perf_counter(), time.thread_time()
        s = seal_image(img, fmt="png", params={"seed": seed}, claim_generator=CG, config=cfg, png_text=PNG_TEXT)
        return (time.perf_counter() - w, time.thread_time() - c), s


def med(xs):
    return statistics.median(xs) * 1e3


def bench_size(cfg, n, reps):
    img = Image.fromarray(gen_image("photo", n, 777))
    res = {k: {"phases": {}, "e2e": []} for k in IMPLS}
    sizes, pixels = {}, {}
    for name in IMPLS:     # warm-up (imports, the first Context, caches)
        seal_phased(name, img, cfg, 1)
        end_to_end(name, img, cfg, 1)
    for r in range(reps):
        for name in (IMPLS if r % 2 == 0 else list(IMPLS)[::-1]):
            t, size, px = seal_phased(name, img, cfg, 100 + r)
            for k, v in t.items():
                res[name]["phases"].setdefault(k, []).append(v)
            sizes[name], pixels[name] = size, px
            e, s = end_to_end(name, img, cfg, 200 + r)
            assert s.watermark_status == "embedded" and s.validation_state in ("Trusted", "Valid")
            res[name]["e2e"].append(e)
    out = {"size": n, "png_bytes": sizes, "same_pixels": bool(np.array_equal(pixels["stock"], pixels["new"])),
           "phases": {}, "e2e": {}}
    for name in IMPLS:
        out["phases"][name] = {k: (med([x[0] for x in v]), med([x[1] for x in v]))
                               for k, v in res[name]["phases"].items()}
        out["e2e"][name] = (med([x[0] for x in res[name]["e2e"]]), med([x[1] for x in res[name]["e2e"]]))
    return out


def per_call_setup(cfg, reps=20):
    """What the stock seal rebuilt on every call and the new one builds once per thread."""
    import c2pa
    info = S.signer_for(cfg)
    ts = {"c2pa_settings (anchors read + parsed)": [], "c2pa.Context.from_dict x2": [], "Signer.from_info": []}
    for _ in range(reps):
        t = time.perf_counter()
        st = c2pa_settings(cfg)
        ts["c2pa_settings (anchors read + parsed)"].append(time.perf_counter() - t)
        t = time.perf_counter()
        c2pa.Context.from_dict(st)
        c2pa.Context.from_dict(st)
        ts["c2pa.Context.from_dict x2"].append(time.perf_counter() - t)
        t = time.perf_counter()
        make_c2pa_signer(info).close()
        ts["Signer.from_info"].append(time.perf_counter() - t)
    return {k: med(v) for k, v in ts.items()}


def png_table(n=1024, reps=5):
    """PNG encoders on marked images of each kind: median ms and size relative to Pillow compress_level=6."""
    wm = IMPLS["new"]["wm"]
    kinds = ["photo", "texture", "noise", "shapes", "gradient"]
    cands = {f"Pillow level {lv}": (lambda im, lv=lv: _pil(im, lv)) for lv in (6, 1, 2, 3, 9)}
    cands["Pillow level 1 Z_RLE"] = lambda im: _pil(im, 1, 3)
    cands["writer, zlib (Up + zlib 1 Z_RLE, default-strategy retry)"] = lambda im: _without_isal(im)
    if M._isal_zlib is not None:
        cands["writer, isal (Up + ISA-L level 1)"] = lambda im: _new_encode_image(im, "png")
    rows = []
    for kind in kinds:
        im = wm.embed(Image.fromarray(gen_image(kind, n, 5)), b"pngbench")
        base = len(_pil(im, 6))
        for name, f in cands.items():
            ts = []
            for _ in range(reps):
                t = time.thread_time()     # CPU, not wall: the figure a loaded machine distorts least
                d = f(im)
                ts.append(time.thread_time() - t)
            assert np.array_equal(np.asarray(M.decode_image(d)), np.asarray(im))
            rows.append((kind, name, med(ts), len(d), len(d) / base))
    return rows


def _without_isal(im):
    saved, M._isal_zlib = M._isal_zlib, None
    try:
        return _new_encode_image(im, "png")
    finally:
        M._isal_zlib = saved


def _pil(im, level, ctype=-1):
    b = io.BytesIO()
    im.save(b, "PNG", compress_level=level, compress_type=ctype)
    return b.getvalue()


def profile_new(cfg, n):
    img = Image.fromarray(gen_image("photo", n, 778))
    seal_image(img, params={"seed": 0}, claim_generator=CG, config=cfg)
    pr = cProfile.Profile(time.thread_time)     # thread CPU time: what a loaded machine distorts least
    pr.enable()
    for i in range(3):
        seal_image(img, params={"seed": i}, claim_generator=CG, config=cfg)
    pr.disable()
    s = io.StringIO()
    pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(14)
    return s.getvalue()



# ------------------------------------------------------------------ delivery: pixels -> manifest line fsynced
class _Registry:
    def resolve(self, name):
        return name


class PixelsStudio:
    """A `Studio` whose pipeline costs nothing: `generate(deliver=False)` hands the engine's own `Generated`
    (the job runner's real seal + write + manifest path follows) an image made before the job started."""

    registry = _Registry()

    def __init__(self, images):
        self.images, self.n = images, 0

    def generate(self, request, *, progress=None, deliver=True, **_):
        from studio.engine import Generated
        from studio.schema import GenerationRecord

        image = self.images[self.n % len(self.images)]
        self.n += 1
        req = request.model_copy(update={"model": request.model or "mini", "width": image.width,
                                         "height": image.height, "steps": request.steps or 30,
                                         "guidance": 5.0, "sampler": "Euler",
                                         "output_format": request.output_format or "png"})
        record = GenerationRecord(request=req, mode=req.mode, model_name="mini", model_source="bench",
                                  model_family="sd1", model_hash="ab" * 32, sampler="Euler", device="cpu",
                                  dtype="fp32", versions={"bench": "1"}, elapsed_s=0.0)
        g = Generated(record, [image], [req.seed], out=None, overwrite=False, parent=None, parent_format=None)
        return g.finish() if deliver else g


class Phases:
    """Wall time of named functions, patched in place for the duration (restored on exit)."""

    def __init__(self):
        self.t, self.saved = {}, []

    def wrap(self, owner, attr, name, when=None):
        orig = getattr(owner, attr)
        t = self.t

        def timed(*a, **kw):
            if when is not None and not when(*a, **kw):
                return orig(*a, **kw)
            t0, c0 = time.perf_counter(), time.thread_time()
            try:
                return orig(*a, **kw)
            finally:
                t.setdefault(name, []).append((time.perf_counter() - t0, time.thread_time() - c0))
        self.saved.append((owner, attr, orig))
        setattr(owner, attr, timed)

    def restore(self):
        for owner, attr, orig in reversed(self.saved):
            setattr(owner, attr, orig)
        self.saved = []


DELIVERY_ROWS = [  # (row, depth): depth 1 rows are inside the depth 0 row above them
    ("seal worker: Generated.finish (seal_outputs)", 0),
    ("safety.seal_image", 1),
    ("  watermark embed", 2), ("  PNG encode", 2), ("  read-back: PNG decode", 2), ("  read-back: detect", 2),
    ("  C2PA sign + verify + read", 2), ("  ledger record (sqlite)", 2),
    ("pixel_sha256 (decodes the sealed PNG)", 1), ("generated_sha256 (pixels before the seal)", 1),
    ("output_params + png_text_for + watermark_id_for", 1),
    ("result dict (_ok: model_dump, bytes copy)", 0),
    ("driver emit", 0),
    ("write intent (append + fsync)", 1), ("write_atomic (temp + fsync + rename)", 1),
    ("manifest line (append + fsync)", 1),
]


def delivery(n, items, prof_top=0, seal_workers=1):
    """Per item, from "pipeline returned pixels" to "manifest line fsynced": a `studio.jobs.render` job whose
    pipeline costs nothing (`PixelsStudio`), every phase timed in place; steady-state interval between items
    from the manifest's finish times; a cProfile of the seal thread when ``prof_top``."""
    import safety
    from safety import ledger as L
    from studio import writer as W
    from studio.jobs import manifest as JM
    from studio.jobs import render, runner as R
    from studio.modalities import image as MI

    os.environ["DIFFUSION_STUDIO_HOME"] = tempfile.mkdtemp(prefix="seal-bench-home-")
    images = [Image.fromarray(gen_image("photo", n, 900 + i)) for i in range(3)]
    wm = S.WATERMARKERS["image"]
    ph = Phases()
    for owner, attr, name in [
        (R.PendingItem, "finish", "seal worker: Generated.finish (seal_outputs)"),
        (safety, "seal_image", "safety.seal_image"), (wm, "embed", "  watermark embed"),
        (M, "encode_image", "  PNG encode"), (M, "decode_image", "  read-back: PNG decode"),
        (wm, "detect", "  read-back: detect"), (S, "_sign", "  C2PA sign + verify + read"),
        (L.Ledger, "record", "  ledger record (sqlite)"),
        (MI, "pixel_sha256", "pixel_sha256 (decodes the sealed PNG)"),
        (MI, "image_sha256", "generated_sha256 (pixels before the seal)"),
        (W, "output_params", "output_params + png_text_for + watermark_id_for"),
        (W, "png_text_for", "output_params + png_text_for + watermark_id_for"),
        (W, "watermark_id_for", "output_params + png_text_for + watermark_id_for"),
        (R, "_ok", "result dict (_ok: model_dump, bytes copy)"),
        (JM.WriteIntents, "record", "write intent (append + fsync)"),
        (W, "write_atomic", "write_atomic (temp + fsync + rename)"),
    ]:
        ph.wrap(owner, attr, name)
    ph.wrap(JM.ManifestWriter, "append", "manifest line (append + fsync)",
            when=lambda self, obj: obj.get("type") == "item")
    prof = cProfile.Profile(time.thread_time) if prof_top else None  # CPU: load-proof
    orig_run = R.LocalExecutor.run

    def run(self, tasks, emit, cancel, on_step=None):
        def timed_emit(result):
            t0, c0 = time.perf_counter(), time.thread_time()
            try:
                if prof is not None:
                    prof.enable()
                return emit(result)
            finally:
                if prof is not None:
                    prof.disable()
                ph.t.setdefault("driver emit", []).append((time.perf_counter() - t0, time.thread_time() - c0))
        return orig_run(self, tasks, timed_emit, cancel, on_step)

    orig_finish = R.PendingItem.finish

    def finish(self):
        if prof is None:
            return orig_finish(self)
        prof.enable()
        try:
            return orig_finish(self)
        finally:
            prof.disable()
    R.LocalExecutor.run, R.PendingItem.finish = run, finish
    out = Path(tempfile.mkdtemp(prefix="seal-bench-job-"))
    try:
        t0 = time.perf_counter()
        summary = render([{"prompt": f"a lighthouse at dusk, oil painting, take {i}", "id": f"it{i}"}
                          for i in range(items)], out, studio=PixelsStudio(images), seed=1, cpu_threads=1,
                         seal_workers=seal_workers)
        wall = time.perf_counter() - t0
    finally:
        R.LocalExecutor.run, R.PendingItem.finish = orig_run, orig_finish
        ph.restore()
    assert summary.succeeded == items, summary.to_dict()
    from studio.jobs.manifest import read_manifest
    ends = sorted(datetime_ms(e["timings"]["finished_at"]) for e in read_manifest(out / JM.MANIFEST).items.values())
    interval = (ends[-1] - ends[1]) / max(1, len(ends) - 2) * 1e3     # skip the first (warm-up) item
    rows = {}
    for name, _ in DELIVERY_ROWS:
        per_item = _per_item(ph.t.get(name, []), items)
        rows[name] = tuple(statistics.median(x[j] for x in (per_item[1:] or per_item)) * 1e3 for j in (0, 1)) \
            if per_item else (0.0, 0.0)
    text = None
    if prof is not None:
        s = io.StringIO()
        pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(prof_top)
        text = s.getvalue()
    return {"size": n, "items": items, "rows": rows, "interval_ms": interval, "job_wall_s": wall,
            "profile": text, "seal_workers": seal_workers}


def _per_item(values, items):
    """Per-item sums of a phase that runs k times an item (k = len / items), in call order."""
    if not values:
        return []
    k = max(1, len(values) // items)
    return [tuple(sum(v[j] for v in values[i * k:(i + 1) * k]) for j in (0, 1)) for i in range(items)]


def datetime_ms(iso):
    return dt.datetime.fromisoformat(iso).timestamp()


def delivery_table(results):
    lines = ["Per item, pipeline returned pixels -> manifest line fsynced (`studio.jobs.render`, pipeline costing "
             "nothing, one seal worker), median per item after the first, ms wall / ms thread CPU:", "",
             "| phase | " + " | ".join(f"{r['size']} px" for r in results) + " |",
             "|---|" + "---|" * len(results)]
    for name, depth in DELIVERY_ROWS:
        label = ("&nbsp;&nbsp;" * depth) + name.strip()
        lines.append(f"| {label} | " + " | ".join(f"{r['rows'][name][0]:.1f} / {r['rows'][name][1]:.1f}" for r in results) + " |")
    lines.append("| **steady-state interval between manifest lines** | " +
                 " | ".join(f"**{r['interval_ms']:.1f}**" for r in results) + " |")
    for r in results:
        if r["profile"]:
            lines += ["", f"cProfile of the seal thread, {r['items']} items at {r['size']} px (thread CPU tottime):", "```",
                      r["profile"].strip(), "```"]
    return lines


def footer(t_start):
    import c2pa  # noqa: F401
    from importlib.metadata import version
    import pywt
    vers = {p: version(p) for p in ("numpy", "Pillow", "invisible-watermark", "c2pa-python")}
    vers["isal"] = version("isal") if M._isal_zlib is not None else "not installed (zlib)"
    vers.update({"opencv": cv2.__version__, "pywt": pywt.__version__})
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC; {platform.processor() or platform.machine()}, "
            f"{os.cpu_count()} CPUs visible, load average {load} (1/5/15 min) at the end, Python "
            f"{platform.python_version()}; " + ", ".join(f"{k} {v}" for k, v in vers.items()) +
            f"; {time.time() - t_start:.0f} s")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    ap.add_argument("--png", action="store_true", help="also the PNG encoder table (size vs time)")
    ap.add_argument("--profile", action="store_true", help="also a cProfile of the new seal (tottime)")
    ap.add_argument("--delivery", type=int, default=0, metavar="ITEMS",
                    help="also the pixels -> manifest-line breakdown over a job of ITEMS items per size")
    ap.add_argument("--only-delivery", action="store_true", help="skip the stock vs new seal table")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    t_start = time.time()
    if a.only_delivery:
        res = [delivery(n, a.delivery or 12, prof_top=18 if a.profile else 0) for n in a.sizes]
        print("\n".join(delivery_table(res) + ["", footer(t_start)]))
        return
    cfg = SafetyConfig(config_dir=Path(tempfile.mkdtemp(prefix="seal-bench-")))
    results = [bench_size(cfg, n, a.reps) for n in a.sizes]
    lines = [f"Seal latency, one {a.sizes} px photo-like PNG per call, median of {a.reps} (stock and new alternating), "
             f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; ms wall / ms thread CPU", ""]
    hdr = "| phase | " + " | ".join(f"stock {r['size']} | new {r['size']} | speed-up" for r in results) + " |"
    lines += [hdr, "|---|" + "---|---|---|" * len(results)]
    for ph in PHASES + ["total"]:
        cells = []
        for r in results:
            s, nw = r["phases"]["stock"][ph], r["phases"]["new"][ph]
            cells.append(f"{s[0]:.1f} / {s[1]:.1f} | {nw[0]:.1f} / {nw[1]:.1f} | {s[0] / max(nw[0], 1e-9):.1f}x")
        lines.append(f"| {ph} | " + " | ".join(cells) + " |")
    cells = []
    for r in results:
        s, nw = r["e2e"]["stock"], r["e2e"]["new"]
        cells.append(f"**{s[0]:.1f}** / {s[1]:.1f} | **{nw[0]:.1f}** / {nw[1]:.1f} | {s[0] / nw[0]:.1f}x")
    lines.append("| **seal_image end to end** | " + " | ".join(cells) + " |")
    lines.append("")
    for r in results:
        lines.append(f"{r['size']} px: PNG bytes stock {r['png_bytes']['stock']:,} / new {r['png_bytes']['new']:,} "
                     f"({r['png_bytes']['new'] / r['png_bytes']['stock']:.3f}x); marked pixels identical: "
                     f"{'yes' if r['same_pixels'] else 'NO'}")
    setup = per_call_setup(cfg)
    lines += ["", "Per-call set-up the stock seal repeated (the new one does it once per thread): " +
              ", ".join(f"{k} {v:.2f} ms" for k, v in setup.items())]
    if a.png:
        rows = png_table()
        lines += ["", "PNG encoders, 1024 px marked images, median of 5 (thread CPU ms, bytes, size vs Pillow level 6):",
                  "", "| image | encoder | CPU ms | bytes | size |", "|---|---|---|---|---|"]
        lines += [f"| {k} | {nm} | {t:.0f} | {b:,} | {rel:.2f}x |" for k, nm, t, b, rel in rows]
    if a.profile:
        lines += ["", "cProfile of the new seal_image (3 calls, 1024 px, thread CPU tottime):", "```",
                  profile_new(cfg, max(a.sizes)).strip(), "```"]
    if a.delivery:
        lines += [""] + delivery_table([delivery(n, a.delivery, prof_top=18 if a.profile else 0) for n in a.sizes])
    lines += ["", footer(t_start)]
    print("\n".join(lines))
    if a.json:
        a.json.write_text(json.dumps({"results": results, "setup": setup}, indent=1, default=str))


if __name__ == "__main__":
    main()
