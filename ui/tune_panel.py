"""The Tune tab (issue 18's RLHF loop in the web app): how many ratings the store holds and whether they are
enough to tune, a Diffusion-DPO / KTO LoRA trained on them (`studio.rewards.tune.tune`, the same code as
`studio tune`) with live progress and cancel, the eval gate's verdict (`gate.summary`), and before / after
pictures: the base model and the tuned LoRA on the same held-out prompt and seed.

Why the pictures are rendered again instead of taken from the gate: the gate renders through the pipeline
directly and keeps only scores (nothing it renders is sealed), and everything the page shows must be a sealed
output of the engine. So one held-out prompt or two are rendered through the engine (`Handlers.generate`,
sealed, in the Gallery too) with the gate's seed, steps, guidance and size: a couple of renders, against the
gate's prompts x seeds x 2.

The LoRA is written into the server's LoRA folder, so the Generate tab's LoRA picker lists it; "Use it in
Generate" picks it there (a LoRA that failed its gate is refused, as the engine would refuse it)."""

import html
import time
from pathlib import Path
from typing import Optional

from studio import RequestError

from .errors import Cancelled

METHODS = ("auto", "dpo", "kto")
METHOD_LABELS = {"auto": "auto (DPO on best-of picks + KTO on thumbs)", "dpo": "DPO (best-of picks only)",
                 "kto": "KTO (thumbs up / down only)"}
# tune.split_prompts holds no prompt out below 5 distinct prompts, and the gate needs held-out prompts
MIN_PROMPTS = 5
MAX_STEPS, MAX_RANK = 5000, 128
PREVIEW_PROMPTS = 2  # held-out prompts shown before / after (one seed each)
AUTO_CHECK = "auto"


# -- ratings so far ------------------------------------------------------------------------------------------
def ratings_summary(store) -> dict:
    """What `tune` can train on: the image ratings' pairs, likes, dislikes and distinct prompts, and whether
    they are enough (`enough`, with `why` when not)."""
    def image(item) -> bool:
        return (item.get("modality") or "image") == "image"

    pairs = [p for p in store.pairs() if image(p[0])]
    likes = [x for x in store.likes() if image(x[0])]
    prompts = {p[2] for p in pairs} | {x[1] for x in likes}
    s = {"pairs": len(pairs), "likes": sum(1 for x in likes if x[2]), "dislikes": sum(1 for x in likes if not x[2]),
         "prompts": len(prompts), "why": ""}
    if not pairs and not likes:
        s["why"] = "no image ratings yet: rate outputs with 👍 / 👎 or pick the best of a best-of-N grid"
    elif len(prompts) < MIN_PROMPTS:
        s["why"] = (f"ratings of at least {MIN_PROMPTS} different prompts are needed (the eval gate judges the "
                    f"LoRA on held-out prompts); you have {len(prompts)}")
    s["enough"] = not s["why"]
    return s


def summary_line(s: dict) -> str:
    head = (f"**Image ratings: {s['pairs']} pairs, {s['likes']} 👍, {s['dislikes']} 👎 on {s['prompts']} "
            f"prompt(s).** ")
    return head + ("Enough to tune." if s["enough"] else "Not enough to tune: " + s["why"] + ".")


def _method_needs(s: dict, method: str) -> None:
    if method == "dpo" and not s["pairs"]:
        raise RequestError("DPO trains on best-of-N picks and there are none: pick the best of a grid, or use "
                           "auto / KTO")
    if method == "kto" and not (s["likes"] + s["dislikes"]):
        raise RequestError("KTO trains on thumbs up / down and there are none: rate some outputs, or use auto / DPO")


# -- choices ---------------------------------------------------------------------------------------------------
def tunable_models(h) -> list[tuple[str, str]]:
    """Image models of the families `studio tune` trains (or of a family the load will decide)."""
    from studio.rewards.tune import TUNE_FAMILIES

    out = []
    for label, name in h.model_choices("image"):
        family = getattr(h.registry.entries.get(name), "family", None)
        if family is None or family in TUNE_FAMILIES:
            out.append((label, name))
    return out


def check_choices() -> list[tuple[str, str]]:
    from .ratings_panel import image_rewards

    return [("auto (mini: the judge's prompt fidelity)", AUTO_CHECK)] + \
        [(name, name) for name in image_rewards() if name != "learned"]


