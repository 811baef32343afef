"""Public functions: constructing LC tensors, reading them, and non-standard derivatives."""

from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction

import torch
from torch.utils._pytree import tree_flatten, tree_unflatten

from . import _algebra as A
from . import _ragged as R
from . import _support as S
from ._tensor import LCTensor, note_plane_write, read_planes, series, unwrap_lc, wrap
from .errors import TruncationError
from .ops.ragged import from_ragged, to_ragged

__all__ = [
    "nonstd", "eps", "from_terms", "terms", "coeff", "coeffs", "support", "exact_through", "order",
    "standard_part", "leading", "layout", "ngrad", "njvp", "njacfwd", "is_lc", "from_csr", "to_csr", "CSRData",
]


_ONE = Fraction(1)


_SIDES = ("forward", "backward", "central")


def _float(x: torch.Tensor, what: str = "torchlc") -> torch.Tensor:
    """Integer and bool tensors cast to the default float dtype; complex refused (coefficients are
    real numbers)."""
    if x.dtype.is_complex:
        raise TypeError(
            f"{what}: complex tensors ({x.dtype}) are not supported: LC coefficients are real. "
            "Treat the real and imaginary parts separately, e.g. x.real.nonstd() and x.imag.nonstd()"
        )
    return x if x.dtype.is_floating_point else x.to(torch.get_default_dtype())


def _point(x: torch.Tensor, what: str) -> torch.Tensor:
    """A point for :func:`nonstd`: floating and complex tensors as they are, integer and bool ones cast
    to the default float dtype."""
    return x if x.dtype.is_complex else _float(x, what)


def _float_dtype(dtype, what: str):
    """A floating coefficient dtype (the default when None); integer, bool and complex refused."""
    if dtype is None:
        return torch.get_default_dtype()
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(
            f"{what}: dtype must be a floating-point torch.dtype (float16/bfloat16/float32/float64), "
            f"got {dtype}: LC coefficients of ε-powers are real numbers"
        )
    return dtype


def _check_side(side, what: str) -> str:
    if side not in _SIDES:
        raise ValueError(f"{what}: side must be 'forward', 'backward' or 'central', got {side!r}")
    return side


def _check_order(order, what: str) -> Fraction:
    """A truncation order: a finite rational ≥ 0 (int, Fraction, str or short float)."""
    try:
        q = S.as_exponent(order)
    except (TypeError, ValueError) as e:
        raise type(e)(f"{what}: order must be a finite rational ≥ 0, got {order!r} ({e})") from None
    if q < 0:
        raise ValueError(f"{what}: order must be a finite rational ≥ 0, got {order!r}")
    return q


def _plain_point(x, what: str, name: str = "x") -> torch.Tensor:
    if isinstance(x, LCTensor):
        raise TypeError(
            f"{what}: {name} is an LCTensor, but it must be a plain tensor (the standard point): "
            f"{what} adds the infinitesimal itself. Pass torchlc.standard_part({name}), or call f on "
            f"{name} directly to evaluate it at the LC point"
        )
    return _float(torch.as_tensor(x), what)


def is_lc(x) -> bool:
    """True for LCTensors. Example: ``torchlc.is_lc(torch.ones(2).nonstd())`` is True."""
    return isinstance(x, LCTensor)


