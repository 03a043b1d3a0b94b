"""Whole-call CUDA-graph capture of a module's forward (one graph per input signature).

``install_cuda_graphs(module)`` binds a :class:`GraphedForward` as ``module.forward``. Each call is keyed by the
pytree structure of its arguments, every tensor's (shape, dtype, device, stride) and every non-tensor value; the first
call with a new key warms up on a side stream and captures; later calls copy the inputs into the static buffers,
replay, and return clones of the static outputs. Graphs share one memory pool. Anything that cannot be captured
(CPU tensors other than scalars, grad mode, capture errors, more than ``max_graphs`` shapes) runs eagerly; a key that
failed once stays eager. On a machine without CUDA nothing is installed.
"""
from __future__ import annotations

import logging

import torch
from torch.utils import _pytree as pytree

log = logging.getLogger("fused_ops")


class GraphedForward:
    def __init__(self, module: torch.nn.Module, eager, *, warmup: int = 2, max_graphs: int = 8):
        self.module = module
        self.eager = eager
        self.warmup = warmup
        self.max_graphs = max_graphs
        self.graphs: dict = {}
        self.failed: set = set()
        self.pool = None
        self.replays = 0

    def _key(self, leaves, spec):
        parts = [str(spec)]
        for x in leaves:
            if isinstance(x, torch.Tensor):
                parts.append(("T", tuple(x.shape), x.dtype, str(x.device), tuple(x.stride())))
            else:
                try:
                    hash(x)
                    parts.append(("V", type(x).__name__, x))
                except TypeError:
                    parts.append(("O", id(x)))
        return tuple(parts)

    def __call__(self, *args, **kwargs):
        if torch.is_grad_enabled() or not torch.cuda.is_available() or torch.cuda.is_current_stream_capturing():
            return self.eager(*args, **kwargs)
        leaves, spec = pytree.tree_flatten((args, kwargs))
        dev = None
        moved = []
        for x in leaves:
            if isinstance(x, torch.Tensor):
                if x.is_cuda:
                    dev = dev or x.device
                elif x.numel() > 1:
                    return self.eager(*args, **kwargs)
        if dev is None:
            return self.eager(*args, **kwargs)
        for x in leaves:  # 0-dim / 1-element CPU tensors (timesteps) become device inputs
            moved.append(x.to(dev) if isinstance(x, torch.Tensor) and not x.is_cuda else x)
        key = self._key(moved, spec)
        if key in self.failed:
            return self.eager(*args, **kwargs)
        entry = self.graphs.get(key)
        if entry is None:
            if len(self.graphs) >= self.max_graphs:
                return self.eager(*args, **kwargs)
            try:
                entry = self._capture(moved, spec)
            except Exception as exc:
                log.warning("CUDA graph capture failed for %s (%s); running eagerly for this shape",
                            type(self.module).__name__, exc)
                self.failed.add(key)
                return self.eager(*args, **kwargs)
            self.graphs[key] = entry
        graph, static_in, static_out, out_spec = entry
        for dst, src in zip(static_in, moved):
            if isinstance(dst, torch.Tensor):
                dst.copy_(src)
        graph.replay()
        self.replays += 1
        return pytree.tree_unflatten([o.clone() if isinstance(o, torch.Tensor) else o for o in static_out], out_spec)

    def _capture(self, leaves, spec):
        static_in = [x.clone() if isinstance(x, torch.Tensor) else x for x in leaves]
        a, kw = pytree.tree_unflatten(static_in, spec)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(self.warmup):
                self.eager(*a, **kw)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            out = self.eager(*a, **kw)
        self.pool = graph.pool()
        out_leaves, out_spec = pytree.tree_flatten(out)
        return graph, static_in, out_leaves, out_spec


def install_cuda_graphs(module: torch.nn.Module, **kw):
    """Wrap ``module.forward`` in a :class:`GraphedForward`. Returns ``(runner, undo)`` or ``(None, None)``."""
    if "forward" in module.__dict__ or not torch.cuda.is_available():
        return None, None
    runner = GraphedForward(module, module.forward, **kw)
    module.forward = runner

    def undo():
        if module.__dict__.get("forward") is runner:
            del module.__dict__["forward"]
        runner.graphs.clear()

    return runner, undo
