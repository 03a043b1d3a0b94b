"""The ratings store: SQLite (WAL, a schema version), one transaction per rating, picks stored as N-1 pairs,
JSONL export / import (and the first store's ratings.jsonl imported), concurrent writers from threads and
processes, sealed files rated by their verified record (unsealed or changed ones refused), the `studio rate`
CLI, and the learned reward trained from the store through the files it points at."""
import json
import multiprocessing
import sqlite3
import threading

import numpy as np
import pytest
from PIL import Image

from studio import rewards
from studio.errors import RequestError
from studio.rewards.ratings import SCHEMA_VERSION, RatingStore


def item(i, prompt="a red circle"):
    return {"sha256": f"{i:064x}", "prompt": prompt, "seed": i}


def test_like_dislike_pick_in_sqlite(tmp_path):
    store = RatingStore(tmp_path / "r.db")
    store.like(item(1))
    store.dislike(item(2))
    store.pick(item(3), [item(4), item(5), item(3), item(4)])  # the winner and repeats among the others dropped
    kinds = [r["kind"] for r in store.ratings()]
    assert kinds == ["like", "dislike", "pick"]
    pick = store.ratings()[2]
    assert pick["item"]["seed"] == 3 and [o["seed"] for o in pick["others"]] == [4, 5]
    assert pick["time"].endswith("+00:00") and len(pick["id"]) == 32 and pick["v"] == 1
    pairs = store.pairs()
    assert [(w["seed"], l["seed"]) for w, l, _, _ in pairs] == [(3, 4), (3, 5)]
    assert len({rid for *_, rid in pairs}) == 1  # one group: held out together
    assert [(r["seed"], liked) for r, _, liked in store.likes()] == [(1, True), (2, False)]
    assert store.count() == {"like": 1, "dislike": 1, "pick": 1, "pairs": 2, "items": 5, "total": 3}
    assert [r["kind"] for r in store.ratings(limit=2)] == ["dislike", "pick"]
    # what is on disk: one SQLite file in WAL mode with the schema version, a pick as N-1 pair rows
    con = sqlite3.connect(tmp_path / "r.db")
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    rows = con.execute("SELECT winner, loser FROM pairs ORDER BY pos").fetchall()
    assert rows == [(f"{3:064x}", f"{4:064x}"), (f"{3:064x}", f"{5:064x}")]
    con.close()


def test_a_pick_of_n_is_n_minus_1_pairs(tmp_path):
    store = RatingStore(tmp_path / "r.db")
    store.pick(item(10), [item(11 + i) for i in range(7)])  # best of 8
    assert store.count()["pairs"] == 7 and len(store.pairs()) == 7
    assert {w["seed"] for w, *_ in store.pairs()} == {10}


def test_a_failed_rating_leaves_nothing_behind(tmp_path, monkeypatch):
    store = RatingStore(tmp_path / "r.db")
    store.like(item(1))

    def boom(con, entry):  # a crash after the rating row, before its pairs: the transaction rolls back
        con.execute("INSERT INTO items (sha256) VALUES ('x')")
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(RatingStore, "_insert", lambda self, con, entry: boom(con, entry))
    with pytest.raises(sqlite3.OperationalError):
        store.pick(item(2), [item(3)])
    monkeypatch.undo()
    assert store.count() == {"like": 1, "dislike": 0, "pick": 0, "pairs": 0, "items": 1, "total": 1}


def test_a_newer_schema_or_a_foreign_file_is_refused(tmp_path):
    newer = tmp_path / "newer.db"
    con = sqlite3.connect(newer)
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    con.close()
    with pytest.raises(RequestError, match="newer than this studio's"):
        RatingStore(newer).count()
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database, just text " * 100)
    with pytest.raises(RequestError, match="cannot open the ratings store junk.db: file is not a database"):
        RatingStore(junk).like(item(1))


def test_concurrent_writers_from_threads_stay_whole(tmp_path):
    store = RatingStore(tmp_path / "r.db")
    errors = []

    def work(k):
        try:
            for i in range(15):
                if i % 3:
                    RatingStore(tmp_path / "r.db").like(item(k * 100 + i))
                else:
                    store.pick(item(k * 100 + i), [item(k * 100 + 50 + i), item(k * 100 + 70 + i)])
        except Exception as exc:  # noqa: BLE001 -- reported by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert store.count() == {"like": 60, "dislike": 0, "pick": 30, "pairs": 60, "items": 150, "total": 90}
    for r in store.ratings():  # each pick arrived with both its pairs
        if r["kind"] == "pick":
            base = r["item"]["seed"]
            assert [o["seed"] for o in r["others"]] == [base + 50, base + 70]


def _rate_in_process(path, k, n):
    store = RatingStore(path)
    for i in range(n):
        store.pick(item(k * 1000 + i), [item(k * 1000 + 500 + i)]) if i % 2 else store.like(item(k * 1000 + i))


