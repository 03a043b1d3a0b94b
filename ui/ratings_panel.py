"""Ratings in the web app (issue 18's RLHF loop): thumbs up / down under the Generate tab's results, a
best-of-N accordion whose grid shows each candidate's rank and score with "pick the best" (a pick of N is
N-1 preference pairs), and a "ratings so far" line. Every rating goes through `studio.rewards.RatingStore`,
the same store the CLI (`studio rate`) and scripts use, and rates the sealed file the page shows: the store
verifies its seal and keeps its whole record.

The entries a click rates come from the server's own state (never a path the browser sends): Generate's and the
Gallery's gr.State, and for the Edit, Video and Music tabs `ShownResults`, what `Handlers.generate` last gave that
page's tab. A click on nothing, on a stale index or on a file that no longer verifies answers with one line in
the count line."""

import threading
import time
import uuid
from collections import OrderedDict
from typing import Optional

from studio import GenerationRequest, RequestError

from .errors import step_callback

# words next to the symbols: a browser without an emoji font shows the symbols as empty boxes
LABELS = {"like": "👍 thumbs up", "dislike": "👎 thumbs down", "pick": "★ best"}
MAX_N = 8


def count_line(store) -> str:
    c = store.count()
    return (f"**Ratings so far: {c['total']}** ({c['like']} up, {c['dislike']} down, {c['pick']} best-of picks = "
            f"{c['pairs']} pairs) — `studio tune` and the learned reward train on them")


def _store(store):
    if store is not None:
        return store
    from studio.rewards import RatingStore

    return RatingStore()


def _chosen(entries, index, nothing: str) -> dict:
    if not entries:
        raise RequestError(nothing)
    if not isinstance(index, int) or not 0 <= index < len(entries):
        raise RequestError("select an image in the results first")
    return entries[index]


def rate_entry(store, kind: str, entries, index, nothing: str = "generate an image first") -> str:
    """Thumbs up / down for the selected entry; the new count line (with what was rated)."""
    e = _chosen(entries, index, nothing)
    store.add(kind, e["file"])
    return f"{LABELS[kind]} recorded for seed {e.get('seed')} · " + count_line(store)


def pick_best(store, entries, index) -> str:
    """The selected candidate is the best of the grid: one pick, N-1 pairs."""
    e = _chosen(entries, index, "run best-of-N first")
    others = [o["file"] for i, o in enumerate(entries) if i != index]
    if not others:
        raise RequestError("a pick needs at least two candidates")
    entry = store.pick(e["file"], others)
    return (f"{LABELS['pick']} recorded: seed {e.get('seed')} over {len(entry['others'])} other(s) · "
            + count_line(store))


def image_rewards() -> list[str]:
    """Rewards that can rank images now (built in, or with their weights in place), learned first."""
    from studio import rewards

    try:
        rows = rewards.available()
    except Exception:  # noqa: BLE001 -- a broken reward folder must not stop the page from building
        return []
    return [r["name"] for r in rows if "image" in r["modalities"] and r["ready"]]


def candidate_caption(e: dict) -> str:
    return f"#{e.get('reward_rank')} · score {e.get('reward_score', float('nan')):.4g} · seed {e.get('seed')}"


def run_best_of(h, fields: dict, n, reward: str, *, progress=None, cancel=None) -> tuple[list[dict], str]:
    """(the N candidates' history entries, best first, with rank and score; a status line)."""
    from studio.best_of import ranking_line

    n = int(n or 0)
    if not 2 <= n <= MAX_N:
        raise RequestError(f"best-of-N takes 2 to {MAX_N} candidates, not {n}")
    if not reward:
        raise RequestError("pick a reward to rank the candidates with")
    fields = {**fields, "batch": 1, "best_of": n, "reward": reward}
    if not fields.get("model"):
        fields["model"] = h.default_model("image")
    request = GenerationRequest.build(**fields)

    on_step = step_callback(progress, cancel, f"rendering {n} candidates")
    out = h.out_dir / "best-of" / time.strftime("%Y%m%d") / f"{time.strftime('%H%M%S')}-best{n}-{uuid.uuid4().hex[:6]}.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    result = h.studio.generate(request, out=out, keep_all=True, progress=on_step)
    entries = []
    for i in result.ranking:  # best first
        o = result.candidates[i]
        entry = h._record(result, o, "best-of")
        entry.update(reward_rank=o.record.reward_rank, reward_score=o.record.reward_score)
        entries.append(entry)
    return entries, ranking_line(result)