# -- tuning ----------------------------------------------------------------------------------------------------
def tune_settings(h, model, method, steps, rank, lr, check, gate_seeds, gate_steps) -> dict:
    """The form, checked before anything loads: one line naming the field otherwise."""
    from .browser_paths import checked_model
    from .handlers import _number

    model = checked_model(model, "model", h.registry) or h.default_model("image")
    if model not in [name for _, name in tunable_models(h)]:
        raise RequestError(f"{model} cannot be tuned here: studio tune trains sd1 / sd2 models (e.g. mini)")
    if method not in METHODS:
        raise RequestError(f"method must be one of {', '.join(METHODS)}")
    steps = _number(steps, "steps", whole=True, minimum=1)
    rank = _number(rank, "rank", whole=True, minimum=1)
    lr = _number(lr, "learning rate")
    if steps is None or steps > MAX_STEPS:
        raise RequestError(f"steps must be 1 to {MAX_STEPS}")
    if rank is None or rank > MAX_RANK:
        raise RequestError(f"rank must be 1 to {MAX_RANK}")
    if lr is None or not 0 < lr <= 1:
        raise RequestError("learning rate must be in (0, 1]")
    return {"model": model, "method": method, "steps": steps, "rank": rank, "lr": float(lr),
            **gate_settings(model, check, gate_seeds, gate_steps)}


def gate_settings(model: str, check, gate_seeds, gate_steps) -> dict:
    """The "Eval gate" fields for a LoRA of `model`, checked before anything loads (a tune and a re-gate)."""
    from .handlers import _number

    gate_seeds = _number(gate_seeds, "gate seeds", whole=True, minimum=1) or 2
    gate_steps = _number(gate_steps, "gate steps", whole=True, minimum=0) or None  # 0: the model's steps
    if check in (None, "", AUTO_CHECK):
        if not model.startswith("mini"):  # the gate would refuse only after the training
            raise RequestError(f"pick an independent check for the gate: the judge's prompt fidelity reads mini "
                               f"prompts only, and {model} is not mini")
        check = None
    else:
        _known_check(check)
    return {"check": check, "gate_seeds": gate_seeds, "gate_steps": gate_steps}


def _known_check(check: str) -> None:
    """A named independent check must be one of the form's rewards (a tune's gate, a re-gate, a reward refresh)."""
    if check not in [v for _, v in check_choices()]:
        raise RequestError(f"check {str(check)[:40]!r} is not a reward ready for images here")


def _phase(phase: str) -> str:
    return {"tune": "tuning the LoRA", "gate": "eval gate: rendering base and tuned"}.get(phase, phase)


def _progress(progress, cancel, first: str):
    """`tune` / `run_gate`'s progress callback: the phase in words, and Cancel between steps; `first` is said
    before the slow start (a load)."""
    def on_progress(done: int, total: int, phase: str) -> None:
        if cancel is not None and cancel.is_set():
            raise Cancelled(f"cancelled during {_phase(phase)} at {done}/{total}")
        if progress is not None:
            progress(done, total, _phase(phase))

    if cancel is not None and cancel.is_set():
        raise Cancelled("cancelled")
    if progress is not None:
        progress(0, 1, first)
    return on_progress


def run_tune(h, model, method="auto", steps=200, rank=8, lr=1e-3, *, check=AUTO_CHECK, gate_seeds=2,
             gate_steps=0, store=None, progress=None, cancel=None) -> dict:
    """Refresh the learned reward, tune a LoRA into the server's LoRA folder, gate it, render the before / after
    previews. Returns {"name" (the picker's name for it), "path", "provenance", "gate", "previews" (history
    entries: base, tuned, base, tuned...)}."""
    from studio.rewards import RatingStore
    from studio.rewards import tune as T

    opts = tune_settings(h, model, method, steps, rank, lr, check, gate_seeds, gate_steps)
    store = store if store is not None else RatingStore()
    s = ratings_summary(store)
    if not s["enough"]:
        raise RequestError(s["why"])
    _method_needs(s, opts["method"])

    on_progress = _progress(progress, cancel, f"refreshing the learned reward and loading {opts['model']}")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = h.loras_dir / f"tuned-{opts['model']}-{stamp}.safetensors"
    res = T.tune(opts["model"], store=store, out=out, progress=on_progress, method=opts["method"],
                 steps=opts["steps"], rank=opts["rank"], lr=opts["lr"],
                 gate_options={"seeds": tuple(range(opts["gate_seeds"])), "steps": opts["gate_steps"],
                               "check": opts["check"]})
    previews = render_previews(h, res.path, res.provenance, progress=progress, cancel=cancel)
    return {"name": res.path.relative_to(h.loras_dir).as_posix(), "path": res.path, "provenance": res.provenance,
            "gate": res.gate, "previews": previews}


