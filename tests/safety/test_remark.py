"""Re-sealing media that already carry a studio mark (continuations, low-strength edits, inpainting) must read
back the NEW output's ID; unmarked media must still give no ID and be marked exactly as before."""
import numpy as np
import pytest
from PIL import Image

from safety import media as M
from safety import seal as S
from safety import seal_audio, seal_image, verify
from safety.watermark import AudioWatermarker, ImageWatermarker, VideoWatermarker, encode_codeword
from safety_testkit import CG, frames, music, photo

SR = 44100
A, B = "a1a1a1a1a1a1a1a1", "b2b2b2b2b2b2b2b2"


def _mono(x):
    return x if x.ndim == 1 else x.mean(axis=1)


def test_audio_continuation_of_sealed_clip_reads_new_id(dev_cfg):
    """The reported case: a 6 s sealed source kept verbatim + 2 s of continuation, sealed with a new ID."""
    src = seal_audio(music(6.0, SR, seed=1), sample_rate=SR, fmt="wav", params={}, claim_generator=CG,
                     config=dev_cfg, watermark_id=A)
    assert src.watermark_id == A
    kept = _mono(M.decode_audio(src.data, "wav")[0])
    out = np.concatenate([kept, music(2.0, SR, seed=7)])
    s = seal_audio(out, sample_rate=SR, fmt="wav", params={"mode": "continuation"}, claim_generator=CG,
                   parent=src.data, config=dev_cfg, watermark_id=B)
    assert (s.watermark_status, s.watermark_id) == ("embedded", B)
    rep = verify(s.data, dev_cfg)
    assert rep.watermark_id == B and rep.ledger_match


@pytest.mark.parametrize("case", ["whole", "shifted_stereo", "mp3_source"])
def test_audio_remark_reads_new_id(case):
    aw = AudioWatermarker()
    src, _ = aw.embed((music(6.0, SR, seed=3), SR), bytes.fromhex(A))
    if case == "mp3_source":       # the source came back through a lossy file before the continuation
        src = _mono(M.decode_audio(M.encode_audio(src, SR, "mp3"), "mp3")[0])
    x = src
    if case == "shifted_stereo":   # the kept part starts 0.3 s in (not on the mark's tile grid), stereo
        x = np.concatenate([music(0.3, SR, seed=9)[:13_001], src, music(3.0, SR, seed=8)])
        x = np.stack([x, 0.7 * x], 1)
    y, _ = aw.embed((x, SR), bytes.fromhex(B))
    assert aw.detect((y, SR))[0] == B
    if case == "shifted_stereo":   # the new part alone still carries B: no inverse of A was written there
        assert aw.detect((y[-int(3.0 * SR):], SR))[0] == B


def test_audio_remove_takes_the_old_mark_out_and_leaves_the_rest():
    aw = AudioWatermarker()
    clean, tail = music(6.0, SR, seed=4), music(3.0, SR, seed=5)
    src, _ = aw.embed((clean, SR), bytes.fromhex(A))
    r, _, found = aw.remove((np.concatenate([src, tail]), SR))
    assert found == A
    assert aw.detect((r.astype(np.float32), SR))[0] is None
    err = r[: len(clean)] - clean
    assert 10 * np.log10(np.sum(clean.astype(np.float64) ** 2) / np.sum(err ** 2)) > 30   # mark alone: ~21 dB
    assert np.array_equal(r[len(src) + SR // 2:], tail[SR // 2:].astype(np.float64))


def test_unmarked_audio_marked_as_before_and_no_false_id():
    aw = AudioWatermarker()
    for seed in (11, 12, 13):
        x = music(6.0, SR, seed=seed)
        assert aw.detect((x, SR))[0] is None
        r, _, found = aw.remove((x, SR))
        assert found is None and np.array_equal(r, x.astype(np.float64))
    # fresh media: the seal's samples are the plain additive mark (nothing removed, nothing else changed)
    x = music(6.0, SR, seed=14)
    y, _ = aw.embed((x, SR), bytes.fromhex(B))
    X, win, plen = aw._stft(x.astype(np.float64))
    ref = aw._apply(x.astype(np.float64), x.astype(np.float64), X, win, plen,
                    aw._gain(X.shape[0], SR, encode_codeword(bytes.fromhex(B)).astype(np.float64) * 2 - 1))
    assert np.array_equal(y, np.clip(ref, -1, 1).astype(np.float32))


@pytest.mark.parametrize("edit", ["whole", "inpaint", "low_strength"])
def test_image_reseal_reads_new_id(dev_cfg, edit):
    """The image mark is quantisation (QIM): embedding B re-quantises every block, whatever A left there."""
    src = seal_image(photo(384, seed=2), fmt="png", params={}, claim_generator=CG, config=dev_cfg,
                     watermark_id=A)
    arr = np.array(M.decode_image(src.data).convert("RGB"))
    if edit == "inpaint":
        arr[96:224, 96:224] = np.asarray(photo(384, seed=30))[96:224, 96:224]
    elif edit == "low_strength":
        arr = np.clip(arr.astype(np.int16) + np.random.default_rng(0).integers(-2, 3, arr.shape), 0, 255)
    s = seal_image(Image.fromarray(arr.astype(np.uint8)), fmt="jpeg", params={}, claim_generator=CG,
                   parent=src.data, config=dev_cfg, watermark_id=B)
    assert (s.watermark_status, s.watermark_id) == ("embedded", B)
    assert ImageWatermarker().detect(M.decode_image(s.data))[0] == B


def test_video_reseal_reads_new_id():
    """The low-frequency layer's informed embedding cancels the host's projection (A's pattern included) and
    the per-frame image layer re-quantises: vid2vid over a marked clip reads B."""
    vw = VideoWatermarker()
    src = M.decode_video_frames(M.encode_video(vw.embed(frames(8, 256, seed=1), bytes.fromhex(A)), 8.0, "mp4",
                                               None, crf=18), "mp4")
    low = np.clip(src.astype(np.int16) + np.random.default_rng(1).integers(-3, 4, src.shape), 0, 255)
    out = vw.embed(low.astype(np.uint8), bytes.fromhex(B))
    back = M.decode_video_frames(M.encode_video(out, 8.0, "mp4", None, crf=18), "mp4")
    assert vw.detect(back)[0] == B


def test_read_back_names_a_kept_source_mark():
    """If another ID still reads back, the status says so and the manifest names it (never 'embedded')."""
    assert S._read_back("embedded", bytes.fromhex(B), lambda: (A, 1.0)) == (None, "source_mark_kept")
    assert S._other_id("source_mark_kept") == A
    assert S._other_id("source_mark_kept") is None          # consumed once
    assert S._read_back("embedded", bytes.fromhex(B), lambda: (None, 0.0)) == (None, "not_embeddable")
    assert S._read_back("embedded", bytes.fromhex(B), lambda: (B, 1.0)) == (B, "embedded")
    m = S._build_manifest(fmt="wav", kind="audio", claim_generator=CG, params={}, source_type=None,
                          has_parent=True, wm=AudioWatermarker(), wm_id=None, wm_status="source_mark_kept",
                          description=None, label="org.diffusion-studio.generation", source_wm_id=A)
    gen = next(a for a in m["assertions"] if a["label"] == "org.diffusion-studio.generation")["data"]
    assert gen["watermark_status"] == "source_mark_kept" and gen["watermark"]["source_id"] == A
    assert not any(a["label"] == "c2pa.soft-binding" for a in m["assertions"])