class ShownResults:
    """What each page's tabs show now: (session, tab) -> the history entries of the tab's last results, put by
    `Handlers.generate` (the Edit, Video and Music tabs rate from here, the way Generate rates from its State).
    Only sealed files the server wrote for that page get in, so a click never rates a path the browser sent.
    Bounded: past `limit` pages the oldest one is forgotten (its buttons then say there is nothing to rate)."""

    def __init__(self, limit: int = 256):
        self.limit = limit
        self._shown: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def put(self, session: str, tab: str, entries: list) -> None:
        with self._lock:
            self._shown[(session or "-", tab)] = list(entries)
            self._shown.move_to_end((session or "-", tab))
            while len(self._shown) > self.limit:
                self._shown.popitem(last=False)

    def get(self, session: str, tab: str) -> list:
        with self._lock:
            return list(self._shown.get((session or "-", tab)) or [])


class RatingButtons:
    """👍 / 👎 for the selected result, and the "ratings so far" line; built where the results are shown."""

    def __init__(self, prefix: str, store=None):
        import gradio as gr

        self.store = store
        with gr.Row(equal_height=True, elem_id=f"{prefix}-rate-row"):
            self.up = gr.Button("👍 Good", size="sm", elem_id=f"{prefix}-rate-up", scale=0, min_width=90)
            self.down = gr.Button("👎 Not good", size="sm", elem_id=f"{prefix}-rate-down", scale=0, min_width=110)
            self.count = gr.Markdown("", elem_id=f"{prefix}-ratings-count", elem_classes="ds-status")

    def wire(self, demo, entries, selected, *, guarded, nothing: str = "generate an image first",
             name: str = "rate") -> None:
        """`entries` / `selected`: the results' State (history entries) and the selected index. `entries`
        None: `selected` is a State holding the selected entry itself (the Gallery's: an index there would
        name another output once a refresh puts new ones first). `name`: the events' names."""
        inputs = [selected] if entries is None else [entries, selected]

        def chosen(*args):
            return ([args[0]] if args[0] else [], 0) if entries is None else args

        self._wire(demo, inputs, chosen, guarded=guarded, nothing=nothing, name=name)

    def wire_shown(self, demo, shown: ShownResults, tab: str, *, session_of, guarded, nothing: str,
                   name: str) -> None:
        """For a tab whose results are one request's outputs (Edit, Video, Music): a click rates the first of
        what `shown` holds for this page's `tab` (those tabs render one output per run)."""
        import gradio as gr

        def chosen(request: gr.Request = None):
            return shown.get(session_of(request), tab), 0

        self._wire(demo, [], chosen, guarded=guarded, nothing=nothing, name=name)

    def _wire(self, demo, inputs, chosen, *, guarded, nothing: str, name: str) -> None:
        """`chosen(*inputs)` -> (entries, index) of what a click rates; its signature is the events' (a
        gr.Request parameter is filled in by Gradio)."""
        import functools

        store = self.store

        def rater(kind: str, fn_name: str):
            @functools.wraps(chosen)  # the inputs Gradio passes are chosen's
            def rate(*args, **kwargs):
                es, idx = chosen(*args, **kwargs)
                return rate_entry(_store(store), kind, es, idx, nothing)

            rate.__name__ = rate.__qualname__ = fn_name
            return guarded(rate, status=0, outputs=1)

        # queue=False: a rating takes milliseconds and must not wait behind a render on the device queue
        self.up.click(rater("like", f"{name}_up"), inputs, [self.count], queue=False)
        self.down.click(rater("dislike", f"{name}_down"), inputs, [self.count], queue=False)

        @guarded(status=0, outputs=1)
        def show_count():
            return count_line(_store(store))

        demo.load(show_count, None, [self.count], queue=False)


