"""Rule table and dispatch.

Rules live in one module per family and register with ``@implements([...aten ops])``. An op with no
rule falls back to its CompositeImplicitAutograd decomposition, then to ``torch._decomp``; anything
else raises ``NotImplementedError`` naming the op. ``RULES_HASH`` fingerprints the rule sources and is
part of every LCTensor's flatten context, so torch.compile caches never serve graphs built with old
rules.
"""

from __future__ import annotations

import hashlib
import pathlib

import torch
import torch._decomp

from .. import _support as S
from .._tensor import RULES, LCTensor, Series, implements, series, wrap  # noqa: F401

aten = torch.ops.aten


def _rules_hash() -> str:
    root = pathlib.Path(__file__).resolve().parent.parent
    h = hashlib.sha256()
    for p in sorted(root.rglob("*.py")):
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


RULES_HASH = _rules_hash()

_DECOMP = torch._decomp.decomposition_table


def _rebuild(planes, support, order, exact):
    return wrap(planes, support, order, exact)


def _find_rule(func):
    rule = RULES.get(func)
    if rule is None:
        rule = RULES.get(func.overloadpacket)
    return rule


_RESHAPING = {"squeeze_", "unsqueeze_", "t_", "transpose_", "swapaxes_", "swapdims_", "as_strided_"}


def _functional_variant(func):
    """The out-of-place overload of an in-place op (``add_.Tensor`` → ``add.Tensor``), or None."""
    name = func.overloadpacket.__name__
    if not name.endswith("_") or name.startswith("_"):
        return None
    packet = getattr(aten, name[:-1], None)
    if packet is None:
        return None
    # match by argument types, not by overload name (pow_.Scalar is pow.Tensor_Scalar)
    want = [str(a.type) for a in func._schema.arguments]
    for ov in packet.overloads():
        cand = getattr(packet, ov)
        if [str(a.type) for a in cand._schema.arguments] == want:
            return cand
    return None


def dispatch(func, args, kwargs):
    rule = _find_rule(func)
    if rule is not None:
        with torch._C._RestorePythonTLSSnapshot():
            return rule(func, *args, **kwargs)
    mutable = func._schema.is_mutable
    if mutable and args and isinstance(args[0], LCTensor):
        functional = _functional_variant(func)
        if functional is not None:
            # in-place on an LCTensor: compute out of place, then write into self's storage
            res = dispatch(functional, args, kwargs)
            if not isinstance(res, LCTensor):
                res = wrap(res.unsqueeze(0).to(args[0].dtype), (S.ZERO,), args[0]._order, None)
            elif res.dtype != args[0].dtype:
                res = res.to(args[0].dtype)
            if tuple(res.shape) != tuple(args[0].shape) and func.overloadpacket.__name__ in _RESHAPING:
                args[0]._restride_to(res)
            elif tuple(res.shape) != tuple(args[0].shape):
                raise RuntimeError(
                    f"torchlc: in-place {func.name()} would change the shape {tuple(args[0].shape)} "
                    f"to {tuple(res.shape)}"
                )
            with torch._C._RestorePythonTLSSnapshot():  # so autograd records the write into the planes
                args[0]._set_storage(res)
            return args[0]
        if func.overloadpacket.__name__.endswith("_") or "out" in func._overloadname:
            raise NotImplementedError(f"torchlc: in-place/out= op aten.{func.name()} on an LCTensor")
    if mutable and args and not isinstance(args[0], LCTensor):
        raise TypeError(
            f"torchlc: {func.name()} would write LCTensor values into a plain tensor, which cannot "
            "hold them; create the destination from the LCTensor instead, e.g. lc.new_zeros(shape) "
            "or torch.zeros_like(lc), or use the out-of-place op"
        )
    with torch._C._RestorePythonTLSSnapshot():
        out = func.decompose(*args, **kwargs)
        if out is not NotImplemented:
            return out
        decomp = _DECOMP.get(func)
        if decomp is not None:
            return decomp(*args, **kwargs)
    raise NotImplementedError(
        f"torchlc: aten.{func.name()} has no rule for LCTensor inputs (and no decomposition). "
        "Please open an issue naming this op; as a workaround, compute it on torchlc.coeffs(x)."
    )


_tensor_module = __import__("torchlc._tensor", fromlist=["_DISPATCH"])
_tensor_module._DISPATCH[0] = dispatch

from . import (  # noqa: E402,F401
    analytic,
    arithmetic,
    discontinuous,
    factories,
    linalg,
    nn,
    reductions,
    rnn,
    shape,
    special,
)


def register_linear_op(op, *, lc_arg: int = 0, bias_arg: int | None = None):
    """Give a custom op that is linear in argument ``lc_arg`` an LCTensor rule: the op runs on every
    coefficient plane, with the bias argument (if any) only on the ε⁰ plane (zeros elsewhere).

    Example:
        >>> import torch, torchlc
        >>> @torch.library.custom_op("demo::scale3", mutates_args=())
        ... def scale3(x: torch.Tensor) -> torch.Tensor:
        ...     return 3 * x
        >>> @scale3.register_fake
        ... def _(x):
        ...     return torch.empty_like(x)
        >>> torchlc.register_linear_op(torch.ops.demo.scale3.default)
        >>> torch.ops.demo.scale3(torch.tensor([1.0]).nonstd())
        LCTensor([3.0 + 3.0ε], order=1)
    """
    from .. import _algebra as A

    def rule(func, *args, **kwargs):
        args = list(args)
        others = [i for i, a in enumerate(args) if isinstance(a, LCTensor) and i != lc_arg]
        if others:
            raise NotImplementedError(
                f"torchlc: {func.name()} is registered as linear in argument {lc_arg} only, "
                f"but argument(s) {others} are LCTensors too"
            )
        s = series(args[lc_arg])
        if bias_arg is not None and args[bias_arg] is not None and S.ZERO not in s.support:
            s = A.add(s, Series(s.planes.new_zeros((1, *s.shape)), (S.ZERO,)))
        outs = []
        for q, p in zip(s.support, s.planes):
            a = list(args)
            a[lc_arg] = p
            if bias_arg is not None and a[bias_arg] is not None and q != 0:
                a[bias_arg] = torch.zeros_like(a[bias_arg])
            outs.append(func(*a, **kwargs))
        return wrap(torch.stack(outs), s.support, s.order, s.exact)

    RULES[op] = rule
    return op
