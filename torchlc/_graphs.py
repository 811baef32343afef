"""CUDA graphs for multi-kernel jets in eager mode.

A first-order jet of a fused layer (PyTorch's eval ``TransformerEncoderLayer`` kernel) is ~20 CUDA
kernels driven by ~100 Python→torch calls; for small and medium layers the host time of those calls
exceeds the GPU time by several times. :func:`graphed` runs such a jet through a CUDA graph instead:
the first call with a given signature runs eagerly (it compiles Triton kernels and warms up cuBLAS),
the second captures the jet into a graph, and later calls copy the moving inputs into the graph's
static buffers, replay it, and return copies of its static outputs. The kernels and their numbers are
the same as eager; only the host work goes.

What a graph may bake in is in its key: the stream, whether inference mode is on (its static buffers
are inference tensors or not), the shapes, strides and dtypes of the copied inputs; the
*addresses* (and shapes, strides, dtypes) of the fixed tensors (weights), which the graph reads in
place, so weights updated in place are seen and a weight at a new address gets a new graph; and every
Python constant. Jets passed here must not sync with the host or branch on data.

Graphs are not used when tracing (torch.compile, vmap), when the current stream is already capturing
(the user's own CUDA graph records the kernels directly), or when turned off with
``TORCHLC_CUDA_GRAPHS=0`` or :func:`set_cuda_graphs`. At most :data:`MAX_GRAPHS` graphs are kept (least
recently used first out); those replayed on one stream share one memory pool. The first call runs
with CUDA's sync debug mode set to error: a jet that syncs with the host is never captured.
"""

from __future__ import annotations

import os
import warnings
from collections import OrderedDict

import torch
from torch.utils._pytree import tree_map

from ._context import traced_tensor as _traced_tensor
from ._context import tracing as _tracing

MAX_GRAPHS = 32
_enabled = os.environ.get("TORCHLC_CUDA_GRAPHS", "1") != "0"
_cache: OrderedDict = OrderedDict()  # key -> _SEEN, _FAILED or a _Graph
_pools: dict = {}
_SEEN, _FAILED = "seen", "failed"


def set_cuda_graphs(enabled: bool) -> bool:
    """Turn the eager CUDA graphs of multi-kernel jets on or off; returns the previous setting.

    Turning them off frees the captured graphs.

    Example:
        >>> import torchlc
        >>> old = torchlc.set_cuda_graphs(False)   # e.g. while profiling kernel by kernel
        >>> _ = torchlc.set_cuda_graphs(old)
    """
    global _enabled
    old, _enabled = _enabled, bool(enabled)
    if not _enabled:
        clear()
    return old


def clear():
    """Free every captured graph and its memory pools."""
    _cache.clear()
    _pools.clear()


class _Graph:
    __slots__ = ("graph", "inputs", "outputs", "stream")

    def __init__(self, graph, inputs, outputs, stream):
        self.graph, self.inputs, self.outputs, self.stream = graph, inputs, outputs, stream


def _layout(t: torch.Tensor):
    return (tuple(t.shape), t.stride(), t.dtype, t.device)


def _usable(moving) -> bool:

    if not _enabled or _tracing():
        return False
    for t in moving:
        if not t.is_cuda or _traced_tensor(t) or t.requires_grad:
            return False
    return not torch.cuda.is_current_stream_capturing()


def graphed(name: str, fn, moving: tuple, fixed: tuple, consts: tuple):
    """``fn(*moving)``, through a CUDA graph from the second call with the same signature on.

    ``moving`` are CUDA tensors copied into static buffers on each call; ``fixed`` are the tensors
    ``fn`` reads in place (weights; ``None`` allowed), keyed by address; ``consts`` are the Python
    values ``fn`` depends on. ``fn`` returns a tensor or a pytree of tensors."""
    if not _usable(moving):
        return fn(*moving)
    stream = torch.cuda.current_stream(moving[0].device)
    key = (
        name,
        stream,
        # buffers made under inference_mode cannot be written outside it (and vice versa for views)
        torch.is_inference_mode_enabled(),
        tuple(_layout(t) for t in moving),
        tuple(None if t is None else (t.data_ptr(), *_layout(t)) for t in fixed),
        consts,
    )
    entry = _cache.get(key)
    if entry is None:  # first sighting: eager, which also warms up kernels and libraries
        return _first_call(key, fn, moving)
    if entry is _FAILED:
        return fn(*moving)
    _cache.move_to_end(key)
    if entry is _SEEN:
        entry = _capture(key, fn, moving)
    for static, t in zip(entry.inputs, moving):
        static.copy_(t)
    entry.graph.replay()
    return tree_map(lambda t: t.clone() if isinstance(t, torch.Tensor) else t, entry.outputs)


def _remember(key, value):
    _cache[key] = value
    while len(_cache) > MAX_GRAPHS:
        _, old = _cache.popitem(last=False)
        if isinstance(old, _Graph) and not any(
            isinstance(e, _Graph) and e.stream == old.stream for e in _cache.values()
        ):
            # torch releases a private pool with its last graph: its handle must not be reused
            _pools.pop(old.stream, None)


def _first_call(key, fn, moving):
    """Run ``fn`` eagerly with CUDA's sync debug mode set to error: a jet that syncs with the host
    cannot be captured (and a failed capture would leave torch's CUDA RNG in capture state), so it
    is never graphed and this call runs again normally."""
    old = torch.cuda.get_sync_debug_mode()
    with warnings.catch_warnings():  # torch warns once that the mode is a prototype: not the user's concern
        warnings.simplefilter("ignore")
        torch.cuda.set_sync_debug_mode("error")
    syncs = False
    try:
        res = fn(*moving)
    except RuntimeError as e:
        if "synchroniz" not in str(e):
            raise
        syncs = True
    finally:
        torch.cuda.set_sync_debug_mode(old)
    _remember(key, _FAILED if syncs else _SEEN)
    return fn(*moving) if syncs else res


def _capture(key, fn, moving):
    inputs = tuple(t.clone() for t in moving)
    graph = torch.cuda.CUDAGraph()
    stream = key[1]  # one pool per stream: graphs sharing a pool must not run concurrently
    pool = _pools.get(stream)
    if pool is None:
        pool = _pools[stream] = torch.cuda.graph_pool_handle()
    with torch.cuda.graph(graph, pool=pool):
        outputs = fn(*inputs)
    entry = _Graph(graph, inputs, outputs, stream)
    _remember(key, entry)
    return entry
