"""The model card of mini-control (``weights/README.md``), written from ``weights/training.json``."""
from __future__ import annotations

import json
from pathlib import Path


def write_card(folder: Path) -> None:
    folder = Path(folder)
    meta = json.loads((folder / "training.json").read_text())
    ev = meta.get("eval") or {}
    lines = ["# mini-control", "",
             "The studio's own ControlNet for the `mini` model (sd1 family, 256 px): steers where mini's objects go "
             "from an edge map (`canny`) or a flat layout map (`layout`: object silhouettes filled black on white, "
             "what the Edit tab's sketch pad draws; a sketch can go in with preprocessor `none`).", "",
             "## Training", "",
             f"- steps {meta.get('steps')}, batch {meta.get('batch_size')}, {meta.get('seconds')} s "
             f"({meta.get('hardware')}), {'finished' if meta.get('final') else 'checkpoint of a run in progress'}",
             f"- ControlNetModel.from_unet(mini UNet), conditioning channels "
             f"{meta.get('conditioning_embedding_out_channels')}; UNet, text encoder and latents frozen",
             f"- {meta.get('prediction_type')}, zero terminal SNR {meta.get('zero_terminal_snr')}, lr "
             f"{meta.get('lr')}, EMA {meta.get('ema_decay')}, layout share {meta.get('layout_share')}, caption "
             f"dropout {meta.get('caption_dropout')}",
             f"- loss per 100 steps: {meta.get('loss_by_100_steps')}", "",
             "Reproduce (from the repository root; each command continues the previous one's export through "
             "`--init-controlnet`, or its `--work` state through `--resume`):", "", "```",
             *[f"nice -n 10 {c}" for c in meta.get("commands", [meta.get("command")])], "```", ""]
    if ev:
        lines += ["## Evaluation", "", f"`{ev.get('command')}`", "", "| measure | value | target | met |",
                  "|---|---|---|---|"]
        for row in ev.get("rows", []):
            lines.append(f"| {row['name']} | {row['value']} | {row['target']} | {'yes' if row['met'] else 'no'} |")
        lines += ["", ev.get("note", "")]
    (folder / "README.md").write_text("\n".join(lines).rstrip() + "\n")
