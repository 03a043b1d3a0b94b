"""The mini-video model card (README.md in the weights folder), from training.json and eval_results.json."""

from __future__ import annotations

import json
from pathlib import Path

from .. import world as W
from . import world as V


def _size_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6


def _fig(ev: dict, *path, unit="%"):
    cur = ev
    for k in path:
        if not isinstance(cur, dict) or k not in cur:
            return "not measured"
        cur = cur[k]
    return f"{cur}{unit}" if unit else f"{cur}"


def _ok(value, target: float, higher=True) -> str:
    if not isinstance(value, (int, float)):
        return "-"
    return "met" if (value >= target if higher else value <= target) else "**missed**"


def _components(meta: dict) -> str:
    """The components table and why, for the design the weights were trained with (``training.json``'s cond)."""
    adapter = f"`MotionAdapter({', '.join(f'{k}={v}' for k, v in meta.get('adapter', {}).items())})`, trained here"
    if meta.get("cond") == "motion-lora":
        files = ", ".join(f"`{f}`" for f in meta.get("motion_loras", {}).values())
        return f"""## Components

| part | what |
|---|---|
| motion_adapter | {adapter} |
| motion_loras | one rank-{meta.get('motion_lora_rank')} LoRA per motion ({files}) on the motion modules' attention projections (`attn1`/`attn2` q/k/v/out), diffusers LoRA format, trained here; `motion_loras.json` names the caption phrases that select each |
| unet | the mini image UNet (`studio/mini/weights/unet`), unchanged, plus the motion modules (`UNetMotionModel`) |
| text_encoder, tokenizer | the mini image model's, unchanged |
| vae, scheduler | the mini image model's, unchanged (closed-form latent; DPM++ 2M, trailing spacing, v-prediction, zero terminal SNR) |

How the direction gets in: the studio (`pipelines/motion_loras.py`, used by `run_video` and by the evaluation)
finds the prompt's motion phrase ("moving to the right", "standing still", ...), loads that motion's LoRA with
diffusers' `load_lora_weights` for the call and takes the phrase out of the prompt (the text encoder never
learnt it; training captions were stripped the same way); a prompt without a phrase runs the plain adapter.
Stock diffusers does the same by hand: `pipe.load_lora_weights("<this folder>/motion_loras/right.safetensors")`.
Why not the text: AnimateDiff calls its motion modules without the text, and a direction sent through the
spatial cross-attention stayed at chance where the same data and budget taught a motion-specific change inside
the motion modules the direction (the isolation in `docs/mini-video-plan.md`, 2026-12-03).

"""
    return f"""## Components

| part | what |
|---|---|
| motion_adapter | {adapter} |
| unet | the mini image UNet (`studio/mini/weights/unet`) with a rank-{meta.get('lora_rank')} LoRA on its spatial cross-attention (`attn2` q/k/v/out) trained here and fused in, plus the motion modules (`UNetMotionModel`) |
| text_encoder | the mini CLIPTextModel, frozen, with {len(meta.get('motion_words', []))} new token-embedding rows for the motion words {', '.join(meta.get('motion_words', []))} (learnt; every other weight is the image model's) |
| tokenizer | the mini tokenizer with those words appended (every old token keeps its id) |
| vae, scheduler | the mini image model's, unchanged (closed-form latent; DPM++ 2M, trailing spacing, v-prediction, zero terminal SNR) |

Why the LoRA and the new tokens: AnimateDiff's motion modules are called without the text, so the direction can
only reach the frames through the UNet's cross-attention. The mini text encoder carries position words only
faintly (its later token states move 0.07x as much for a position swap as for a colour swap) and "moving",
"up", "down", "still" are not tokens of the mini tokenizer (byte-level fallback). The frozen UNet was
trained on that encoder, so the encoder body stays frozen (colour and shape keep their meaning) and only
the new words' embeddings and a low-rank update of the cross-attention learn.

"""


