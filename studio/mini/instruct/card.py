"""Model card (README.md) of the mini-instruct weights: training settings and the measured evaluation."""

from __future__ import annotations

import json
from pathlib import Path


def _commands(meta: dict) -> list[str]:
    # commands.txt lines start with their date and time ("2026-12-02 03:50 python -m ...")
    cmds = [c.split(" ", 2)[-1] if c[:2] == "20" else c for c in meta.get("commands", [])]
    return cmds or [meta.get("command", "")]


def write_card(out: Path, meta: dict) -> None:
    out = Path(out)
    ev_path = out / "eval_results.json"
    ev = json.loads(ev_path.read_text()) if ev_path.exists() else None
    lines = [
        "---", "library_name: diffusers", "pipeline_tag: image-to-image", "tags: [instruct-pix2pix, mini, offline]", "---",
        "# mini-instruct", "",
        "The studio's own instruction editor for the mini world (\"make the circle blue\", \"move the star to the top "
        "left\", \"remove the red square\"): a `StableDiffusionInstructPix2PixPipeline` whose UNet is the shipped "
        "`mini` UNet widened to 8 input channels (noisy latent + the source image's latent; the 4 added channels "
        "zero-initialised as in InstructPix2Pix), fine-tuned on edit triplets from the procedural world "
        "(`studio/mini/instruct/world.py`). VAE, text encoder (frozen), tokenizer and scheduler are `mini`'s files, "
        "unchanged. 256x256, CPU.", "",
        "Edit kinds: recolour, reshape, resize, move, change the background, add an object, remove an object. "
        "Held-out edit combinations (kind, edited object's shape or source background, new value) never appear in "
        "training; the evaluation uses only those.", "",
        "## Use", "", "```bash",
        'studio edit mini_output.png "make the circle blue" -o edited.png   # mini outputs and record-less images use mini-instruct',
        "```", "",
        "## Training", "",
        f"- started from: `studio/mini/weights/unet` (mini, {meta.get('base_steps')} steps), conv_in widened 4 -> 8",
        f"- steps: {meta.get('steps_done')} x batch {meta.get('batch_size')} = {meta.get('triplets_seen')} triplets, "
        f"{meta.get('seconds')} s ({meta.get('hardware')}; another 1-thread training shared the 2 cores)",
        f"- v-prediction, zero terminal SNR (mini's schedule), AdamW lr {meta.get('lr')} cosine, EMA {meta.get('ema_decay')}, "
        f"{meta.get('t_high_frac')} of each batch at t >= {meta.get('t_high_min', 500)} (the last run's)",
        f"- conditioning dropout: text {meta.get('drop_text')}, image {meta.get('drop_image')}, both {meta.get('drop_both')}; "
        f"source-latent noise {meta.get('cond_noise')}",
        f"- loss (v-MSE): first 50 steps {meta.get('loss_first_50')}, last 200 steps {meta.get('loss_last_200')}",
        f"- finished: {meta.get('final')}", "",
        "Reproduce (each command continues the previous one: `--resume` of its `--work` checkpoint, or `--init-unet` "
        "of the UNet it exported, here the first command's `--out`/unet, when that checkpoint was gone):", "", "```bash",
        *_commands(meta), "```", "",
    ]
    if ev:
        lines += ["## Evaluation (held-out edit combinations, analytic judge `studio/mini/judge.py`)", "",
                  f"Command: `{ev.get('command')}`", "",
                  f"Settings: {ev.get('steps')} steps, text guidance {ev.get('guidance_scale')}, image guidance "
                  f"{ev.get('image_guidance_scale')}, n = {ev.get('n')} ({ev.get('n_per_kind')} per kind)", "",
                  "| kind | n | asked change made | unasked attributes kept (all) | lowest single unasked attribute | placed where told |",
                  "|---|---|---|---|---|---|"]
        for k, r in ev["per_kind"].items():
            lines.append(f"| {k} | {r['n']} | {r['asked']}% | {r['kept_all']}% | {r['kept_min_attribute']} | "
                         f"{r.get('placed', '-') if r.get('placed') is not None else '-'}{'%' if r.get('placed') is not None else ''} |")
        o = ev["overall"]
        lines += [f"| **all** | {o['n']} | **{o['asked']}%** | **{o['kept_all']}%** | {o['kept_min_attribute']} | "
                  f"**{o['placed']}%** (move + add) |", ""]
        lines += ["Targets (issue 17): asked change >= 85%, every unasked attribute kept >= 95%, move/add placed >= 90%.", ""]
        for name, t in ev.get("targets", {}).items():
            lines.append(f"- {name}: {t['value']}% vs >= {t['target']}%: {'met' if t['met'] else 'MISSED by ' + str(round(t['target'] - t['value'], 1))}")
        if ev.get("sweep"):
            lines += ["", "Guidance sweep (same held-out set; n edits):", "", "| text guidance | image guidance | n | asked | kept (all) | placed |",
                      "|---|---|---|---|---|---|"]
            for s in ev["sweep"]:
                lines.append(f"| {s['guidance_scale']} | {s['image_guidance_scale']} | {s.get('n', '-')} | {s['asked']}% | {s['kept_all']}% | {s['placed']}% |")
        if ev.get("notes"):
            lines += ["", ev["notes"]]
        lines.append("")
    (out / "README.md").write_text("\n".join(lines))
