"""The teacher-forced one-step probe of mini-instruct reads what the model's clean estimate holds."""

import pytest
import torch

from studio.mini.instruct import probe
from studio.mini.instruct import world as IW
from studio.mini.instruct import weights_path
from studio.mini.instruct.evaluate import quiet_pipeline


class _Oracle(torch.nn.Module):
    """A UNet stand-in whose v-prediction gives back the edited scene's latent exactly (``blind``: the source's)."""

    def __init__(self, pipe, edits, blind=False):
        super().__init__()
        self.config, self.sf = pipe.unet.config, pipe.vae.config.scaling_factor
        self.alphas = pipe.scheduler.alphas_cumprod
        self.x0 = probe.latents([e.source if blind else e.target for e in edits]) * self.sf

    def forward(self, x, t, ctx):
        a = self.alphas[int(t[0])]
        xt = x[:, :4]
        return type("Out", (), {"sample": (a.sqrt() * xt - self.x0) / (1 - a).sqrt()})()


@pytest.fixture(scope="module")
def setup():
    pipe = quiet_pipeline(weights_path())
    return pipe, IW.heldout_edits(1, "holdout")


def test_an_oracle_that_knows_the_edit_reads_every_edit_made_and_kept(setup):
    pipe, edits = setup
    pipe.unet = _Oracle(pipe, edits)
    res = probe.one_step(pipe, edits, [700], guidance=5.0, image_guidance=1.5)
    for t in (700,):
        for branch in ("conditional", "image only", "guided"):
            assert res[t][branch]["asked"] == 100.0 and res[t][branch]["kept_all"] == 100.0, (t, branch, res[t])


def test_an_oracle_that_only_copies_the_source_reads_no_edit_made(setup):
    pipe, edits = setup
    pipe.unet = _Oracle(pipe, edits, blind=True)
    res = probe.one_step(pipe, edits, [999], guidance=5.0, image_guidance=1.5)
    assert res[999]["conditional"]["asked"] == 0.0


def test_bad_timesteps_are_refused_with_one_line(capsys):
    with pytest.raises(SystemExit):
        probe.main(["--ts", "1000"])
    assert "--ts must be timesteps in [0, 1000)" in capsys.readouterr().err
