"""Measure the seal's watermarks: robustness, false positives, latency. Prints markdown for docs/safety.md.

    python bench/safety_robustness.py [--images 32] [--fp 1000] [--audio 8] [--json out.json]
    OMP_NUM_THREADS=1 python bench/safety_robustness.py --only-video --video 8 --video-fp 50   # clips, ~6 min

Offline, CPU only. All media are procedural (seeded); nothing is downloaded. Uses a throw-away config dir
(development CA + ledger) in a temp folder.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageEnhance

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from safety import SafetyConfig, seal_image, seal_video  # noqa: E402
from safety.media import (decode_audio, decode_video, decode_video_frames, encode_mp4, ffmpeg_exe,  # noqa: E402
                          wav_bytes)
from safety.watermark import (AudioWatermarker, ImageWatermarker, VideoWatermarker, decode_codeword,  # noqa: E402
                              encode_codeword)

CG = "diffusion-studio/0.1.0 (bench)"


# --------------------------------------------------------------------------------------------- media
def gen_image(kind: str, n: int, seed: int) -> np.ndarray:
    r = np.random.default_rng(seed)
    y, x = np.mgrid[0:n, 0:n] / n
    if kind == "photo":
        base = np.stack([np.sin(x * r.uniform(2, 9) + c) * np.cos(y * r.uniform(2, 9)) * 70 + 120
                         for c in range(3)], -1)
        base += r.normal(0, 14, (n, n, 3))
        base = cv2.GaussianBlur(base, (0, 0), 1.2) + r.normal(0, 3, (n, n, 3))
    elif kind == "shapes":
        base = np.zeros((n, n, 3), np.float64) + r.uniform(0, 255, 3) * (1 - y[..., None]) + \
            r.uniform(0, 255, 3) * y[..., None]
        base = base.astype(np.uint8).copy()
        for _ in range(r.integers(5, 25)):
            col = tuple(int(c) for c in r.integers(0, 256, 3))
            if r.random() < 0.5:
                cv2.circle(base, tuple(int(v) for v in r.integers(0, n, 2)), int(r.integers(5, n // 3)), col, -1)
            else:
                p = r.integers(0, n, 4)
                cv2.rectangle(base, (int(p[0]), int(p[1])), (int(p[2]), int(p[3])), col, -1)
        base = base.astype(np.float64)
    elif kind == "gradient":
        a, b = r.uniform(0, 255, 3), r.uniform(0, 255, 3)
        t = (x * r.uniform(-1, 1) + y * r.uniform(-1, 1))
        t = (t - t.min()) / (np.ptp(t) + 1e-9)
        base = a * (1 - t[..., None]) + b * t[..., None]
    elif kind == "noise":
        base = r.normal(128, r.uniform(5, 60), (n, n, 3))
    else:  # "texture": octaves of upscaled noise (clouds / terrain-like)
        base = np.zeros((n, n, 3))
        for o in range(1, 7):
            s = 2 ** o
            small = r.normal(0, 1, (s, s, 3))
            base += cv2.resize(small, (n, n), interpolation=cv2.INTER_CUBIC) * (60 / o)
        base += 128
    return np.clip(base, 0, 255).astype(np.uint8)


KINDS = ["photo", "shapes", "texture", "noise", "gradient"]


def jpeg(img: Image.Image, q: int) -> Image.Image:
    b = io.BytesIO()
    img.convert("RGB").save(b, "JPEG", quality=q)
    return Image.open(io.BytesIO(b.getvalue())).convert("RGB")


def webp(img: Image.Image, q: int) -> Image.Image:
    b = io.BytesIO()
    img.save(b, "WEBP", quality=q)
    return Image.open(io.BytesIO(b.getvalue())).convert("RGB")


def resize_back(img: Image.Image, f: float) -> Image.Image:
    w, h = img.size
    return img.resize((int(w * f), int(h * f)), Image.BICUBIC).resize((w, h), Image.BICUBIC)


def crop(img: Image.Image, f: float) -> Image.Image:
    w, h = img.size
    cw, ch = int(w * f), int(h * f)
    return img.crop(((w - cw) // 2, (h - ch) // 2, (w - cw) // 2 + cw, (h - ch) // 2 + ch))


def noise(img: Image.Image, sigma: float, seed: int) -> Image.Image:
    a = np.asarray(img).astype(np.float64) + np.random.default_rng(seed).normal(0, sigma, np.asarray(img).shape)
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))


ATTACKS = [
    ("none (PNG)", lambda im, s: im),
    ("JPEG q90", lambda im, s: jpeg(im, 90)),
    ("JPEG q75", lambda im, s: jpeg(im, 75)),
    ("WebP q80", lambda im, s: webp(im, 80)),
    ("resize 0.5x and back", lambda im, s: resize_back(im, 0.5)),
    ("resize 0.5x (no rescale)", lambda im, s: im.resize((im.size[0] // 2, im.size[1] // 2), Image.BICUBIC)),
    ("crop 90% (centre)", lambda im, s: crop(im, 0.9)),
    ("brightness +10%", lambda im, s: ImageEnhance.Brightness(im).enhance(1.1)),
    ("gaussian noise sigma 5", lambda im, s: noise(im, 5, s)),
]


def bit_acc(wm, media, cw) -> float:
    """Bit accuracy of the votes the detector decodes (for images: the 2x retry when the received size fails)."""
    s = wm.soft(media)
    if isinstance(wm, ImageWatermarker) and (s is None or decode_codeword(s, wm.key)[0] is None):
        img = media if isinstance(media, Image.Image) else Image.fromarray(np.asarray(media))
        s2 = wm.soft(img.convert("RGB").resize((2 * img.size[0], 2 * img.size[1]), Image.BICUBIC))
        if s2 is not None and (s is None or decode_codeword(s2, wm.key)[0] is not None):
            s = s2
    if s is None:
        return float("nan")
    return float(np.mean((s > 0).astype(np.uint8) == cw))


# --------------------------------------------------------------------------------------------- image
def bench_images(n_images: int, size: int):
    wm = ImageWatermarker()
    rows = {name: {"acc": [], "exact": 0, "n": 0} for name, _ in ATTACKS}
    psnr = []
    t_embed, t_detect = [], []
    for i in range(n_images):
        kind = KINDS[i % 4]         # photo, shapes, texture, noise (flat gradients measured separately)
        arr = gen_image(kind, size, 1000 + i)
        img = Image.fromarray(arr)
        wid = np.random.default_rng(i).bytes(8)
        cw = encode_codeword(wid)
        t = time.perf_counter()
        marked = wm.embed(img, wid)
        t_embed.append(time.perf_counter() - t)
        m = np.asarray(marked).astype(np.float64)
        psnr.append(10 * np.log10(255 ** 2 / max(np.mean((m - arr) ** 2), 1e-12)))
        for name, fn in ATTACKS:
            att = fn(marked, i)
            t = time.perf_counter()
            got, _ = wm.detect(att)
            if name.startswith("none"):
                t_detect.append(time.perf_counter() - t)
            rows[name]["acc"].append(bit_acc(wm, att, cw))
            rows[name]["exact"] += int(got == wid.hex())
            rows[name]["n"] += 1
    return rows, psnr, t_embed, t_detect


def bench_flat(n: int = 10):
    wm = ImageWatermarker()
    ok = 0
    for i in range(n):
        arr = gen_image("gradient", 512, 5000 + i)
        wid = np.random.default_rng(5000 + i).bytes(8)
        ok += int(wm.detect(wm.embed(Image.fromarray(arr), wid))[0] == wid.hex())
    return ok, n


def bench_fp(n: int):
    wm = ImageWatermarker()
    hits = 0
    t0 = time.perf_counter()
    for i in range(n):
        kind = KINDS[i % len(KINDS)]
        size = [256, 320, 384, 512][i % 4]
        img = Image.fromarray(gen_image(kind, size, 20000 + i))
        if i % 3 == 1:
            img = jpeg(img, 85)
        got, _ = wm.detect(img)
        hits += int(got is not None)
    return hits, n, time.perf_counter() - t0


def bench_latency(cfg, size: int, reps: int = 5):
    out = {}
    img = Image.fromarray(gen_image("photo", size, 777))
    for fmt in ("png", "jpeg"):
        ts = []
        for r in range(reps + 1):
            t = time.perf_counter()
            seal_image(img, fmt=fmt, params={"seed": r}, claim_generator=CG, config=cfg)
            ts.append(time.perf_counter() - t)
        out[fmt] = statistics.median(ts[1:])
    wm = ImageWatermarker()
    ts = []
    for r in range(reps):
        t = time.perf_counter()
        wm.embed(img, b"\x01" * 8)
        ts.append(time.perf_counter() - t)
    out["embed"] = statistics.median(ts)
    return out


# --------------------------------------------------------------------------------------------- audio
def music(seconds: float, sr: int, seed: int) -> np.ndarray:
    r = np.random.default_rng(seed)
    t = np.arange(int(sr * seconds)) / sr
    y = np.zeros_like(t)
    for k in range(int(seconds * 4)):
        f0 = r.choice([110.0, 220.0, 261.6, 329.6, 392.0, 440.0, 523.3, 659.3])
        s, e = int(k * sr / 4), min(len(t), int(k * sr / 4) + int(sr * r.uniform(0.2, 0.8)))
        env = np.exp(-np.arange(e - s) / sr * r.uniform(2, 8))
        for h in range(1, 7):
            y[s:e] += env * np.sin(2 * np.pi * f0 * h * t[s:e]) / h ** r.uniform(0.8, 1.6)
    # drums-like noise bursts
    for k in range(int(seconds * 2)):
        s = int(k * sr / 2)
        e = min(len(t), s + sr // 20)
        y[s:e] += r.normal(0, 0.5, e - s) * np.exp(-np.arange(e - s) / (sr / 200))
    y += 0.01 * r.normal(size=len(t))
    return (0.4 * y / np.abs(y).max()).astype(np.float32)


def ff(args, data: bytes) -> bytes:
    return subprocess.run([ffmpeg_exe(), "-loglevel", "error", *args], input=data, capture_output=True,
                          check=True).stdout


def audio_attack(name: str, x: np.ndarray, sr: int):
    wav = wav_bytes(x, sr)
    if name == "none (WAV)":
        return x, sr
    if name.startswith("MP3"):
        br = name.split()[1]
        return decode_audio(ff(["-f", "wav", "-i", "pipe:0", "-c:a", "libmp3lame", "-b:a", br, "-f", "mp3",
                                "pipe:1"], wav), "mp3")
    if name == "AAC 128k (M4A)":
        with tempfile.TemporaryDirectory() as td:
            p = Path(td) / "a.m4a"
            subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-f", "wav", "-i", "pipe:0", "-c:a", "aac", "-b:a",
                            "128k", str(p)], input=wav, check=True)
            return decode_audio(p.read_bytes(), "mp4")
    if name == "resample 22.05k and back":
        y = ff(["-f", "wav", "-i", "pipe:0", "-ar", "22050", "-f", "wav", "pipe:1"], wav)
        y = ff(["-f", "wav", "-i", "pipe:0", "-ar", str(sr), "-f", "wav", "pipe:1"], y)
        return decode_audio(y, "wav")
    if name == "gain -6 dB":
        return x * 0.5, sr
    if name == "trim first 0.1 s":
        return x[int(0.1 * sr):], sr
    if name == "trim first 1.0 s":
        return x[int(1.0 * sr):], sr
    if name == "white noise SNR 20 dB":
        n = np.random.default_rng(0).normal(0, np.sqrt(np.mean(x ** 2) / 100), x.shape)
        return (x + n).astype(np.float32), sr
    raise KeyError(name)


AUDIO_ATTACKS = ["none (WAV)", "MP3 128k", "MP3 64k", "AAC 128k (M4A)", "resample 22.05k and back", "gain -6 dB",
                 "white noise SNR 20 dB", "trim first 0.1 s", "trim first 1.0 s"]


def bench_audio(n: int, seconds: float = 8.0, sr: int = 44100):
    aw = AudioWatermarker()
    rows = {a: {"acc": [], "exact": 0, "n": 0} for a in AUDIO_ATTACKS}
    snr = []
    for i in range(n):
        x = music(seconds, sr, 300 + i)
        wid = np.random.default_rng(300 + i).bytes(8)
        cw = encode_codeword(wid)
        y, _ = aw.embed((x, sr), wid)
        snr.append(10 * np.log10(np.sum(x.astype(np.float64) ** 2) / np.sum((y.astype(np.float64) - x) ** 2)))
        for a in AUDIO_ATTACKS:
            media = audio_attack(a, y, sr)
            rows[a]["acc"].append(bit_acc(aw, media, cw))
            rows[a]["exact"] += int(aw.detect(media)[0] == wid.hex())
            rows[a]["n"] += 1
    fp = 0
    n_fp = max(20, 5 * n)
    for i in range(n_fp):
        fp += int(aw.detect((music(seconds, sr, 9000 + i), sr))[0] is not None)
    return rows, snr, fp, n_fp


# --------------------------------------------------------------------------------------------- video
def mini_clip(seed: int, size: int = 256, n: int = 16) -> np.ndarray:
    """What the studio's mini model makes: a mini-world scene (flat-colour shapes on a plain white / black /
    gray / beige background) whose objects glide across the frame over ``n`` frames."""
    import random as _random

    from PIL import ImageDraw
    from studio.mini import world as W
    scene = W.sample_scene(seed, "any")
    rng = _random.Random(seed)
    vel = [(rng.uniform(-3, 3), rng.uniform(-3, 3)) for _ in scene.objects]
    bg = W.BACKGROUNDS[scene.background]
    out = []
    for k in range(n):
        img = Image.new("RGB", (W.SIZE, W.SIZE), bg)
        d = ImageDraw.Draw(img)
        for o, (vx, vy) in zip(scene.objects, vel):
            W.draw_object(d, W.Obj(o.color, o.shape, o.size, o.position, int(o.dx + vx * k), int(o.dy + vy * k),
                                   o.scale), bg)
        if size != W.SIZE:
            img = img.resize((size, size), Image.NEAREST)
        out.append(np.asarray(img))
    return np.stack(out)


def photo_clip(seed: int, size: int = 256, n: int = 16, kind: str = "photo") -> np.ndarray:
    """Photo-like or textured clip: a procedural picture panned 3 px / frame."""
    base = gen_image(kind, size + 3 * n, 600 + seed)
    return np.stack([base[k:k + size, 3 * k:3 * k + size] for k in range(n)])


def bench_clip(i: int, size: int) -> tuple:
    """Clip i of the robustness set: half mini-world, a quarter photo-like, a quarter texture."""
    if i % 4 in (0, 2):
        return "mini", mini_clip(100 + i, size)
    if i % 4 == 1:
        return "photo", photo_clip(i, size)
    return "texture", photo_clip(i, size, kind="texture")


def _ffmpeg_file(data: bytes, in_ext: str, out_ext: str, args) -> bytes:
    with tempfile.TemporaryDirectory() as td:
        a, b = Path(td) / f"a.{in_ext}", Path(td) / f"b.{out_ext}"
        a.write_bytes(data)
        subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-y", *args[0], "-i", str(a), *args[1], str(b)],
                       check=True)
        return b.read_bytes()


X264_28 = ["-c:v", "libx264", "-crf", "28", "-pix_fmt", "yuv420p"]
GIF_PALETTE = ["-vf", "split[a][b];[a]palettegen[p];[b][p]paletteuse"]
VIDEO_ATTACKS = {
    # name: (input args, output args, output container)
    "sealed file as delivered": None,
    "re-encode H.264 CRF 28": ([], X264_28, "mp4"),
    "scale 0.5x (+ CRF 28)": ([], ["-vf", "scale=iw/2:ih/2", *X264_28], "mp4"),
    "trim to 2nd half (-ss, + CRF 28)": (["-ss", "1"], X264_28, "mp4"),
    "GIF (palettegen/paletteuse)": ([], GIF_PALETTE, "gif"),
    "WebM VP9 CRF 32": ([], ["-c:v", "libvpx-vp9", "-crf", "32", "-b:v", "0", "-deadline", "good", "-cpu-used",
                             "4"], "webm"),
}


def video_attack(name: str, data: bytes, fmt: str) -> np.ndarray:
    spec = VIDEO_ATTACKS[name]
    if spec is None:
        return decode_video_frames(data, fmt)
    pre, post, ext = spec
    return decode_video(_ffmpeg_file(data, fmt, ext, (pre, post)))[0]


def bench_video(cfg, n: int = 8, n_fp: int = 50, sizes=(256, 512), formats=("mp4", "gif")):
    """Seal n clips per size (8 fps, 16 frames = 2 s), attack each, count exact-ID recoveries per layer."""
    vw = VideoWatermarker()
    rows, seal_t, psnr = {}, {}, {}
    for size in sizes:
        for fmt in formats:
            for i in range(n):
                kind, frames = bench_clip(i, size)
                t = time.perf_counter()
                s = seal_video(frames, fps=8, fmt=fmt, params={}, claim_generator=CG, config=cfg)
                seal_t.setdefault((size, fmt), []).append(time.perf_counter() - t)
                if fmt == "mp4":
                    dec = decode_video_frames(s.data, fmt).astype(np.float64)
                    psnr.setdefault(size, []).append(10 * np.log10(255 ** 2 / max(
                        np.mean((dec - frames) ** 2), 1e-12)))
                key = (size, fmt)
                for a in VIDEO_ATTACKS:
                    if fmt == "gif" and a != "sealed file as delivered":
                        continue
                    fr = video_attack(a, s.data, fmt)
                    r = rows.setdefault((size, fmt, a), {"exact": 0, "lf": 0, "frames": 0, "n": 0, "by_kind": {}})
                    got = vw.detect(fr)[0] == s.watermark_id if s.watermark_id else False
                    lf = vw.lf.soft(fr)
                    fs = vw.soft_frames(fr)
                    r["exact"] += int(got)
                    r["lf"] += int(lf is not None and decode_codeword(lf, vw.key)[0] == s.watermark_id)
                    r["frames"] += int(fs is not None and decode_codeword(fs, vw.key)[0] == s.watermark_id)
                    r["n"] += 1
                    bk = r["by_kind"].setdefault(kind, [0, 0])
                    bk[0] += int(got)
                    bk[1] += 1
    fp = 0
    t0 = time.perf_counter()
    for i in range(n_fp):
        size = sizes[i % len(sizes)]
        kind, frames = bench_clip(1000 + i, size)
        data = encode_mp4(frames, 8.0, None)
        fp += int(vw.detect(decode_video_frames(data, "mp4"))[0] is not None)
    return rows, seal_t, psnr, (fp, n_fp, time.perf_counter() - t0)


def video_lines(rows, seal_t, psnr, fp_res, n) -> list:
    lines = [f"\n#### Video ({n} clips per size: half mini-world scenes, a quarter photo-like, a quarter texture; "
             "16 frames at 8 fps)\n",
             "| size | sealed as | condition | exact ID recovered | low-freq layer | per-frame layer | by kind |",
             "|---|---|---|---|---|---|---|"]
    for (size, fmt, a), r in rows.items():
        kinds = ", ".join(f"{k} {v[0]}/{v[1]}" for k, v in sorted(r["by_kind"].items()))
        lines.append(f"| {size} | {fmt.upper()} | {a} | {r['exact']}/{r['n']} | {r['lf']}/{r['n']} | "
                     f"{r['frames']}/{r['n']} | {kinds} |")
    fp, n_fp, t_fp = fp_res
    lines.append(f"\nVideo false positives: {fp}/{n_fp} unmarked clips (H.264 CRF 18, same kinds and sizes; "
                 f"{t_fp:.0f} s).")
    lines.append("\n| seal_video, 16 frames (median) | " + " | ".join(f"{s} px {f.upper()}" for s, f in seal_t) + " |")
    lines.append("|---|" + "---|" * len(seal_t))
    lines.append("| mark + encode + read-back + sign + ledger | "
                 + " | ".join(f"{1000 * statistics.median(v):.0f} ms" for v in seal_t.values()) + " |")
    lines.append("\nMarked vs original PSNR (H.264 CRF 18 file): "
                 + ", ".join(f"{s} px {np.mean(v):.1f} dB" for s, v in psnr.items()) + ".")
    return lines


# --------------------------------------------------------------------------------------------- main
def fmt_row(name, r):
    acc = [a for a in r["acc"] if not np.isnan(a)]
    m = f"{np.mean(acc):.3f}" if acc else "n/a"
    mn = f"{np.min(acc):.2f}" if acc else "n/a"
    return f"| {name} | {m} | {mn} | {r['exact']}/{r['n']} ({100 * r['exact'] / max(r['n'], 1):.0f} %) |"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--images-1024", type=int, default=8)
    ap.add_argument("--fp", type=int, default=1000)
    ap.add_argument("--audio", type=int, default=6)
    ap.add_argument("--video", type=int, default=8)
    ap.add_argument("--video-fp", type=int, default=50)
    ap.add_argument("--only-video", action="store_true", help="skip the image and audio sections")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    t_all = time.perf_counter()
    home = tempfile.mkdtemp(prefix="safety-bench-")
    cfg = SafetyConfig(config_dir=home)
    out = {"date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible, "
                      f"Python {platform.python_version()}, {platform.platform()}"}
    try:
        with open("/proc/cpuinfo") as f:
            out["cpu"] = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except Exception:
        pass
    lines = []
    if not a.only_video:
        for size, n in ((512, a.images), (1024, a.images_1024)):
            rows, psnr, te, td = bench_images(n, size)
            out[f"image_{size}"] = {k: {"bit_acc_mean": float(np.nanmean(v["acc"])), "exact": v["exact"], "n": v["n"]}
                                    for k, v in rows.items()}
            lines.append(f"\n#### Images {size} px ({n} images: photo-like, shapes, texture, noise), "
                         f"PSNR {np.mean(psnr):.1f} dB, embed {1000 * np.median(te):.0f} ms, "
                         f"detect {1000 * np.median(td):.0f} ms (median)\n")
            lines.append("| condition | bit accuracy (mean of 96) | min | exact 64-bit ID recovered |")
            lines.append("|---|---|---|---|")
            lines += [fmt_row(k, v) for k, v in rows.items()]
        ok, nf = bench_flat()
        out["flat_gradients"] = {"exact": ok, "n": nf}
        lines.append(f"\nFlat gradients (512 px, no texture): mark read back on {ok}/{nf} (the seal records "
                     "`not_embeddable` when the read-back fails).")
        hits, n_fp, t_fp = bench_fp(a.fp)
        out["false_positives"] = {"hits": hits, "n": n_fp, "seconds": t_fp}
        lines.append(f"\n**False positives:** {hits}/{n_fp} never-marked images decoded to a valid codeword "
                     f"(5 kinds x sizes 256-512 px, a third JPEG q85; {t_fp:.0f} s).")
        lat = {s: bench_latency(cfg, s) for s in (512, 1024)}
        out["latency"] = lat
        lines.append("\n| seal latency (median of 5) | 512 px | 1024 px |\n|---|---|---|")
        lines.append(f"| watermark embed only | {1000 * lat[512]['embed']:.0f} ms | "
                     f"{1000 * lat[1024]['embed']:.0f} ms |")
        for fmt in ("png", "jpeg"):
            lines.append(f"| seal_image {fmt.upper()} (mark + encode + read-back + sign + ledger) | "
                         f"{1000 * lat[512][fmt]:.0f} ms | {1000 * lat[1024][fmt]:.0f} ms |")
        if a.audio:
            rows, snr, fp, n_afp = bench_audio(a.audio)
            out["audio"] = {k: {"bit_acc_mean": float(np.nanmean(v["acc"])), "exact": v["exact"], "n": v["n"]}
                            for k, v in rows.items()}
            out["audio_fp"] = {"hits": fp, "n": n_afp}
            lines.append(f"\n#### Audio ({a.audio} synthetic music clips, 8 s, 44.1 kHz mono), mark SNR "
                         f"{np.mean(snr):.1f} dB\n")
            lines.append("| condition | bit accuracy (mean of 96) | min | exact 64-bit ID recovered |")
            lines.append("|---|---|---|---|")
            lines += [fmt_row(k, v) for k, v in rows.items()]
            lines.append(f"\nAudio false positives: {fp}/{n_afp} unmarked clips.")
    if a.video:
        rows, seal_t, psnr, fp_res = bench_video(cfg, a.video, a.video_fp)
        out["video"] = {f"{s} {f} {k}": v for (s, f, k), v in rows.items()}
        out["video_fp"] = {"hits": fp_res[0], "n": fp_res[1]}
        out["video_seal_ms"] = {f"{s} {f}": 1000 * statistics.median(v) for (s, f), v in seal_t.items()}
        lines += video_lines(rows, seal_t, psnr, fp_res, a.video)
    out["total_seconds"] = time.perf_counter() - t_all
    lines.append(f"\nTotal run time {out['total_seconds']:.0f} s. {out['date_utc']}; {out.get('cpu', '')}; "
                 f"{out['machine']}.")
    print("\n".join(lines))
    if a.json:
        a.json.write_text(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
    main()
