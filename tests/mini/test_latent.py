"""The mini model's closed-form latent and the VAE initialisation that realises it."""

import numpy as np
import pytest

from studio.mini import world as W
from studio.mini.latent import FACTOR, init_vae_identity, stream_parameter, target_latents


def _scene_batch(n=4, split="train"):
    scenes = [W.sample_scene(i, split) for i in range(n)]
    imgs = np.stack([W.scene_array(s) for s in scenes])
    bg = np.array([W.BACKGROUNDS[s.background] for s in scenes], dtype=np.uint8)
    return scenes, imgs, bg


def test_target_latent_cells():
    img = np.full((1, 32, 32, 3), 255, np.uint8)  # white background
    img[0, 0:8, 8:16] = (220, 30, 30)  # one full red cell at row 0, col 1
    img[0, 16:20, 0:8] = (0, 0, 0)  # top half of cell (2, 0) black
    z = target_latents(img, np.array([[255, 255, 255]]))
    assert z.shape == (1, 4, 4, 4) and z.dtype == np.float32
    np.testing.assert_allclose(z[0, :3, 0, 1], np.array([220, 30, 30]) / 127.5 - 1, atol=1e-6)
    assert z[0, 3, 0, 1] == pytest.approx(1.0)  # fully covered
    assert z[0, 3, 2, 0] == pytest.approx(0.0)  # half covered
    np.testing.assert_allclose(z[0, :3, 2, 0], (np.array([0, 0, 0]) + 255) / 2 / 127.5 - 1, atol=1e-6)
    assert z[0, 3, 3, 3] == pytest.approx(-1.0) and np.allclose(z[0, :3, 3, 3], 1.0)
    # coverage is relative to the background: the same pixels on a red background cover nothing there
    z_red = target_latents(img, np.array([[220, 30, 30]]))
    assert z_red[0, 3, 0, 1] == pytest.approx(-1.0) and z_red[0, 3, 3, 3] == pytest.approx(1.0)


def test_target_latent_rejects_unaligned_size():
    with pytest.raises(ValueError, match="multiple of 8"):
        target_latents(np.zeros((1, 20, 32, 3), np.uint8), np.zeros((1, 3), np.uint8))


@pytest.fixture(scope="module")
def identity_vae():
    import torch

    from studio.mini.train import make_vae

    torch.manual_seed(0)
    vae = make_vae().eval()
    init_vae_identity(vae)
    return vae


def test_identity_init_encodes_cell_colours(identity_vae):
    import torch

    _, imgs, bg = _scene_batch()
    z = target_latents(imgs, bg)
    x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        post = identity_vae.encode(x).latent_dist
    assert post.mean.shape == (4, 4, 256 // FACTOR, 256 // FACTOR)
    # colour exact through every GroupNorm (the +-K stream), posterior nearly deterministic
    assert (post.mean[:, :3] - torch.from_numpy(z[:, :3])).abs().max() < 2e-3
    assert post.std.max() < 0.01


def test_identity_init_decodes_blocks(identity_vae):
    import torch

    _, imgs, bg = _scene_batch()
    z = torch.from_numpy(target_latents(imgs, bg))
    with torch.no_grad():
        y = identity_vae.decode(z).sample
    blocks = z[:, :3].repeat_interleave(FACTOR, 2).repeat_interleave(FACTOR, 3)
    assert (y - blocks).abs().max() < 2e-3
    # flat regions therefore come back as exact palette colours
    flat = (blocks == blocks[:, :, :1, :1]).all(1)
    back = ((y.clamp(-1, 1) + 1) * 127.5).round()
    assert torch.equal(back.permute(0, 2, 3, 1)[flat], torch.from_numpy(imgs).float()[flat])


def test_identity_init_refuses_layouts_it_cannot_carry():
    from diffusers import AutoencoderKL

    vae = AutoencoderKL(block_out_channels=(16, 32, 64, 128), down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=1, latent_channels=4, norm_num_groups=4)
    with pytest.raises(ValueError, match="GroupNorm groups of 4"):
        init_vae_identity(vae)
    vae3 = AutoencoderKL(block_out_channels=(16, 32, 64), down_block_types=("DownEncoderBlock2D",) * 3,
                         up_block_types=("UpDecoderBlock2D",) * 3, latent_channels=4, norm_num_groups=2)
    with pytest.raises(ValueError, match="4 blocks"):
        init_vae_identity(vae3)


def test_stream_parameters_are_the_carrying_layers(identity_vae):
    names = [n for n, _ in identity_vae.named_parameters()]
    slow = {n for n in names if stream_parameter(n)}
    assert "decoder.conv_out.weight" in slow and "encoder.down_blocks.0.downsamplers.0.conv.weight" in slow
    assert "decoder.up_blocks.1.resnets.0.conv_shortcut.weight" in slow and "quant_conv.bias" in slow
    assert not any(".conv1." in n or ".conv2." in n or "attentions" in n for n in slow)


def test_training_batches_never_contain_heldout_pairs():
    from studio.mini.train import render_batch

    scenes, imgs, z = render_batch(range(200))
    assert not any(W.is_holdout(o) for s in scenes for o in s.objects)
    bg = np.array([W.BACKGROUNDS[s.background] for s in scenes], dtype=np.uint8)
    np.testing.assert_array_equal(z, target_latents(imgs, bg))
    # a fixed seed range gives the same scenes (reproducible training data)
    again, _, _ = render_batch(range(3))
    assert [s.caption for s in again] == [s.caption for s in scenes[:3]]


def test_object_crops_match_their_latents_and_hold_an_object():
    from studio.mini.train import object_crops, render_batch

    scenes, imgs, z = render_batch(range(12))
    x, zc = object_crops(scenes, imgs, z, 128, np.random.default_rng(0))
    assert x.shape == (12, 128, 128, 3) and zc.shape == (12, 4, 16, 16)
    bg = np.array([W.BACKGROUNDS[s.background] for s in scenes], dtype=np.uint8)
    # aligned to the latent cells: the crop's own closed-form latent is exactly the cropped latent
    np.testing.assert_array_equal(target_latents(np.ascontiguousarray(x), bg), zc)
    # every crop shows object pixels, and crops move with the object (not a fixed window)
    assert all((x[k] != bg[k]).any(-1).mean() > 0.02 for k in range(12))
    assert len({x[k].tobytes() for k in range(12)}) == 12


@pytest.mark.parametrize("argv", [["--vae-crop", "100"], ["--vae-crop", "512"], ["--t-high-frac", "1.5"],
                                  ["--prediction", "epsilon"]])
def test_train_rejects_bad_settings_by_name(argv, capsys):
    from studio.mini.train import main

    with pytest.raises(SystemExit) as e:
        main(["--work", "/nonexistent/never-created", *argv])
    assert e.value.code == 2 and argv[0] in capsys.readouterr().err
