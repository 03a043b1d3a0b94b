"""Model card writer for the mini weights, filled from ``training.json`` and ``eval_results.json``."""

from __future__ import annotations

import json
from pathlib import Path


def _size_mb(out: Path) -> float:
    return sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 1e6


def _vae_runs(meta: dict) -> str:
    runs = meta.get("vae_history") or []
    if not runs:
        return "batch 2, whole 256 px images"
    parts = [f"{r['steps']} steps at batch {r['batch']} on "
             + (f"{r['crop']} px object-centred crops with the mid attention frozen" if r.get("crop") else "whole 256 px images")
             + f", lr {r['lr']}" for r in runs]
    return "runs: " + "; ".join(parts)


def _unet_loss_extras(meta: dict) -> str:
    f = meta.get("t_high_frac")
    text = f" {round(100 * f)}% of each batch's timesteps drawn from the noisier half [500, 1000) (last run)," if f else ""
    if meta.get("offset_noise"):
        text += f" offset noise {meta['offset_noise']} (a per-image, per-channel constant added to the noise; last run),"
    return text


def _zero_snr(meta: dict) -> bool:
    return bool(meta.get("zero_terminal_snr"))


def _scheduler_row(meta: dict) -> str:
    pred = "v-prediction" if meta.get("prediction_type") == "v_prediction" else "epsilon prediction"
    betas = ("scaled_linear betas 0.00085-0.012 rescaled to zero terminal SNR (`rescale_betas_zero_snr`: t=999 is pure noise)"
             if _zero_snr(meta) else "scaled_linear betas 0.00085-0.012")
    return (f"| scheduler | DPMSolverMultistepScheduler (DPM++ 2M, trailing timestep spacing), {betas}, 1000 train steps,"
            f" {pred}; the studio's catalog offers every sampler except the Karras-spaced ones and Heun, which"
            " cannot start from infinite noise (DPM2, LMS and PNDM get the rescaled betas from `schedulers.zero_snr_betas`) |")


def _leak_lines(ev: dict | None, meta: dict) -> list[str]:
    lp = (ev or {}).get("terminal_leak_probe")
    if not lp:
        return []
    a, b = lp["pure_noise"], lp["with_leak"]
    if _zero_snr(meta):
        return [
            f"- Zero terminal SNR: the noisiest training input holds no image signal (alphas_cumprod[999] = {lp['alphas_cumprod_last']}),",
            f"  so the layout can only come from the caption. `evaluate --leak-probe {lp['n']}`: background {a['background']}%,"
            f" position {a['position']}% from pure noise ({b['background']}% / {b['position']}% with the (nil) leak added).",
        ]
    return [
        "- Captioned backgrounds and positions are often not followed. The scaled_linear schedule leaves signal at the",
        f"  last training step (alphas_cumprod[999] = {lp['alphas_cumprod_last']}); starting sampling from pure noise plus that",
        f"  leftover of the ground truth (`evaluate --leak-probe {lp['n']}`) moves background accuracy from {a['background']}% to"
        f" {b['background']}% and position from {a['position']}% to {b['position']}%: the UNet reads the layout from the leak",
        "  more than from the caption. The fix is a retrain with zero-terminal-SNR betas and v-prediction",
        "  (Lin et al. 2024; diffusers `rescale_betas_zero_snr=True`).",
    ]


def _position_lines(ev: dict | None) -> list[str]:
    fs = (ev or {}).get("first_step_layout")
    if not fs or fs["position_correct"] >= 50:
        return []
    return [
        "- Position words are barely followed. `evaluate` reads the model's first estimate of the clean image (t=999, from",
        f"  pure noise) for each of the nine positions: the predicted object lies in the captioned ninth {fs['position_correct']}% of the",
        f"  time (n={fs['n']}; 11% is chance), and changing only the position words moves the text encoder's output",
        f"  {fs['text_shift_position_over_colour']}x as much as changing only the colour word. The UNet places objects from a spatial prior",
        "  of its own and the text encoder has learnt to discard the words the UNet does not use; the CPU budgets so far",
        "  have not broken out of that.",
    ]