def _stages(meta: dict) -> str:
    if not meta.get("stages"):
        return ""
    rows = "\n".join(f"{i + 1}. `{st}`" for i, st in enumerate(meta["stages"]))
    return ("\nThe recipe's stages (`train.RECIPES`), each resuming the one before from the work folder:\n\n"
            + rows + "\n")


def _lrs(meta: dict) -> str:
    if meta.get("cond") == "motion-lora":
        return f"{meta.get('motion_lora_lr')} (motion LoRAs)"
    return f"{meta.get('lora_lr')} (LoRA) / {meta.get('emb_lr')} (new embeddings)"


def write_card(folder: Path) -> None:
    folder = Path(folder)
    meta = json.loads((folder / "training.json").read_text()) if (folder / "training.json").exists() else {}
    ev = json.loads((folder / "eval_results.json").read_text()) if (folder / "eval_results.json").exists() else {}
    d = meta.get("defaults", {})
    t2v, i2v, v2v, sp = ev.get("t2v", {}), ev.get("i2v", {}), ev.get("v2v", {}), ev.get("speed", {})
    g = lambda dct, k: dct.get(k)  # noqa: E731
    rows = [
        ("text-to-video: direction as captioned, moving prompts", g(t2v, "direction_correct_moving"), 90, "%", True),
        ("text-to-video: direction as captioned, all prompts (still included)", g(t2v, "direction_correct"), None, "%", True),
        ("text-to-video: moved as captioned (direction and >= 0.2 of the frame)", g(t2v, "moved_as_captioned"), None, "%", True),
        ("text-to-video: frames with the captioned colour and shape", g(t2v, "identity_frames"), 95, "%", True),
        ("text-to-video: frames with the captioned colour / shape", f"{g(t2v, 'color_frames')} / {g(t2v, 'shape_frames')}", None, "%", True),
        ("text-to-video: clips without background flicker (mean change <= 6/255)", g(t2v, "no_flicker"), None, "%", True),
        ("image-to-video: frame 0 PSNR vs the given image, median / min (dB)",
         f"{g(i2v, 'psnr_frame0_median')} / {g(i2v, 'psnr_frame0_min')}", None, "", True),
        ("image-to-video: clips with frame-0 PSNR >= 30 dB", g(i2v, "psnr_frame0_ge_30"), 100, "%", True),
        ("image-to-video: moved as captioned", g(i2v, "moved_as_captioned"), 85, "%", True),
        ("image-to-video: frames with the captioned colour and shape", g(i2v, "identity_frames"), None, "%", True),
        ("video-to-video strength 0.3: frames whose layout is kept", g(v2v, "layout_frames"), 95, "%", True),
        ("16 frames, 25 steps, 2 threads, after warm-up (s)", g(sp, "seconds_16_frames"), 30, "", False),
    ]
    table = ["| metric | measured | target | |", "|---|---|---|---|"]
    for name, val, target, unit, higher in rows:
        shown = "not measured" if val is None or str(val).startswith("None") else f"{val}{unit if isinstance(val, (int, float)) else ''}"
        tgt = "-" if target is None else (f">= {target}{unit}" if higher else f"<= {target} s")
        table.append(f"| {name} | {shown} | {tgt} | {_ok(val, target, higher) if target is not None else ''} |")
    n = f"n = {g(t2v, 'n')} text-to-video, {g(i2v, 'n')} image-to-video, {g(v2v, 'n')} video-to-video clips"
    per = g(t2v, "per_motion") or {}
    hist = meta.get("history", [])
    probe_rows = "\n".join(f"| {h['step']} | {h['seconds']} | {h['loss']:.4f} | {h['direction_correct']}% | {h['per_motion']} |"
                           for h in hist) or "| - | - | - | - | - |"
    text = f"""# mini-video: the studio's tiny offline video model

Text-to-video, image-to-video and video-to-video for the mini world (`studio/mini/world.py`): one
flat-colour object (colour x shape x size) on a white, black, gray or beige background, moving left, right,
up or down, or standing still, 16 frames at 256x256. It knows nothing else.

Layout: a complete `AnimateDiffPipeline` folder; `AnimateDiffPipeline.from_pretrained(this folder)` loads offline
(model_index.json, unet, motion_adapter, text_encoder, tokenizer, vae, scheduler{', motion_loras' if meta.get('cond') == 'motion-lora' else ''}). Weights are fp16 safetensors;
folder size {_size_mb(folder):.1f} MB.

Defaults: {d.get('width', 256)}x{d.get('height', 256)}, {d.get('num_frames', 16)} frames at {d.get('fps', 8)} fps,
{d.get('num_inference_steps', 25)} steps, guidance {d.get('guidance_scale', 5.0)}, {d.get('sampler', 'DPM++ 2M')}.
Image-to-video: `pipelines.animatediff_i2v.animate_image` (frame 0 held to the given image).
Video-to-video: `AnimateDiffVideoToVideoPipeline(**pipe.components)` with explicit height/width.

{_components(meta)}## Data

`studio/mini/video/world.py` renders seeded clips with captions such as "a red circle moving to the right on a white
background" or "a small blue star standing still, black background". A moving object travels in a straight line
{V.MIN_TRAVEL:.2f}-{V.MAX_TRAVEL:.2f} of the frame over the clip and stays inside it. Never rendered for training:
every clip of the image model's held-out pairs ({', '.join(f'{c} {s}' for c, s in sorted(W.HOLDOUT))}) and the colour-shape-motion
triples {', '.join(f'{c} {s} {m}' for c, s, m in sorted(V.HOLDOUT_MOTION))}.

## Training (reproduce from scratch)

```
{meta.get('command', 'python -m studio.mini.video.train --work /tmp/mini_video_work --out studio/mini/video/weights --seed 0')}
```
{_stages(meta)}
- seed {meta.get('seed')}; {meta.get('hardware', 'CPU only')}; {meta.get('steps_done')} steps of batch {meta.get('batch')}
  ({meta.get('clips_seen')} freshly rendered clips, latents in closed form, no VAE in the loop), {meta.get('seconds')} s;
  the cosine schedule's planned length is {meta.get('steps_planned')} steps or the time budget, whichever ends first.
- v-prediction on the base schedule, MSE; {int(100 * meta.get('t_high_frac', 0))}% of timesteps drawn from [600, 1000) (the
  direction is decided at high noise); {int(100 * meta.get('caption_dropout', 0))}% caption dropout; AdamW, lr {meta.get('lr')}
  (adapter) / {_lrs(meta)}.
- `--resume` continues from `--work`/state.pt (clip seeds, captions and noise are functions of seed and step).

First-step direction probe during training (`train.first_step_direction`: the t=999 estimate of the clean clip,
centre of mass of its coverage channel per frame, held-out captions; 20% is chance):

| step | seconds | loss | direction | per motion |
|---|---|---|---|---|
{probe_rows}

## Evaluation

`python -m studio.mini.video.evaluate` renders held-out prompts ({n}; every one holds a held-out
combination) at the defaults and scores them with the analytic video judge (`studio/mini/video/judge.py`:
per-frame object by the image judge, trajectory, identity, background flicker;
{_fig(ev, 'judge_on_ground_truth', 'all_correct')} all-correct on rendered ground truth).

{chr(10).join(table)}

Per-motion direction (text-to-video): {', '.join(f'{m} {v}%' for m, v in per.items()) or 'not measured'}.
Mean distance travelled by moving clips: {g(t2v, 'mean_distance_moving_px')} px (text-to-video), {g(i2v, 'mean_distance_moving_px')} px (image-to-video).

## Limits

- Only the mini world's vocabulary means anything; one object per clip; 256x256, 16 frames.
- Trained on CPU only for a short budget (see Training); the figures above are what that budget bought.
{chr(10).join('- ' + n for n in ev.get('notes', []))}
"""
    (folder / "README.md").write_text(text)


if __name__ == "__main__":
    import sys

    write_card(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent / "weights")
