"""Issue 18's offline RLHF measurement on the mini model: a simulated user with a hidden taste rates mini
outputs through the studio's own rating API; the learned reward, best-of-8 and a Diffusion-DPO LoRA are
measured with the analytic judge on held-out prompts, and a LoRA tuned towards a deliberately bad reward
(brightness) must be refused by the eval gate. Reward gradient guidance by the learned reward
(`reward_guidance`) is measured on the same prompts and seeds as base, each guided render timed against
the unguided render of its prompt (issue 18: >= half of best-of-8's gain at <= 3x base time).

    OMP_NUM_THREADS=1 nice -n 10 python bench/rlhf_taste_bench.py [--rate-prompts 48] [--cands 4]
        [--test-prompts 16] [--steps 10] [--dpo-steps 60] [--guidance-strengths 0.05,0.1]
        [--arms base,best_of,guidance,dpo,bad] [--json out.json]

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
renders `generate(loras=[...])`, the guided ones `generate(reward_guidance={"reward": "learned", ...})`.
Base = a plain render of seed s (the same image as each best-of-8 group's first candidate, which is kept as
`best_of_8_c0` to check it), timed after a warm-up; guided renders follow their prompt's base render so both
see the same machine load. Measured on `--test-prompts` prompts neither rated nor gated. Fidelity: colour,
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


ARMS = ("base", "best_of", "guidance", "dpo", "bad")


def parse_list(text: str, what: str, cast, allowed=None) -> list:
    """A comma-separated flag: SystemExit with one line naming the bad item."""
    out = []
    for item in (x.strip() for x in text.split(",")):
        try:
            v = cast(item)
        except ValueError:
            raise SystemExit(f"{what}: {item!r} is not a {cast.__name__}") from None
        if allowed is not None and v not in allowed:
            raise SystemExit(f"{what}: unknown {item!r} (choose from {', '.join(allowed)})")
        out.append(v)
    if not out or any(x == "" for x in out):
        raise SystemExit(f"{what}: empty list")
    return out


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
    ap.add_argument("--arms", default=",".join(ARMS), help="test-prompt arms to run (ratings and the learned "
                    "reward always run): " + ",".join(ARMS))
    ap.add_argument("--guidance-strengths", default="0.05,0.1", help="reward_guidance strengths by the learned "
                    "reward, one arm each")
    ap.add_argument("--guidance-max-step", type=float, default=0.1, help="reward_guidance max_step (the per-step "
                    "cap; a strength above it acts as the cap)")
    ap.add_argument("--guidance-end", type=float, default=0.8, help="reward_guidance window end")
    ap.add_argument("--home", default=None, help="studio home (default: a fresh temp folder); a rerun with the "
                    "same home resumes")
    ap.add_argument("--json", default=None, help="write the figures here")
    args = ap.parse_args()
    arms = set(parse_list(args.arms, "--arms", str, ARMS))
    strengths = parse_list(args.guidance_strengths, "--guidance-strengths", float)
    if any(not 0 < x <= 100 for x in strengths):
        raise SystemExit("--guidance-strengths: each must be in (0, 100]")

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

    learned = rewards.get("learned", "image")

    def misses(image, p):
        """Which stated attributes the judge got wrong ("object" when it found none): why fidelity fell."""
        from studio.mini.judge import judge
        from studio.rewards.gate import mini_expected

        want, v = mini_expected(p) or {}, judge(image)
        if not v.objects:
            return ["object"]
        got = v.objects[0].attrs()
        return ([k for k in ("color", "shape", "position") if k in want and got.get(k) != want[k]]
                + (["background"] if want and v.background != want["background"] else []))

    def judged(image, p):
        # area and the learned score say why an arm moved (or not): the taste's size vs what the reward saw
        return {"small": is_small(image), "fidelity": bool(mini_fidelity(image, p)), "area": small_area(image),
                "learned": float(learned.score([image], p)[0]), "misses": misses(image, p)}

    per = figures.setdefault("per_prompt", {})
    guided_kinds = {f"guided_{s:g}": s for s in strengths}

    def plain(p, k, **extra):
        t0 = time.perf_counter()
        out = engine.generate(**{"prompt": p, "model": "mini", "steps": args.steps, "seed": 7000 + k, **extra})
        return out.outputs[0].image, time.perf_counter() - t0

    def guidance(s):
        return {"reward": "learned", "strength": s, "max_step": args.guidance_max_step, "end": args.guidance_end}

    # 3. held-out test prompts: base (plain seed s, timed) and the guided arms right after it, same seed
    if arms & {"base", "guidance"}:
        # warm-up, untimed: the model's first call and the learned reward's first gradient are not sampling time
        plain(test[0], 0, steps=2)
        if "guidance" in arms:
            plain(test[0], 0, steps=2, reward_guidance=guidance(strengths[0]))
        for k, p in enumerate(test):
            row = per.setdefault(str(k), {"prompt": p})
            todo = [g for g, s in guided_kinds.items() if g not in row] if "guidance" in arms else []
            if "base" in row and not todo:
                continue
            image, row["base_s"] = plain(p, k)  # re-timed with the guided arms, so their ratio is same-load
            row["base"] = judged(image, p)
            for g in todo:
                image, row[g + "_s"] = plain(p, k, reward_guidance=guidance(guided_kinds[g]))
                row[g] = judged(image, p)
                row[g + "_x_base"] = row[g + "_s"] / row["base_s"]
            save()
            if k % 4 == 3:
                say(f"base{' + guided' if todo else ''}: {k + 1}/{len(test)} test prompts")

    # 4. best-of-8 by the learned reward (its candidate 0 is seed s: the base image again)
    for k, p in enumerate(test) if "best_of" in arms else ():
        row = per.setdefault(str(k), {"prompt": p})
        if "best_of_8" in row:
            continue
        t0 = time.perf_counter()
        res = engine.generate(prompt=p, model="mini", steps=args.steps, seed=7000 + k, best_of=8, reward="learned")
        row["best_of_8_s"] = time.perf_counter() - t0
        row["best_of_8_c0"] = judged(res.candidates[0].image, p)
        row.setdefault("base", row["best_of_8_c0"])
        row["best_of_8"] = judged(res.best.image, p)
        save()
        if k % 4 == 3:
            say(f"best-of-8: {k + 1}/{len(test)} test prompts")

    # 5. the DPO LoRAs: the user's taste, and the deliberately bad brightness rater; each gated by tune()
    gate_opts = {"seeds": tuple(range(args.gate_seeds)), "steps": args.steps}
    cfg = dict(steps=args.dpo_steps, batch=args.dpo_batch, beta=args.beta, lr=args.lr, seed=args.seed,
               timesteps=(0.5, 1.0))
    for name, kind, store, gate_reward in (("taste", "dpo_lora", taste_store, "learned"),
                                           ("brightness", "bad_lora", bright_store, "brightness")):
        if {"taste": "dpo", "brightness": "bad"}[name] not in arms:
            continue
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
            row = per.setdefault(str(k), {"prompt": p})
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
    for kind in ("base", "best_of_8", *guided_kinds, "dpo_lora", "bad_lora"):
        (small, n), (fid, _) = pct(rows, kind, "small"), pct(rows, kind, "fidelity")
        table[kind] = {"taste_small": small, "fidelity": fid, "n": n}
        ratios = [r[kind + "_x_base"] for r in rows if kind + "_x_base" in r]
        if ratios:
            table[kind]["time_x_base"] = round(sum(ratios) / len(ratios), 2)
        # the why: did the arm raise the learned reward, and did that shrink the object (judge's pixels)?
        for key, name in (("learned", "learned_mean"), ("area", "area_mean")):
            v = [r[kind][key] for r in rows if kind in r and r[kind].get(key) is not None]
            if v:
                table[kind][name] = round(sum(v) / len(v), 3 if key == "learned" else 0)
        miss = {}
        for r in rows:
            for m in r.get(kind, {}).get("misses", []):
                miss[m] = miss.get(m, 0) + 1
        if miss:
            table[kind]["misses"] = miss
    figures["table"] = table
    base = table["base"]

    def diff(kind, key):
        if table[kind][key] is None or base[key] is None:
            return None
        return round(table[kind][key] - base[key], 1)

    guided_targets = {}
    bo_gain = diff("best_of_8", "taste_small")
    for g in guided_kinds:
        gain, fid, x = diff(g, "taste_small"), diff(g, "fidelity"), table[g].get("time_x_base")
        guided_targets[g] = {"gain_pts": gain, "best_of_8_gain_pts": bo_gain, "time_x_base": x,
                             "fidelity_change_pts": fid,
                             # undefined when best-of-8 gained nothing: "half of no gain" would pass anything
                             "met (gain >= half best-of-8's, <= 3x time, fidelity >= -2)":
                             None if None in (gain, bo_gain, x, fid) or bo_gain <= 0 else
                             bool(gain >= bo_gain / 2 and x <= 3 and fid >= -2)}

    figures["targets"] = {
        "best_of_8_gain_pts (>= 40)": diff("best_of_8", "taste_small"),
        "dpo_lora_gain_pts (>= 30)": diff("dpo_lora", "taste_small"),
        "fidelity_change_best_of_8_pts (>= -2)": diff("best_of_8", "fidelity"),
        "fidelity_change_dpo_lora_pts (>= -2)": diff("dpo_lora", "fidelity"),
        "taste_lora_gate_passed": figures.get("lora_taste", {}).get("gate", {}).get("passed"),
        "bad_lora_rejected": (None if "lora_brightness" not in figures  # not run (--arms)
                              else not figures["lora_brightness"]["gate"].get("passed", True)),
        "guidance": guided_targets,
    }
    save()
    print(f"\nmini, {args.steps} steps, {len(rate_prompts)} rated prompts x {args.cands} "
          f"({figures['ratings']['picks']} picks, {figures['ratings']['pairs']} pairs), {len(test)} held-out test "
          f"prompts, 1 thread")
    print(f"{'':<12} {'taste (small) %':>16} {'fidelity %':>11} {'n':>4} {'x base time':>12} {'learned':>8} "
          f"{'area px':>8}")
    for k, v in table.items():
        print(f"{k:<12} {str(v['taste_small']):>16} {str(v['fidelity']):>11} {v['n']:>4} "
              f"{str(v.get('time_x_base', '')):>12} {str(v.get('learned_mean', '')):>8} "
              f"{str(v.get('area_mean', '')):>8}")
    print(json.dumps(figures["targets"], indent=2))


if __name__ == "__main__":
    main()