def _text_encoder_row(meta: dict) -> str:
    if not meta.get("frozen_text_encoder"):
        return "| text_encoder | CLIPTextModel trained from scratch with the UNet: hidden 128, 3 layers, 4 heads, 32 positions |"
    tm = meta.get("text_encoder_metrics") or {}
    row = ("| text_encoder | CLIPTextModel (hidden 128, 3 layers, 4 heads, 32 positions) trained **first and alone**"
           " (`--stage text`, `studio/mini/text_encoder.py`), then **frozen** while the UNet trained, as Stable Diffusion's"
           " UNet is trained on a frozen CLIP. ")
    if tm.get("targets") == "per-object":
        row += ("Linear heads on its token states are trained to predict: on the tokens of each object's phrase, that"
                " object's colour, shape, size and position alone (heads shared by both objects); on the end-of-text and"
                " padding states, every object's attributes, the background and the count. So each object has tokens that"
                " speak for it alone, which the UNet's cross-attention can bind to one place")
    else:
        row += ("Linear heads on every token state predict each mentioned object's colour, shape, size and position, the"
                " background and the object count, so every state from an object's phrase on carries all of it")
    if tm.get("position_ratio") is not None:
        row += (f". `text_encoder.position_separation` (position vs colour shift) {tm['position_ratio']};"
                f" `text_encoder.binding_separation` (second object's tokens: shift when the first object's colour"
                f" changes over when its own does; 1 = entangled) {tm.get('binding_ratio')}")
    return row + " |"


def _unet_origin(meta: dict) -> str:
    if not meta.get("init_unet"):
        return "UNet + text encoder"
    return ("UNet (fine-tuned from the previous release's UNet, `--init-unet`, on the frozen text encoder from the first step"
            " of the run, v-prediction on zero-terminal-SNR betas throughout)")


def _judged_rows(ev: dict) -> list[str]:
    """Issue 14's targets next to what evaluate measured, plus the per-phrase and binding-error breakdowns."""
    from .evaluate import TARGETS

    h, s = ev["heldout"], ev["heldout"]["single"]
    rows = [f"| first-step layout probe (t=999 estimate, n={ev['first_step_layout']['n']}, 11% is chance) |"
            f" {ev['first_step_layout']['position_correct']}% | >= 95% |"] if "first_step_layout" in ev else []
    if "first_step_binding" in ev:
        b = ev["first_step_binding"]
        rows.append(f"| first-step binding probe (two objects: each colour at its own place, n={b['n']}, ~25% for a mix) |"
                    f" {b['bound']}% | (diagnostic) |")
    for k in ("position", "color", "shape", "size", "background"):
        rows.append(f"| single-object {k} (n={h['n_single']}) | {s[k]}% | >= {TARGETS[k]}% |")
    rows.append(f"| two objects, both fully right (n={h['n_two']}) | {h['two_both_right']}% | >= {TARGETS['two_both_right']}% |")
    tail = []
    if h.get("single_position_by_phrase"):
        tail += ["", "Single-object position by phrase (held-out prompts): "
                 + "; ".join(f"{p} {d['right']}% (n={d['n']})" for p, d in h["single_position_by_phrase"].items()) + "."]
    if h.get("two_object_errors"):
        tail += ["", "Two-object samples by outcome (`evaluate.two_object_error`): "
                 + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in h["two_object_errors"].items()) + "."]
    return rows, tail


