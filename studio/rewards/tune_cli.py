"""`studio tune`: refresh the learned reward, train a Diffusion-DPO/KTO LoRA from the ratings, run the eval gate
(or `--gate LORA`: gate an existing tuned LoRA again)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    from ..cli import EXIT_FAILED, _fail, _progress_bar
    from ..errors import RequestError, StudioError

    @app.command("tune")
    def tune_cmd(
        model: Optional[str] = typer.Option(None, "--model", "-m", help="Base model (default: mini)."),
        out: Optional[Path] = typer.Option(None, "-o", "--out", help="LoRA file to write (.safetensors; default "
                                           "<config>/loras/tuned-MODEL-TIME.safetensors)."),
        steps: int = typer.Option(200, "--steps", help="Training steps."),
        beta: float = typer.Option(2000.0, "--beta", help="DPO/KTO beta (KL weight)."),
        lr: float = typer.Option(1e-3, "--lr"),
        rank: int = typer.Option(8, "--rank", help="LoRA rank."),
        batch: int = typer.Option(8, "--batch", help="Pairs (and likes) per step."),
        seed: int = typer.Option(0, "--seed"),
        method: str = typer.Option("auto", "--method", help="auto (DPO on picks + KTO on likes) | dpo | kto."),
        reward_only: bool = typer.Option(False, "--reward-only", help="Only refresh the learned reward."),
        no_reward: bool = typer.Option(False, "--no-reward", help="Do not refresh the learned reward first."),
        no_gate: bool = typer.Option(False, "--no-gate", help="Skip the eval gate (the LoRA stays refused)."),
        gate: Optional[Path] = typer.Option(None, "--gate", help="Only run the eval gate on this tuned LoRA."),
        check: Optional[str] = typer.Option(None, "--check", help="Independent check for the gate: a reward "
                                            "name (default on mini: the analytic judge's prompt fidelity)."),
        tolerance: Optional[float] = typer.Option(None, "--tolerance", help="How far the check may drop "
                                                  "(default: 2 fidelity points on mini, 0 for a reward)."),
        gate_seeds: int = typer.Option(2, "--gate-seeds", help="Seeds per held-out prompt in the gate."),
        gate_steps: Optional[int] = typer.Option(None, "--gate-steps", help="Sampling steps in the gate."),
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """Tune a LoRA on your ratings (Diffusion-DPO; reference = the base with the adapter off), then gate it."""
        from . import tune as T
        from .gate import rerun_gate, reward_summary, summary

        if reward_only and no_reward:
            _fail("--reward-only and --no-reward contradict each other")
        if gate_seeds < 1:
            _fail("--gate-seeds must be >= 1")
        gate_opts = {"seeds": tuple(range(gate_seeds)), "steps": gate_steps, "check": check,
                     "tolerance": tolerance}
        with _progress_bar() as bar:
            task = bar.add_task("loading", total=None)

            def progress(done: int, total: int, phase: str) -> None:
                bar.update(task, description="tuning" if phase == "tune" else "eval gate", completed=done,
                           total=total)

            try:
                if gate is not None:
                    result = rerun_gate(gate, model=model, progress=progress, **gate_opts)
                    provenance, path, reward_report = result["provenance"], gate, None
                else:
                    res = T.tune(model, out=out, refresh_reward=not no_reward, reward_only=reward_only,
                                 gate=not no_gate, gate_options=gate_opts, progress=progress, steps=steps,
                                 beta=beta, lr=lr, rank=rank, batch=batch, seed=seed, method=method)
                    provenance, path, reward_report = res.provenance, res.path, res.reward_report
            except RequestError as exc:
                _fail(str(exc))
            except StudioError as exc:
                _fail(str(exc), EXIT_FAILED)
        if as_json:
            typer.echo(json.dumps({"path": str(path) if path else None, "provenance": provenance,
                                   "reward": reward_report}, indent=2, default=str))
            return
        if reward_report:
            acc = reward_report.get("heldout_accuracy")
            typer.echo(f"learned reward refitted on {reward_report['pairs']} pairs and {reward_report['likes']} "
                       f"likes/dislikes; held-out accuracy {'not measured' if acc is None else f'{acc:.3f}'}")
            if reward_report.get("gate"):
                typer.echo(reward_summary(reward_report["gate"]))
        if path is None:
            return
        r = provenance["ratings"]
        typer.echo(f"LoRA {path} ({provenance['method']}, {provenance['steps']} steps, seed {provenance['seed']}) "
                   f"from {r['used']} ratings ({r['train_pairs']} pairs, {r['train_likes']} likes/dislikes); "
                   f"provenance {T.sidecar(path)}")
        if provenance.get("gate"):
            typer.echo(summary(provenance["gate"]))
        else:
            typer.echo("eval gate not run: the LoRA is refused until it passes (`studio tune --gate LORA`)")
