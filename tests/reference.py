"""An exact, slow, pure-Python reference for one Levi-Civita number.

This is the test oracle for ``torchlc``. It implements ``shared/design/semantics.md`` directly and
independently of the library (no torch, no torchlc imports):

* a number is ``{Fraction exponent: coefficient}``; coefficients are ``Fraction`` while the arithmetic is
  rational (exact), and become ``float`` once an analytic function (``math``) is involved;
* every result keeps the exponents ``<= order`` (absolute cutoff, §2);
* ``exact`` tracks how far the kept coefficients are known to be exact (§2). Internally ``None`` means
  "known completely" (an input given exactly); ``exact_through`` reports ``min(order, exact)``.
  Rule used (derived from "the unknown part of x lies strictly above exact(x)"):
  ``exact(x*y) = min(exact(x) + lead(y), exact(y) + lead(x))``, ``exact(1/x) = exact(x) - 2 lead(x)``,
  ``exact(x**r) = exact(x) + (r - 1) lead(x)``, ``exact(g(x)) = exact(x)`` for analytic g, then
  ``min(., order)`` whenever a nonzero term had to be dropped;
* a discontinuous decision (sign of a leading coefficient, st(x), finiteness) on a coefficient that is not
  known exactly raises :class:`RefTruncationError`; a decision on a float coefficient that is so small it
  could be float rounding of an exact zero raises :class:`Fuzzy` (tests skip those: rounding is not
  semantics).

Public helpers: :class:`LC` (``LC.real``, ``LC.eps``, ``LC.nonstd``, ``LC.from_terms``), the functions
``recip, pow_, sqrt, exp, log, sin, cos, tanh, sigmoid, sign, abs_, relu, heaviside, floor, ceil, round_,
trunc, frac, maximum, minimum, clamp, where, lt, le, gt, ge, eq, ne`` and :func:`ngrad` (§5).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction

__all__ = [
    "LC", "RefTruncationError", "RefDomainError", "Fuzzy", "NaNDecision", "Undefined",
    "recip", "pow_", "sqrt", "exp", "log", "sin", "cos", "tanh", "sigmoid",
    "sign", "abs_", "relu", "heaviside", "floor", "ceil", "round_", "trunc", "frac",
    "maximum", "minimum", "clamp", "where", "lt", "le", "gt", "ge", "eq", "ne", "ngrad", "cmp",
]

Coef = Fraction | float
FUZZ = 1e-9          # a float leading coefficient below this may be rounding noise of an exact zero
STRICT = False       # raise RefDomainError instead of returning NaN
STATS = {"zero_decisions": 0}   # decisions taken on an exact zero (tests use it to classify failures)
FX_BITS = 50         # "float-exact" bound on numerators (50 for float64 work, ~22 for float32)


class RefTruncationError(Exception):
    """A decision/coefficient needs more terms than are known exactly."""

    def __init__(self, msg: str, needed: Fraction | None = None):
        super().__init__(msg)
        self.needed = needed


class RefDomainError(Exception):
    pass


class Fuzzy(Exception):
    """The decision depends on float rounding (the exact answer is unknown to a float oracle)."""


class NaNDecision(Exception):
    """A discontinuous decision was asked of a NaN element (torch conventions, not LC semantics)."""


class Undefined(Exception):
    """Outside what the contract pins down (division by an exact zero, heaviside of an infinite, ...)."""


def _F(q) -> Fraction:
    return q if isinstance(q, Fraction) else Fraction(q)


def _coef(c) -> Coef:
    if isinstance(c, (Fraction, float)):
        return c
    if isinstance(c, int):
        return Fraction(c)
    return Fraction(c)


def _emin(a: Fraction | None, b: Fraction | None) -> Fraction | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


def _is_dyadic(c: Coef, bits: int) -> bool:
    if not isinstance(c, Fraction):
        return False
    d = c.denominator
    return d & (d - 1) == 0 and abs(c.numerator) < (1 << bits) and d <= (1 << 60)


class LC:
    """One Levi-Civita number truncated at ``order``.

    ``fx`` ("float-exact") is True when the value and its whole history are dyadic rationals small enough
    that any float64 implementation computes them without rounding (so tests may compare bit-exactly).
    """

    __slots__ = ("terms", "order", "exact", "nan", "fx")

    def __init__(self, terms: dict | None = None, order=1, exact: Fraction | None = None,
                 nan: bool = False, fx: bool = True):
        self.order = _F(order)
        self.nan = bool(nan)
        kept: dict[Fraction, Coef] = {}
        dropped = False
        for q, c in (terms or {}).items():
            q = _F(q)
            c = _coef(c)
            if c == 0:
                continue
            if q > self.order:
                dropped = True
                continue
            kept[q] = c
        if dropped:
            exact = _emin(exact, self.order)
        self.terms = {q: kept[q] for q in sorted(kept)}
        self.exact = None if exact is None else _F(exact)
        self.fx = bool(fx) and not self.nan and all(_is_dyadic(c, FX_BITS) for c in self.terms.values())

    # ----------------------------------------------------------------- constructors
    @classmethod
    def real(cls, a, order=1) -> LC:
        return cls({0: _coef(a)}, order=order)

    @classmethod
    def eps(cls, q=1, order=None) -> LC:
        q = _F(q)
        return cls({q: Fraction(1)}, order=max(Fraction(1), q) if order is None else order)

    @classmethod
    def nonstd(cls, a, v=1, order=1) -> LC:
        return cls({0: _coef(a), 1: _coef(v)}, order=order)

    @classmethod
    def from_terms(cls, terms: dict, order=None) -> LC:
        if order is None:
            order = max([Fraction(1)] + [_F(q) for q in terms])
        return cls(dict(terms), order=order)

    @classmethod
    def nan_(cls, order=1, what="") -> LC:
        if STRICT:
            raise RefDomainError(what or "outside the field")
        return cls({}, order=order, nan=True, fx=False)

    # ----------------------------------------------------------------- inspection
    @property
    def exact_through(self) -> Fraction:
        return self.order if self.exact is None else min(self.order, self.exact)

    def coeff(self, q) -> Coef:
        q = _F(q)
        if q > self.exact_through:
            raise RefTruncationError(f"coefficient of eps^{q} needs order >= {q}", q)
        return self.terms.get(q, Fraction(0))

    def is_zero_exact(self) -> bool:
        return not self.terms and self.exact is None and not self.nan

    def _lowbound(self) -> Fraction | None:
        """A lower bound on the true leading exponent (None: the number is exactly zero)."""
        if self.terms:
            lam = next(iter(self.terms))
            if self.exact is not None and lam > self.exact:
                return self.exact
            return lam
        return self.exact

    def lead(self):
        """(lambda, a) of the true number, or None for an exact zero. Raises when not decidable."""
        if self.nan:
            raise NaNDecision("decision on NaN")
        if not self.terms:
            if self.exact is None:
                STATS["zero_decisions"] += 1
                return None
            raise RefTruncationError(
                f"leading term unknown: zero through exact_through={self.exact}", self.exact)
        lam = next(iter(self.terms))
        if self.exact is not None and lam > self.exact:
            raise RefTruncationError(f"leading term at {lam} above exact_through={self.exact}", lam)
        a = self.terms[lam]
        if isinstance(a, float) and abs(a) < FUZZ:
            raise Fuzzy(f"leading coefficient {a!r} may be rounding noise")
        return lam, a

    def sign(self) -> int:
        ld = self.lead()
        if ld is None:
            return 0
        return 1 if ld[1] > 0 else -1

    def is_finite(self) -> bool:
        ld = self.lead()
        return ld is None or ld[0] >= 0

    def st(self) -> Coef:
        """Standard part of a finite number (decision-checked)."""
        if not self.is_finite():
            raise ValueError("st of an infinite number")
        if self.exact is not None and self.exact < 0:
            raise RefTruncationError("st needs the eps^0 coefficient exactly", Fraction(0))
        return self.terms.get(Fraction(0), Fraction(0))

    def __repr__(self):
        if self.nan:
            return f"LC(nan, order={self.order})"
        body = " + ".join(f"{c}*e^{q}" for q, c in self.terms.items()) or "0"
        return f"LC({body}, order={self.order}, exact={self.exact})"

    def as_dict(self):
        return dict(self.terms)

    # ----------------------------------------------------------------- helpers
    def with_order(self, order) -> LC:
        return LC(self.terms, order=order, exact=self.exact, nan=self.nan, fx=self.fx)

    def _co(self, y) -> LC:
        if isinstance(y, LC):
            return y
        return LC.real(y, order=self.order)

    # ----------------------------------------------------------------- arithmetic
    def __neg__(self):
        return LC({q: -c for q, c in self.terms.items()}, self.order, self.exact, self.nan, self.fx)

    def __pos__(self):
        return self

    def __add__(self, y):
        y = self._co(y)
        order = max(self.order, y.order)
        if self.nan or y.nan:
            return LC.nan_(order)
        out: dict[Fraction, Coef] = dict(self.terms)
        for q, c in y.terms.items():
            out[q] = out.get(q, 0) + c
        return LC(out, order, _emin(self.exact, y.exact), fx=self.fx and y.fx)

    __radd__ = __add__

    def __sub__(self, y):
        return self + (-self._co(y))

    def __rsub__(self, y):
        return self._co(y) - self

    def __mul__(self, y):
        return _mul(self, self._co(y), max(self.order, self._co(y).order))

    __rmul__ = __mul__

    def __truediv__(self, y):
        y = self._co(y)
        return self * recip(y)

    def __rtruediv__(self, y):
        return self._co(y) * recip(self)

    def __pow__(self, r):
        return pow_(self, r)

    # comparisons (return Python bools, exact order of the field)
    def __lt__(self, y):
        return lt(self, y)

    def __le__(self, y):
        return le(self, y)

    def __gt__(self, y):
        return gt(self, y)

    def __ge__(self, y):
        return ge(self, y)


def _mul(x: LC, y: LC, order) -> LC:
    order = _F(order)
    if x.nan or y.nan:
        return LC.nan_(order)
    if x.is_zero_exact() or y.is_zero_exact():
        return LC({}, order, None, fx=True)
    full: dict[Fraction, Coef] = {}
    for qa, ca in x.terms.items():
        for qb, cb in y.terms.items():
            full[qa + qb] = full.get(qa + qb, 0) + ca * cb
    e: Fraction | None = None
    lx, ly = x._lowbound(), y._lowbound()
    if x.exact is not None:
        e = _emin(e, x.exact + ly)
    if y.exact is not None:
        e = _emin(e, y.exact + lx)
    return LC(full, order, e, fx=x.fx and y.fx)


def _mono(q, c, order) -> LC:
    # an exact monomial: its own order must not drop it (the product is truncated at ``order``)
    return LC({q: c}, order=max(_F(order), _F(q)))


def _unit_split(x: LC, W):
    """x = a eps^l (1 + d): returns (l, a, d) with d computed at (relative) order W."""
    ld = x.lead()
    if ld is None:
        raise Undefined("leading term of an exact zero")
    lam, a = ld
    inv_a = (Fraction(1) / a) if isinstance(a, Fraction) else 1.0 / a
    rest = LC({q: c for q, c in x.terms.items() if q != lam}, x.order, x.exact, fx=x.fx)
    d = _mul(rest, _mono(-lam, inv_a, W), W)     # (x - a ε^l) / (a ε^l): no float 1 - a·(1/a) noise
    d.fx = d.fx and x.fx
    return lam, a, d


def _series(d: LC, coeffs: Callable[[int], Coef], W, kmax: int = 400) -> LC:
    """Sum_k coeffs(k) d^k at order W (d infinitesimal); stops when d^k is truncated away."""
    out = LC.real(coeffs(0), order=W) if coeffs(0) != 0 else LC({}, order=W)
    if d.is_zero_exact():
        return out
    if d.terms and next(iter(d.terms)) <= 0 and (d.exact is None or next(iter(d.terms)) <= d.exact):
        raise AssertionError("series argument must be infinitesimal")
    p = LC.real(1, order=W)
    for k in range(1, kmax):
        p = _mul(p, d, W)
        if not p.terms:
            # all further powers are beyond the cutoff (or exactly zero)
            out = LC(out.terms, W, _emin(out.exact, p.exact), fx=out.fx and p.fx)
            break
        c = coeffs(k)
        if c != 0:
            out = out + _mul(LC.real(c, order=W), p, W) if not isinstance(c, float) else out + _scale(p, c)
    else:  # pragma: no cover
        raise AssertionError("series did not terminate")
    return out


def _scale(p: LC, c: Coef) -> LC:
    return LC({q: v * c for q, v in p.terms.items()}, p.order, p.exact, p.nan,
              fx=p.fx and not isinstance(c, float))


# ===================================================================== field operations
def recip(x: LC) -> LC:
    if x.nan:
        return LC.nan_(x.order)
    ld = x.lead()
    if ld is None:
        raise Undefined("1/0")
    lam = ld[0]
    W = x.order + lam
    lam, a, d = _unit_split(x, W)
    s = _series(-d, lambda k: Fraction(1), W)
    inv_a = (Fraction(1) / a) if isinstance(a, Fraction) else 1.0 / a
    return _mul(s, _mono(-lam, inv_a, x.order), x.order)


def _exact_root(a: Fraction, m: int) -> Fraction | None:
    def iroot(n: int) -> int | None:
        if n == 0:
            return 0
        r = round(n ** (1.0 / m))
        for c in (r - 1, r, r + 1):
            if c >= 0 and c ** m == n:
                return c
        return None

    p, q = iroot(abs(a.numerator)), iroot(a.denominator)
    if p is None or q is None:
        return None
    return Fraction(p, q)


def _apow(a: Coef, r: Fraction) -> Coef:
    """a**r for a real a (a<0 only with odd denominator; caller checks)."""
    sgn = 1
    if a < 0:
        sgn = -1 if r.numerator % 2 else 1
        a = -a
    if isinstance(a, Fraction):
        root = _exact_root(a, r.denominator)
        if root is not None:
            return sgn * root ** r.numerator
    return sgn * float(a) ** float(r)


def pow_(x: LC, r) -> LC:
    r = _F(r)
    if x.nan:
        return LC.nan_(x.order)
    if r.denominator == 1:
        n = int(r)
        if n == 0:
            return LC.real(1, x.order)
        if n < 0:
            return recip(pow_(x, -n))
        out = x
        for _ in range(n - 1):
            out = _mul(out, x, x.order)
        return out
    ld = x.lead()
    if ld is None:
        if r > 0:
            return LC({}, x.order)
        raise Undefined("0 ** negative")
    lam, a = ld
    if a < 0 and r.denominator % 2 == 0:
        return LC.nan_(x.order, f"pow of a negative number to {r}")
    W = x.order - lam * r
    lam, a, d = _unit_split(x, W)
    s = _series(d, lambda k: _binom(r, k), W)
    ar = _apow(a, r)
    out = _mul(s, _mono(lam * r, ar, x.order), x.order)
    out.fx = out.fx and (a == 1 or a == -1)
    return out


def _binom(r: Fraction, k: int) -> Fraction:
    out = Fraction(1)
    for i in range(k):
        out = out * (r - i) / (i + 1)
    return out


def sqrt(x: LC) -> LC:
    return pow_(x, Fraction(1, 2))


# ----------------------------------------------------------------------------- analytic
def _split_finite(x: LC, name: str):
    """x = a + d for finite x; None if x is outside the field (infinite)."""
    if not x.is_finite():
        return None
    a = x.st()
    d = x - LC.real(a, x.order)
    return a, d


def _analytic(x: LC, name: str, value_and_series) -> LC:
    if x.nan:
        return LC.nan_(x.order)
    sp = _split_finite(x, name)
    if sp is None:
        return LC.nan_(x.order, f"{name} of an infinite number")
    a, d = sp
    out = value_and_series(a, d, x.order)
    if out is None:
        return LC.nan_(x.order, f"{name} outside its domain")
    out.fx = False
    return out


def _fact(k: int) -> Fraction:
    return Fraction(math.factorial(k))


def exp(x: LC) -> LC:
    def f(a, d, W):
        s = _series(d, lambda k: 1 / _fact(k), W)
        return _scale(s, math.exp(float(a)))
    return _analytic(x, "exp", f)


def log(x: LC) -> LC:
    def f(a, d, W):
        if a <= 0:
            return None  # non-positive or infinitesimal
        inv_a = 1 / a if isinstance(a, Fraction) else 1.0 / a
        u = _scale(d, inv_a)
        s = _series(u, lambda k: Fraction(0) if k == 0 else Fraction((-1) ** (k + 1), k), W)
        return s + LC.real(math.log(float(a)), W)
    return _analytic(x, "log", f)


def _sin_cos_series(d, W):
    c = _series(d, lambda k: 0 if k % 2 else Fraction((-1) ** (k // 2)) / _fact(k), W)
    s = _series(d, lambda k: Fraction((-1) ** (k // 2)) / _fact(k) if k % 2 else 0, W)
    return s, c


def sin(x: LC) -> LC:
    def f(a, d, W):
        s, c = _sin_cos_series(d, W)
        return _scale(c, math.sin(float(a))) + _scale(s, math.cos(float(a)))
    return _analytic(x, "sin", f)


def cos(x: LC) -> LC:
    def f(a, d, W):
        s, c = _sin_cos_series(d, W)
        return _scale(c, math.cos(float(a))) - _scale(s, math.sin(float(a)))
    return _analytic(x, "cos", f)


def _poly_series(x: LC, name: str, fval: Callable[[float], float], dpoly) -> LC:
    """g(a+d) = sum_k P_k(t)/k! d^k where t = g(a), P_0 = t, P_{k+1} = P_k'(t) * dpoly(t) (polys in t)."""
    def f(a, d, W):
        t = fval(float(a))
        polys = [[Fraction(0), Fraction(1)]]  # P_0(t) = t

        def deriv(p):
            dp = [Fraction(i) * p[i] for i in range(1, len(p))] or [Fraction(0)]
            out = [Fraction(0)] * (len(dp) + len(dpoly) - 1)
            for i, u in enumerate(dp):
                for j, v in enumerate(dpoly):
                    out[i + j] += u * v
            return out

        def coeff(k):
            while len(polys) <= k:
                polys.append(deriv(polys[-1]))
            p = polys[k]
            val = 0.0
            for c in reversed(p):
                val = val * t + float(c)
            return val / math.factorial(k)

        return _series(d, coeff, W)
    return _analytic(x, name, f)