def run_regate(h, name, check=AUTO_CHECK, gate_seeds=2, gate_steps=0, *, progress=None, cancel=None) -> dict:
    """The eval gate again on the tuned LoRA `name` of the LoRA folder (e.g. after new ratings refreshed the
    learned reward), on the held-out prompts it was tuned without (`gate.rerun_gate`, as `studio tune --gate`).
    The new verdict replaces the stored one: the engine and "Use it in Generate" follow it. Returns
    {"name", "path", "provenance", "gate"}."""
    from studio.rewards import gate as G
    from studio.rewards.tune import read_provenance

    from .lora_hires import resolve_lora

    if not name:
        raise RequestError("pick a tuned LoRA to gate again")
    path = resolve_lora(name, h.loras_dir, h.registry)  # inside the LoRA folder, or one line
    meta = read_provenance(path)
    if meta is None:
        raise RequestError(f"{name} was not tuned by the studio (no provenance JSON next to it): the gate judges "
                           "only studio-tuned LoRAs")
    base = meta["base_model"]["name"]
    opts = gate_settings(base, check, gate_seeds, gate_steps)
    on_progress = _progress(progress, cancel, f"eval gate: loading {base}")
    result = G.rerun_gate(path, progress=on_progress, seeds=tuple(range(opts["gate_seeds"])),
                          steps=opts["gate_steps"], check=opts["check"])
    return {"name": name, "path": path, "provenance": result["provenance"],
            "gate": {k: v for k, v in result.items() if k != "provenance"}}


def regate_line(result: dict) -> str:
    gate = result["gate"]
    use = ("“Use it in Generate” picks it" if gate["passed"] else
           "the engine refuses it (the CLI's --allow-failed-lora overrides)")
    return (f"Gated `{result['name']}` again on {gate['prompts']} held-out prompt(s) x {len(gate['seeds'])} "
            f"seed(s), reward {gate['reward']['name']} {gate['reward']['hash'][:12]}: "
            f"{'PASSED' if gate['passed'] else 'FAILED'} · {use}")


def preview_prompts(meta: dict) -> list[str]:
    """The held-out prompts the gate judged (mini: those its judge can read), the first few."""
    from studio.rewards import gate as G

    held = list((meta.get("ratings") or {}).get("heldout_prompts") or [])
    if ((meta.get("gate") or {}).get("check") or {}).get("name") == G.MINI_CHECK:
        held = [p for p in held if G.mini_expected(p) is not None]
    return held[:PREVIEW_PROMPTS]


def render_previews(h, path: Path, meta: dict, *, progress=None, cancel=None) -> list[dict]:
    """Base and base + LoRA on the same held-out prompts, with the gate's first seed, steps, guidance and size,
    through the engine (sealed). A LoRA that failed its gate is rendered with the override, which its record
    then carries: the picture shows what the gate refused."""
    gate = meta.get("gate") or {}
    prompts = preview_prompts(meta)
    width, height = meta.get("size") or (None, None)
    seed = (gate.get("seeds") or [0])[0]
    lora = {"path": str(path), "weight": 1.0, "allow_failed_gate": not gate.get("passed")}
    out = []
    jobs = [(p, arm) for p in prompts for arm in ("base", "tuned")]
    for i, (prompt, arm) in enumerate(jobs):
        fields = h.request_fields(prompt=prompt, model=meta["base_model"]["name"], steps=gate.get("steps"),
                                  guidance=gate.get("guidance"), size="Custom", width=width, height=height,
                                  seed=seed, batch=1)
        fields["loras"] = [lora] if arm == "tuned" else []
        desc = f"before / after preview {i + 1}/{len(jobs)}"

        def on_step(done, total, _doing, desc=desc):
            if progress is not None:
                progress(done, total, desc)

        entry = h.generate(fields, progress=on_step, cancel=cancel, source="tune")[0]
        out.append({**entry, "arm": arm})
    return out


def preview_gallery(previews: list[dict]) -> list[tuple[str, str]]:
    label = {"base": "before: base model", "tuned": "after: tuned LoRA"}
    return [(e["file"], f"{label[e['arm']]} · seed {e.get('seed')} · {e['request'].get('prompt', '')}")
            for e in previews]