def nonstd(x, v=None, *, order=1) -> LCTensor:
    """The non-standard point x + v·ε (v defaults to ones).

    Also available as the Tensor method ``x.nonstd(v, order=...)``. Integer tensors are cast to the
    default float dtype. ``order`` is the truncation order of everything computed from the result.
    A complex x (or v) gives an LCTensor with complex coefficients (x and v promoted to one complex
    dtype), which takes linear ops, data movement, + − × ÷, real/imag/conj/abs/angle and the FFTs;
    every op that decides or is analytic raises a TypeError naming itself (semantics §7).

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
    order = _check_order(order, "nonstd")
    if isinstance(x, LCTensor):
        base = x
        x = None
    else:
        base = None
        x = _point(torch.as_tensor(x), "nonstd")
    like = x if x is not None else base
    if v is None:
        v = torch.ones(like.shape, dtype=like.dtype, device=like.device)
    else:
        v = _point(torch.as_tensor(v, device=like.device), "nonstd")
        if v.dtype.is_complex and not like.dtype.is_complex:  # a complex direction: complex planes
            v = v.to(torch.promote_types(like.dtype, v.dtype))
            if x is not None:
                x = x.to(v.dtype)
        else:
            v = v.to(like.dtype)
        if v.shape != like.shape:
            v = v.expand(torch.broadcast_shapes(v.shape, like.shape))
    if base is not None:
        real = like.dtype.to_real() if like.dtype.is_complex else like.dtype
        return base + v * eps(1, order=order, dtype=real, device=like.device)
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
    order = _check_order(order, "eps") if order is not None else max(Fraction(1), q)
    planes = torch.ones((1, *shape), dtype=_float_dtype(dtype, "eps"), device=device)
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
    if not isinstance(terms_, dict) or not terms_:
        raise ValueError("from_terms needs a non-empty dict {exponent: coefficient}, e.g. {0: 1.0, 1: 2.0}")
    qs = {}
    for q, c in terms_.items():
        e = S.as_exponent(q)
        if e in qs:  # 0 and "0", or 1/2 and Fraction(1, 2): one exponent given twice
            raise ValueError(
                f"from_terms: exponent {e} is given twice (as {next(k for k in terms_ if S.as_exponent(k) == e)!r} "
                f"and {q!r}); give each exponent once (add the coefficients yourself if that was meant)"
            )
        qs[e] = c
    order = _check_order(order, "from_terms") if order is not None else max(Fraction(1), max(qs))
    tensors = {}
    for q, c in qs.items():
        if isinstance(c, LCTensor):
            raise TypeError(f"from_terms: the coefficient of ε^{q} is an LCTensor; coefficients are plain "
                            "tensors or numbers (add LCTensors with + instead)")
        t = torch.as_tensor(c, device=device)
        if t.dtype.is_complex:
            raise TypeError(f"from_terms: the coefficient of ε^{q} is complex ({t.dtype}); LC coefficients "
                            "are real numbers")
        tensors[q] = t
    if dtype is None:
        # promotion as torch's: floating tensors of any dimension promote together (0-dim ones
        # included); Python numbers and integer/bool tensors take the default float dtype
        dtype = None
        for t, c in zip(tensors.values(), qs.values()):
            if t.dtype.is_floating_point and isinstance(c, torch.Tensor):
                dtype = t.dtype if dtype is None else torch.promote_types(dtype, t.dtype)
        dtype = dtype or torch.get_default_dtype()
    else:
        dtype = _float_dtype(dtype, "from_terms")
    shape = torch.broadcast_shapes(*(t.shape for t in tensors.values()))
    kept = sorted(q for q in tensors if q <= order)
    exact = None if len(kept) == len(tensors) else order
    if not kept:
        return wrap(torch.zeros((1, *shape), dtype=dtype, device=device), (S.ZERO,), order, exact)
    planes = torch.stack([tensors[q].to(dtype=dtype, device=device).expand(shape) for q in kept])
    # a constructor may look at data once: monomial tensors (≤ 1 term per element) can be boxed
    monomial = len(kept) == 1 or bool(((planes != 0).sum(0) <= 1).all())
    return wrap(planes.clone(), tuple(kept), order, exact, monomial=monomial)


def terms(x, index=None) -> dict:
    """``{exponent: coefficient tensor}`` for every exponent of the support (plain tensor → {0: x}).

    With ``index`` (an int, or a tuple of ints for a multi-dimensional x): the nonzero terms of that
    one element, ``{exponent: 0-dim coefficient tensor}``, read without decoding the tensor (a CSR
    tensor reads one row of its storage).

    Example:
        >>> import torch, torchlc
        >>> torchlc.terms(torch.tensor(2.0).nonstd() ** 2)
        {Fraction(0, 1): tensor(4.), Fraction(1, 1): tensor(4.)}
    """
    if index is not None:
        return _element_terms(x, index)
    lc = unwrap_lc(x)
    sup = lc.lc_support if lc is not None else (S.ZERO,)
    note_plane_write()  # views of the planes: the caller may write into them
    planes = read_planes(x)
    return {q: planes[i] for i, q in enumerate(sup)}


def _element_terms(x, index) -> dict:
    shape = tuple(x.shape)
    idx = (index,) if isinstance(index, int) else tuple(index)
    if len(idx) != len(shape) or any(not -s <= i < s for i, s in zip(idx, shape)):
        raise IndexError(f"terms: index {index} is not an element of a tensor of shape {shape}")
    flat = 0
    for i, s in zip(idx, shape):
        flat = flat * s + (i % s)
    if isinstance(x, LCTensor) and x.lc_layout.name == "csr":
        ptr, num, vals, meta = x.lc_storage
        den = int(meta[0])
        a, b = ptr[flat:flat + 2].tolist()
        return {Fraction(k, den): vals[a + j] for j, k in enumerate(num[a:b].tolist()) if vals[a + j] != 0}
    if not isinstance(x, LCTensor):
        c = torch.as_tensor(x).reshape(-1)[flat]
        return {S.ZERO: c} if c != 0 else {}
    planes = x.lc_planes().reshape(len(x.lc_support), -1)[:, flat]
    return {q: planes[t] for t, q in enumerate(x.lc_support) if planes[t] != 0}


class CSRData(tuple):
    """A CSR export (:func:`to_csr`): ``crow_indices`` (numel + 1, int64), ``exponents`` (nnz, int64
    numerators), ``denominator`` (int: exponent = numerator / denominator), ``values`` (nnz),
    ``shape``, ``order`` and ``exact_through``. Element i (row-major) holds
    Σ values[k] ε^{exponents[k]/denominator} for k in crow_indices[i]:crow_indices[i+1]."""

    __slots__ = ()
    _fields = ("crow_indices", "exponents", "denominator", "values", "shape", "order", "exact_through")

    def __new__(cls, *vals):
        return tuple.__new__(cls, vals)

    crow_indices = property(lambda s: s[0])
    exponents = property(lambda s: s[1])
    denominator = property(lambda s: s[2])
    values = property(lambda s: s[3])
    shape = property(lambda s: s[4])
    order = property(lambda s: s[5])
    exact_through = property(lambda s: s[6])

    def __repr__(self):
        return "CSRData(" + ", ".join(f"{k}={v!r}" for k, v in zip(self._fields, self)) + ")"


def to_csr(x) -> CSRData:
    """Export the terms of an LCTensor (any layout) as compressed sparse rows with exact exponents,
    without decoding a CSR tensor to planes (see :class:`CSRData`; only nonzero terms for planes and
    boxed tensors).

    Example:
        >>> import torch, torchlc
        >>> d = torchlc.to_csr(torch.tensor([2.0, 0.0]).nonstd())
        >>> d.crow_indices, d.exponents, d.denominator, d.values
        (tensor([0, 2, 3]), tensor([0, 1, 1]), 1, tensor([2., 1., 1.]))
    """
    if not isinstance(x, LCTensor):
        raise TypeError(f"to_csr: expected an LCTensor, got {type(x).__name__}")
    r = to_ragged(x)
    return CSRData(r.ptr, r.num, r.den, r.vals, tuple(x.shape), r.order, exact_through(x))


def _exact_from_data(r, order):
    """Drop terms above ``order``; the exactness bound that follows (None when nothing was dropped)."""
    top = R.floor_units(order, r.den)
    if r.nnz and r.hi > top:
        over = r.num > top
        if bool(over.any()):
            return order, r.num <= top
    return None, None


def from_csr(crow_indices, exponents, values, shape=None, *, denominator=1, order=None) -> LCTensor:
    """An LCTensor from compressed sparse rows with per-element exponents, without a planes detour.

    Element i (row-major over ``shape``, default ``(numel,)``) is
    Σ values[k] ε^{exponents[k]/denominator} for k in crow_indices[i]:crow_indices[i+1]: each element
    has its own exponents (integer numerators over one ``denominator``, so they are exact rationals).
    Rows need not be sorted; an exponent given twice in a row is summed; zero coefficients are
    dropped. ``order`` defaults to max(1, largest exponent); terms above it are dropped (and
    ``exact_through`` says so). The result is stored by the layout policy: CSR unless its exponents
    are few enough for planes (docs/layouts.md).

    Example:
        >>> import torch, torchlc
        >>> x = torchlc.from_csr(torch.tensor([0, 2, 3]), torch.tensor([0, 1, -2]),
        ...                      torch.tensor([1.0, 2.0, 3.0]), denominator=3)
        >>> torchlc.terms(x, 0), torchlc.terms(x, 1)
        ({Fraction(0, 1): tensor(1.), Fraction(1, 3): tensor(2.)}, {Fraction(-2, 3): tensor(3.)})
    """
    crow = torch.as_tensor(crow_indices).to(torch.int64)
    num = torch.as_tensor(exponents, device=crow.device)
    if num.dtype.is_floating_point or num.dtype.is_complex or num.dtype == torch.bool:
        raise TypeError(f"from_csr: exponents must be integer numerators (over denominator={denominator}), "
                        f"got {num.dtype}; exponents stay exact rationals")
    num = num.to(torch.int64).reshape(-1)
    vals = torch.as_tensor(values, device=crow.device).reshape(-1)
    if not vals.dtype.is_floating_point:
        vals = _float(vals, "from_csr")
    if vals.dtype.is_complex:
        raise TypeError("from_csr: complex coefficients are not supported")
    n = crow.numel() - 1
    shape = (n,) if shape is None else tuple(shape)
    if math.prod(shape) != n or num.numel() != vals.numel() or int(crow[-1]) != num.numel():
        raise ValueError(f"from_csr: crow_indices ({n} rows, {int(crow[-1])} terms), exponents ({num.numel()}) "
                         f"and values ({vals.numel()}) do not describe a tensor of shape {shape}")
    den = int(denominator)
    if den <= 0:
        raise ValueError(f"from_csr: denominator must be a positive int, got {denominator!r}")
    lo, hi = (int(num.min()), int(num.max())) if num.numel() else (0, 0)
    rows = torch.repeat_interleave(torch.arange(n, device=crow.device), crow.diff(), output_size=num.numel())
    if order is None:
        order = max(Fraction(1), Fraction(hi, den))
    order = _check_order(order, "from_csr")
    r = R.canon(rows, num, vals, n, den, lo, hi, shape, order, None)
    exact, keep = _exact_from_data(r, order)
    if keep is not None:
        r = R.canon(r.rows(), r.num, r.vals, n, den, lo, R.floor_units(order, den), shape, order, exact,
                    presorted=True, keep=keep)
    return from_ragged(r)


def coeffs(x) -> torch.Tensor:
    """All coefficient planes stacked: shape (len(support(x)), *x.shape). Safe inside vmap.

    Example:
        >>> import torch, torchlc
        >>> torchlc.coeffs(torch.tensor([1.0, 2.0]).nonstd())
        tensor([[1., 2.],
                [1., 1.]])
    """
    note_plane_write()  # the planes themselves: the caller may write into them
    return read_planes(x)


def support(x) -> tuple:
    """Sorted exponents the tensor can carry (static metadata).

    Example:
        >>> import torch, torchlc
        >>> torchlc.support(1 / torch.tensor([0.0, 1.0]).nonstd())
        (Fraction(-1, 1), Fraction(0, 1), Fraction(1, 1))
    """
    return x.lc_support if isinstance(x, LCTensor) else (S.ZERO,)


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
    note_plane_write()  # a view of a plane: the caller may write into it
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
    e = exact_through(x) if s.exact is not None else None
    a = s.plane(S.ZERO) if e is None or e >= 0 else torch.zeros_like(s.planes[0])
    neg = [i for i, q in enumerate(s.support) if q < 0 and (e is None or q <= e)]
    if neg:
        sg = A.lead_sign(s.planes[: len(neg)])
        a = torch.where(sg != 0, sg * float("inf"), a)
    nan = torch.isnan(s.planes).any(0)
    if e is not None and e < 0:
        # zero through ε^e (< 0) but truncated: finite or infinite depends on dropped terms
        unknown = ~nan
        if neg:
            unknown = unknown & (A.lead_sign(s.planes[: len(neg)]) == 0)
        if s.zero is not None:
            unknown = unknown & ~s.zero.expand(unknown.shape)
        _refuse_unknown(unknown, e, x, "standard_part")
    # an element with a NaN coefficient anywhere is outside the field
    return torch.where(nan, float("nan"), a)


def _refuse_unknown(unknown, e, x, what):
    if bool(unknown.any()):
        need = x.lc_order + (0 - e) if e < 0 else x.lc_order + 1
        raise TruncationError(
            f"{what}: {int(unknown.sum())} element(s) are zero through ε^{e}, the last exact term, but "
            f"terms above were truncated, so the answer depends on them; recompute from inputs with "
            f"order ≥ {need}, e.g. x.nonstd(order={need})"
        )


def leading(x) -> LCTensor:
    """Each element's leading term c·ε^λ as a monomial LCTensor (boxed when exponents differ).

    Example:
        >>> import torch, torchlc
        >>> torchlc.leading(torch.tensor([0.0, 2.0]).nonstd())
        LCTensor([1.0ε, 2.0], order=1)
    """
    s = series(x)
    planes = s.planes
    if s.exact is not None:
        # only exact terms can lead; an element zero through exact_through has an unknown lead
        e = exact_through(x)
        keep = torch.tensor([q <= e for q in s.support], device=planes.device)
        planes = planes * keep.reshape(-1, *[1] * (planes.dim() - 1))
        unknown = (planes == 0).all(0)
        if s.zero is not None:
            unknown = unknown & ~s.zero.expand(unknown.shape)
        _refuse_unknown(unknown, e, x, "leading")
    li = A.lead_index(planes).unsqueeze(0)
    lead = planes.gather(0, li)
    planes = torch.zeros_like(planes).scatter(0, li, lead)
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


def _outputs(f, args, what):
    """f(*args) as a list of tensor leaves and its tree spec; anything else is a TypeError."""
    res = f(*args)
    leaves, spec = tree_flatten(res)
    if not leaves or not all(isinstance(t, torch.Tensor) for t in leaves):
        raise TypeError(
            f"{what}: f must return a tensor or a pytree (tuple, list, dict) of tensors, as for "
            f"torch.func.jvp; it returned {type(res).__name__}"
            + (f" holding {sorted({type(t).__name__ for t in leaves})}" if leaves else "")
        )
    return leaves, spec


def _quotient(f, xs, vs, side, W, target, what="ngrad"):
    lifted_plus = [x.nonstd(v, order=W) for x, v in zip(xs, vs)]
    # f(x) through the same rules as f(x ± εv): x + 0·ε, so where f does not jump the ε⁰ planes of
    # both evaluations round identically and the quotient has no spurious ε⁻¹ term of rounding size
    base = [x.nonstd(torch.zeros_like(v), order=W) for x, v in zip(xs, vs)]
    neg = [x.nonstd(-v, order=W) for x, v in zip(xs, vs)]
    if side == "forward":
        (hi, spec), (lo, _) = _outputs(f, lifted_plus, what), _outputs(f, base, what)
        diffs = [a - b for a, b in zip(hi, lo)]
    elif side == "backward":
        (hi, spec), (lo, _) = _outputs(f, base, what), _outputs(f, neg, what)
        diffs = [a - b for a, b in zip(hi, lo)]
    else:
        (hi, spec), (lo, _) = _outputs(f, lifted_plus, what), _outputs(f, neg, what)
        diffs = [(a - b) * 0.5 for a, b in zip(hi, lo)]
    return tree_unflatten([_shift(d, Fraction(-1), target) for d in diffs], spec)


def _least_exact(d, target):
    leaves = [t for t in tree_flatten(d)[0] if isinstance(t, LCTensor)]
    return min((exact_through(t) for t in leaves), default=target)


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
        e = _least_exact(d, target)
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
    _check_side(side, "ngrad")
    target = _check_order(order, "ngrad")
    x = _plain_point(x, "ngrad")
    v = torch.ones_like(x) if v is None else _plain_point(v, "ngrad", "v").to(x.dtype)
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
    for name, val in (("primals", primals), ("tangents", tangents)):
        if not isinstance(val, tuple):
            raise TypeError(
                f"njvp: {name} must be a tuple of tensors, as for torch.func.jvp (e.g. ({name[:-1]},)); "
                f"got {type(val).__name__}"
            )
    if len(primals) != len(tangents):
        raise ValueError(f"njvp: primals and tangents must have the same length, got {len(primals)} and {len(tangents)}")
    _check_side(side, "njvp")
    target = _check_order(order, "njvp")
    primals = tuple(_plain_point(p, "njvp", "a primal") for p in primals)
    tangents = tuple(_plain_point(t, "njvp", "a tangent").to(p.dtype) for t, p in zip(tangents, primals))
    d = _with_margin(lambda W: _quotient(f, list(primals), list(tangents), side, W, target, "njvp"), target, "njvp")
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
    _check_side(side, "njacfwd")
    _check_order(order, "njacfwd")
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
