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


def stock_sign(data, fmt, manifest, config, info, parent, parent_format, thumbnail):
    """The pre-issue-19 ``seal._sign``: settings, Context and Signer built per call (no parent here)."""
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
    cands["new writer (Up + zlib 1 Z_RLE, default-strategy retry)"] = lambda im: _new_encode_image(im, "png")
    rows = []
    for kind in kinds:
        im = wm.embed(Image.fromarray(gen_image(kind, n, 5)), b"pngbench")
        base = len(_pil(im, 6))
        for name, f in cands.items():
            ts = []
            for _ in range(reps):
                t = time.perf_counter()
                d = f(im)
                ts.append(time.perf_counter() - t)
            assert np.array_equal(np.asarray(M.decode_image(d)), np.asarray(im))
            rows.append((kind, name, med(ts), len(d), len(d) / base))
    return rows


def _pil(im, level, ctype=-1):
    b = io.BytesIO()
    im.save(b, "PNG", compress_level=level, compress_type=ctype)
    return b.getvalue()


def profile_new(cfg, n):
    img = Image.fromarray(gen_image("photo", n, 778))
    seal_image(img, params={"seed": 0}, claim_generator=CG, config=cfg)
    pr = cProfile.Profile()
    pr.enable()
    for i in range(3):
        seal_image(img, params={"seed": i}, claim_generator=CG, config=cfg)
    pr.disable()
    s = io.StringIO()
    pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(14)
    return s.getvalue()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    ap.add_argument("--png", action="store_true", help="also the PNG encoder table (size vs time)")
    ap.add_argument("--profile", action="store_true", help="also a cProfile of the new seal (tottime)")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    t_start = time.time()
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
        lines += ["", "PNG encoders, 1024 px marked images, median of 5 (ms, bytes, size vs Pillow level 6):", "",
                  "| image | encoder | ms | bytes | size |", "|---|---|---|---|---|"]
        lines += [f"| {k} | {nm} | {t:.0f} | {b:,} | {rel:.2f}x |" for k, nm, t, b, rel in rows]
    if a.profile:
        lines += ["", "cProfile of the new seal_image (3 calls, 1024 px, tottime):", "```",
                  profile_new(cfg, max(a.sizes)).strip(), "```"]
    import c2pa  # noqa: F401
    from importlib.metadata import version
    import pywt
    vers = {p: version(p) for p in ("numpy", "Pillow", "invisible-watermark", "c2pa-python")}
    vers.update({"opencv": cv2.__version__, "pywt": pywt.__version__})
    lines += ["", f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC; {platform.processor() or platform.machine()}, "
              f"{os.cpu_count()} CPUs visible, load average {os.getloadavg()[0]:.2f} at the end, Python "
              f"{platform.python_version()}; " + ", ".join(f"{k} {v}" for k, v in vers.items()) +
              f"; {time.time() - t_start:.0f} s"]
    print("\n".join(lines))
    if a.json:
        a.json.write_text(json.dumps({"results": results, "setup": setup}, indent=1, default=str))


if __name__ == "__main__":
    main()
