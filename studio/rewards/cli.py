"""`studio rewards` (list, or --train the learned reward) and `studio rate` (like / dislike / pick)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer


def register(app: typer.Typer) -> None:
    from ..cli import EXIT_FAILED, _fail
    from ..errors import RequestError, StudioError

    @app.command("rewards")
    def rewards_cmd(
        train: Optional[str] = typer.Option(None, "--train", help="Refit the learned reward from the stored "
                                                                  "ratings: image (also rates clips) or audio."),
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """List the rewards (what each scores, where its weights come from), or train the learned one."""
        from . import available, train_learned
        from .modalities import learned_modalities

        if train is not None:
            if train not in learned_modalities():
                _fail(f"--train takes {' or '.join(learned_modalities())}, not {train!r}")
            try:
                _, report = train_learned(train)
            except RequestError as exc:
                _fail(str(exc))
            except StudioError as exc:
                _fail(str(exc), EXIT_FAILED)
            if as_json:
                typer.echo(json.dumps(report.to_dict(), indent=2))
                return
            acc = "not measured (too few ratings)" if report.heldout_accuracy is None else \
                f"{report.heldout_accuracy:.3f} on {report.heldout_pairs} held-out pairs"
            typer.echo(f"learned reward ({train}) trained on {report.pairs} pairs and {report.likes} likes/dislikes "
                       f"in {report.seconds:.1f}s; held-out pairwise accuracy {acc}"
                       + (f"; {report.skipped} rated file(s) missing or changed, skipped" if report.skipped else ""))
            typer.echo(f"saved {report.path}")
            return
        rows = available()
        if as_json:
            typer.echo(json.dumps(rows, indent=2))
            return
        for r in rows:
            state = "ready" if r["ready"] else "no weights"
            typer.echo(f"{r['name']:<14} {'/'.join(r['modalities']):<18} {state:<10} {r['summary']}  "
                       f"[weights: {r['weights']}]")

    @app.command("rate")
    def rate_cmd(
        files: List[Path] = typer.Argument(..., help="Sealed output file(s); with --pick the first is the best."),
        like: bool = typer.Option(False, "--like"),
        dislike: bool = typer.Option(False, "--dislike"),
        pick: bool = typer.Option(False, "--pick", help="The first FILE is the best of all the FILEs."),
        prompt: Optional[str] = typer.Option(None, "--prompt", help="For files that do not record their prompt."),
    ) -> None:
        """Rate outputs into the ratings store (ratings.jsonl in the config folder) the learned reward trains on."""
        from .ratings import RatingStore

        kinds = [k for k, on in (("like", like), ("dislike", dislike), ("pick", pick)) if on]
        if len(kinds) != 1:
            _fail("give exactly one of --like, --dislike, --pick")
        kind = kinds[0]
        store = RatingStore()
        try:
            if kind == "pick":
                if len(files) < 2:
                    _fail("--pick needs the best file and at least one other")
                entries = [store.pick(str(files[0]), [str(f) for f in files[1:]], prompt=prompt)]
            else:
                entries = [store.add(kind, str(f), prompt=prompt) for f in files]
        except RequestError as exc:
            _fail(str(exc))
        for e in entries:
            n = len(e.get("others", []))
            typer.echo(f"{e['kind']} {e['item']['sha256'][:16]}" + (f" over {n} other(s)" if n else "")
                       + f"  -> {store.path}")
