"""The learned reward on synthetic ratings with a known hidden taste: simulated raters prefer redder images
(Bradley-Terry choices, so about 20% of the labels disagree with the taste). It must find the taste on
held-out pairs, and must not find one in shuffled labels."""
import numpy as np
import pytest
import torch

from studio.rewards.base import RewardError
from studio.rewards.learned import LearnedReward, train


def scenes(n, seed=0, size=32):
    """A solid background with one rectangle of a random colour, size and place."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        img = np.empty((size, size, 3), np.float32)
        img[:] = rng.uniform(0, 1, 3)
        w, h = rng.integers(6, 24, 2)
        x, y = rng.integers(0, size - w), rng.integers(0, size - h)
        img[y:y + h, x:x + w] = rng.uniform(0, 1, 3)
        out.append(img)
    return out


def redness(img):
    return float((img[..., 0] - (img[..., 1] + img[..., 2]) / 2).mean())


def rated_pairs(images, n_pairs, seed, beta=12.0, shuffle=False):
    rng = np.random.default_rng(seed)
    pairs = []
    for _ in range(n_pairs):
        i, j = rng.choice(len(images), 2, replace=False)
        p = 1 / (1 + np.exp(-beta * (redness(images[i]) - redness(images[j]))))
        first = rng.random() < (0.5 if shuffle else p)
        a, b = (images[i], images[j]) if first else (images[j], images[i])
        pairs.append((a, b, "a shape"))
    return pairs


@pytest.fixture(scope="module")
def images():
    return scenes(400)


def test_learns_the_hidden_preference_above_chance(images):
    pairs = rated_pairs(images, 400, seed=1)
    # the ceiling: how often the true taste itself agrees with the noisy labels
    oracle = np.mean([redness(a) > redness(b) for a, b, _ in pairs])
    reward, report = train(pairs)
    assert report.heldout_pairs == 80 and report.seconds < 120
    assert report.heldout_accuracy >= 0.68, (report, oracle)
    assert report.heldout_accuracy >= oracle - 0.12
    # and on fresh images with the true order (no label noise), it ranks redder higher
    fresh = scenes(200, seed=9)
    s = reward.score(fresh, "a shape").numpy()
    r = np.array([redness(x) for x in fresh])
    i, j = np.triu_indices(len(fresh), 1)
    assert np.mean((s[i] > s[j]) == (r[i] > r[j])) > 0.75


def test_shuffled_labels_give_chance(images):
    _, report = train(rated_pairs(images, 400, seed=2, shuffle=True))
    assert 0.35 <= report.heldout_accuracy <= 0.65


def test_likes_and_dislikes_alone_teach_the_taste(images):
    likes = [(x, "a shape", redness(x) > 0.05) for x in images]
    reward, report = train(likes=likes)
    assert report.heldout_like_accuracy >= 0.75 and report.heldout_accuracy is None
    red = np.zeros((32, 32, 3), np.float32); red[..., 0] = 0.9
    blue = np.zeros((32, 32, 3), np.float32); blue[..., 2] = 0.9
    s = reward.score([red, blue], "a shape")
    assert s[0] > s[1]


def test_save_load_same_scores_and_hash(tmp_path, images):
    reward, _ = train(rated_pairs(images[:100], 60, seed=3))
    path = reward.save(tmp_path / "r.safetensors")
    again = LearnedReward.load(path)
    x = images[:5]
    assert torch.allclose(reward.score(x, "p"), again.score(x, "p"))
    assert again.hash == reward.hash and len(reward.hash) == 64
    assert again.info["trained"]["pairs"] == 60
    other, _ = train(rated_pairs(images[:100], 60, seed=4))
    assert other.hash != reward.hash


def test_load_refuses_what_is_not_a_learned_reward(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "x.safetensors"))
    with pytest.raises(RewardError, match="not a studio learned reward"):
        LearnedReward.load(tmp_path / "x.safetensors")
    torch.save({"w": torch.zeros(2)}, tmp_path / "x.pt")
    with pytest.raises(RewardError, match="must be .safetensors"):
        LearnedReward.load(tmp_path / "x.pt")


def test_differentiable_in_the_pixels(images):
    reward, _ = train(rated_pairs(images, 200, seed=5))
    x = torch.full((1, 3, 32, 32), 0.5, requires_grad=True)
    s = reward.score(x, "a shape")
    s.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    # a small step up the gradient raises the score (the gradient is the score's, not noise)
    with torch.no_grad():
        stepped = (x + 0.02 * x.grad / x.grad.abs().max()).clamp(0, 1)
        assert reward.score(stepped, "a shape") > s.detach()


def test_no_ratings_is_one_clear_error():
    with pytest.raises(RewardError, match="no ratings"):
        train([], [])


def test_audio_reward_learns_louder_is_better():
    rng = np.random.default_rng(0)
    clips = [(rng.standard_normal(8000).astype(np.float32) * a, 16000) for a in rng.uniform(0.01, 0.5, 120)]
    amp = [float(np.abs(c[0]).mean()) for c in clips]
    pairs = []
    for _ in range(200):
        i, j = rng.choice(len(clips), 2, replace=False)
        pairs.append((clips[i], clips[j], "noise") if amp[i] > amp[j] else (clips[j], clips[i], "noise"))
    reward, report = train(pairs, modality="audio")
    assert reward.name == "learned-audio" and reward.modality == "audio"
    assert report.heldout_accuracy >= 0.8


def test_training_leaves_the_global_rng_alone(images):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train(rated_pairs(images[:60], 30, seed=6))
    assert torch.equal(torch.rand(3), expected)


def test_same_ratings_same_reward(images):
    pairs = rated_pairs(images[:100], 60, seed=7)
    assert train(pairs)[0].hash == train(pairs)[0].hash