def _binding_lines(ev: dict | None) -> list[str]:
    h = (ev or {}).get("heldout") or {}
    errs = h.get("two_object_errors")
    if not errs or (h.get("two_both_right") or 0) >= 50:
        return []
    n = sum(errs.values())
    return [
        f"- Two-object prompts are not followed well (both fully right {h['two_both_right']}%, n={n}): both shapes drawn"
        f" but in one colour (colour leaked) in {errs.get('colour_leaked', 0)}, one object missing in {errs.get('one_missing', 0)},",
        f"  attributes bound to the wrong object in {errs.get('attribute_wrong', 0)}, colours swapped in {errs.get('colours_swapped', 0)},"
        f" extra or merged objects in {errs.get('extra_object', 0) + errs.get('merged', 0)}. img2img and inpainting of",
        "  two-object scenes suffer the same way. What was measured about why is in docs/mini-v3-plan.md.",
    ]


def write_card(out: Path, meta: dict) -> None:
    out = Path(out)
    ev_path = out / "eval_results.json"
    ev = json.loads(ev_path.read_text()) if ev_path.exists() else None
    status = "final" if meta.get("final") else "PARTIAL (training was still running when this export was written)"
    lines = [
        "# mini: the studio's tiny offline text-to-image model",
        "",
        "A very small Stable-Diffusion-style model trained from scratch by this repository on a procedural",
        "world of flat-colour shapes (`studio/mini/world.py`). It knows nothing else: it draws one or two",
        "objects (colour x shape x size x position) on a white, black, gray or beige background at 256x256.",
        "",
        "Load it offline: `StableDiffusionPipeline.from_pretrained(path)` (no safety checker, no feature",
        "extractor, `requires_safety_checker=False`). Do not pass `clip_skip` (diffusers 0.42 + transformers 5",
        "bug: the flattened CLIPTextModel has no `.text_model`). Use 256x256, 30 steps, guidance "
        f"{meta.get('guidance_scale', 5.0)}.",
        "",
        f"Export status: **{status}**.",
        "",
        "## Components",
        "",
        "| part | what |",
        "|---|---|",
        "| vae | AutoencoderKL, 8x downsampling (256 px -> 32x32x4 latents), channels 16/32/64/128, 1 layer per block, GroupNorm 2 groups, mid attention. "
        "Its latent is defined in closed form (`studio/mini/latent.py`): per 8x8 cell, the mean RGB colour (3 channels) and the object coverage (1 channel), "
        f"all in [-1, 1]; scaling_factor = 1/std(latents) = {meta.get('scaling_factor', 0):.4f} |",
        "| unet | UNet2DConditionModel on 32x32 latents, channels 32/64/128, GroupNorm 8 groups, convolution only at 32x32, cross-attention at 16x16 and 8x8 (head dim 32), 1 layer per block, cross_attention_dim 128 |",
        _text_encoder_row(meta),
        "| tokenizer | CLIPTokenizer built offline from vocab + merges (`studio/mini/tokenizer.py`): every world word is one token; unknown text falls back to byte-level pieces |",
        _scheduler_row(meta),
        "",
        f"Weights are fp16 safetensors; folder size {_size_mb(out):.1f} MB.",
        "",
        "## Data",
        "",
        "`studio/mini/world.py` renders seeded scenes with captions such as \"a large red circle at the top left on a",
        "white background\" or \"a blue star on the right and a small yellow square in the lower left, black background\".",
        "Object colour is never the background colour; two objects have different colours and never overlap.",
        f"Held-out colour-shape pairs, never rendered for training: {', '.join(' '.join(h) for h in meta.get('holdout', []))}.",
        "",
        "## Training (reproduce from scratch)",
        "",
        "```",
        *(meta.get("commands") or [meta.get("command", "python -m studio.mini.train --out studio/mini/weights --seed 0")]),
        "```",
        "",
        "These are the stage commands that produced the shipped weights, in order (the first two ran side by side,",
        "later ones resume with `--resume`). `python -m studio.mini.train --out studio/mini/weights --seed 0` runs",
        "all stages in one process with the default budgets. Commands without `--prediction` ran before that flag existed",
        "and trained epsilon prediction on the plain schedule: re-run them with `--prediction epsilon --no-zero-snr`.",
        "`--stage unpack` turns a shipped model folder back into a `--work` folder, so a run can continue from the",
        "committed weights on a machine that never held the earlier work folders.",
        "",
        f"- seed {meta.get('seed')}; no GPU: {meta.get('hardware')} (2 cores shared with other jobs)",
        f"- VAE: initialised so that the encoder already computes the closed-form latent and the decoder already paints it back as"
        " 8x8 blocks (`latent.init_vae_identity`: two constant channels +K/-K carry absolute colour through GroupNorm), then trained"
        f" for {meta.get('vae_steps')} steps ({meta.get('vae_scenes_seen')} freshly rendered training scenes, {meta.get('vae_seconds')} s; {_vae_runs(meta)}):"
        " the decoder on L1 + MSE with object pixels x5, from target latents with Gaussian noise of std up to 0.08 (sampler error);"
        " the encoder on MSE to the target latent every few steps (`--enc-every`). AdamW cosine per run (learning rates above);"
        " the layers that carry the identity stream learn at 1%.",
        f"- {_unet_origin(meta)}: {meta.get('unet_steps_done')} steps, batch {meta.get('batch_size')} ({meta.get('unet_scenes_seen')} freshly rendered training scenes;"
        " latents computed in closed form, no VAE in the loop), AdamW lr"
        f" {meta.get('lr')} cosine over the time budget (last run), loss weights"
        f" {'min-SNR-' + str(meta['min_snr_gamma']) if meta.get('min_snr_gamma') else 'plain MSE'} on the"
        f" {'v' if meta.get('prediction_type') == 'v_prediction' else 'epsilon'} target"
        f"{', zero-terminal-SNR betas' if _zero_snr(meta) else ''} (last run),"
        f"{_unet_loss_extras(meta)} 10% caption dropout, EMA {meta.get('ema_decay')}; {meta.get('unet_seconds')} s in {meta.get('unet_runs', 1)} run(s)."
        " The VAE and UNet stages ran at the same time in two processes (`--stage vae`, `--stage unet --threads-after-vae 2`),"
        " then resumed with `--resume` and changed settings (commands above).",
        "- Wall-clock times depend on the shared machine; the run is deterministic per seed only up to CPU threading.",
        "",
        "## Evaluation",
        "",
        "`python -m studio.mini.evaluate` samples fixed held-out prompts (each contains a held-out colour-shape",
        "pair) and scores them with the analytic judge (`studio/mini/judge.py`, 100% on rendered ground truth).",
        "",
    ]
    if ev:
        judged, breakdown = _judged_rows(ev)
        lines += [
            f"Measured ({ev['steps']} steps, guidance {ev['guidance_scale']}):",
            "",
            "| metric | measured | target |",
            "|---|---|---|",
            *judged,
        ]
        if "in_distribution" in ev:
            d = ev["in_distribution"]
            lines.append(f"| (reference) unseen scenes of trained pairs: single all-correct / two both right | {d['single']['all']}% / {d['two_both_right']}% | - |")
        if "vae_ceiling" in ev:
            vc = ev["vae_ceiling"]
            lines.append(f"| (ceiling) judge all-correct on VAE reconstructions of ground truth (n={vc['n']}) | {vc['judge_all_correct_on_reconstructions']}% (PSNR {vc['psnr_median_db']} dB) | - |")
        if "decoder_ceiling" in ev:
            dc = ev["decoder_ceiling"]
            lines.append(f"| (ceiling) judge all-correct on the decoder's rendering of closed-form latents of ground truth (n={dc['n']}) | {dc['judge_all_correct']}% | - |")
        if "img2img_strength_0.3" in ev:
            i2i = ev["img2img_strength_0.3"]
            lines.append(f"| img2img strength 0.3, position kept / all attributes kept (n={i2i['n']}) | {i2i['position_kept']}% / {i2i['all_attributes_kept']}% | layout kept |")
        if "inpaint" in ev:
            ip = ev["inpaint"]
            lines.append(f"| inpaint: PSNR of unmasked region, raw pipeline output (median / min, n={ip['n']}) | {ip['psnr_unmasked_raw_db']} / {ip['psnr_unmasked_raw_min_db']} dB | >= 35 dB |")
            lines.append(f"| inpaint: same after `image_processor.apply_overlay` | {ip['psnr_unmasked_with_overlay_db']} dB | >= 35 dB |")
            lines.append(f"| inpaint: new colour present in output | {ip['new_colour_present']}% | - |")
        if "speed" in ev:
            sp = ev["speed"]
            lines.append(f"| one 256x256 image, {sp['steps']} steps, {sp['threads']} threads, after warm-up | {sp['seconds_per_image_median']} s | <= 1.2 s (benchmark) |")
        lines += [*breakdown]
        lines += ["", "The raw inpaint PSNR is bounded by the VAE's reconstruction of the unmasked pixels; pasting the",
                  "original pixels back outside the mask (`apply_overlay`) makes the unmasked region exact."]
    else:
        lines.append("(not evaluated yet)")
    lines += [
        "",
        "## Limits",
        "",
        "- Only the procedural world's vocabulary means anything; other words are tokenized (byte fallback) but ignored.",
        "- 256x256 only (other sizes work mechanically but were never trained).",
        f"- Trained on CPU only (2 cores, no GPU lent in those sessions): {round((meta.get('vae_seconds') or 0) / 60)} minutes for the VAE and"
        f" {round((meta.get('unet_seconds') or 0) / 60)} for the UNet, run side by side.",
        *_leak_lines(ev, meta),
        *_position_lines(ev),
        *_binding_lines(ev),
        "- History: v0 (previous session) learned a 16x VAE end to end and lost colour (judge 0% on its own reconstructions);",
        "  v1 replaced it with the closed-form latent above, which makes colour exact by construction. v1.1 (third",
        "  session) resumed both: the decoder on object-centred crops (small stars and triangles were its shape errors),",
        "  the UNet with a quarter of each batch at high noise, where the layout is decided, then briefly with offset",
        "  noise against the background leak (shape 90% -> 97.5%, size 90% -> 100%, background 37.5% -> 45%).",
        *(["  v2 (fifth session) continued the v1.1 UNet and text encoder (`--stage unpack`, then `--stage unet --resume`) with",
           "  v-prediction on betas rescaled to zero terminal SNR: the noisiest training input is pure noise, so the background",
           "  can only come from the caption (background 45% (n=40) -> 100% (n=60); inpainting's new colour 50% -> 83%).",
           "  The run was stopped at its step-11200 checkpoint, 79 of its 100 budgeted minutes, to leave session time for evaluation."]
          if _zero_snr(meta) else []),
        *(["  v3 (2026-12-01) trained a new text encoder alone first (`--stage text`, 1500 steps: every attribute of both",
           "  objects right at end-of-text on held-out captions, position/colour state-shift ratio 0.07 -> 1.05), froze it, and",
           "  fine-tuned v2's UNet (303 CPU minutes of training) on it for 92 minutes (1,819 steps, `--init-unet`); the VAE",
           "  is v2's, unchanged. Why: v2's jointly trained encoder had",
           "  learnt to drop the position words (first-step layout 11.1%, chance), see docs/mini-v3-plan.md.",
           *(["  v4 (2026-12-01, later) retrained the text stage with per-object targets (each object's phrase answers for that",
              "  object alone; binding ratio 0.99 -> 0.16) because v3 drew the second object in the first one's colour",
              "  (two objects both right 0%), and fine-tuned v3's UNet on it for the UNet minutes above; the VAE is still v2's."]
            if (meta.get("text_encoder_metrics") or {}).get("targets") == "per-object" else [])]
          if meta.get("frozen_text_encoder") else []),
        "",
        "## Training metadata",
        "",
        "```json",
        json.dumps(meta, indent=2),
        "```",
        "",
    ]
    (out / "README.md").write_text("\n".join(lines))