class BestOfPanel:
    """The accordion in the Generate tab's form column: N candidates of the form's request ranked by a reward,
    shown as a grid with each one's rank and score; rate one, or pick the best."""

    def __init__(self, store=None):
        import gradio as gr

        self.store = store
        choices = image_rewards()
        with gr.Accordion("Best of N: rank candidates by a reward, pick the best", open=False, elem_id="bo-box"):
            with gr.Row():
                self.n = gr.Slider(2, MAX_N, value=4, step=1, label="Candidates (N)", elem_id="bo-n")
                self.reward = gr.Dropdown(choices, value=choices[0] if choices else None, label="Reward",
                                          elem_id="bo-reward", allow_custom_value=False)
            self.go = gr.Button("Run best-of-N", variant="secondary", elem_id="bo-go")
            self.status = gr.Markdown("", elem_id="bo-status", elem_classes="ds-status")
            self.grid = gr.Gallery(label="Candidates, best first (rank · score · seed)", columns=4, height=300,
                                   object_fit="contain", interactive=False, elem_id="bo-grid")
            with gr.Row():
                self.pick = gr.Button("★ Pick the selected as best", size="sm", elem_id="bo-pick")
                self.up = gr.Button("👍 Good", size="sm", elem_id="bo-rate-up", scale=0, min_width=90)
                self.down = gr.Button("👎 Not good", size="sm", elem_id="bo-rate-down", scale=0, min_width=110)
            self.entries = gr.State([])
            self.selected = gr.State(None)

    def wire(self, h, *, form_inputs: list, fields_of, progress_of, cancel_of, guarded, count) -> None:
        """Like `XYZPanel.wire`; `count`: the Markdown line the ratings' results go to."""
        import gradio as gr

        store, n_form = self.store, len(form_inputs)

        @guarded(status=0, outputs=4)
        def do_best_of(*args, request: gr.Request = None, progress=gr.Progress()):
            values, n, reward = list(args[:n_form]), args[n_form], args[n_form + 1]
            entries, line = run_best_of(h, fields_of(values), n, reward, progress=progress_of(progress),
                                        cancel=cancel_of(request))
            grid = [(e["file"], candidate_caption(e)) for e in entries]
            return f"{len(entries)} sealed candidates · {line}", grid, entries, None

        self.go.click(do_best_of, form_inputs + [self.n, self.reward],
                      [self.status, self.grid, self.entries, self.selected], show_progress_on=[self.grid],
                      concurrency_id="device", concurrency_limit=1)

        def on_select(entries, evt: gr.SelectData):
            i = evt.index if isinstance(evt.index, int) else None
            return i if i is not None and i < len(entries or []) else None

        self.grid.select(on_select, [self.entries], [self.selected], queue=False)

        @guarded(status=0, outputs=1)
        def best_of_pick(es, idx):
            return pick_best(_store(store), es, idx)

        @guarded(status=0, outputs=1)
        def best_of_up(es, idx):
            return rate_entry(_store(store), "like", es, idx, nothing="run best-of-N first")

        @guarded(status=0, outputs=1)
        def best_of_down(es, idx):
            return rate_entry(_store(store), "dislike", es, idx, nothing="run best-of-N first")

        state = [self.entries, self.selected]
        self.pick.click(best_of_pick, state, [count], queue=False)
        self.up.click(best_of_up, state, [count], queue=False)
        self.down.click(best_of_down, state, [count], queue=False)


__all__ = ["BestOfPanel", "RatingButtons", "ShownResults", "count_line", "pick_best", "rate_entry", "run_best_of"]