def tanh(x: LC) -> LC:
    # tanh' = 1 - t^2
    return _poly_series(x, "tanh", math.tanh, [Fraction(1), Fraction(0), Fraction(-1)])


def sigmoid(x: LC) -> LC:
    # sigmoid' = s - s^2
    return _poly_series(x, "sigmoid", lambda a: 1 / (1 + math.exp(-a)),
                        [Fraction(0), Fraction(1), Fraction(-1)])


# ===================================================================== order and discontinuous ops
def cmp(x, y) -> int:
    """sign(x - y), exact order of the field."""
    if isinstance(x, LC) and isinstance(y, LC):
        return (x - y).sign()
    if isinstance(x, LC):
        return (x - LC.real(y, x.order)).sign()
    if isinstance(y, LC):
        return (LC.real(x, y.order) - y).sign()
    return (x > y) - (x < y)


def lt(x, y) -> bool:
    return cmp(x, y) < 0


def le(x, y) -> bool:
    return cmp(x, y) <= 0


def gt(x, y) -> bool:
    return cmp(x, y) > 0


def ge(x, y) -> bool:
    return cmp(x, y) >= 0


def eq(x, y) -> bool:
    return cmp(x, y) == 0


def ne(x, y) -> bool:
    return cmp(x, y) != 0