def test_concurrent_writers_from_processes(tmp_path):
    """The web server, a CLI run and a script write to the same file at once."""
    path = tmp_path / "r.db"
    RatingStore(path).count()  # created first; the processes race on writes, not on creating the schema
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_rate_in_process, args=(path, k, 20)) for k in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    c = RatingStore(path).count()
    assert (c["like"], c["pick"], c["pairs"], c["total"]) == (30, 30, 30, 60)


def test_bad_ratings_are_one_line_errors(tmp_path):
    store = RatingStore(tmp_path / "r.db")
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
    assert store.count()["total"] == 0


def test_export_then_import_round_trips(tmp_path):
    store = RatingStore(tmp_path / "r.db")
    store.like(item(1), note="crisp")
    store.pick(item(2), [item(3), item(4)])
    store.dislike(item(1, prompt="another prompt"))  # the prompt as rated stays with its rating
    out = store.export(tmp_path / "export.jsonl")
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["kind"] for line in lines] == ["like", "pick", "dislike"] and lines == store.ratings()
    assert lines[0]["note"] == "crisp" and lines[2]["item"]["prompt"] == "another prompt"
    other = RatingStore(tmp_path / "other.db")
    assert other.import_jsonl(out) == {"added": 3, "present": 0, "skipped": 0}
    assert other.ratings() == store.ratings()
    assert other.import_jsonl(out) == {"added": 0, "present": 3, "skipped": 0}  # ids: never twice
    assert other.count()["pairs"] == 2
    bad = tmp_path / "bad.jsonl"  # a pick of itself, a line without an id, not JSON: none is a rating
    bad.write_text(json.dumps({"id": "c" * 32, "kind": "pick", "item": item(7), "others": [item(7)]}) + "\n"
                   + json.dumps({"kind": "like", "item": item(8)}) + "\n" + "nope\n")
    assert other.import_jsonl(bad) == {"added": 0, "present": 0, "skipped": 3}


def test_the_first_jsonl_store_is_imported_and_kept(tmp_path):
    """A `ratings.jsonl` of the first store (one line per rating, maybe a torn last line) keeps working: its
    ratings are in the database beside it, once, and the file stays as it was."""
    old = tmp_path / "ratings.jsonl"
    lines = [{"v": 1, "id": "a" * 32, "kind": "like", "time": "2026-01-01T00:00:00+00:00", "item": item(1)},
             {"v": 1, "id": "b" * 32, "kind": "pick", "time": "2026-01-01T00:00:01+00:00", "item": item(2),
              "others": [item(3), item(4)]}]
    raw = "".join(json.dumps(line) + "\n" for line in lines) + '{"v":1,"kind":"like","item":{"sha'  # torn
    old.write_text(raw)
    store = RatingStore(old)  # the old path still names the store
    assert store.path == tmp_path / "ratings.db"
    assert [r["id"] for r in store.ratings()] == ["a" * 32, "b" * 32] and len(store.pairs()) == 2
    store.like(item(5))
    assert RatingStore(tmp_path / "ratings.db").count()["total"] == 3  # imported once, not per open
    assert old.read_text() == raw


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFUSION_STUDIO_HOME", str(tmp_path / "home"))
    rewards._cache.clear()
    return tmp_path / "home"


def _png(path, rgb):
    Image.new("RGB", (32, 32), rgb).save(path)
    return path


