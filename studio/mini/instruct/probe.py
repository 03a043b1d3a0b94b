"""Where does ``mini-instruct`` lose what it should copy?  A teacher-forced one-step probe.

    python -m studio.mini.instruct.probe [--path DIR] [--n-per-kind 4] [--ts 999,900,700,500]

For each held-out edit, the edited scene's closed-form latent is noised to t (one fixed noise), the UNet
predicts once with the source latent as its image condition, and the clean estimate x0-hat is decoded and
judged like a finished edit (``evaluate.assess``).  Three branches are read: the conditional one (instruction
and source), the image-only one (empty instruction) and the pipeline's 3-way guided mix.  The edit is a
deterministic function of the source and the instruction (same jitter, one attribute changed), so at t=999,
where the noisy input carries nothing, a model that copies reads near 100% "kept" already; what it loses
there is lost before sampling starts.  Only the model is probed: no sampler, no VAE encoder (the condition is
the closed-form latent the model was trained on).
"""

from __future__ import annotations

import argparse
import json

from . import DEFAULT_GUIDANCE_SCALE, DEFAULT_IMAGE_GUIDANCE_SCALE, weights_path
from . import world as IW
from .evaluate import assess, quiet_pipeline, summarise


def latents(scenes):
    """Closed-form latents (unscaled) of rendered ``scenes``, as training makes them."""
    import torch

    from .train import scene_latents

    return torch.from_numpy(scene_latents(scenes)).float()


def one_step(pipe, edits, ts, *, guidance: float, image_guidance: float, seed: int = 0) -> dict:
    """{t: {branch: overall summary}} for the teacher-forced one-step estimate at each t."""
    import torch

    from ..judge import judge

    sf = pipe.vae.config.scaling_factor
    zs, zt = latents([e.source for e in edits]), latents([e.target for e in edits])
    noise = torch.randn(zt.shape, generator=torch.Generator().manual_seed(seed))
    tok = pipe.tokenizer

    def embed(texts):
        ids = tok(texts, padding="max_length", max_length=tok.model_max_length, truncation=True,
                  return_tensors="pt").input_ids
        return pipe.text_encoder(ids)[0]

    out = {}
    with torch.no_grad():
        e_text, e_none = embed([e.instruction for e in edits]), embed([""] * len(edits))
        for t in ts:
            a = pipe.scheduler.alphas_cumprod[t]
            xt = a.sqrt() * zt * sf + (1 - a).sqrt() * noise
            tt = torch.full((len(edits),), t)
            v_both = pipe.unet(torch.cat([xt, zs], 1), tt, e_text).sample
            v_img = pipe.unet(torch.cat([xt, zs], 1), tt, e_none).sample
            v_none = pipe.unet(torch.cat([xt, torch.zeros_like(zs)], 1), tt, e_none).sample
            guided = v_none + guidance * (v_both - v_img) + image_guidance * (v_img - v_none)  # the pipeline's mix
            row = {}
            for name, v in (("conditional", v_both), ("image only", v_img), ("guided", guided)):
                x0 = a.sqrt() * xt - (1 - a).sqrt() * v  # v-prediction's clean estimate
                images = pipe.image_processor.postprocess(pipe.vae.decode(x0 / sf).sample)
                o = summarise([(e, assess(e, judge(im))) for e, im in zip(edits, images)])["overall"]
                row[name] = {"asked": o["asked"], "kept_all": o["kept_all"], "kept_min": o["kept_min_attribute"]}
            out[int(t)] = row
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--path", default=str(weights_path()))
    ap.add_argument("--n-per-kind", type=int, default=4)
    ap.add_argument("--ts", default="999,900,700,500", help="timesteps to probe, comma separated, in [0, 1000)")
    ap.add_argument("--guidance", type=float, default=DEFAULT_GUIDANCE_SCALE)
    ap.add_argument("--image-guidance", type=float, default=DEFAULT_IMAGE_GUIDANCE_SCALE)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    try:
        ts = [int(x) for x in args.ts.split(",") if x.strip()]
    except ValueError:
        ap.error(f"--ts must be integers, got {args.ts!r}")
    if not ts or not all(0 <= t < 1000 for t in ts):
        ap.error(f"--ts must be timesteps in [0, 1000), got {args.ts!r}")
    pipe = quiet_pipeline(args.path, args.threads)
    res = one_step(pipe, IW.heldout_edits(args.n_per_kind, "holdout"), ts,
                   guidance=args.guidance, image_guidance=args.image_guidance)
    for t, row in res.items():
        print(t, json.dumps(row), flush=True)
    return res


if __name__ == "__main__":
    main()