def verdict_html(gate: Optional[dict]) -> str:
    """PASSED / FAILED with `gate.summary`'s line and the reasons."""
    from studio.rewards.gate import summary

    if not gate:
        return '<div class="verdict verdict-warn">Not gated: the engine refuses this LoRA until it passes</div>'
    ok = bool(gate.get("passed"))
    return _verdict(ok, f'the eval gate {"enabled the LoRA" if ok else "keeps the LoRA disabled"}', summary(gate),
                    gate.get("reasons"))


def reward_verdict_html(gate: dict) -> str:
    """The learned reward's refresh: PASSED / FAILED with `gate.reward_summary`'s line and the reasons."""
    from studio.rewards.gate import reward_summary

    ok = bool(gate.get("passed"))
    head = ("the new learned reward is in use" if gate.get("enabled") else
            "the new learned reward is not enabled: the current one stays")
    return _verdict(ok, head, reward_summary(gate), gate.get("reasons"))


def _verdict(ok: bool, head: str, line: str, reasons) -> str:
    items = "".join(f"<li>{html.escape(r)}</li>" for r in reasons or [])
    return (f'<div class="verdict {"verdict-good" if ok else "verdict-bad"}" id="t-verdict-badge">'
            f'{"PASSED" if ok else "FAILED"}: {html.escape(head)}</div>'
            f'<div class="ds-status">{html.escape(line)}</div>' + (f"<ul>{items}</ul>" if items else ""))


def run_reward_refresh(check=AUTO_CHECK, *, store=None) -> dict:
    """Refit the learned reward from the ratings behind its eval gate (`train_learned(gate=...)`, as `studio
    tune --reward-only`): it replaces the current one only if the gate passes. `check`: the form's independent
    check (auto: the mini judge's prompt fidelity). The TrainReport as a dict, `gate` in it."""
    from studio import rewards

    opts = {}
    if check not in (None, "", AUTO_CHECK):
        _known_check(check)
        opts["check"] = check
    _, report = rewards.train_learned("image", store=store, gate=opts)
    return report.to_dict()


def reward_line(report: dict) -> str:
    acc = report.get("heldout_accuracy")
    gate = report["gate"]
    return (f"Learned reward refitted on {report['pairs']} pairs and {report['likes']} thumbs (held-out accuracy "
            f"{'not measured' if acc is None else f'{acc:.3f}'}) · "
            + ("in use now" if gate["enabled"] else "not enabled: the current learned reward stays"))


def done_line(result: dict, loras_dir: Path) -> str:
    meta, gate = result["provenance"], result["gate"] or {}
    r = meta["ratings"]
    use = ("pick it in the Generate tab's LoRA menu, or press “Use it in Generate”" if gate.get("passed") else
           "the engine refuses it (the CLI's --allow-failed-lora overrides)")
    reward = (meta.get("reward") or {}).get("gate")
    refreshed = "" if not reward else (" · learned reward refreshed first: " + (
        "in use" if reward["enabled"] else "its gate failed, the current one stays"))
    return (f"Tuned `{result['name']}` in the server's LoRA folder ({loras_dir.name}/) · {meta['method']}, "
            f"{meta['steps']} steps, rank {meta['rank']}, lr {meta['lr']:g} on {r['used']} ratings "
            f"({r['train_pairs']} pairs, {r['train_likes']} thumbs; {len(r['heldout_prompts'])} prompt(s) held "
            f"out) in {meta['seconds']:.1f}s · {use}{refreshed}")


# -- tuned LoRAs so far ----------------------------------------------------------------------------------------
TABLE_HEADERS = ["LoRA (in the LoRA folder)", "base model", "method", "steps", "ratings", "gate", "reward gain",
                 "check drop"]


def tuned_loras(h) -> list[tuple[str, Path, dict]]:
    """(picker name, path, provenance) of the studio-tuned LoRAs in the LoRA folder, newest first."""
    from studio.rewards.tune import read_provenance

    from .lora_hires import REGISTRY, lora_choices

    out = []
    for _, value in lora_choices(h.loras_dir, h.registry):
        if value.startswith(REGISTRY):
            continue
        path = h.loras_dir / value
        meta = read_provenance(path)
        if meta is not None:
            out.append((value, path, meta))
    return sorted(out, key=lambda x: x[2].get("created") or "", reverse=True)


def tuned_names(h) -> list[str]:
    return [name for name, _, _ in tuned_loras(h)]


