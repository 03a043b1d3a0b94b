"""`studio` command line. Every failure the user can fix prints one line `error: ...` and exits non-zero."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer

from .errors import RequestError, StudioError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="diffusion-studio: generate and edit media; every output is watermarked and C2PA-signed.")

EXIT_BAD_REQUEST = 2
EXIT_FAILED = 1


def _one_line(message: str, limit: int = 600) -> str:
    text = " ".join(str(message).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _fail(message: str, code: int = EXIT_BAD_REQUEST) -> None:
    typer.echo(f"error: {_one_line(message)}", err=True)
    raise typer.Exit(code)


def _progress_bar():
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    # On stderr, so stdout carries only results; off when stderr is not a terminal, where rich would still
    # print a blank line that breaks the one-line error contract for scripts reading it.
    console = Console(stderr=True)
    return Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                    TimeElapsedColumn(), TimeRemainingColumn(), transient=True, console=console,
                    disable=not console.is_terminal)


@app.command()
def generate(
    prompt: str = typer.Argument(..., help="What to draw."),
    # a str, not a Path: Path drops the trailing "/" that marks a folder which does not exist yet
    out: str = typer.Option(..., "-o", "--out", help="Output file (.png/.jpg/.jpeg/.webp; .mp4/.gif for "
                                                     "video; .wav/.flac/.mp3 for audio; no extension: the "
                                                     "model's first: .png, .mp4, .wav) or folder (existing, "
                                                     "or ending in /)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Registry name, hub id, folder or .safetensors."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed; image i of a batch uses seed+i."),
    steps: Optional[int] = typer.Option(None, "--steps"),
    width: Optional[int] = typer.Option(None, "--width", "-W"),
    height: Optional[int] = typer.Option(None, "--height", "-H"),
    sampler: Optional[str] = typer.Option(None, "--sampler", help="e.g. 'Euler a', 'DPM++ 2M Karras' (see `studio samplers`)."),
    guidance: Optional[float] = typer.Option(None, "--guidance", "--cfg"),
    negative: str = typer.Option("", "--negative", help="Negative prompt."),
    lora: List[str] = typer.Option([], "--lora", help="PATH[:WEIGHT], repeatable."),
    allow_failed_lora: bool = typer.Option(False, "--allow-failed-lora", help="Use a `studio tune` LoRA even "
                                           "though it failed (or never ran) its eval gate."),
    init: Optional[Path] = typer.Option(None, "--init", help="Init image: img2img, the image to inpaint/outpaint, "
                                                             "or (video model) the still to animate."),
    init_video: Optional[Path] = typer.Option(None, "--init-video", help="Source clip for video-to-video "
                                                                         "(.mp4/.webm/.gif/.mov)."),
    frames: Optional[int] = typer.Option(None, "--frames", help="Video: frames per clip (model's default)."),
    fps: Optional[float] = typer.Option(None, "--fps", help="Video: frames per second of the clip."),
    motion_adapter: Optional[str] = typer.Option(None, "--motion-adapter",
                                                 help="AnimateDiff: motion adapter folder or hub id."),
    duration: Optional[float] = typer.Option(None, "--duration", help="Audio: seconds of music (model's default)."),
    init_audio: Optional[Path] = typer.Option(None, "--init-audio", help="Source clip (.wav/.flac/.mp3): "
                                                                         "audio-to-audio at --strength, or with "
                                                                         "--extend / --span."),
    extend: Optional[float] = typer.Option(None, "--extend", help="Audio: continue --init-audio by N seconds."),
    span: Optional[str] = typer.Option(None, "--span", help="Audio: START:END seconds of --init-audio to "
                                                            "regenerate (inpaint)."),
    strength: Optional[float] = typer.Option(None, "--strength", help="img2img/inpaint/video-to-video strength "
                                                                      "in [0, 1]."),
    mask: Optional[Path] = typer.Option(None, "--mask", help="Inpaint mask (white = repaint), same size as --init."),
    outpaint: Optional[str] = typer.Option(None, "--outpaint", help="LEFT,TOP,RIGHT,BOTTOM pixels to add."),
    mask_blur: Optional[int] = typer.Option(None, "--mask-blur", help="Inpaint: feather the mask by N px (4)."),
    masked_content: Optional[str] = typer.Option(None, "--masked-content",
                                                 help="Inpaint: original (default) | fill | latent_noise."),
    only_masked: bool = typer.Option(False, "--only-masked", help="Inpaint the mask's box (plus --inpaint-padding) "
                                     "at --width x --height and paste it back."),
    inpaint_padding: Optional[int] = typer.Option(None, "--inpaint-padding", help="Only masked: px around the "
                                                  "mask's box (32)."),
    variation_seed: Optional[int] = typer.Option(None, "--variation-seed", help="Variation seed: the noise is "
                                                 "slerped towards this seed's by --variation-strength."),
    variation_strength: Optional[float] = typer.Option(None, "--variation-strength",
                                                       help="0 = the plain --seed, 1 = the variation seed's noise."),
    style: List[str] = typer.Option([], "--style", help="Saved style NAME (see `studio styles`), repeatable."),
    weighting: Optional[bool] = typer.Option(None, "--weighting/--no-weighting",
                                             help="(word:1.2) prompt weighting via compel (default: on when the "
                                                  "prompt uses it)."),
    batch: int = typer.Option(1, "--batch", help="Number of images (seeds seed..seed+N-1)."),
    best_of: Optional[int] = typer.Option(None, "--best-of", help="Render N candidates (seeds seed..seed+N-1), "
                                                                  "rank them by --reward, write the best."),
    reward: Optional[str] = typer.Option(None, "--reward", help="Reward that ranks --best-of and/or steers "
                                         "--reward-guidance (see `studio rewards`)."),
    reward_guidance: Optional[float] = typer.Option(None, "--reward-guidance", help="Steer sampling by --reward's "
                                                    "gradient: STRENGTH x the latents' std per step (capped)."),
    keep_all: bool = typer.Option(False, "--keep-all", help="With --best-of: write all N candidates, not only the "
                                                            "best."),
    hires: Optional[float] = typer.Option(None, "--hires", help="Hires fix: upscale the sealed first pass by SCALE "
                                                                 "(e.g. 2) and refine it with img2img."),
    hires_strength: Optional[float] = typer.Option(None, "--hires-strength", help="Hires refine strength in (0, 1] "
                                                                                 "(default 0.5)."),
    hires_upscaler: Optional[str] = typer.Option(None, "--hires-upscaler",
                                                 help="latent (default) | pixel-lanczos | sd-x2-latent-upscaler | "
                                                      "sd-x4-upscaler | a local upscaler folder."),
    hires_steps: Optional[int] = typer.Option(None, "--hires-steps", help="Hires refine steps (default: --steps)."),
    accelerate: str = typer.Option("off", "--accelerate", help="off | safe | max (fused GPU kernels)."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda, cuda:1 ... (default: automatic)."),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="fp32 | fp16 | bf16 (default: automatic)."),
    offload: Optional[str] = typer.Option(None, "--offload", help="model | sequential (CUDA)."),
    vae_tiling: bool = typer.Option(False, "--vae-tiling"),
    vae_slicing: bool = typer.Option(False, "--vae-slicing"),
    attention_slicing: bool = typer.Option(False, "--attention-slicing"),
    decode_chunk: Optional[int] = typer.Option(None, "--decode-chunk",
                                               help="Video: frames the VAE decodes at once (less memory)."),
    allow_unsafe_pickle: bool = typer.Option(False, "--allow-unsafe-pickle",
                                             help="Allow .ckpt/.bin/.pt checkpoints (pickle can run code)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace output files that already exist."),
    control: List[str] = typer.Option([], "--control", help="ControlNet unit, repeatable: PREPROCESSOR:IMAGE[:WEIGHT"
                                      "[:START:END]] (ControlNet chosen for the model) or MODEL:IMAGE[:PREPROCESSOR"
                                      "[:WEIGHT[:START:END]]]; 'none' when IMAGE is a control map."),
    guess_mode: bool = typer.Option(False, "--guess-mode", help="ControlNet guess mode (SD 1.x/2.x, SDXL)."),
    image_guidance: Optional[float] = typer.Option(None, "--image-guidance",
                                                   help="Instruction edits (InstructPix2Pix): how closely to keep "
                                                        "--init (default 1.5)."),
    annotators: Optional[Path] = typer.Option(None, "--annotators", help="Folder with the learned preprocessors' "
                                              "weights (HED, PiDiNet, MLSD, lineart, depth, OpenPose...)."),
) -> None:
    """Generate (or, with --init/--mask/--outpaint, edit) images, or clips with a video model (--init animates
    a still, --init-video restyles a clip); outputs are sealed."""
    import os

    from .control_cli import check_control_targets, control_options, write_control_maps
    from .modalities import WRITABLE_SUFFIXES
    from .schema import GenerationRequest, LoraRef, Outpaint, Span
    from .writer import check_output_targets

    out_path = Path(out).expanduser()
    if out.endswith(("/", os.sep)) and not out_path.is_dir():
        try:  # creating it now is what makes the engine (which only sees a Path) write into it
            check_output_targets(out_path, names=[])
        except RequestError as exc:
            _fail(str(exc))
    fmt = WRITABLE_SUFFIXES.get(out_path.suffix.lower())  # None: the model's modality decides (.png / .mp4)
    if variation_seed is not None and variation_strength is None:
        _fail("--variation-seed needs --variation-strength (0 = the plain seed, 1 = the variation seed)")
    hires_opts = {k: v for k, v in (("strength", hires_strength), ("upscaler", hires_upscaler),
                                     ("steps", hires_steps)) if v is not None}
    if hires_opts and hires is None:
        _fail(f"--hires-{next(iter(hires_opts))} given without --hires SCALE")
    try:
        request = GenerationRequest.build(
            prompt=prompt, negative_prompt=negative, model=model, seed=seed, steps=steps, width=width,
            height=height, sampler=sampler, guidance=guidance, batch=batch,
            loras=[LoraRef.parse(item).model_copy(update={"allow_failed_gate": allow_failed_lora}) for item in lora],
            init_image=str(init) if init else None, strength=strength, mask=str(mask) if mask else None,
            outpaint=Outpaint.parse(outpaint) if outpaint else None, output_format=fmt, accelerate=accelerate,
            inpaint=_inpaint_options(mask_blur, masked_content, only_masked, inpaint_padding),
            frames=frames, fps=fps, init_video=str(init_video) if init_video else None,
            motion_adapter=motion_adapter,
            duration=duration, init_audio=str(init_audio) if init_audio else None, extend=extend,
            span=Span.parse(span) if span else None,
            variation_seed=variation_seed, variation_strength=variation_strength or 0.0, styles=list(style),
            prompt_weighting=weighting,
            hires={"scale": hires, **hires_opts} if hires is not None else None,
            best_of=best_of, reward=reward if best_of is not None or reward_guidance is None else None,
            reward_guidance=_reward_guidance(reward_guidance, reward),
            controls=control_options(control), guess_mode=guess_mode, image_guidance=image_guidance,
            device=device, dtype=dtype,
            memory={"offload": offload, "vae_tiling": vae_tiling, "vae_slicing": vae_slicing,
                    "attention_slicing": attention_slicing, "decode_chunk": decode_chunk},
        )
    except (RequestError, ValueError) as exc:
        _fail(str(exc))
    if keep_all and best_of is None:
        _fail("--keep-all given without --best-of N")
    if annotators is not None:
        from .control import ANNOTATORS_ENV

        os.environ[ANNOTATORS_ENV] = str(annotators)
    try:
        check_control_targets(out_path, request, overwrite)
    except RequestError as exc:
        _fail(str(exc))
    from .engine import default_studio

    default_studio().quiet = True  # diffusers is imported only once the request has passed the cheap checks
    with _progress_bar() as bar:
        task = bar.add_task("loading model", total=None)

        def on_step(step: int, total: int) -> None:
            # after the last step come the VAE decode and the seal: seconds (minutes at 4096 px on CPU) in
            # which a bar standing at total/total would look hung
            bar.update(task, description="denoising" if step < total else "decoding and sealing",
                       completed=step, total=total)

        try:
            result = default_studio().generate(request, out=out_path, progress=on_step,
                                               allow_pickle=allow_unsafe_pickle, overwrite=overwrite,
                                               **({"keep_all": True} if keep_all else {}))
        except RequestError as exc:
            _fail(str(exc))
        except StudioError as exc:
            _fail(str(exc), EXIT_FAILED)
    for line in result.record.warnings:
        typer.echo(f"warning: {_one_line(line)}", err=True)
    for o in result.outputs:
        ranked = f"  rank={o.record.reward_rank}  score={o.record.reward_score:.4g}" if o.record.reward_rank else ""
        typer.echo(f"{o.path}  seed={o.record.seed}  sha256={o.record.sha256[:16]}  "
                   f"watermark={o.record.watermark_id or o.record.watermark_status}{ranked}")
    if result.record.reward is not None:
        from .best_of import ranking_line

        typer.echo(ranking_line(result))
    for path in write_control_maps(result, overwrite):
        typer.echo(f"{path}  (control map, sealed)")
    from .modalities import modality

    req = result.record.request
    clip = f", {req.frames} frames at {req.fps:g} fps" if req.frames else ""
    if result.outputs and result.outputs[0].record.duration_s and not req.frames:
        clip = f", {result.outputs[0].record.duration_s:g} s at {result.outputs[0].record.sample_rate} Hz"
    if req.hires is not None and result.outputs:
        o = result.outputs[0].record
        clip = (f", hires x{req.hires.scale:g} {req.width}x{req.height} -> {o.width}x{o.height} "
                f"({req.hires.upscaler}, strength {req.hires.strength:g}, {req.hires.steps} steps)")
    typer.echo(f"{len(result.outputs)} {modality(req.modality).noun}(s) in {result.record.elapsed_s:.1f}s "
               f"({result.record.model_name}, {result.record.sampler}, {req.steps} steps{clip})")


@app.command()
def demo(
    out: Path = typer.Option(Path("demo-out"), "-o", "--out", help="Output folder."),
    prompts: Optional[Path] = typer.Option(None, "--prompts", help="Prompt file (default: samples/prompts.txt)."),
    model: str = typer.Option("mini", "--model", "-m"),
    seed: int = typer.Option(1234, "--seed"),
    video_model: str = typer.Option("mini-video", "--video-model",
                                    help="Model for the demo's two clips; 'none' renders no clips."),
    music_model: str = typer.Option("mini-music", "--music-model",
                                    help="Model for the demo's two tunes; 'none' renders no tunes."),
) -> None:
    """Render the bundled prompt file with the bundled mini model (offline, CPU): sealed PNGs + contact sheet,
    then two sealed clips with the mini video model (text-to-video, and the first image animated) and two
    sealed tunes with the mini music model (text-to-music, and a continuation)."""
    from .demo import SAMPLES, run_demo
    from .engine import default_studio

    default_studio().quiet = True
    try:
        run_demo(out, prompts or SAMPLES, model=model, seed=seed, log=typer.echo,
                 video_model=None if video_model.lower() == "none" else video_model,
                 music_model=None if music_model.lower() == "none" else music_model)
    except RequestError as exc:
        _fail(str(exc))
    except StudioError as exc:
        _fail(str(exc), EXIT_FAILED)


@app.command()
def models(
    add: Optional[str] = typer.Option(None, "--add", help="Register NAME=SOURCE (hub id, folder or file)."),
    family: Optional[str] = typer.Option(None, "--family", help="With --add: sd1|sd2|sdxl|sd3|flux|other, an "
                                                                "instruction editor ip2p|ip2p-sdxl|flux-kontext|"
                                                                "qwen-edit, or a video family "
                                                                "animatediff|svd|cogvideox|ltx|wan."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """List registered models and whether each is available locally (or add one)."""
    from .registry import Registry

    try:
        registry = Registry()
        if add:
            name, sep, source = add.partition("=")
            if not sep or not name or not source:
                _fail("--add takes NAME=SOURCE")
            registry.add(name, source, family)
    except StudioError as exc:
        _fail(str(exc))
    for problem in registry.problems:  # an ignored models.toml entry must be seen where models are listed
        typer.echo(f"warning: {problem}", err=True)
    rows = [{"name": e.name, "source": e.source, "family": e.family or "auto", "available": e.available_locally(),
             "origin": e.origin, "description": e.description} for e in registry.entries.values()]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("name", "family", "local", "source", "description")
    for r in rows:
        table.add_row(r["name"], r["family"], "yes" if r["available"] else "no", r["source"], r["description"])
    Console().print(table)


@app.command()
def samplers(
    model: Optional[str] = typer.Option(None, "--model", "-m",
                                        help="Mark which samplers this model accepts and show its default."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """List the sampler catalog; with --model, which samplers that model accepts and which it refuses."""
    import schedulers

    if model is None:
        # No model, no default: which sampler a model starts from, and which it refuses, depends on its
        # scheduler config (mini, an sd1 model, refuses the sd1 family's usual Karras default).
        rows = [{"name": n, "kind": s.kind, "description": s.description} for n, s in schedulers.SAMPLERS.items()]
        if as_json:
            typer.echo(json.dumps(rows, indent=2))
            return
        for r in rows:
            typer.echo(f"{r['name']:<22} {r['kind']:<5} {r['description']}")
        typer.echo("\nstudio samplers --model NAME: which of these a model accepts, and its default")
        return
    from .jobs.checks import default_sampler_for, sampler_problem, scheduler_context
    from .registry import Registry

    try:
        entry = Registry().resolve(model)
    except StudioError as exc:
        _fail(str(exc))
    family, config = scheduler_context(entry)
    default = default_sampler_for(entry)
    rows = []
    for name, spec in schedulers.SAMPLERS.items():
        problem = sampler_problem(entry, name)
        rows.append({"name": name, "kind": spec.kind, "accepted": problem is None, "default": name == default,
                     "description": spec.description if problem is None else problem.split(": ", 1)[-1]})
    if as_json:
        typer.echo(json.dumps({"model": entry.name, "family": family, "default": default, "samplers": rows},
                              indent=2))
        return
    from .modalities import sampler_family

    basis = "its scheduler config" if config else ("its family only (no scheduler config on disk)" if family
                                                    else "nothing yet (family unknown until it loads)")
    if family and sampler_family(family) is None:
        typer.echo(f"{entry.name}: {family} runs its own scheduler; pass no sampler (a catalog name is accepted "
                   "only when it is that scheduler, checked when the model loads)")
        return
    typer.echo(f"{entry.name}: {family or 'family unknown'}, default sampler {default or 'chosen at load'}; "
               f"checked against {basis}")
    for r in rows:
        mark = "default" if r["default"] else ("ok" if r["accepted"] else "refused")
        typer.echo(f"{r['name']:<22} {r['kind']:<5} {mark:<8} {r['description']}")


@app.command()
def styles(
    add: Optional[str] = typer.Option(None, "--add", help="Save a style NAME (with --prompt and/or --negative)."),
    prompt: str = typer.Option("", "--prompt", help="With --add: the style's prompt; {prompt} marks where yours "
                                                  "goes (without it the style is appended)."),
    negative: str = typer.Option("", "--negative", help="With --add: appended to the negative prompt."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """List saved styles (prompt snippets applied with `generate --style NAME`), or add one."""
    from .styles import load_styles, save_style

    try:
        if add:
            save_style(add, prompt, negative)
        rows = [{"name": s.name, "prompt": s.prompt, "negative_prompt": s.negative_prompt}
                for s in load_styles().values()]
    except (RequestError, StudioError) as exc:
        _fail(str(exc))
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        neg = f"  (negative: {r['negative_prompt']})" if r["negative_prompt"] else ""
        typer.echo(f"{r['name']}: {r['prompt']}{neg}")
    if not rows:
        typer.echo("no styles saved yet: studio styles --add NAME --prompt \"... {prompt} ...\"")


@app.command()
def info(file: Path = typer.Argument(..., exists=False), as_json: bool = typer.Option(False, "--json")) -> None:
    """Print the generation parameters recorded in a studio output."""
    from .metadata import read_info

    if not file.is_file():
        _fail(f"{file} does not exist or is not a file", 3)
    data = read_info(file)
    if data is None:
        _fail(f"{file}: no diffusion-studio parameters found", 2)
    if as_json:
        typer.echo(json.dumps(data, indent=2, sort_keys=True))
        return
    if data.get("_parameters"):
        typer.echo(data["_parameters"])
    req = data.get("request", {})
    typer.echo(f"model: {data.get('model_name')} ({data.get('model_family')}, hash {str(data.get('model_hash'))[:12]})")
    typer.echo(f"mode: {data.get('mode')}  seed: {data.get('seed')}  sampler: {data.get('sampler')}  "
               f"steps: {req.get('steps')}  size: {req.get('width')}x{req.get('height')}")
    rew = data.get("reward")
    if isinstance(rew, dict):  # a best-of-N candidate
        typer.echo(f"best-of-{rew.get('n')}: rank {rew.get('rank')} by reward {rew.get('name')} "
                   f"({str(rew.get('hash'))[:12]}), score {rew.get('score')}")
    guided = data.get("reward_guidance")
    if isinstance(guided, dict):
        typer.echo(f"reward guidance: {guided.get('name')} ({str(guided.get('hash'))[:12]}), strength "
                   f"{guided.get('strength')}, window {guided.get('start')}-{guided.get('end')}, cap "
                   f"{guided.get('max_step')}")
    versions = data.get("versions", {})
    typer.echo("versions: " + ", ".join(f"{k} {v}" for k, v in sorted(versions.items())))
    if data.get("styles"):
        typer.echo(f"styles: {', '.join(data['styles'].get('names', []))} (prompt before styling: "
                   f"{data['styles'].get('prompt', '')!r})")
    for line in data.get("warnings") or []:
        typer.echo(f"warning: {_one_line(line)}")


def _reward_guidance(strength: Optional[float], reward: Optional[str]) -> Optional[dict]:
    if strength is None:
        return None
    if not reward:
        _fail("--reward-guidance needs --reward NAME (a differentiable reward, see `studio rewards`)")
    return {"reward": reward, "strength": strength}


def _inpaint_options(blur, content, only_masked, padding) -> Optional[dict]:
    given = {k: v for k, v in (("mask_blur", blur), ("masked_content", content), ("padding", padding)) if v is not None}
    if only_masked:
        given["only_masked"] = True
    return given or None


@app.command()
def verify(file: Path = typer.Argument(...), as_json: bool = typer.Option(False, "--json")) -> None:
    """Check C2PA credentials and the invisible watermark. Exit 0 valid, 1 invalid/tampered, 2 none, 3 unreadable."""
    import safety

    from .writer import safety_config

    report = safety.verify(file, config=safety_config())
    typer.echo(json.dumps(report.to_dict(), indent=2, default=str) if as_json else report.render())
    raise typer.Exit(report.exit_code)


def _register_subcommands() -> None:
    """Front doors above `studio` (the web app) plug their commands in through the entry-point group
    `diffusion_studio.commands`, so this module never imports them: imports point ui -> studio only."""
    from importlib.metadata import entry_points

    from .jobs.cli import register as register_jobs

    register_jobs(app)
    from .rewards.cli import register as register_rewards

    register_rewards(app)
    from .rewards.tune_cli import register as register_tune

    register_tune(app)  # `studio tune`
    from .control_cli import register as register_control

    register_control(app)  # `studio edit`, `studio preprocess`
    from .xyz import register as register_xyz

    register_xyz(app)  # `studio xyz`
    for ep in entry_points(group="diffusion_studio.commands"):
        try:
            ep.load()(app)
        except ModuleNotFoundError:
            continue  # its optional dependencies are not installed


_register_subcommands()


def main(argv: Optional[list[str]] = None) -> int:
    import os

    # Library chatter (torchvision fallbacks, weight-loading bars) would bury the one-line errors and
    # our own progress bars.
    for var in ("TRANSFORMERS_VERBOSITY", "DIFFUSERS_VERBOSITY"):
        os.environ.setdefault(var, "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        # Without standalone mode click returns the code of typer.Exit instead of raising it.
        code = app(args=argv, prog_name="studio", standalone_mode=False)
        return code if isinstance(code, int) else 0
    except typer.Exit as exc:
        return exc.exit_code
    except SystemExit as exc:  # pragma: no cover
        return int(exc.code or 0)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        return 130
    except Exception as exc:  # click usage errors and anything unexpected: one line, non-zero
        if isinstance(exc, _click_exceptions()):
            if type(exc).__name__ == "NoArgsIsHelpError":
                exc.show()  # a bare `studio`: the help is the answer
                return exc.exit_code
            ctx = getattr(exc, "ctx", None)
            hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
            typer.echo(f"error: {_one_line(exc.format_message()).rstrip('.')}{hint}", err=True)
            return exc.exit_code
        # A bug, not a bad request: exit 1 and name the exception type so a report can be matched to it, on
        # one line; DIFFUSION_STUDIO_DEBUG=1 prints the traceback too.
        if os.environ.get("DIFFUSION_STUDIO_DEBUG"):
            import traceback

            traceback.print_exc()
        typer.echo(f"error: internal error ({type(exc).__name__}): {_one_line(exc, 300)} -- please report it "
                   "(DIFFUSION_STUDIO_DEBUG=1 shows the traceback)", err=True)
        return EXIT_FAILED


def _click_exceptions() -> tuple:
    """click's ClickException and the copy typer vendors (typer >= 0.17 raises its own, not click's)."""
    import click

    vendored = [c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"]
    return (click.ClickException, *vendored)


if __name__ == "__main__":
    sys.exit(main())
