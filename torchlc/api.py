"""Public functions: constructing LC tensors, reading them, and non-standard derivatives."""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction

import torch

from . import _algebra as A
from . import _support as S
from ._tensor import LCTensor, read_planes, series, unwrap_lc, wrap
from .errors import TruncationError

__all__ = [
    "nonstd", "eps", "from_terms", "terms", "coeff", "coeffs", "support", "exact_through", "order",
    "standard_part", "leading", "layout", "ngrad", "njvp", "njacfwd", "is_lc",
]


_ONE = Fraction(1)


def _float(x: torch.Tensor) -> torch.Tensor:
    return x if x.dtype.is_floating_point else x.to(torch.get_default_dtype())


def is_lc(x) -> bool:
    """True for LCTensors. Example: ``torchlc.is_lc(torch.ones(2).nonstd())`` is True."""
    return isinstance(x, LCTensor)


def nonstd(x, v=None, *, order=1) -> LCTensor:
    """The non-standard point x + v·ε (v defaults to ones).

    Also available as the Tensor method ``x.nonstd(v, order=...)``. Integer tensors are cast to the
    default float dtype. ``order`` is the truncation order of everything computed from the result.

    Example:
        >>> import torch, torchlc
        >>> torch.tensor([1.0, 2.0]).nonstd()
        LCTensor([1.0 + 1.0ε, 2.0 + 1.0ε], order=1)
        >>> (torch.tensor(0.0).nonstd() > 0)    # ε > 0
        tensor(True)
    """
    if (
        order == 1
        and type(x) is torch.Tensor
        and type(v) is torch.Tensor
        and x.dtype.is_floating_point
        and v.dtype == x.dtype
        and v.shape == x.shape
        and v.device == x.device
    ):  # the common call model(x.nonstd(v)): one stack, no broadcasting or conversions
        return wrap(torch.stack([x, v]), A.FIRST_ORDER, _ONE, None)
    order = S.as_exponent(order)
    if order < 0:
        raise ValueError(f"order must be ≥ 0, got {order}")
    if isinstance(x, LCTensor):
        base = x
        x = None
    else:
        base = None
        x = _float(torch.as_tensor(x))
    like = x if x is not None else base
    if v is None:
        v = torch.ones(like.shape, dtype=like.dtype, device=like.device)
    else:
        v = _float(torch.as_tensor(v, device=like.device)).to(like.dtype)
        if v.shape != like.shape:
            v = v.expand(torch.broadcast_shapes(v.shape, like.shape))
    if base is not None:
        return base + v * eps(1, order=order, dtype=like.dtype, device=like.device)
    shape = torch.broadcast_shapes(x.shape, v.shape)
    if order < 1:
        return wrap(x.expand(shape).unsqueeze(0).clone(), (S.ZERO,), order, order)
    planes = torch.stack([x.expand(shape), v.expand(shape)])
    return wrap(planes, (S.ZERO, Fraction(1)), order, None)


def eps(q=1, *, shape=(), order=None, dtype=None, device=None) -> LCTensor:
    """The tensor ε^q (every element), with ``order`` defaulting to max(1, q).

    Example:
        >>> import torchlc
        >>> 1 / torchlc.eps()
        LCTensor(1.0ε⁻¹, order=1)
    """
    q = S.as_exponent(q)
    order = S.as_exponent(order) if order is not None else max(Fraction(1), q)
    planes = torch.ones((1, *shape), dtype=dtype or torch.get_default_dtype(), device=device)
    if q > order:
        return wrap(planes * 0, (S.ZERO,), order, order)
    return wrap(planes, (q,), order, None)


