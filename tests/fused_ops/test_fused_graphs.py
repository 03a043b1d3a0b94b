import pytest
import torch

from fused_ops import accelerate
from fused_ops.graphs import GraphedForward, install_cuda_graphs
from fused_testutil import tiny_unet, unet_inputs

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def test_no_cuda_nothing_installed():
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    m = torch.nn.Linear(2, 2)
    assert install_cuda_graphs(m) == (None, None)
    assert "forward" not in m.__dict__


def test_graphed_forward_eager_fallbacks():
    m = torch.nn.Linear(3, 3)
    calls = []

    def eager(x):
        calls.append(1)
        return m(x)

    g = GraphedForward(m, eager)
    x = torch.randn(2, 3)
    with torch.no_grad():
        torch.testing.assert_close(g(x), m(x))  # CPU tensors: eager
    torch.testing.assert_close(g(x), m(x))  # grad mode: eager
    assert len(calls) == 2 and not g.graphs


@cuda
@pytest.mark.gpu
def test_unet_cuda_graph_replay_matches_eager():
    u = tiny_unet().cuda().half()
    inputs = unet_inputs(batch=2, dtype=torch.float16, device="cuda")
    x, t, ctx = inputs
    with torch.no_grad():
        ref = u(x, t, encoder_hidden_states=ctx).sample
        h = accelerate(u, "max", attention_autotune=False)
        runner = h.graph_runners["UNet2DConditionModel"]
        out1 = u(x, t, encoder_hidden_states=ctx).sample
        out2 = u(x * 0.5, torch.tensor(10, device="cuda"), encoder_hidden_states=ctx).sample
        assert len(runner.graphs) == 1 and runner.replays == 2
        torch.testing.assert_close(out1, ref, atol=2e-2, rtol=2e-2)
        h_ref = accelerate(u, "off")
        x2, _, ctx2 = unet_inputs(batch=1, dtype=torch.float16, device="cuda")
        u(x2, t, encoder_hidden_states=ctx2)  # new shape -> second graph
        assert len(runner.graphs) == 2
        h.undo()
        h_ref.undo()
        eager2 = u(x * 0.5, torch.tensor(10, device="cuda"), encoder_hidden_states=ctx).sample
    torch.testing.assert_close(out2, eager2, atol=2e-2, rtol=2e-2)
