"""Adapters for real reward models, on tiny random-weight checkpoints of the same transformers classes,
built in code and saved to local folders (the real ones load the same way, from the user's folders)."""
import json

import numpy as np
import pytest
import torch

from studio import rewards
from studio.errors import RequestError
from studio.rewards.base import RewardError
from studio.rewards.clip import Aesthetic, AestheticHead, ClapScore, ClipScore

MEAN, STD = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    from transformers import CLIPConfig, CLIPModel

    from pipelines.tiny import tiny_clip_tokenizer

    tok = tiny_clip_tokenizer()
    torch.manual_seed(0)
    text = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=2,
                vocab_size=len(tok), max_position_embeddings=77, bos_token_id=0, eos_token_id=1, pad_token_id=1)
    vision = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=2, image_size=32,
                  patch_size=8)
    model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16, logit_scale_init_value=3.0))
    d = tmp_path_factory.mktemp("tiny-clip")
    model.save_pretrained(d)
    tok.save_pretrained(d)
    (d / "preprocessor_config.json").write_text(json.dumps(
        {"crop_size": {"height": 32, "width": 32}, "image_mean": MEAN, "image_std": STD}))
    return d


def images(n=3, size=48, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(n)]


def test_pickscore_is_the_models_own_logits(clip_dir):
    from transformers import CLIPModel

    r = ClipScore(clip_dir, kind="pickscore")
    imgs = images()
    prompts = ["a red circle", "a blue square", "a star"]
    got = r.score(imgs, prompts)
    # reference: CLIPModel's own logits_per_image (= logit_scale.exp() * cos) on the same preprocessing
    model = CLIPModel.from_pretrained(clip_dir).eval()
    x = torch.stack([torch.from_numpy(i).permute(2, 0, 1).float() / 255 for i in imgs])
    x = torch.nn.functional.interpolate(x, size=(32, 32), mode="bilinear", antialias=True, align_corners=False)
    x = (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    tok = r.clip.tokenizer(prompts, padding="max_length", truncation=True, max_length=77, return_tensors="pt")
    with torch.no_grad():
        logits = model(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"], pixel_values=x).logits_per_image
    assert torch.allclose(got, logits.diagonal(), atol=1e-4)
    clip = ClipScore(clip_dir, kind="clip").score(imgs, prompts)
    assert torch.allclose(clip / 100, got / model.logit_scale.exp().item(), atol=1e-5)


def test_clip_score_is_differentiable_and_prompt_dependent(clip_dir):
    r = ClipScore(clip_dir)
    x = torch.rand(2, 3, 40, 40, requires_grad=True)
    s = r.score(x, "a red circle")
    s.sum().backward()
    assert x.grad.abs().sum() > 0 and r.differentiable
    other = r.score(x.detach(), "something else entirely")
    assert not torch.allclose(s.detach(), other)


def test_hash_follows_the_weights(clip_dir, tmp_path):
    import shutil

    a = ClipScore(clip_dir)
    assert a.hash == ClipScore(clip_dir).hash
    assert a.hash != ClipScore(clip_dir, kind="pickscore").hash
    copy = tmp_path / "copy"
    shutil.copytree(clip_dir, copy)
    assert ClipScore(copy).hash == a.hash  # where it lives does not matter
    from safetensors.torch import load_file, save_file

    w = load_file(str(copy / "model.safetensors"))
    w["logit_scale"] = w["logit_scale"] + 1
    save_file(w, str(copy / "model.safetensors"), metadata={"format": "pt"})
    assert ClipScore(copy).hash != a.hash


def test_aesthetic_head_loads_the_laion_layout_from_a_pth_state_dict(clip_dir, tmp_path):
    torch.manual_seed(1)
    head = AestheticHead([16, 32, 8, 8, 4])
    torch.save(head.state_dict(), tmp_path / "head.pth")  # LAION ships sac+logos+ava1-l14-linearMSE.pth like this
    r = Aesthetic(tmp_path / "head.pth", clip_dir)
    imgs = images()
    emb = r.clip.image_embeds(imgs)
    assert torch.allclose(r.score(imgs, "x"), head.eval()(emb)[:, 0], atol=1e-6)
    torch.save(head, tmp_path / "whole.pth")
    with pytest.raises(RewardError, match="whole pickled model is refused"):
        Aesthetic(tmp_path / "whole.pth", clip_dir)
    torch.save(AestheticHead([768, 1024, 128, 64, 16]).state_dict(), tmp_path / "l14.pth")
    with pytest.raises(RewardError, match="takes 768-d embeddings .* CLIP ViT-L/14"):
        Aesthetic(tmp_path / "l14.pth", clip_dir)


def test_not_a_folder_is_one_line(tmp_path):
    with pytest.raises(RewardError, match="is not a folder"):
        ClipScore(tmp_path / "nothing")


def test_registry_finds_local_weights_through_the_environment(clip_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFUSION_STUDIO_HOME", str(tmp_path))
    monkeypatch.setenv("DIFFUSION_STUDIO_REWARD_CLIP", str(clip_dir))
    rewards._cache.clear()
    r = rewards.get("clip")
    assert isinstance(r, ClipScore) and r.source == str(clip_dir)
    clip_video = rewards.get("clip", "video")
    assert clip_video.modality == "video" and clip_video.score([images(4, 32)], "a red circle").shape == (1,)
    with pytest.raises(RequestError, match="reward pickscore needs local weights"):
        rewards.get("pickscore")


@pytest.fixture(scope="module")
def clap_dir(tmp_path_factory):
    from transformers import ClapConfig, ClapFeatureExtractor, ClapModel, ClapProcessor, RobertaTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    d = tmp_path_factory.mktemp("tiny-clap")
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    for c in bytes_to_unicode().values():
        vocab[c] = len(vocab)
    vocab["<mask>"] = len(vocab)
    (d / "vocab.json").write_text(json.dumps(vocab))
    (d / "merges.txt").write_text("#version: 0.2\n")
    tok = RobertaTokenizer(str(d / "vocab.json"), str(d / "merges.txt"))
    torch.manual_seed(0)
    cfg = ClapConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=37, max_position_embeddings=80, projection_dim=16),
        audio_config=dict(spec_size=64, num_mel_bins=16, window_size=4, patch_size=4, patch_stride=(4, 4),
                          depths=[1, 1], num_attention_heads=[1, 2], hidden_size=32, patch_embeds_hidden_size=16,
                          projection_dim=16, num_hidden_layers=2),
        projection_dim=16)
    fe = ClapFeatureExtractor(feature_size=16, sampling_rate=8000, hop_length=80, max_length_s=1, fft_window_size=256,
                              frequency_max=4000, truncation="rand_trunc")
    ClapModel(cfg).save_pretrained(d / "model")
    ClapProcessor(feature_extractor=fe, tokenizer=tok).save_pretrained(d / "model")
    return d / "model"


def test_clap_score_is_the_cosine_of_audio_and_text(clap_dir):
    r = ClapScore(clap_dir)
    t = np.arange(16000, dtype=np.float32) / 16000
    clips = [(0.5 * np.sin(2 * np.pi * 440 * t), 16000), ((np.random.default_rng(0).standard_normal(8000) * 0.1)
                                                           .astype(np.float32), 8000)]
    s = r.score(clips, "a tone")
    assert s.shape == (2,) and torch.all(s.abs() <= 100.0)
    # a clip longer than the extractor's window is cropped at its centre, not at random: scores repeat
    long = [(np.random.default_rng(1).standard_normal(24000).astype(np.float32) * 0.2, 8000)]
    assert torch.equal(r.score(long, "noise"), r.score(long, "noise"))
    assert not torch.allclose(r.score(clips, "a tone"), r.score(clips, "rain on a roof"))
    assert r.modality == "audio" and len(r.hash) == 64
