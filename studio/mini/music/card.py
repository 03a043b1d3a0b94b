"""The mini-music model card (README.md in the weights folder), from training.json and eval_results.json.

    python -m studio.mini.music.card [FOLDER]

eval_results.json is what ``python -m studio.mini.music.evaluate ... --edits N --speed --json`` wrote; the card
shows its figures against the issue's targets and never states a figure it does not have."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .model import weights_path


def _row(name: str, value, target, unit: str = "%", higher: bool = True) -> str:
    if not isinstance(value, (int, float)):
        return f"| {name} | not measured | {target if target is not None else '-'} | - |"
    if target is None:
        return f"| {name} | {value}{unit} | - | - |"
    ok = value >= target if higher else value <= target
    verdict = "met" if ok else f"**missed by {abs(round(value - target, 1))}**"
    return f"| {name} | {value}{unit} | {'>=' if higher else '<='} {target}{unit} | {verdict} |"


def card_text(meta_chain: list[dict], ev: dict) -> str:
    acc, edits, speed = ev.get("accuracy", {}), ev.get("edits", {}), ev.get("speed", {})
    ext, a2a, inp = edits.get("audio_extend", {}), edits.get("audio2audio", {}), edits.get("audio_inpaint", {})
    ext = ext if isinstance(ext, dict) else {}
    a2a = a2a if isinstance(a2a, dict) else {}
    inp = inp if isinstance(inp, dict) else {}
    targets = ev.get("targets", {})
    chance = ev.get("chance", {})
    rows = [_row(f"{k} (chance {chance.get(k, '-')}%)", acc.get(k), targets.get(k)) for k in
            ("instrument", "tempo", "register", "contour", "mode")]
    rows += [_row("continuation keeps tempo and register (new part judged alone)", ext.get("both"), 90.0),
             _row("inpainting: audio outside the span, SNR vs the input (lowest clip)",
                  inp.get("snr_outside_db_min"), 30.0, " dB"),
             _row(f"audio-to-audio at {a2a.get('strength', 0.3)} keeps tempo and register", a2a.get("both"), 90.0),
             _row(f"speed: one {speed.get('clip_s', '?')} s clip, {speed.get('steps', '?')} steps, "
                  f"{speed.get('torch_threads', '?')} torch thread(s), after warm-up", speed.get("median_s"), 10.0,
                  " s", higher=False)]
    commands = "\n".join(m.get("command", "") for m in meta_chain)
    last = meta_chain[-1] if meta_chain else {}
    steps = " + ".join(str(m.get("step")) for m in meta_chain)
    secs = sum(float(m.get("train_seconds", 0)) for m in meta_chain)
    mode = ev.get("mode_by_caption", {})
    mode_line = ", ".join(f"{k}: {v['right']}/{v['n']} read right" for k, v in sorted(mode.items()))
    return f"""---
library_name: diffusers
pipeline_tag: text-to-audio
tags: [stable-audio, mini, offline]
---
# mini-music

The studio's own offline music model for the mini music world (`studio/mini/music/world.py`: sine, square,
sawtooth or plucked melodies; slow, medium or fast; low or high register; rising or falling; major or minor),
in the stock `StableAudioPipeline` layout: a {last.get('dit_params', 0) / 1e6:.2f} M-parameter `StableAudioDiTModel`,
the closed-form MDCT latent inside a stock `AutoencoderOobleck` (`codec.py`), a hand-made T5 (`text.py`),
16 kHz mono, an {ev.get('seconds', last.get('hparams', {}).get('duration', '?'))} s window. CPU.

**It is weak, and this card says by how much**: it is shipped so that every music front door (the demo, the CLI,
batch files, the Music tab) works offline with a model that was trained, not random weights; for music that
follows its caption use a real checkpoint (MusicGen, Stable Audio Open). Its clips are long enough (8 s) to carry
the audio watermark, which needs about 4.2 s at 16 kHz.

## Use

```bash
studio generate "a fast square melody rising in a high register, major" --model mini-music --duration 8 -o tune.wav
studio generate "a fast square melody rising in a high register, major" --model mini-music --init-audio tune.wav \\
    --duration 4 --extend 4 -o longer.wav                                  # continue its first 4 s by 4 s
studio generate "a fast square melody" --model mini-music --init-audio tune.wav --span 3:5 -o fixed.wav  # inpaint
studio generate "a slow sine melody" --model mini-music --init-audio tune.wav --strength 0.3 -o vary.wav
```

## Training

Reproduce (the second command starts from the first one's EMA weights at the longer window):

```bash
{commands}
```

Steps {steps} (batch {last.get('batch')}), {secs / 60:.0f} min of training on one CPU thread of a shared 2-core
machine; EDM-preconditioned v-prediction, sigma 0.02-80, each clip's latent scaled to unit rms (`--level`).

## Evaluation (held-out caption combinations, analytic judge `studio/mini/music/judge.py`)

Command: `python -m studio.mini.music.evaluate --path studio/mini/music/weights -n {ev.get('n')} --steps
{ev.get('steps')} --guidance {ev.get('guidance')} --edits {edits.get('n')} --speed --json eval_results.json`

| figure | measured | target | |
|---|---|---|---|
""" + "\n".join(rows) + f"""

Mode by caption: {mode_line or 'not measured'}.
"""


def write_card(folder: Path, chain: list[Path] | None = None) -> Path:
    folder = Path(folder)
    meta = json.loads((folder / "training.json").read_text())
    # the earlier stages of a curriculum sit beside training.json as training_stage*.json (train.init_checkpoint)
    chain = chain if chain else sorted(folder.glob("training_stage*.json"))
    metas = [json.loads(Path(p).read_text()) for p in chain] + [meta]
    ev = json.loads((folder / "eval_results.json").read_text()) if (folder / "eval_results.json").exists() else {}
    out = folder / "README.md"
    out.write_text(card_text(metas, ev))
    return out


if __name__ == "__main__":
    print(write_card(Path(sys.argv[1]) if len(sys.argv) > 1 else weights_path(),
                     [Path(p) for p in sys.argv[2:]]))
