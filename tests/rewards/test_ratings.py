"""The ratings store: one whole JSON line per rating, fsynced, safe against torn writes and concurrent
appends; picks give N-1 pairs; the learned reward trains from it through the files it points at."""
import json
import os
import threading

import numpy as np
import pytest
from PIL import Image

from studio import rewards
from studio.errors import RequestError
from studio.rewards.ratings import RatingStore


def item(i, prompt="a red circle"):
    return {"sha256": f"{i:064x}", "prompt": prompt, "seed": i}


def test_like_dislike_pick_lines(tmp_path):
    store = RatingStore(tmp_path / "r.jsonl")
    store.like(item(1))
    store.dislike(item(2))
    store.pick(item(3), [item(4), item(5), item(3)])  # the winner among the others is dropped
    lines = (tmp_path / "r.jsonl").read_text().splitlines()
    assert len(lines) == 3 and all(json.loads(line)["v"] == 1 for line in lines)
    kinds = [r["kind"] for r in store.ratings()]
    assert kinds == ["like", "dislike", "pick"]
    pick = store.ratings()[2]
    assert pick["item"]["seed"] == 3 and [o["seed"] for o in pick["others"]] == [4, 5]
    assert pick["time"].endswith("+00:00") and len(pick["id"]) == 32
    pairs = store.pairs()
    assert [(w["seed"], l["seed"]) for w, l, _, _ in pairs] == [(3, 4), (3, 5)]
    assert len({rid for *_, rid in pairs}) == 1  # one group: held out together
    assert [(r["seed"], liked) for r, _, liked in store.likes()] == [(1, True), (2, False)]


def test_every_append_is_fsynced(tmp_path, monkeypatch):
    calls = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append(fd), real(fd)))
    store = RatingStore(tmp_path / "r.jsonl")
    store.like(item(1))
    store.like(item(2))
    assert len(calls) == 2


def test_a_torn_last_line_is_skipped_and_sealed_off(tmp_path):
    path = tmp_path / "r.jsonl"
    store = RatingStore(path)
    store.like(item(1))
    with open(path, "ab") as fh:
        fh.write(b'{"v":1,"kind":"like","item":{"sha')  # a crash mid-write
    assert len(store.ratings()) == 1
    store.dislike(item(2))
    assert [r["kind"] for r in store.ratings()] == ["like", "dislike"]
    assert path.read_bytes().endswith(b"\n")


def test_concurrent_appends_stay_whole(tmp_path):
    store = RatingStore(tmp_path / "r.jsonl")
    threads = [threading.Thread(target=lambda k=k: [store.like(item(k * 100 + i)) for i in range(20)])
               for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r["item"]["seed"] for r in store.ratings()) == sorted(k * 100 + i for k in range(4) for i in range(20))


def test_bad_ratings_are_one_line_errors(tmp_path):
    store = RatingStore(tmp_path / "r.jsonl")
    with pytest.raises(RequestError, match="unknown rating 'love'"):
        store.add("love", item(1))
    with pytest.raises(RequestError, match="a pick needs the other candidates"):
        store.pick(item(1), [item(1)])
    with pytest.raises(RequestError, match="prompt is unknown"):
        store.like({"sha256": "ab" * 32})
    with pytest.raises(RequestError, match="no such file"):
        store.like(tmp_path / "missing.png")
    with pytest.raises(RequestError, match="others apply to a pick"):
        store.add("like", item(1), others=[item(2)])
    assert not (tmp_path / "r.jsonl").exists() or store.ratings() == []


def test_export_is_the_ratings_as_jsonl(tmp_path):
    store = RatingStore(tmp_path / "r.jsonl")
    store.like(item(1))
    store.pick(item(2), [item(3)])
    out = store.export(tmp_path / "export.jsonl")
    assert [json.loads(line)["kind"] for line in out.read_text().splitlines()] == ["like", "pick"]


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFUSION_STUDIO_HOME", str(tmp_path / "home"))
    rewards._cache.clear()
    return tmp_path / "home"


def _png(path, rgb):
    Image.new("RGB", (32, 32), rgb).save(path)
    return path