def tuned_rows(h) -> list[list]:
    from studio.rewards.gate import gate_state

    rows = []
    for name, path, meta in tuned_loras(h):
        gate = meta.get("gate") or {}
        fmt = (lambda v: "" if v is None else f"{v:+.4g}")
        rows.append([name, meta["base_model"]["name"], meta.get("method"), meta.get("steps"),
                     (meta.get("ratings") or {}).get("used"), gate_state(path, meta),
                     fmt((gate.get("reward") or {}).get("gain")), fmt((gate.get("check") or {}).get("drop"))])
    return rows


def use_in_generate(h, name, picked) -> list[str]:
    """The Generate tab's LoRA picker with the tuned LoRA `name` added; refused unless its gate passed."""
    from studio.rewards.gate import check_tuned_lora

    from .lora_hires import MAX_LORAS, resolve_lora

    if not name:
        raise RequestError("tune a LoRA first, or pick one in “Tuned LoRA”")
    check_tuned_lora(resolve_lora(name, h.loras_dir, h.registry))  # failed / ungated / changed: one line
    picked = [p for p in (picked or []) if p != name]
    if len(picked) >= MAX_LORAS:
        raise RequestError(f"the Generate tab already has {MAX_LORAS} LoRAs picked: remove one first")
    return picked + [name]