def _ref(path, prompt):
    """A script's own item for a file it vouches for (no seal): what simulated raters rate."""
    import hashlib

    return {"sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "path": str(path), "prompt": prompt}


def _sealed(path, rgb, prompt="a red field", seed=7):
    from studio.writer import seal_derived

    return seal_derived(Image.new("RGB", (256, 256), rgb), path, model_name="m",
                        params={"request": {"prompt": prompt, "modality": "image"}, "seed": seed,
                                "model_hash": "h" * 64})


def test_default_store_is_the_config_folders_database(home):
    rewards.rate(item(1), "like")
    assert (home / "ratings.db").is_file() and RatingStore().count()["like"] == 1


def test_train_learned_from_the_store_through_the_files(home, tmp_path):
    rng = np.random.default_rng(0)
    files = []
    for i, red in enumerate(rng.choice(256, 40, replace=False).tolist()):  # distinct files, distinct hashes
        files.append((_png(tmp_path / f"{i}.png", (red, 80, 80)), red))
    for k in range(30):  # the redder one is always picked
        (a, ra), (b, rb) = [files[j] for j in rng.choice(len(files), 2, replace=False)]
        best, other = (a, b) if ra > rb else (b, a)
        rewards.rate(_ref(best, "a square"), "pick", others=[_ref(other, "a square")])
    rewards.rate(_ref(files[0][0], "a square"), "like")
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


def test_rating_an_output_keeps_its_whole_sealed_record(home, tmp_path):
    out = _sealed(tmp_path / "o.png", (200, 10, 10))
    entry = rewards.rate(out, "like")
    assert entry["item"]["prompt"] == "a red field" and entry["item"]["seed"] == 0  # the output's own record
    assert entry["item"]["sha256"] == out.record.sha256 and entry["item"]["path"] == str((tmp_path / "o.png").resolve())
    by_path = rewards.rate(tmp_path / "o.png", "dislike")
    it = by_path["item"]
    assert it["sha256"] == out.record.sha256 and it["prompt"] == "a red field" and it["format"] == "png"
    assert it["model_hash"] == "h" * 64 and it["record"]["request"]["prompt"] == "a red field"
    assert [r["kind"] for r in RatingStore().ratings()] == ["like", "dislike"]
    assert RatingStore().ratings()[1]["item"]["record"] == it["record"]  # stored, not just returned


def test_an_unsealed_or_changed_file_is_refused(home, tmp_path):
    with pytest.raises(RequestError, match=r"cannot rate plain.png: it carries no content credentials"):
        rewards.rate(_png(tmp_path / "plain.png", (1, 2, 3)), "like", prompt="x")
    _sealed(tmp_path / "o.png", (200, 10, 10))
    data = bytearray((tmp_path / "o.png").read_bytes())
    data[data.index(b"IDAT") + 40] ^= 0xFF  # a pixel byte: covered by the C2PA hash
    (tmp_path / "changed.png").write_bytes(bytes(data))
    with pytest.raises(RequestError, match=r"cannot rate changed.png: its seal does not verify"):
        rewards.rate(tmp_path / "changed.png", "like")
    assert RatingStore().count()["total"] == 0


def test_cli_rate_up_down_best_list_count_export_import(home, tmp_path, capsys):
    from studio.cli import main

    a = _sealed(tmp_path / "a.png", (250, 0, 0), seed=1).path
    b = _sealed(tmp_path / "b.png", (0, 0, 250), seed=2).path
    c = _sealed(tmp_path / "c.png", (0, 250, 0), seed=3).path
    assert main(["rate", str(a), "--up"]) == 0
    out = capsys.readouterr().out
    assert "up a.png" in out and "1 rating(s): 1 up, 0 down" in out
    assert main(["rate", str(b), "--down"]) == 0
    assert main(["rate", "--best", str(a), "--over", str(b), str(c)]) == 0
    assert "best a.png over 2 other(s) (2 pair(s))" in capsys.readouterr().out
    assert main(["rate", str(c), str(a), "--pick"]) == 0  # the older spelling still works
    assert main(["rate", "--count"]) == 0
    assert "4 rating(s): 1 up, 1 down, 2 pick(s) (3 pair(s)) on 3 output(s)" in capsys.readouterr().out
    assert main(["rate", "--list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert len(listed) == 5 and "best a.png  seed 1  'a red field'  over 2" in listed[2]
    assert main(["rate", "--export", str(tmp_path / "x.jsonl")]) == 0
    assert "exported 4 rating(s)" in capsys.readouterr().out
    assert len((tmp_path / "x.jsonl").read_text().splitlines()) == 4
    assert main(["rate", "--import", str(tmp_path / "x.jsonl")]) == 0
    assert "imported 0 rating(s)" in capsys.readouterr().out and RatingStore().count()["total"] == 4
    # bad input: one line, exit 2, nothing stored
    plain = _png(tmp_path / "plain.png", (1, 2, 3))
    for argv, msg in ((["rate", str(plain), "--up"], "cannot rate plain.png: it carries no content credentials"),
                      (["rate", str(a), "--up", "--down"], "give exactly one of"),
                      (["rate", "--best", str(a)], "needs the best file and at least one"),
                      (["rate", str(b), "--over", str(a)], "--over goes with --best"),
                      (["rate", "--count", str(a)], "--count takes no FILE"),
                      (["rate", "--import", str(tmp_path / "nope.jsonl")], "no such file")):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert msg in err and len(err.strip().splitlines()) == 1, (argv, err)
    assert RatingStore().count()["total"] == 4


def test_cli_rewards_train_from_cli_ratings(home, tmp_path, capsys):
    from studio.cli import main

    a = _sealed(tmp_path / "a.png", (250, 0, 0)).path
    b = _sealed(tmp_path / "b.png", (0, 0, 250)).path
    assert main(["rate", str(a), "--up"]) == 0
    assert main(["rate", "--best", str(a), "--over", str(b)]) == 0
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
        rewards.rate(_ref(files[j], "a tone"), "pick", others=[_ref(files[i], "a tone")])
    _png(tmp_path / "img.png", (1, 2, 3))
    rewards.rate(_ref(tmp_path / "img.png", "a tone"), "like")  # an image rating: not audio training data
    reward, report = rewards.train_learned("audio")
    assert report.pairs == 30 and report.likes == 0 and report.skipped == 0
    got = rewards.get("learned-audio", "audio")
    assert got.hash == reward.hash
    t = np.arange(8000) / 16000
    s = got.score([(0.8 * np.sin(2 * np.pi * 330 * t), 16000), (0.05 * np.sin(2 * np.pi * 330 * t), 16000)], "a tone")
    assert s[0] > s[1]