def test_train_learned_from_the_store_through_the_files(home, tmp_path):
    rng = np.random.default_rng(0)
    files = []
    for i, red in enumerate(rng.choice(256, 40, replace=False).tolist()):  # distinct files, distinct hashes
        files.append((_png(tmp_path / f"{i}.png", (red, 80, 80)), red))
    for k in range(30):  # the redder one is always picked
        (a, ra), (b, rb) = [files[j] for j in rng.choice(len(files), 2, replace=False)]
        best, other = (a, b) if ra > rb else (b, a)
        rewards.rate(best, "pick", others=[other], prompt="a square")
    rewards.rate(files[0][0], "like", prompt="a square")
    reward, report = rewards.train_learned()
    assert report.pairs == 30 and report.likes == 1 and report.heldout_pairs == 6 and report.skipped == 0
    assert report.path == str(rewards.learned_path("image")) and rewards.get("learned").hash == reward.hash
    s = rewards.get("learned").score([np.full((8, 8, 3), (250, 80, 80), np.uint8),
                                      np.full((8, 8, 3), (10, 80, 80), np.uint8)], "a square")
    assert s[0] > s[1]
    # a rated file that changed since is not trained on (its rating was about other pixels)
    _png(files[1][0], (0, 0, 255))
    _, report = rewards.train_learned(save=False)
    assert report.skipped == 1


def test_rating_an_output_reads_its_prompt_and_seed_from_the_seal(home, tmp_path):
    from studio.writer import seal_derived

    out = seal_derived(Image.new("RGB", (256, 256), (200, 10, 10)), tmp_path / "o.png", model_name="m",
                       params={"request": {"prompt": "a red field", "modality": "image"}, "seed": 7,
                               "model_hash": "h" * 64})
    entry = rewards.rate(out, "like")
    assert entry["item"]["prompt"] == "a red field" and entry["item"]["seed"] == 0  # the output's own record
    assert entry["item"]["sha256"] == out.record.sha256 and entry["item"]["path"] == str((tmp_path / "o.png").resolve())
    by_path = rewards.rate(tmp_path / "o.png", "dislike")
    assert by_path["item"]["sha256"] == out.record.sha256 and by_path["item"]["prompt"] == "a red field"
    assert [r["kind"] for r in RatingStore().ratings()] == ["like", "dislike"]


def test_cli_rate_and_rewards_train(home, tmp_path, capsys):
    from studio.cli import main

    a = _png(tmp_path / "a.png", (250, 0, 0))
    b = _png(tmp_path / "b.png", (0, 0, 250))
    assert main(["rate", str(a), "--like", "--prompt", "x"]) == 0
    assert main(["rate", str(a), str(b), "--pick", "--prompt", "x"]) == 0
    assert "pick" in capsys.readouterr().out
    assert main(["rate", str(a), "--like", "--dislike"]) == 2
    assert "exactly one of" in capsys.readouterr().err
    assert main(["rewards", "--train", "image"]) == 0
    out = capsys.readouterr().out
    assert "trained on 1 pairs and 1 likes/dislikes" in out and "not measured" in out
    assert main(["rewards"]) == 0
    assert "learned" in capsys.readouterr().out


def _wav(path, amplitude, rate=16000):
    import wave

    t = np.arange(rate // 2) / rate
    x = (amplitude * np.sin(2 * np.pi * 330 * t) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(x.tobytes())
    return path


def test_train_learned_audio_from_rated_wav_files(home, tmp_path):
    amps = np.linspace(0.02, 0.9, 24)
    files = [_wav(tmp_path / f"{i}.wav", a) for i, a in enumerate(amps)]
    rng = np.random.default_rng(0)
    for _ in range(30):  # the louder clip is always picked
        i, j = sorted(rng.choice(len(files), 2, replace=False))
        rewards.rate(files[j], "pick", others=[files[i]], prompt="a tone")
    _png(tmp_path / "img.png", (1, 2, 3))
    rewards.rate(tmp_path / "img.png", "like", prompt="a tone")  # an image rating: not audio training data
    reward, report = rewards.train_learned("audio")
    assert report.pairs == 30 and report.likes == 0 and report.skipped == 0
    got = rewards.get("learned-audio", "audio")
    assert got.hash == reward.hash
    t = np.arange(8000) / 16000
    s = got.score([(0.8 * np.sin(2 * np.pi * 330 * t), 16000), (0.05 * np.sin(2 * np.pi * 330 * t), 16000)], "a tone")
    assert s[0] > s[1]
