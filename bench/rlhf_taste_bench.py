"""Issue 18's offline RLHF measurement on the mini model: a simulated user with a hidden taste rates mini
outputs through the studio's own rating API; the learned reward, best-of-8 and a Diffusion-DPO LoRA are
measured with the analytic judge on held-out prompts, and a LoRA tuned towards a deliberately bad reward
(brightness) must be refused by the eval gate.

    OMP_NUM_THREADS=1 nice -n 10 python bench/rlhf_taste_bench.py [--rate-prompts 48] [--cands 4]
        [--test-prompts 16] [--steps 10] [--dpo-steps 60] [--json out.json]

The hidden taste: small objects. Prompts never state a size ("a red circle at the top left on a white
background"); the rater looks at each output (the analytic judge's size of the largest object, what a person
sees) and, in each group of `--cands` renders of one prompt, picks the one with the smallest object with
probability 0.8, otherwise one of the others at random (80% consistency). An output with no object at all is
never the taste's favourite (a person who likes small objects does not like empty pictures). Small, not
large: unstated sizes come out large most of the time (7 of 8 in a probe), so "large" would leave no room
to measure a gain.

Everything runs through the studio: renders are `studio.generate` (sealed), ratings `RatingStore.pick` on
the sealed outputs, the learned reward `rewards.train_learned`, the LoRAs `rewards.tune.tune` (which runs the
eval gate on the rated prompts it held out), best-of-8 `generate(best_of=8, reward="learned")`, the LoRA
renders `generate(loras=[...])`. Base = each best-of-8 group's first candidate (seed s, the same image as a
plain render of seed s). Measured on `--test-prompts` prompts neither rated nor gated. Fidelity: colour,
shape, position and background all as the prompt says (size is not stated, so not judged).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from pathlib import Path


def prompt_of(scene) -> str:
    from studio.mini import world as W

    o = scene.objects[0]
    return f"a {o.color} {o.shape} {W.POSITION_PHRASES[o.position][0]} on a {scene.background} background"


def prompts(n: int, offset: int) -> list[str]:
    from studio.mini import world as W

    return [prompt_of(W.sample_scene(offset + i, "train", n_objects=1)) for i in range(n)]


def small_area(image):
    """The taste's view of an image: the largest object's area (smaller is better), None if no object."""
    from studio.mini.judge import judge

    v = judge(image)
    return v.objects[0].area if v.objects else None


def is_small(image) -> bool:
    from studio.mini.judge import judge

    v = judge(image)
    return bool(v.objects) and v.objects[0].size == "small"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate-prompts", type=int, default=32)
    ap.add_argument("--cands", type=int, default=4, help="renders per rated prompt; one pick = cands-1 pairs")
    ap.add_argument("--test-prompts", type=int, default=12)
    ap.add_argument("--steps", type=int, default=10, help="sampling steps everywhere")
    ap.add_argument("--dpo-steps", type=int, default=40)
    ap.add_argument("--bad-dpo-steps", type=int, default=None, help="steps for the brightness LoRA (default: "
                    "--dpo-steps)")
    ap.add_argument("--dpo-batch", type=int, default=4)
    ap.add_argument("--beta", type=float, default=2000.0)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--consistency", type=float, default=0.8)
    ap.add_argument("--gate-seeds", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--home", default=None, help="studio home (default: a fresh temp folder); a rerun with the "
                    "same home resumes")
    ap.add_argument("--json", default=None, help="write the figures here")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    home = Path(args.home or tempfile.mkdtemp(prefix="rlhf-bench-"))
    home.mkdir(parents=True, exist_ok=True)
    os.environ["DIFFUSION_STUDIO_HOME"] = str(home)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from diffusers.utils import logging as dlog

    dlog.set_verbosity_error()
    import studio
    from studio import rewards
    from studio.rewards import tune as T
    from studio.rewards.gate import mini_fidelity, summary
    from studio.rewards.ratings import RatingStore

    engine = studio.Studio()
    engine.quiet = True
    rng = random.Random(args.seed)
    t_start = time.perf_counter()
    state = home / "figures.json"  # resumable: a rerun with the same --home skips the finished stages
    figures: dict = json.loads(state.read_text()) if state.is_file() else {}
    figures.update({"args": vars(args), "home": str(home), "threads": torch.get_num_threads()})

    def save():
        figures["seconds_this_run"] = round(time.perf_counter() - t_start)
        text = json.dumps(figures, indent=2, default=str)
        state.write_text(text)
        if args.json:
            Path(args.json).write_text(text)

    def say(*a):
        print(f"[{time.perf_counter() - t_start:7.0f}s]", *a, flush=True)

    # 1. ratings: each rated prompt rendered `cands` times (one sealed batch), one pick per prompt
    taste_store = RatingStore(home / "ratings-taste.db")
    bright_store = RatingStore(home / "ratings-brightness.db")
    brightness = rewards.get("brightness")
    outdir = home / "rated"
    rate_prompts = prompts(args.rate_prompts, 50_000)
    if "ratings" not in figures:
        t0 = time.perf_counter()
        for k, p in enumerate(rate_prompts):
            folder = outdir / f"{k:04d}"
            folder.mkdir(parents=True, exist_ok=True)  # rated files stay on disk: the tuner reads them back
            res = engine.generate(prompt=p, model="mini", steps=args.steps, seed=1000 * k, batch=args.cands,
                                  out=folder, overwrite=True)
            outs = res.outputs
            images = [o.image for o in outs]
            areas = [small_area(im) for im in images]
            for store, utility in ((taste_store, [(-a if a is not None else float("-inf")) for a in areas]),
                                   (bright_store, brightness.score(images, p).tolist())):
                best = max(range(len(outs)), key=lambda i: (utility[i], -i))
                if rng.random() >= args.consistency:  # the inconsistent 20%: one of the others
                    best = rng.choice([i for i in range(len(outs)) if i != best])
                store.pick(outs[best], [o for i, o in enumerate(outs) if i != best])
            if k % 8 == 7:
                say(f"rated {k + 1}/{len(rate_prompts)} prompts")
        figures["ratings"] = {"prompts": len(rate_prompts), "cands": args.cands,
                              "picks": len(taste_store.ratings()), "pairs": len(taste_store.pairs()),
                              "render_s": round(time.perf_counter() - t0)}
        save()
    say("ratings:", figures["ratings"])

    # 2. the learned reward from the taste ratings (it is `learned`, what best-of-8 and the gate use)
    _, rep = rewards.train_learned("image", store=taste_store)
    figures["learned_reward"] = {"pairs": rep.pairs, "heldout_accuracy": rep.heldout_accuracy,
                                 "heldout_pairs": rep.heldout_pairs, "seconds": rep.seconds}
    say("learned reward:", figures["learned_reward"])
    save()

    test = prompts(args.test_prompts, 90_000)

    def judged(image, p):
        return {"small": is_small(image), "fidelity": bool(mini_fidelity(image, p))}

    # 3. held-out test prompts: base and best-of-8 by the learned reward (base = candidate 0 = seed s)
    per = figures.setdefault("per_prompt", {})
    for k, p in enumerate(test):
        row = per.setdefault(str(k), {"prompt": p})
        if "best_of_8" in row:
            continue
        t0 = time.perf_counter()
        res = engine.generate(prompt=p, model="mini", steps=args.steps, seed=7000 + k, best_of=8, reward="learned")
        row["best_of_8_s"] = time.perf_counter() - t0
        row["base"] = judged(res.candidates[0].image, p)
        row["best_of_8"] = judged(res.best.image, p)
        save()
        if k % 4 == 3:
            say(f"best-of-8: {k + 1}/{len(test)} test prompts")

    # 4. the DPO LoRAs: the user's taste, and the deliberately bad brightness rater; each gated by tune()
    gate_opts = {"seeds": tuple(range(args.gate_seeds)), "steps": args.steps}
    cfg = dict(steps=args.dpo_steps, batch=args.dpo_batch, beta=args.beta, lr=args.lr, seed=args.seed,
               timesteps=(0.5, 1.0))
    for name, kind, store, gate_reward in (("taste", "dpo_lora", taste_store, "learned"),
                                           ("brightness", "bad_lora", bright_store, "brightness")):
        path = home / "loras" / f"{name}.safetensors"
        if f"lora_{name}" not in figures:
            t0 = time.perf_counter()
            last = [0.0]

            def progress(i, n, phase, name=name):
                if time.perf_counter() - last[0] > 60:
                    last[0] = time.perf_counter()
                    say(f"  {name} {phase}: {i}/{n}")

            # the bad LoRA is gated on the reward it was tuned towards (the reward-hacking case: that reward
            # improves, the independent check must catch it); the user's learned reward is reported alongside
            steps = args.dpo_steps if name == "taste" or args.bad_dpo_steps is None else args.bad_dpo_steps
            result = T.tune("mini", store=store, out=path, refresh_reward=False,
                            gate_options={**gate_opts, "reward": gate_reward,
                                          "also": ("learned",) if gate_reward != "learned" else ("brightness",)},
                            progress=progress, **{**cfg, "steps": steps})
            g = result.provenance["gate"]
            figures[f"lora_{name}"] = {"path": str(result.path), "training": result.provenance["training"],
                                       "train_pairs": result.provenance["ratings"]["train_pairs"],
                                       "gate": {k: v for k, v in g.items() if k != "provenance"},
                                       "seconds": round(time.perf_counter() - t0)}
            say(f"LoRA {name}:", json.dumps(result.provenance["training"]), "|", summary(g))
            save()
        # the LoRA on the test prompts, no guidance; measured whether or not the gate let it through (the
        # override is explicit)
        for k, p in enumerate(test):
            row = per[str(k)]
            if kind in row:
                continue
            t0 = time.perf_counter()
            out = engine.generate(prompt=p, model="mini", steps=args.steps, seed=7000 + k,
                                  loras=[studio.LoraRef(path=str(path), allow_failed_gate=True)])
            row[kind + "_s"] = time.perf_counter() - t0
            row[kind] = judged(out.outputs[0].image, p)
            save()
        say(f"LoRA {name} on {len(test)} test prompts done")

    def pct(rows, kind, key):
        v = [r[kind][key] for r in rows if kind in r]
        return (round(100.0 * sum(v) / len(v), 1) if v else None), len(v)

    rows = [per[str(k)] for k in range(len(test))]
    table = {}
    for kind in ("base", "best_of_8", "dpo_lora", "bad_lora"):
        (small, n), (fid, _) = pct(rows, kind, "small"), pct(rows, kind, "fidelity")
        table[kind] = {"taste_small": small, "fidelity": fid, "n": n}
    figures["table"] = table
    base = table["base"]

    def diff(kind, key):
        return None if table[kind][key] is None else round(table[kind][key] - base[key], 1)

    figures["targets"] = {
        "best_of_8_gain_pts (>= 40)": diff("best_of_8", "taste_small"),
        "dpo_lora_gain_pts (>= 30)": diff("dpo_lora", "taste_small"),
        "fidelity_change_best_of_8_pts (>= -2)": diff("best_of_8", "fidelity"),
        "fidelity_change_dpo_lora_pts (>= -2)": diff("dpo_lora", "fidelity"),
        "taste_lora_gate_passed": figures.get("lora_taste", {}).get("gate", {}).get("passed"),
        "bad_lora_rejected": not figures.get("lora_brightness", {}).get("gate", {}).get("passed", True),
    }
    save()
    print(f"\nmini, {args.steps} steps, {len(rate_prompts)} rated prompts x {args.cands} "
          f"({figures['ratings']['picks']} picks, {figures['ratings']['pairs']} pairs), {len(test)} held-out test "
          f"prompts, 1 thread")
    print(f"{'':<12} {'taste (small) %':>16} {'fidelity %':>11} {'n':>4}")
    for k, v in table.items():
        print(f"{k:<12} {str(v['taste_small']):>16} {str(v['fidelity']):>11} {v['n']:>4}")
    print(json.dumps(figures["targets"], indent=2))


if __name__ == "__main__":
    main()