def from_terms(terms_: dict, *, order=None, dtype=None, device=None) -> LCTensor:
    """Build Σ c_q ε^q from ``{q: number_or_tensor}`` (tensors broadcast together).

    ``order`` defaults to max(1, largest q); terms above ``order`` are dropped (and the result's
    exact_through says so).

    Example:
        >>> import torch, torchlc
        >>> torchlc.from_terms({0: torch.tensor([1.0, 0.0]), 1: torch.tensor([2.0, 0.0]),
        ...                     -1: torch.tensor([0.0, 3.0])})
        LCTensor([1.0 + 2.0ε, 3.0ε⁻¹], order=1)
    """
    if not terms_:
        raise ValueError("from_terms needs at least one term, e.g. {0: 1.0}")
    qs = {S.as_exponent(q): c for q, c in terms_.items()}
    order = S.as_exponent(order) if order is not None else max(Fraction(1), max(qs))
    tensors = {}
    for q, c in qs.items():
        t = torch.as_tensor(c, device=device)
        tensors[q] = t
    if dtype is None:
        dtype = torch.get_default_dtype()
        for t in tensors.values():
            if t.dtype.is_floating_point:
                dtype = torch.promote_types(dtype, t.dtype) if t.dim() else dtype
                if t.dim():
                    dtype = t.dtype
    shape = torch.broadcast_shapes(*(t.shape for t in tensors.values()))
    kept = sorted(q for q in tensors if q <= order)
    exact = None if len(kept) == len(tensors) else order
    if not kept:
        return wrap(torch.zeros((1, *shape), dtype=dtype, device=device), (S.ZERO,), order, exact)
    planes = torch.stack([tensors[q].to(dtype=dtype, device=device).expand(shape) for q in kept])
    # a constructor may look at data once: monomial tensors (≤ 1 term per element) can be boxed
    monomial = len(kept) == 1 or bool(((planes != 0).sum(0) <= 1).all())
    return wrap(planes.clone(), tuple(kept), order, exact, monomial=monomial)


def terms(x) -> dict:
    """``{exponent: coefficient tensor}`` for every exponent of the support (plain tensor → {0: x}).

    Example:
        >>> import torch, torchlc
        >>> torchlc.terms(torch.tensor(2.0).nonstd() ** 2)
        {Fraction(0, 1): tensor(4.), Fraction(1, 1): tensor(4.)}
    """
    lc = unwrap_lc(x)
    sup = lc.lc_support if lc is not None else (S.ZERO,)
    planes = read_planes(x)
    return {q: planes[i] for i, q in enumerate(sup)}


def coeffs(x) -> torch.Tensor:
    """All coefficient planes stacked: shape (len(support(x)), *x.shape). Safe inside vmap.

    Example:
        >>> import torch, torchlc
        >>> torchlc.coeffs(torch.tensor([1.0, 2.0]).nonstd())
        tensor([[1., 2.],
                [1., 1.]])
    """
    return read_planes(x)


def support(x) -> tuple:
    """Sorted exponents the tensor can carry (static metadata).

    Example:
        >>> import torch, torchlc
        >>> torchlc.support(1 / torch.tensor([0.0, 1.0]).nonstd())
        (Fraction(-1, 1), Fraction(0, 1), Fraction(1, 1))
    """
    return series(x).support if isinstance(x, LCTensor) else (S.ZERO,)


def order(x) -> Fraction | None:
    """Truncation order (None for plain tensors). Example: ``torchlc.order(torchlc.eps())`` is 1."""
    return x.lc_order if isinstance(x, LCTensor) else None


def exact_through(x) -> Fraction:
    """Highest exponent whose coefficient is exact (≤ order).

    Example:
        >>> import torch, torchlc
        >>> y = (1 / torchlc.eps()) * torch.tensor(1.0).nonstd() ** 2   # (1+ε)² drops ε², ε⁻¹ pulls it down
        >>> torchlc.exact_through(y)
        Fraction(0, 1)
    """
    if not isinstance(x, LCTensor):
        raise TypeError("exact_through: expected an LCTensor")
    if x.lc_exact is None:
        return x.lc_order
    return min(x.lc_exact, x.lc_order)


def coeff(x, q) -> torch.Tensor:
    """Coefficient tensor of ε^q (zeros where absent).

    Raises :class:`torchlc.TruncationError` naming the order needed when q > exact_through(x).

    Example:
        >>> import torch, torchlc
        >>> torchlc.coeff(torch.tensor(3.0).nonstd() ** 2, 1)
        tensor(6.)
    """
    q = S.as_exponent(q)
    lc = unwrap_lc(x)
    if lc is None:
        return x if q == 0 else torch.zeros_like(x)
    e = exact_through(lc)
    if q > e:
        need = lc.lc_order + (q - e)
        raise TruncationError(
            f"coefficient of ε^{q} is not exact: this tensor is exact through ε^{e} (order {lc.lc_order}); "
            f"recompute from inputs with order ≥ {need}, e.g. x.nonstd(order={need})"
        )
    planes = read_planes(x)
    sup = lc.lc_support
    return planes[sup.index(q)] if q in sup else torch.zeros_like(planes[0])