def sign(x: LC) -> LC:
    if x.nan:
        return LC.nan_(x.order)
    return LC.real(x.sign(), x.order)


def abs_(x: LC) -> LC:
    if x.nan:
        return LC.nan_(x.order)
    return -x if x.sign() < 0 else x


def relu(x: LC) -> LC:
    if x.nan:
        return LC.nan_(x.order)
    return x if x.sign() > 0 else LC({}, x.order)


def heaviside(x: LC, v) -> LC:
    if x.nan:   # torch.heaviside(nan, v) is 0 (nan > 0 is False): a torch convention, not semantics
        raise NaNDecision("heaviside of NaN")
    s = x.sign()  # infinite numbers have a sign too: heaviside(−ε⁻¹ + 1) = 0
    if s > 0:
        return LC.real(1, x.order)
    if s < 0:
        return LC({}, x.order)
    return v if isinstance(v, LC) else LC.real(v, x.order)


def _int_part(x: LC, name: str):
    """(a, s) with a = st(x), s = sign(x - a); None for an infinite x."""
    if x.nan:
        raise NaNDecision(f"{name} of NaN")
    if not x.is_finite():
        return None
    a = x.st()
    if isinstance(a, float):
        if abs(a * 2 - round(a * 2)) < FUZZ * max(1.0, abs(a)):
            raise Fuzzy(f"{name}: standard part {a!r} too close to a kink")
    s = (x - LC.real(a, x.order)).sign()
    return a, s


