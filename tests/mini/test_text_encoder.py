"""mini v3's text encoder (issue 14): caption supervision, the position-word distance probe, and the
UNet stage on a frozen encoder."""
import json
import random
from pathlib import Path
from types import SimpleNamespace

import pytest

from studio.mini import text_encoder as T
from studio.mini import world as W
from studio.mini.tokenizer import MAX_LEN, build_tokenizer

WEIGHTS = Path(__file__).resolve().parents[2] / "studio" / "mini" / "weights"
_META = json.loads((WEIGHTS / "training.json").read_text()) if (WEIGHTS / "training.json").exists() else {}
SHIPPED_IS_V3 = bool(_META.get("frozen_text_encoder"))


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer()


def _labels(tok, caption):
    strs = tok.convert_ids_to_tokens(tok(caption).input_ids)
    names = [h for h, _ in T.head_layout()]
    return strs, T.caption_targets(strs), names


def test_each_token_is_asked_only_what_the_caption_said_before_it(tok):
    strs, rows, names = _labels(tok, "a red square at the top and a large black star on the left on a beige background")
    col = {n: i for i, n in enumerate(names)}
    top = strs.index("top</w>")
    # "at the top" could still become "at the top left": the position is asked from the next token on
    assert rows[top][col["obj0_position"]] == -100
    assert rows[top + 1][col["obj0_position"]] == T.LABELS["position"].index("top")
    assert rows[strs.index("square</w>")][col["obj0_color"]] == T.LABELS["color"].index("red")
    assert rows[strs.index("red</w>")][col["obj0_color"]] == -100
    assert rows[strs.index("square</w>")][col["obj0_size"]] == T.LABELS["size"].index("unspecified")
    eos = strs.index("<|endoftext|>")
    assert rows[eos - 1][col["count"]] == -100
    for t in range(eos, MAX_LEN):  # end-of-text and every padding state carry the whole caption
        assert rows[t][col["obj1_position"]] == T.LABELS["position"].index("left")
        assert rows[t][col["obj1_size"]] == T.LABELS["size"].index("large")
        assert rows[t][col["background"]] == T.SCENE_LABELS["background"].index("beige")
        assert rows[t][col["count"]] == 2
    assert all(v == -100 for v in rows[0])  # BOS sees nothing


def test_single_object_and_empty_captions_ask_for_none(tok):
    strs, rows, names = _labels(tok, "a small blue triangle at the bottom center")
    eos = strs.index("<|endoftext|>")
    for h in ("obj1_color", "obj1_position", "background"):
        assert rows[eos][names.index(h)] == 0 and rows[eos - 1][names.index(h)] == -100
    _, rows, _ = _labels(tok, "")
    assert rows[1][names.index("count")] == 0 and rows[1][names.index("obj0_color")] == 0


def test_parser_reads_every_training_caption_form():
    rng = random.Random(3)
    for seed in range(300):
        s = W.sample_scene(seed, "train")
        for cap in (W.caption(s, rng), W.caption(s, full=True)):
            p = T.parse_caption(cap.replace(",", " ,").split())
            assert [(o["color"][0], o["shape"][0], o["position"][0]) for o in p["objects"]] == [
                (o.color, o.shape, o.position) for o in s.objects], cap
            for po, o in zip(p["objects"], s.objects):
                assert po["size"][0] in (o.size, "unspecified"), cap
            if "background" in cap:
                assert p["background"][0] == s.background, cap
            else:
                assert p["background"] is None


def _shipped_encoder():
    return T.load_frozen(WEIGHTS / "text_encoder")


@pytest.mark.skipif(SHIPPED_IS_V3, reason="the shipped encoder is trained first and frozen (v3 on); see the next test")
def test_v2_jointly_trained_encoder_fails_the_position_separation_check(tok):
    # the shipped v2 encoder drops position words (issue 14): the check must report it, or it guards nothing
    r = T.position_separation(_shipped_encoder(), tok)
    assert not r["separates"], r
    assert r["ratio"] < T.SEPARATION_THRESHOLD / 2, r


@pytest.mark.skipif(not SHIPPED_IS_V3, reason="until mini v3 ships (UNet trained on the frozen --stage text encoder), "
                    "studio/mini/weights/text_encoder is v2's jointly trained one, which drops position words")
def test_shipped_encoder_separates_position_words(tok):
    r = T.position_separation(_shipped_encoder(), tok)
    assert r["separates"], r


@pytest.mark.skipif(_META.get("text_encoder_metrics", {}) is None or
                    (_META.get("text_encoder_metrics") or {}).get("targets") != "per-object",
                    reason="the shipped encoder was trained with cumulative targets (v3), which entangle both objects")
