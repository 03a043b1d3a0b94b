"""Reward gradient guidance on the mini model: reward gain and time ratio vs the unguided render, same seeds.

    OMP_NUM_THREADS=1 python bench/reward_guidance_bench.py [--seeds 4] [--steps 30] [--reward saturation]

Times are the pipeline call (no seal), the unguided run first for each seed; CPU."""
import argparse
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--reward", default="saturation")
    ap.add_argument("--strengths", default="0.05,0.1")
    ap.add_argument("--prompt", default="a blue circle on a white background")
    args = ap.parse_args()

    import pipelines
    from pipelines.reward_guidance import GuidanceSpec
    from studio import rewards
    from studio.registry import Registry

    entry = Registry().resolve("mini")
    model = pipelines.load_model(entry.source, family=entry.family)
    reward = rewards.get(args.reward, "image")
    kw = dict(mode="txt2img", prompt=args.prompt, width=entry.width, height=entry.height, steps=args.steps,
              guidance=entry.guidance, sampler=entry.sampler)

    def run(seed, spec=None):
        t = time.perf_counter()
        images = pipelines.run_image(model, seeds=[seed], **kw, **({"reward_guidance": spec} if spec else {}))
        return float(reward.score(images, args.prompt)[0]), time.perf_counter() - t

    base = [run(s) for s in range(args.seeds)]
    b_score, b_time = np.mean([b[0] for b in base]), np.mean([b[1] for b in base])
    print(f"mini {entry.width}px {args.steps} steps {entry.sampler}, reward {args.reward}, {args.seeds} seeds")
    print(f"{'strength':>8} {'reward':>8} {'gain':>8} {'time s':>7} {'x base':>7}")
    print(f"{'0 (off)':>8} {b_score:8.4f} {0:8.4f} {b_time:7.2f} {1:7.2f}")
    for strength in (float(x) for x in args.strengths.split(",")):
        res = [run(s, GuidanceSpec(lambda x: reward.score(x, args.prompt), strength)) for s in range(args.seeds)]
        score, sec = np.mean([r[0] for r in res]), np.mean([r[1] for r in res])
        print(f"{strength:8g} {score:8.4f} {score - b_score:+8.4f} {sec:7.2f} {sec / b_time:7.2f}")


if __name__ == "__main__":
    main()
