"""`studio rewards` (list, or --train the learned reward) and `studio rate` (up / down / best of a group; list,
count, export, import)."""
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
        check: Optional[str] = typer.Option(None, "--check", help="With --train: the eval gate's independent check, "
                                            "a reward name (default for images: the mini judge's prompt fidelity)."),
        no_gate: bool = typer.Option(False, "--no-gate", help="With --train: replace the current learned reward "
                                     "without the eval gate."),
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """List the rewards (what each scores, where its weights come from), or train the learned one."""
        from . import available, train_learned
        from .modalities import learned_modalities

        if train is not None:
            if train not in learned_modalities():
                _fail(f"--train takes {' or '.join(learned_modalities())}, not {train!r}")
            try:
                _, report = train_learned(train, gate=None if no_gate else ({"check": check} if check else {}))
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
            if report.gate:
                from .gate import reward_summary

                typer.echo(reward_summary(report.gate))
            typer.echo(f"saved {report.path}" if report.path else "not saved: the current learned reward stays")
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
        files: Optional[List[Path]] = typer.Argument(None, help="Sealed output file(s) to rate; with --pick the "
                                                                "first is the best; with --best, more losers."),
        up: bool = typer.Option(False, "--up", "--like", help="Thumbs up for each FILE."),
        down: bool = typer.Option(False, "--down", "--dislike", help="Thumbs down for each FILE."),
        best: Optional[Path] = typer.Option(None, "--best", help="The best of a group: pairs it over each --over "
                                                                 "FILE (a pick of N is N-1 pairs)."),
        over: Optional[List[Path]] = typer.Option(None, "--over", help="A file --best was picked over (repeat, "
                                                                       "or list them after the options)."),
        pick: bool = typer.Option(False, "--pick", help="The first FILE is the best of all the FILEs."),
        note: Optional[str] = typer.Option(None, "--note", help="A note kept with the rating."),
        list_: bool = typer.Option(False, "--list", help="List the stored ratings, newest last."),
        limit: int = typer.Option(20, "--limit", help="With --list: how many of the newest (0: all)."),
        count: bool = typer.Option(False, "--count", help="How many ratings of each kind are stored."),
        export: Optional[Path] = typer.Option(None, "--export", help="Write every rating to this JSONL file."),
        import_: Optional[Path] = typer.Option(None, "--import", help="Add the ratings of a JSONL file (an "
                                                                       "export, or an old ratings.jsonl)."),
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """Rate sealed outputs (thumbs up/down, or the best of a group) into the ratings store the learned
        reward and `studio tune` train on; or list, count, export or import the stored ratings. A file is
        rated by what its verified seal records (prompt, seed, model hash, the whole record): an unsealed or
        changed file is refused."""
        from .ratings import RatingStore

        files = list(files or [])
        rating = [k for k, on in (("up", up), ("down", down), ("best", best is not None), ("pick", pick)) if on]
        reading = [k for k, on in (("list", list_), ("count", count), ("export", export is not None),
                                   ("import", import_ is not None)) if on]
        if over and best is None:
            _fail("--over goes with --best FILE")
        if len(rating) + len(reading) != 1:
            _fail("give exactly one of --up, --down, --best FILE --over FILE..., --pick, --list, --count, "
                  "--export FILE, --import FILE")
        store = RatingStore()
        try:
            if reading:
                if files:
                    _fail(f"--{reading[0]} takes no FILE arguments")
                _show(store, reading[0], limit=limit, export=export, import_=import_, as_json=as_json)
                return
            kind = rating[0]
            if kind in ("best", "pick"):
                if kind == "best":
                    winner, losers = best, [*(over or []), *files]
                else:
                    winner, losers = (files[0] if files else None), files[1:]
                if winner is None or not losers:
                    _fail(f"--{kind} needs the best file and at least one file it was picked over")
                entries = [store.pick(str(winner), [str(f) for f in losers], note=note)]
            else:
                if not files:
                    _fail(f"--{kind} needs the sealed file(s) to rate")
                entries = [store.add("like" if kind == "up" else "dislike", str(f), note=note) for f in files]
        except RequestError as exc:
            _fail(str(exc))
        if as_json:
            typer.echo(json.dumps(entries, indent=2))
            return
        for e in entries:
            n = len(e.get("others", []))
            typer.echo(f"{_LABEL[e['kind']]} {Path(e['item'].get('path', '')).name or e['item']['sha256'][:16]}"
                       + (f" over {n} other(s) ({n} pair(s))" if n else "") + f"  -> {store.path}")
        typer.echo(_count_line(store.count()))


_LABEL = {"like": "up", "dislike": "down", "pick": "best"}


def _count_line(c: dict) -> str:
    return (f"{c['total']} rating(s): {c['like']} up, {c['dislike']} down, {c['pick']} pick(s) "
            f"({c['pairs']} pair(s)) on {c['items']} output(s)")


def _show(store, what: str, *, limit: int, export, import_, as_json: bool) -> None:
    if what == "count":
        c = store.count()
        typer.echo(json.dumps(c) if as_json else f"{_count_line(c)}  [{store.path}]")
    elif what == "export":
        n = len(store.ratings())
        path = store.export(export)
        typer.echo(json.dumps({"exported": n, "path": str(path)}) if as_json else f"exported {n} rating(s) to {path}")
    elif what == "import":
        got = store.import_jsonl(import_)
        typer.echo(json.dumps(got) if as_json else
                   f"imported {got['added']} rating(s) from {import_} ({got['present']} already stored, "
                   f"{got['skipped']} line(s) not a rating, skipped)  -> {store.path}")
    else:
        rows = store.ratings(limit=limit or None)
        if as_json:
            typer.echo(json.dumps(rows, indent=2))
            return
        for r in rows:
            it = r["item"]
            n = len(r.get("others", []))
            name = Path(it.get("path", "")).name or it["sha256"][:16]
            typer.echo(f"{r['time']}  {_LABEL[r['kind']]:<4} {name}  seed {it.get('seed', '-')}  "
                       f"{str(it.get('prompt', ''))[:60]!r}" + (f"  over {n}" if n else ""))
        typer.echo(_count_line(store.count()))