def test_shipped_encoder_gives_the_second_object_tokens_of_its_own(tok):
    # v3's encoder scored 0.987 here (both objects entangled in the second phrase): two-object prompts 0%
    r = T.binding_separation(_shipped_encoder(), tok)
    assert r["ratio"] < 0.4, r


def test_a_short_text_stage_run_separates_position_words(tmp_path, tok):
    # a tiny deterministic --stage text run already moves the states after the position words as much as
    # a colour swap does (the check function's threshold), which the jointly trained v2 encoder never did
    import torch

    args = SimpleNamespace(seed=0, resume=False, text_steps=80, text_batch=24, text_lr=3e-3, text_stop_at=0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # ~6 s of CPU; with more threads on a shared runner it only gets slower
    try:
        m = T.train_text(args, tmp_path, tok, evaluate=False)
    finally:
        torch.set_num_threads(threads)
    te = T.load_frozen(tmp_path / "text_encoder")
    r = T.position_separation(te, tok)
    assert r["separates"], r
    assert r["ratio"] >= 2 * T.SEPARATION_THRESHOLD, r  # 0.88 when written (v2's encoder: 0.07)
    assert m["steps"] == 80 and (tmp_path / "text_encoder" / "heads.pt").exists()


def test_unet_stage_never_updates_a_frozen_text_encoder(tmp_path, tok, monkeypatch):
    import torch

    from studio.mini import train as TR
    from studio.mini.train import make_text_encoder

    torch.manual_seed(0)
    te_dir = tmp_path / "te"
    make_text_encoder(len(tok)).save_pretrained(te_dir)
    before = {k: v.clone() for k, v in T.load_frozen(te_dir).state_dict().items()}
    monkeypatch.setattr(TR, "latent_scaling", lambda n=2000: (1.22, 0.0))  # 2000 rendered scenes: too slow here
    work = tmp_path / "work"
    common = ["--stage", "unet", "--work", str(work), "--out", str(tmp_path / "out"), "--batch-size", "2",
              "--export-every", "1000"]
    TR.main(common + ["--unet-steps", "2", "--text-encoder", str(te_dir)])
    ck = torch.load(work / "unet_ema.pt", weights_only=False)
    assert ck["step"] == 2 and ck["hparams"]["frozen_text_encoder"] == str(te_dir)
    assert ck["hparams"]["prediction_type"] == "v_prediction" and ck["hparams"]["zero_terminal_snr"]
    assert all(torch.equal(ck["te"][k], v) for k, v in before.items())
    st = torch.load(work / "unet_state.pt", weights_only=False)
    assert all(torch.equal(st["te"][k], v) for k, v in before.items())
    with pytest.raises(SystemExit, match="frozen text encoder"):  # resuming it jointly would unfreeze it
        TR.main(common + ["--unet-steps", "3", "--resume"])
    TR.main(common + ["--unet-steps", "3", "--resume", "--text-encoder", str(te_dir)])
    assert torch.load(work / "unet_ema.pt", weights_only=False)["step"] == 3


def test_text_stage_resumes_exactly_where_it_stopped(tmp_path, tok):
    from safetensors.torch import load_file

    def args(**kw):
        return SimpleNamespace(**({"seed": 0, "resume": False, "text_steps": 4, "text_batch": 4, "text_lr": 1e-3,
                                   "text_stop_at": 0} | kw))

    T.train_text(args(), tmp_path / "a", tok, evaluate=False)
    assert not T.train_text(args(text_stop_at=2), tmp_path / "b", tok, evaluate=False)["final"]
    m = T.train_text(args(resume=True), tmp_path / "b", tok, evaluate=False)
    assert m["steps"] == 4 and m["runs"] == 2 and m["final"]
    a = load_file(tmp_path / "a" / "text_encoder" / "model.safetensors")
    b = load_file(tmp_path / "b" / "text_encoder" / "model.safetensors")
    assert a.keys() == b.keys() and all(bool((a[k] == b[k]).all()) for k in a)


def test_unet_stage_fine_tunes_from_a_given_unet(tmp_path, tok, monkeypatch):
    """--init-unet starts the run (and its EMA) from an earlier UNet rather than random weights."""
    import torch

    from studio.mini import train as TR
    from studio.mini.train import make_text_encoder, make_unet

    torch.manual_seed(0)
    te_dir, init_dir = tmp_path / "te", tmp_path / "init_unet"
    make_text_encoder(len(tok)).save_pretrained(te_dir)
    torch.manual_seed(123)
    make_unet().save_pretrained(init_dir)
    init = make_unet().from_pretrained(init_dir).state_dict()
    monkeypatch.setattr(TR, "latent_scaling", lambda n=2000: (1.22, 0.0))
    work = tmp_path / "work"
    TR.main(["--stage", "unet", "--work", str(work), "--out", str(tmp_path / "out"), "--batch-size", "2",
             "--export-every", "1000", "--unet-steps", "1", "--lr", "0", "--text-encoder", str(te_dir),
             "--init-unet", str(init_dir)])
    ck = torch.load(work / "unet_ema.pt", weights_only=False)
    assert ck["hparams"]["init_unet"] == str(init_dir)
    assert all(torch.allclose(ck["unet"][k], v) for k, v in init.items())  # lr 0: still the given UNet
    # a second budget (--resume, no --init-unet) still names where the weights started, for the card
    TR.main(["--stage", "unet", "--work", str(work), "--out", str(tmp_path / "out"), "--batch-size", "2",
             "--export-every", "1000", "--unet-steps", "2", "--lr", "0", "--text-encoder", str(te_dir), "--resume"])
    ck = torch.load(work / "unet_state.pt", weights_only=False)
    assert ck["step"] == 2 and ck["hparams"]["init_unet"] == str(init_dir)
    with pytest.raises(SystemExit):
        TR.main(["--stage", "unet", "--work", str(work), "--init-unet", str(tmp_path / "nowhere")])


def test_per_object_targets_give_each_object_tokens_of_its_own(tok):
    # v4 (issue 14, binding): the second object's phrase is asked about the second object only, through
    # heads shared by both objects; the slot heads wait for the end of the caption
    cap = "a large red circle at the top left and a small blue square on the right, white background"
    strs = tok.convert_ids_to_tokens(tok(cap).input_ids)
    rows = T.caption_targets(strs, targets="per-object")
    col = {n: i for i, n in enumerate(h for h, _ in T.head_layout("per-object"))}
    i_and, i_comma, eos = strs.index("and</w>"), strs.index(",</w>"), strs.index("<|endoftext|>")
    assert rows[i_and][col["cur_position"]] == T.LABELS["position"].index("top left")
    assert rows[i_and][col["cur_color"]] == T.LABELS["color"].index("red")
    for t in range(strs.index("square</w>"), i_comma + 1):  # the second phrase: blue, never red
        assert rows[t][col["cur_color"]] == T.LABELS["color"].index("blue")
        assert all(rows[t][col[f"obj0_{a}"]] == -100 for a in T.OBJ_ATTRS)
    assert rows[i_comma][col["cur_position"]] == T.LABELS["position"].index("right")
    assert rows[i_comma + 1][col["cur_color"]] == -100  # the span ended
    for t in range(eos, MAX_LEN):
        assert rows[t][col["obj0_color"]] == T.LABELS["color"].index("red")
        assert rows[t][col["obj1_color"]] == T.LABELS["color"].index("blue")
    # the cumulative (v3) layout is unchanged by the new mode
    assert T.caption_targets(strs) == T.caption_targets(strs, targets="cumulative")
    with pytest.raises(ValueError, match="text targets"):
        T.head_layout("per-token")


def test_binding_check_tells_entangled_from_bound_states(tok):
    import torch
    from types import SimpleNamespace as NS

    class Bound:  # each token: the colour of the object whose phrase it is in (hand-written ideal)
        def __call__(self, ids):
            out = torch.zeros(len(ids), MAX_LEN, 8)
            for n, row in enumerate(ids.tolist()):
                strs = tok.convert_ids_to_tokens(row)
                k = 0
                for t, s in enumerate(strs):
                    k += s == "and</w>"
                    w = s[:-4]
                    if w in W.COLORS:
                        out[n, t:, :] = 0
                        out[n, t:, k * 4 + list(W.COLORS).index(w) % 4] = 1.0 + list(W.COLORS).index(w)
            return NS(last_hidden_state=out)

    class Entangled(Bound):  # every token after a colour word keeps all colours said so far
        def __call__(self, ids):
            out = torch.zeros(len(ids), MAX_LEN, 8)
            for n, row in enumerate(ids.tolist()):
                for t, s in enumerate(tok.convert_ids_to_tokens(row)):
                    if s[:-4] in W.COLORS:
                        out[n, t:, list(W.COLORS).index(s[:-4]) % 8] += 1.0 + list(W.COLORS).index(s[:-4])
            return NS(last_hidden_state=out)

    assert T.binding_separation(Bound(), tok)["ratio"] < 0.05
    assert T.binding_separation(Entangled(), tok)["ratio"] > 0.5