def floor(x: LC) -> LC:
    p = _int_part(x, "floor")
    if p is None:
        return LC.nan_(x.order, "floor of an infinite number")
    a, s = p
    if a != math.floor(a):
        return LC.real(math.floor(a), x.order)
    return LC.real(a if s >= 0 else a - 1, x.order)


def ceil(x: LC) -> LC:
    if x.nan:
        raise NaNDecision("ceil of NaN")
    return -floor(-x)


def round_(x: LC) -> LC:
    p = _int_part(x, "round")
    if p is None:
        return LC.nan_(x.order, "round of an infinite number")
    a, s = p
    n = math.floor(a)
    if a - n == Fraction(1, 2):
        if s > 0:
            return LC.real(n + 1, x.order)
        if s < 0:
            return LC.real(n, x.order)
        return LC.real(n if n % 2 == 0 else n + 1, x.order)
    return LC.real(round(a), x.order)  # Python round: half to even; off a tie it is plain rounding


def trunc(x: LC) -> LC:
    if x.nan:
        raise NaNDecision("trunc of NaN")
    if x.is_finite() and x.sign() < 0:
        return ceil(x)
    return floor(x)


def frac(x: LC) -> LC:
    t = trunc(x)
    if t.nan:
        return t
    return x - t


NAN_SELECT = "propagate"   # maximum/minimum/clamp of NaN: "propagate" (torch) or "raise" NaNDecision