def standard_part(x) -> torch.Tensor:
    """st(x): the ε⁰ coefficient of finite elements, ±inf for infinite ones, NaN for NaN ones.

    Example:
        >>> import torch, torchlc
        >>> torchlc.standard_part(torchlc.from_terms({0: torch.tensor([2.0, 1.0]), -1: torch.tensor([0.0, -1.0])}))
        tensor([2., -inf])
    """
    if not isinstance(x, LCTensor):
        return x
    s = series(x)
    a = s.plane(S.ZERO)
    neg = [i for i, q in enumerate(s.support) if q < 0]
    if neg:
        sg = A.lead_sign(s.planes[: len(neg)])
        a = torch.where(sg != 0, sg * float("inf"), a)
    # an element with a NaN coefficient anywhere is outside the field
    return torch.where(torch.isnan(s.planes).any(0), float("nan"), a)


def leading(x) -> LCTensor:
    """Each element's leading term c·ε^λ as a monomial LCTensor (boxed when exponents differ).

    Example:
        >>> import torch, torchlc
        >>> torchlc.leading(torch.tensor([0.0, 2.0]).nonstd())
        LCTensor([1.0ε, 2.0], order=1)
    """
    s = series(x)
    li = A.lead_index(s.planes).unsqueeze(0)
    lead = s.planes.gather(0, li)
    planes = torch.zeros_like(s.planes).scatter(0, li, lead)
    return wrap(planes, s.support, s.order, s.exact, monomial=True)


def layout(x) -> str:
    """Storage path of an LCTensor: ``"boxed"``, ``"planes"`` or ``"csr"``.

    Example:
        >>> import torch, torchlc
        >>> torchlc.layout(torch.tensor([1.0]).nonstd())
        'planes'
    """
    if not isinstance(x, LCTensor):
        raise TypeError(f"layout: expected an LCTensor, got {type(x).__name__}")
    return x.lc_layout.name


# -- non-standard derivatives ------------------------------------------------------------------------


def _shift(y, by, keep_through):
    """y·ε^by by relabelling exponents (exact: no multiplication), truncated at keep_through."""
    s = series(y)
    sup = tuple(q + by for q in s.support)
    keep = [i for i, q in enumerate(sup) if q <= keep_through]
    exact = None if s.exact is None else s.exact + by
    if len(keep) < len(sup):
        exact = A.min_exact(exact, keep_through)
    if not keep:
        return wrap(s.planes[:1] * 0, (S.ZERO,), keep_through, exact)
    return wrap(s.planes[keep], tuple(sup[i] for i in keep), keep_through, exact)


def _real_lc(x, W):
    x = _float(torch.as_tensor(x))
    return wrap(x.unsqueeze(0), (S.ZERO,), W, None)


def _quotient(f, xs, vs, side, W, target):
    lifted_plus = [x.nonstd(v, order=W) for x, v in zip(xs, vs)]
    base = [_real_lc(x, W) for x in xs]
    neg = [x.nonstd(-v, order=W) for x, v in zip(xs, vs)]
    if side == "forward":
        diff = f(*lifted_plus) - f(*base)
    elif side == "backward":
        diff = f(*base) - f(*neg)
    else:
        diff = (f(*lifted_plus) - f(*neg)) * 0.5
    return _shift(diff, Fraction(-1), target)


def _with_margin(run, target, what):
    """Run ``run(W)`` at increasing working orders until the result is exact through target."""
    W = target + 1
    last_err = None
    for _ in range(6):
        try:
            d = run(W)
        except TruncationError as e:
            last_err = e
            W = W + 2
            continue
        e = exact_through(d) if isinstance(d, LCTensor) else target
        if e >= target:
            return d
        W = W + (target - e) + 1
    raise TruncationError(f"{what}: could not reach exactness through ε^{target} (working order {W})"
                          + (f": {last_err}" if last_err else ""))


