"""Readable repr: ``LCTensor([1.0 + 2.0ε, 3.0ε⁻¹], order=1)``."""

from __future__ import annotations

import torch

from . import _support as S

MAX_SHOWN = 64


def _num(c: float) -> str:
    s = f"{c:.6g}"
    if s.lstrip("-").isdigit():
        s += ".0"
    return s


def element_str(coeffs, support, exact=None) -> str:
    """One element's terms; with ``exact`` (the tensor's exact_through, when terms above it may be
    wrong) only the exact terms are shown, followed by o(ε^exact) for the unknown rest."""
    parts = []
    for c, q in zip(coeffs, support):
        if c == 0 or (exact is not None and q > exact):
            continue
        if isinstance(c, complex):  # complex coefficients: (a±bj), always added
            body = f"({_num(c.real)}{'-' if c.imag < 0 else '+'}{_num(abs(c.imag))}j)" if c == c else "nan"
            parts.append(("+", body + (S.fmt_exponent(q) if q != 0 else "")))
            continue
        body = _num(abs(c)) if c == c else "nan"
        body = body + (S.fmt_exponent(q) if q != 0 else "")
        parts.append(("-" if c < 0 else "+", body))
    if exact is not None:
        parts.append(("+", f"o({S.fmt_exponent(exact) if exact != 0 else 'ε⁰'})"))
    if not parts:
        return "0.0"
    sign, body = parts[0]
    s = ("-" if sign == "-" else "") + body
    for sign, body in parts[1:]:
        s += f" {sign} {body}"
    return s


def _nested(flat, shape):
    if not shape:
        return flat[0]
    step = len(flat) // shape[0] if shape[0] else 0
    return "[" + ", ".join(_nested(flat[i * step : (i + 1) * step], shape[1:]) for i in range(shape[0])) + "]"


def lc_repr(x) -> str:
    if x.numel() > MAX_SHOWN and not x.lc_support_known:
        # a large tensor whose support was never computed (CSR with per-element exponents): printing
        # it must not decode it (its planes may be numel × numel)
        return _wrap(x, f"shape={tuple(x.shape)}, layout={x.lc_layout.name}")
    planes = x._planes_view().detach()
    from torch._subclasses.fake_tensor import is_fake

    symbolic = (
        torch._C._functorch.is_functorch_wrapped_tensor(planes)
        or planes.device.type == "meta"
        or is_fake(planes)
        or torch.compiler.is_compiling()
        or isinstance(planes, torch._subclasses.functional_tensor.FunctionalTensor)
    )
    if symbolic:  # traced, fake or batched: no values to show (and none may be read)
        body = f"shape={tuple(x.shape)}, support=({', '.join(str(q) for q in x.lc_support)})"
    elif x.numel() > MAX_SHOWN:
        body = f"shape={tuple(x.shape)}, support=({', '.join(str(q) for q in x.lc_support)})"
    else:
        inexact = x.lc_exact is not None and x.lc_order is not None and x.lc_exact < x.lc_order
        exact = x.lc_exact if inexact else None
        cols = planes.reshape(len(x.lc_support), -1).t().tolist()
        body = _nested([element_str(c, x.lc_support, exact) for c in cols], tuple(x.shape))
    return _wrap(x, body)


def _wrap(x, body) -> str:
    extras = [f"order={x.lc_order}"]
    if x.lc_exact is not None and x.lc_order is not None and x.lc_exact < x.lc_order:
        extras.append(f"exact_through={x.lc_exact}")
    if x.dtype != torch.get_default_dtype():
        extras.append(f"dtype={x.dtype}")
    return f"LCTensor({body}, {', '.join(extras)})"