def _nan_select(x: LC, y: LC) -> LC:
    if NAN_SELECT == "raise":
        raise NaNDecision("maximum/minimum of NaN")
    return LC.nan_(max(x.order, y.order))


def maximum(x: LC, y: LC) -> LC:
    if x.nan or y.nan:
        return _nan_select(x, y)
    return y if cmp(y, x) > 0 else x


def minimum(x: LC, y: LC) -> LC:
    if x.nan or y.nan:
        return _nan_select(x, y)
    return y if cmp(y, x) < 0 else x


def clamp(x: LC, lo=None, hi=None) -> LC:
    out = x
    if lo is not None:
        out = maximum(out, lo if isinstance(lo, LC) else LC.real(lo, x.order))
    if hi is not None:
        out = minimum(out, hi if isinstance(hi, LC) else LC.real(hi, x.order))
    return out


def where(cond: bool, a: LC, b: LC) -> LC:
    return a if cond else b


# ===================================================================== §5 non-standard derivative
def ngrad(f: Callable[[LC], LC], x0, side: str = "forward", v=1, order=0, max_order=12) -> LC:
    """D f(x0) = (f(x0 + eps v) - f(x0)) / eps (or backward/central), exact through ``order``.

    The working order starts at order + 1 and is raised while a decision or the quotient's exactness
    needs more terms (a truncation error or an exact_through below ``order``).
    """
    order = _F(order)
    w = order + 1
    last_err: Exception | None = None
    while w <= max_order:
        try:
            x = LC.real(x0, w)
            ve = _mul(LC.real(v, w), LC.eps(1, w), w)
            inv_e = LC.eps(-1, w)
            f0 = f(x)
            if side == "forward":
                q = _mul(f(x + ve) - f0, inv_e, w)
            elif side == "backward":
                q = _mul(f0 - f(x - ve), inv_e, w)
            elif side == "central":
                q = _mul(f(x + ve) - f(x - ve), inv_e, w) * LC.real(Fraction(1, 2), w)
            else:
                raise ValueError(side)
            if q.exact_through >= order:
                return q
        except RefTruncationError as e:  # a decision needed more terms
            last_err = e
        w += 1
    raise RefTruncationError(f"ngrad: order {max_order} not enough ({last_err})")
