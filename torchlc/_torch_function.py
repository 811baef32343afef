"""``LCTensor.__torch_function__``: a small override table in front of ``__torch_dispatch__``.

Almost everything reaches torchlc at the aten level through ``__torch_dispatch__``. A few PyTorch
entry points cannot: their C++ composite implementations run *before* dispatch sees an LCTensor and do
things no aten rule can repair, e.g. the recurrent layers (``torch._VF.rnn_tanh``/``gru``/``lstm``
and their cells) add an LC gate in place into a plain zero hidden state (in C++, in-place ops return
``self``, so a new tensor cannot be substituted), or pick backend kernels (``mkldnn_rnn_layer``,
``_cudnn_rnn``) that have no LC meaning. Functions registered here with :func:`overrides` are
replaced, whenever an argument is an LCTensor, by a Python implementation made of ordinary torch ops,
which then dispatch through the LC rules.

Every other function behaves exactly as with ``torch._C._disabled_torch_function_impl`` (which it
calls): it runs with subclass torch-function handling disabled and its results are returned as they
are (never converted to LCTensor). The price is PyTorch's torch-function protocol on each Python-level
call that has an LCTensor argument, about 2.5-4 µs on CPU (8×64 planes, no_grad: ``-X`` 21.3 → 24.0 µs,
``X + X`` 36.5 → 40.6 µs, ``X.shape`` 0.4 → 1.9 µs); the body of the handler is not measurable against
that. Ops that rules run inside ``__torch_dispatch__`` do not pay it. ``torch.compile`` (Dynamo)
wraps traceable wrapper subclasses as plain tensor variables and never calls ``__torch_function__``
(torch 2.11 and 2.13 alike); ``torchlc.compile`` traces with ``make_fx``, where the handler runs
eagerly, so recurrent layers compile through it.
"""

from __future__ import annotations

import torch

__all__ = ["OVERRIDES", "overrides", "torch_function"]

OVERRIDES: dict = {}

_disabled_impl = torch._C._disabled_torch_function_impl
_DisableSubclass = torch._C.DisableTorchFunctionSubclass


def overrides(funcs):
    """Register ``fn(*args, **kwargs)`` to replace each torch function in ``funcs`` when one of its
    arguments is an LCTensor. ``fn`` runs with subclass torch-function handling disabled, so the torch
    ops it calls go straight to ``__torch_dispatch__``."""

    def deco(fn):
        for f in funcs:
            OVERRIDES[f] = fn
        return fn

    return deco


def _lc_torch_function(cls, func, types, args=(), kwargs=None):
    try:
        fn = OVERRIDES.get(func)
    except TypeError:  # an unhashable callable: never one of ours
        fn = None
    if fn is None:
        if kwargs is None:
            return _disabled_impl(func, types, args)
        return _disabled_impl(func, types, args, kwargs)
    with _DisableSubclass():
        return fn(*args, **(kwargs or {}))


torch_function = classmethod(_lc_torch_function)