def ngrad(f: Callable, x, v=None, *, side: str = "forward", order=0) -> LCTensor:
    """Non-standard derivative D₊f(x) = (f(x + εv) − f(x))/ε, exact through ε^order.

    ``side="backward"`` gives (f(x) − f(x − εv))/ε and ``"central"`` their mean. The ε⁻¹ coefficient is
    the jump seen from that side (a Dirac mass), ε⁰ the one-sided slope. The working order is chosen
    (and raised when an infinite intermediate eats the margin) so the result is exact through
    ``order``. ``v`` defaults to ones (per-element derivatives of elementwise f).

    Example:
        >>> import torch, torchlc
        >>> torchlc.ngrad(lambda x: (x > 0).float(), torch.tensor(0.0))     # step at 0: Dirac mass
        LCTensor(1.0ε⁻¹, order=0)
        >>> torchlc.ngrad(torch.abs, torch.tensor(0.0), side="backward")
        LCTensor(-1.0, order=0)
    """
    if side not in ("forward", "backward", "central"):
        raise ValueError(f"side must be 'forward', 'backward' or 'central', not {side!r}")
    target = S.as_exponent(order)
    x = _float(torch.as_tensor(x))
    v = torch.ones_like(x) if v is None else _float(torch.as_tensor(v)).to(x.dtype)
    return _with_margin(lambda W: _quotient(f, [x], [v], side, W, target), target, "ngrad")


def njvp(f: Callable, primals, tangents, *, side: str = "forward", order=0):
    """``(f(*primals), D f(primals)[tangents])`` with the derivative as an exact LC quotient.

    Like ``torch.func.jvp`` but through discontinuities: jumps appear as ε⁻¹ terms.

    Example:
        >>> import torch, torchlc
        >>> out, d = torchlc.njvp(torch.floor, (torch.tensor(1.0),), (torch.tensor(-1.0),))
        >>> out, d
        (tensor(1.), LCTensor(-1.0ε⁻¹, order=0))
    """
    primals = tuple(_float(torch.as_tensor(p)) for p in primals)
    tangents = tuple(_float(torch.as_tensor(t)).to(p.dtype) for t, p in zip(tangents, primals))
    if len(primals) != len(tangents):
        raise ValueError("njvp: primals and tangents must have the same length")
    target = S.as_exponent(order)
    d = _with_margin(lambda W: _quotient(f, list(primals), list(tangents), side, W, target), target, "njvp")
    return f(*primals), d


def njacfwd(f: Callable, argnums: int = 0, *, side: str = "forward", order=0, chunk_size=None):
    """Function computing the LC Jacobian of f w.r.t. argument ``argnums``: shape out.shape + in.shape.

    Each column is ``ngrad`` along one basis direction; directions are batched with
    ``torch.func.vmap`` (``chunk_size`` bounds the batch for large inputs).

    Example:
        >>> import torch, torchlc
        >>> J = torchlc.njacfwd(lambda x: torch.round(x * 2))(torch.tensor([0.25, 1.0]))
        >>> torchlc.coeff(J, -1)
        tensor([[1., 0.],
                [0., 0.]])
    """
    return _jacobian(f, argnums, side=side, order=order, chunk_size=chunk_size)


def _jacobian(f, argnums=0, *, side="forward", order=0, chunk_size=None):
    """LC Jacobian by ``torch.func.vmap`` of ``ngrad`` over the basis directions."""

    def jac(*args):
        args = list(args)
        x = _float(torch.as_tensor(args[argnums]))
        n = x.numel()
        basis = torch.eye(n, dtype=x.dtype, device=x.device).reshape(n, *x.shape)

        def g(xi):
            a = list(args)
            a[argnums] = xi
            return f(*a)

        meta = {}

        def column(v):
            d = ngrad(g, x, v, side=side, order=order)
            lc = unwrap_lc(d)
            if lc is None:  # f does not depend on x: derivative 0
                meta["lc"] = None
                return torch.as_tensor(d).unsqueeze(0) * 0
            meta["lc"] = lc  # the body is traced once per chunk: metadata is the same for all
            return read_planes(d)

        planes = torch.func.vmap(column, chunk_size=chunk_size)(basis)  # (n, T, *out)
        planes = planes.movedim(0, -1)  # (T, *out, n)
        planes = planes.reshape(*planes.shape[:-1], *x.shape)
        lc = meta["lc"]
        if lc is None:
            return wrap(planes, (S.ZERO,), S.as_exponent(order), None)
        return wrap(planes, lc.lc_support, lc.lc_order, lc.lc_exact)

    return jac
