"""Quick probe of a mini export while it trains: the first-step layout probe (n=216) and, with N > 0, the
judge on N single-object and N/2 two-object held-out prompts (30 steps, guidance 5, one torch thread).

    python bench/mini_export_probe.py /tmp/mini_v3_out [N]

The per-export table in docs/mini-v3-plan.md came from this (N=18 or 30); `studio.mini.evaluate` gives the
card's figures."""
import json
import sys

import torch

from diffusers.utils import logging as dlog
from studio.mini import evaluate as E
from studio.mini import load_pipeline

torch.set_num_threads(1)
dlog.set_verbosity_error()
pipe = load_pipeline(sys.argv[1])
pipe.set_progress_bar_config(disable=True)
print("first-step", json.dumps(E._first_step_layout(pipe)), flush=True)
print("first-step binding", json.dumps(E._first_step_binding(pipe)), flush=True)
n = int(sys.argv[2]) if len(sys.argv) > 2 else 0
if n:
    print(json.dumps(E._accuracy(pipe, E.heldout_prompts(n, n // 2), 5.0, 30, 9)), flush=True)
