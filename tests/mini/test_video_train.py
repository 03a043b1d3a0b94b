"""mini-video training's probe machinery: the first-step direction reading on ground-truth mean clips, and the
probe conditionings (direction injected into the motion modules, or added to every token)."""

import re

import pytest
import torch
import torch.nn.functional as F

from studio.mini.video import world as V
from studio.mini.video import train as T


@pytest.mark.parametrize("res", [16, 32])
def test_probe_reads_ground_truth_mean_clips(res):
    # a perfect t=999 model outputs the mean clip of the captioned motion: the probe must name that motion
    for m in V.MOTIONS:
        x0 = torch.from_numpy(V.clip_latents([V.sample_clip(700 + k, "train", motion=m) for k in range(6)]))
        if res != 32:
            x0 = F.avg_pool2d(x0.flatten(1, 2), 32 // res).view(*x0.shape[:3], res, res)
        d, dx, dy = T.read_direction(x0.mean(0))
        assert d == m, (m, dx, dy)
        # the same clip played backwards reads the opposite way (frame axis is the second one)
        back = T.read_direction(x0.mean(0).flip(1))[0]
        assert back == {"right": "left", "left": "right", "up": "down", "down": "up", "still": "still"}[m]


def _tiny_motion_unet():
    from diffusers import UNet2DConditionModel

    from pipelines.tiny import tiny_sd
    from pipelines.tiny_video import tiny_motion_adapter

    unet2d: UNet2DConditionModel = tiny_sd(seed=0).unet
    unet, _ = T.build_motion_unet(unet2d, tiny_motion_adapter(1))
    return unet.eval()


def test_motion_bias_reaches_only_its_own_clip():
    unet = _tiny_motion_unet()
    bias = T.MotionBias(unet)
    assert bias.handles and set(bias.vec) == {16, 32}
    torch.manual_seed(0)
    frames = 4
    x = torch.randn(2, 4, frames, 16, 16)
    h = torch.randn(2, 8, unet.config.cross_attention_dim).repeat_interleave(frames, 0)
    with torch.no_grad():
        bias.motions = None
        plain = unet(x, torch.tensor([999]), h).sample
        bias.motions = ["right", None]
        mixed = unet(x, torch.tensor([999]), h).sample
        bias.motions = ["left", None]
        other = unet(x, torch.tensor([999]), h).sample
    assert not torch.allclose(mixed[0], plain[0], atol=1e-4)  # the biased clip changes
    assert torch.allclose(mixed[1], plain[1], atol=1e-5)  # its batch neighbour does not (batch-major hook)
    assert not torch.allclose(mixed[0], other[0], atol=1e-4)  # and the change depends on the motion


class _FakeTok:
    def __call__(self, caps, **kw):
        class R:
            input_ids = torch.zeros(len(caps), 5, dtype=torch.long)
        return R()


class _FakeTE:
    def __call__(self, ids):
        class R:
            last_hidden_state = torch.zeros(ids.shape[0], ids.shape[1], 128)
        return R()


def test_handmade_add_puts_the_motion_vector_on_every_token():
    c = T.Conditioner("handmade-add", _FakeTE(), _FakeTok(), None)
    h = c(["a red circle moving to the right on a white background", ""], ["right", None])
    vec = T.handmade_vectors()[V.MOTIONS.index("right")]
    assert h.shape == (2, 5, 128)
    assert torch.allclose(h[0], vec.expand(5, -1)) and torch.count_nonzero(h[1]) == 0
    h2 = T.Conditioner("handmade", _FakeTE(), _FakeTok(), None)(["x moving up"], ["up"])
    assert h2.shape == (1, 6, 128)  # the appending probe keeps its extra token


def test_strip_motion_removes_every_phrase():
    for m in V.MOTIONS:
        clip = V.sample_clip(3, "train", motion=m)
        assert not any(p in T.strip_motion(V.caption(clip)) for ps in V.MOTION_PHRASES.values() for p in ps)


def test_zeroed_adapter_starts_as_the_image_model():
    from pipelines.tiny import tiny_sd
    from pipelines.tiny_video import tiny_motion_adapter

    unet2d = tiny_sd(seed=0).unet.eval()
    ad = tiny_motion_adapter(1)
    torch.manual_seed(0)
    frames = 4
    x = torch.randn(1, 4, frames, 16, 16)
    h = torch.randn(frames, 8, unet2d.config.cross_attention_dim)
    t = torch.tensor([500])
    with torch.no_grad():
        per_frame = unet2d(x[0].transpose(0, 1), t.repeat(frames), h).sample.transpose(0, 1)
        raw = T.build_motion_unet(unet2d, ad)[0].eval()(x, t, h).sample[0]
        T.zero_motion_out(ad)
        zeroed = T.build_motion_unet(unet2d, ad)[0].eval()(x, t, h).sample[0]
    assert not torch.allclose(raw, per_frame, atol=1e-3)  # diffusers' init mixes frames from the start
    assert torch.allclose(zeroed, per_frame, atol=1e-5)


def test_motion_versions_keep_the_object_and_move_as_named():
    from studio.mini.video.judge import direction_of

    for m in V.MOTIONS:
        clip = V.sample_clip(10_001, "holdout", motion=m)
        vs = T.motion_versions(clip)
        assert [v.motion for v in vs] == list(V.MOTIONS) and vs[V.MOTIONS.index(m)].motion == m
        for v in vs:
            assert (v.color, v.shape, v.size, v.background) == (clip.color, clip.shape, clip.size, clip.background)
            (x0, y0), (x1, y1) = v.center(0), v.center(V.FRAMES - 1)
            for c in (x0, y0, x1, y1):  # the whole path inside the frame
                assert clip.radius < c < V.SIZE - clip.radius
            if v.motion == "still":
                assert (x0, y0) == (x1, y1)
            else:
                assert direction_of((x1 - x0) * 10, (y1 - y0) * 10)[0] == v.motion
                assert abs(x1 - x0) + abs(y1 - y0) >= V.MIN_TRAVEL * V.SIZE - 1e-6


class _VersionOracle:
    """A stand-in video model that knows the clip up to its motion: its x0 estimate is the probe's own
    ``motion_versions`` clip for the motion its conditioning names, or for ``fixed`` whatever the caption
    says (like a model trained on one motion only).  The versions are taken from the probe as it builds them."""

    def __init__(self, sched, monkeypatch, res=16, fixed=None):
        self.a, self.fixed, self.lat = sched.alphas_cumprod, fixed, None
        real = T.motion_versions

        def spy(clip):
            vs = real(clip)
            lat = torch.from_numpy(V.clip_latents(vs))
            self.lat = F.avg_pool2d(lat.flatten(1, 2), 32 // res).view(*lat.shape[:3], res, res)
            return vs

        monkeypatch.setattr(T, "motion_versions", spy)

    def __call__(self, x, t, h):
        class R:
            pass

        idx = h[:: V.FRAMES, 0, 0].long()
        if self.fixed is not None:
            idx = torch.full_like(idx, V.MOTIONS.index(self.fixed))
        a = self.a[t].view(-1, 1, 1, 1, 1)
        x0 = self.lat[idx]
        eps = (x - a.sqrt() * x0) / (1 - a).sqrt()
        R.sample = a.sqrt() * eps - (1 - a).sqrt() * x0
        return R


def _motion_index_cond(caps, motions):
    return torch.tensor([float(V.MOTIONS.index(m)) for m in motions]).view(-1, 1, 1)


def _sched():
    from diffusers import DDPMScheduler

    return DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                         rescale_betas_zero_snr=True, prediction_type="v_prediction")


def test_caption_probe_reads_a_model_that_uses_the_caption(monkeypatch):
    # the probe's plumbing (candidate order, shared noise, argmin, per-t) on a model known to use the direction
    sched = _sched()
    pr = T.caption_direction_probe(_VersionOracle(sched, monkeypatch), _motion_index_cond, sched, 1.0, n_per=1,
                                   res=16, ts=(700, 950))
    assert pr["caption_direction_correct"] == 100.0 and pr["per_t"] == {"700": 100.0, "950": 100.0}, pr
    # a caption-blind model (trained on one motion) loses the same under every caption: the caption reading
    # cannot name its motion (ties go to the first candidate), the clip-side reading must
    blind = _VersionOracle(sched, monkeypatch, fixed="up")
    pc = T.caption_direction_probe(blind, _motion_index_cond, sched, 1.0, n_per=1, res=16, ts=(700,))
    assert pc["picked"]["up"] == 0.0, pc
    pk = T.caption_direction_probe(blind, _motion_index_cond, sched, 1.0, n_per=1, res=16, ts=(700,), swap="clip")
    assert pk["picked"]["up"] == 100.0 and pk["clip_direction_correct"] == 20.0, pk


def test_probe_timesteps_are_checked_when_parsed():
    assert T.parse(["--probe-ts", "600,850"]).probe_ts == (600, 850)
    assert T.parse([]).probe_ts == T.PROBE_TS
    for bad in ("600,x", "600,1000", "-1"):
        with pytest.raises(SystemExit):
            T.parse(["--probe-ts", bad])


def test_a_motion_subset_trains_in_turn_and_the_probes_read_only_it(monkeypatch):
    args = T.parse(["--motions", "right,left", "--batch", "2"])
    assert T.train_motions(args) == ("right", "left")
    assert [T.clip_motion(args, step, k) for step in (0, 1) for k in (0, 1)] == ["right", "left"] * 2
    assert T.clip_motion(T.parse([]), 0, 0) is None and T.clip_motion(T.parse(["--motion", "up"]), 3, 1) == "up"
    for bad in ("right", "right,right", "right,sideways"):
        with pytest.raises(SystemExit):
            T.parse(["--motions", bad])
    with pytest.raises(SystemExit):
        T.parse(["--motions", "right,left", "--motion", "up"])
    sched = _sched()
    pr = T.caption_direction_probe(_VersionOracle(sched, monkeypatch), _motion_index_cond, sched, 1.0, n_per=1,
                                   res=16, ts=(700,), motions=("right", "left"))
    assert pr["n"] == 2 and set(pr["picked"]) == {"right", "left"} and pr["caption_direction_correct"] == 100.0, pr



def test_motion_loras_change_only_their_own_clip_and_export_in_diffusers_format(tmp_path):
    """Training's per-clip motion LoRAs: each clip of a batch gets its own motion's update and no other; the
    exported file, loaded by diffusers' ``load_lora_adapter``, gives the training layers' output."""
    unet = _tiny_motion_unet()
    ml = T.MotionLoRAs(unet, ("right", "left"), rank=4)
    n_modules = sum(1 for n, _ in unet.named_modules() if re.search(r"motion_modules\.\d+$", n))
    assert n_modules and len(ml.layers) == 8 * n_modules
    with torch.no_grad():
        for layer in ml.layers:  # the up factors start at zero: give them something to say
            layer.up.normal_(0, 0.3)
    torch.manual_seed(0)
    frames = 4
    x = torch.randn(2, 4, frames, 16, 16)
    h = torch.randn(2, 8, unet.config.cross_attention_dim).repeat_interleave(frames, 0)
    t = torch.tensor([999])
    with torch.no_grad():
        ml.active = None
        plain = unet(x, t, h).sample
        ml.active = ["right", None]
        mixed = unet(x, t, h).sample
        ml.active = ["left", None]
        other = unet(x, t, h).sample
    assert not torch.allclose(mixed[0], plain[0], atol=1e-4)
    assert torch.allclose(mixed[1], plain[1], atol=1e-5)  # its batch neighbour is untouched
    assert not torch.allclose(other[0], mixed[0], atol=1e-4)  # the update depends on the motion

    files = ml.export(tmp_path)
    table = (tmp_path / "motion_loras" / "motion_loras.json").read_text()
    assert files == {"right": "right.safetensors", "left": "left.safetensors"} and "moving to the right" in table
    ml.remove()
    assert not any(k.endswith((".down", ".up")) or ".base." in k for k in unet.state_dict())
    with torch.no_grad():
        assert torch.allclose(unet(x, t, h).sample, plain, atol=1e-6)  # plain projections are back
        unet.load_lora_adapter(str(tmp_path / "motion_loras" / "right.safetensors"), prefix="unet", adapter_name="r")
        loaded = unet(x[:1], t, h[:frames]).sample
    assert torch.allclose(loaded[0], mixed[0], atol=2e-3), float((loaded[0] - mixed[0]).abs().max())


def test_every_recipe_stage_parses_and_resumes_the_one_before():
    for name, stages in T.RECIPES.items():
        steps = []
        for stage in stages:
            args = T.parse(stage + ["--work", "/tmp/x", "--resume"])
            assert args.cond == "motion-lora" and args.stop_at <= args.steps, (name, stage)
            steps.append(args.stop_at or args.steps)
        assert steps == sorted(steps) and len(set(steps)) == len(steps), (name, steps)  # each stage goes further
        assert T.parse(stages[-1]).latent_res == 32  # the last stage trains at the size the studio renders