# -- Gradio parts -------------------------------------------------------------------------------------------
class TunePanel:
    """The Tune tab's components, built inside the tab."""

    def __init__(self, h, store=None):
        import gradio as gr

        self.h, self.store = h, store
        models = tunable_models(h)
        default = h.default_model("image")
        with gr.Row(equal_height=True):
            self.summary = gr.Markdown("", elem_id="t-summary")
            self.refresh = gr.Button("↻ Refresh", size="sm", scale=0, min_width=90, elem_id="t-refresh")
        with gr.Row(equal_height=False):
            with gr.Column(scale=5, min_width=360):
                self.model = gr.Dropdown(models, value=default if default in [n for _, n in models] else
                                         (models[0][1] if models else None), label="Base model",
                                         elem_id="t-model")
                self.method = gr.Dropdown([(METHOD_LABELS[m], m) for m in METHODS], value="auto", label="Method",
                                          elem_id="t-method")
                with gr.Row():
                    self.steps = gr.Number(200, label="Steps", precision=None, elem_id="t-steps", min_width=90)
                    self.rank = gr.Number(8, label="LoRA rank", precision=None, elem_id="t-rank", min_width=90)
                    self.lr = gr.Number(1e-3, label="Learning rate", precision=None, elem_id="t-lr", min_width=90)
                with gr.Accordion("Eval gate", open=False, elem_id="t-gate-box"):
                    self.check = gr.Dropdown(check_choices(), value=AUTO_CHECK, label="Independent check",
                                             elem_id="t-check")
                    with gr.Row():
                        self.gate_seeds = gr.Number(2, label="Seeds per held-out prompt", precision=None,
                                                    elem_id="t-gate-seeds", min_width=90)
                        self.gate_steps = gr.Number(0, label="Sampling steps (0 = the model's)", precision=None,
                                                    elem_id="t-gate-steps", min_width=90)
                with gr.Row():
                    self.go = gr.Button("Tune a LoRA on my ratings", variant="primary", elem_id="t-go", scale=3)
                    self.cancel = gr.Button("Cancel", variant="stop", elem_id="t-cancel", scale=1)
                self.reward_go = gr.Button("Refresh only the learned reward (behind its eval gate)", size="sm",
                                           elem_id="t-reward")
                self.status = gr.Markdown("", elem_id="t-status", elem_classes="ds-status")
            with gr.Column(scale=7, min_width=420):
                self.verdict = gr.HTML('<div class="ds-status">The eval gate\'s verdict shows here after a '
                                       'tune.</div>', elem_id="t-verdict")
                self.previews = gr.Gallery(label="Held-out prompt: before (base) · after (tuned LoRA)", columns=2,
                                           height=320, object_fit="contain", interactive=False,
                                           elem_id="t-previews")
                with gr.Row(equal_height=True):
                    self.chosen = gr.Dropdown(tuned_names(h), value=None, label="Tuned LoRA", scale=3,
                                              elem_id="t-lora")
                    self.regate = gr.Button("Run the eval gate again", elem_id="t-regate", scale=1)
                    self.use = gr.Button("Use it in Generate", elem_id="t-use", scale=1)
        self.table = gr.Dataframe(headers=TABLE_HEADERS, value=tuned_rows(h), interactive=False, wrap=True,
                                  label="Tuned LoRAs", elem_id="t-table")

    @property
    def inputs(self) -> list:
        return [self.model, self.method, self.steps, self.rank, self.lr, self.check, self.gate_seeds,
                self.gate_steps]

    def wire(self, demo, tab, *, guarded, progress_of, streamed, session_of, lora_picker, tabs) -> None:
        """`progress_of` / `streamed`: the app's progress tracker and worker-thread streamer; `lora_picker`:
        the Generate tab's LoRA dropdown; `tabs`: the app's Tabs (Use it in Generate switches to it)."""
        import gradio as gr

        from studio.rewards import RatingStore

        from .lora_hires import lora_choices

        h, panel = self.h, self

        def store():
            return panel.store if panel.store is not None else RatingStore()

        @guarded(status=0, outputs=3)
        def tune_refresh():
            return summary_line(ratings_summary(store())), tuned_rows(h), gr.update(choices=tuned_names(h))

        for event in (demo.load, tab.select, self.refresh.click):
            event(tune_refresh, None, [self.summary, self.table, self.chosen], queue=False)

        @guarded(status=0, outputs=7)
        def do_tune(model, method, steps, rank, lr, check, gate_seeds, gate_steps, request: gr.Request = None,
                    progress=gr.Progress()):
            cancel = h.cancel_event(session_of(request), reset=True)
            tracker = progress_of(progress)
            for kind, value in streamed(lambda _preview: run_tune(
                    h, model, method, steps, rank, lr, check=check, gate_seeds=gate_seeds, gate_steps=gate_steps,
                    store=store(), progress=tracker, cancel=cancel), tracker):
                if kind == "status":
                    yield (value,) + (gr.skip(),) * 6
            result = value
            yield (done_line(result, h.loras_dir), verdict_html(result["gate"]), preview_gallery(result["previews"]),
                   gr.update(choices=tuned_names(h), value=result["name"]), summary_line(ratings_summary(store())),
                   tuned_rows(h), gr.update(choices=lora_choices(h.loras_dir, h.registry)))

        event = self.go.click(do_tune, self.inputs,
                              [self.status, self.verdict, self.previews, self.chosen, self.summary, self.table,
                               lora_picker], show_progress_on=[self.previews], concurrency_id="device",
                              concurrency_limit=1)

        @guarded(status=0, outputs=4)
        def do_regate(name, check, gate_seeds, gate_steps, request: gr.Request = None, progress=gr.Progress()):
            cancel = h.cancel_event(session_of(request), reset=True)
            tracker = progress_of(progress)
            for kind, value in streamed(lambda _preview: run_regate(
                    h, name, check, gate_seeds, gate_steps, progress=tracker, cancel=cancel), tracker):
                if kind == "status":
                    yield (value,) + (gr.skip(),) * 3
            # the before / after pictures of a tune are not this verdict's: cleared
            yield regate_line(value), verdict_html(value["gate"]), [], tuned_rows(h)

        regate = self.regate.click(do_regate, [self.chosen, self.check, self.gate_seeds, self.gate_steps],
                                   [self.status, self.verdict, self.previews, self.table],
                                   show_progress_on=[self.verdict], concurrency_id="device", concurrency_limit=1)

        @guarded(status=0, outputs=2)
        def tune_reward(check):
            report = run_reward_refresh(check, store=store())
            return reward_line(report), reward_verdict_html(report["gate"])

        self.reward_go.click(tune_reward, [self.check], [self.status, self.verdict], concurrency_id="device",
                             concurrency_limit=1)

        def tune_cancel(request: gr.Request):
            h.cancel(session_of(request))
            return "Cancelled (a LoRA whose gate did not finish keeps the verdict it had: none after a tune)."

        self.cancel.click(tune_cancel, None, [self.status], cancels=[event, regate], queue=False)

        @guarded(status=0, outputs=3)
        def tune_use(name, picked):
            value = use_in_generate(h, name, picked)
            return (f"`{name}` is picked in the Generate tab's LoRA menu.",
                    gr.update(choices=lora_choices(h.loras_dir, h.registry), value=value), gr.Tabs(selected="generate"))

        self.use.click(tune_use, [self.chosen, lora_picker], [self.status, lora_picker, tabs], queue=False)


__all__ = ["TunePanel", "gate_settings", "ratings_summary", "regate_line", "render_previews", "reward_line",
           "reward_verdict_html", "run_regate", "run_reward_refresh", "run_tune", "summary_line", "tune_settings",
           "tuned_rows", "use_in_generate", "verdict_html"]
