"""Smoothed derivatives of discontinuous ops for training (semantics §6).

Inside ``with torchlc.smoothing(width=h, kernel="gaussian"):`` every discontinuous primitive keeps its
exact forward value, and its derivative becomes

    regular part + Σ_k J_k · K_h(z − z_k)

where z_k are the jump points of the primitive near its argument z, J_k the exact jumps there and
K_h(u) = K(u/h)/h a kernel of unit mass. Every primitive here is piecewise constant, so the regular
part is zero. The same density serves

* **forward mode** (LC arithmetic): on an LCTensor x = a + d (a the standard part, d its infinitesimal
  part) the result is f(a) + Σ_{m≥1} F_h^{(m)}(a)/m! · d^m, with F_h' the density above. At the
  default order 1 that is f(a) + g(a)·d: the ε⁰ plane is the exact value at the standard point and the
  ε¹ plane the smoothed directional derivative.
* **reverse mode** (plain-tensor autograd): a ``torch.autograd.Function`` with exact forward and
  backward ``grad · g(x)``: one ordinary backward pass for all parameters, as cheap as a
  straight-through estimator. Forward-mode AD (``torch.func.jvp``) uses the same g.

Jumps: heaviside 1 at 0; sign 2 at 0; floor/ceil 1 at every integer; round 1 at every half-integer;
trunc 1 at every nonzero integer; ``round(x, decimals=k)`` 10⁻ᵏ at (n + ½)·10⁻ᵏ; a comparison
``a > b`` (``>=``, ``<``, ``<=``) is a step of height ±1 in a − b at 0.

Comparisons return bool tensors, which can carry neither ε-parts nor gradients. Under smoothing, a
comparison with a differentiable (requires-grad or LC) operand returns the exact bool tensor with a
*soft companion* attached: a float tensor whose value is exactly the 0/1 result and whose derivative
is the smoothed one (a plain tensor in the autograd graph, or an LCTensor with the ε-part). While the
context is active, ``mask.float()`` / ``.to(float dtype)`` / ``.type_as`` / ``mask * x`` return (a
product with) the companion, ``~mask``, ``mask & m2``, ``mask | m2`` combine companions
(1 − s, s·t, s + t − s·t), and ``torch.where(mask, a, b)`` is the exact selection plus
(a − b)·δs where δs is the companion's derivative part (its value is exactly zero). Anything else a
bool mask is used for (indexing, ``.any()``, counting) sees the plain exact bool tensor.

Outside every smoothing context, gradients are the exact ones: zero through jumps, with the Dirac
masses visible to :func:`torchlc.ngrad` as ε⁻¹ terms.

Example:
    >>> import torch, torchlc
    >>> from torchlc.smoothing import smoothing
    >>> x = torch.tensor(0.0, requires_grad=True)
    >>> with smoothing(0.5):
    ...     torch.heaviside(x, torch.tensor(0.0)).backward()
    >>> round(x.grad.item(), 4)                           # φ(0)/σ for σ = 0.5
    0.7979
    >>> with smoothing(0.5):
    ...     y = torch.heaviside(torch.tensor(0.0).nonstd(), torch.tensor(0.0))
    >>> y                                                  # exact value H(0) = 0, smoothed ε-part
    LCTensor(0.797885ε, order=1)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.overrides import TorchFunctionMode

from . import _algebra as A
from . import _taylor as TY
from . import _support as S
from ._tensor import LCTensor, Series, series, wrap
from .ops import discontinuous as D

__all__ = ["smoothing", "Kernel", "KERNELS", "current", "jump_density", "soft", "exact"]

aten = torch.ops.aten
_SQRT2PI = math.sqrt(2 * math.pi)


# -- kernels ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Kernel:
    """A unit-mass kernel K(u) in standard units (K_h(z) = K(z/h)/h).

    ``derivs(u, n)`` returns [K(u), K'(u), …, K^{(n-1)}(u)] (used for higher ε-orders);
    ``radius``: |u| beyond which K is (numerically) zero, for summing periodic jump lattices;
    ``peak``: K(0)."""

    name: str
    density: Callable
    derivs: Callable
    radius: float
    peak: float


def _gauss_derivs(u, n):
    # K^{(j)}(u) = (−1)^j He_j(u) φ(u), He_{j+1} = u He_j − j He_{j−1}
    phi = torch.exp(-0.5 * u * u) / _SQRT2PI
    out, he_prev, he = [], torch.zeros_like(u), torch.ones_like(u)
    for j in range(n):
        out.append((-1) ** j * he * phi)
        he_prev, he = he, u * he - j * he_prev
    return out


def _logistic_density(u):
    s = torch.sigmoid(u)
    return s * (1 - s)


def _logistic_derivs(u, n):
    # Taylor series of σ at u via 1/(1 + exp(−u − t)); K^{(j)} = (j+1)!·[t^{j+1}]σ
    if n == 0:
        return []
    # K is even: K^{(j)}(u) = (−1)^j K^{(j)}(|u|), and exp(−|u|) cannot overflow
    K = n + 1
    au = u.abs()
    negu = TY.identity_series(-au, K)
    negu = [negu[0]] + [-c for c in negu[1:]]
    e = TY.t_exp(negu)
    sig = TY.t_recip([1 + e[0]] + e[1:])
    flip = torch.where(u < 0, -1.0, 1.0).to(u.dtype)
    return [sig[j + 1] * math.factorial(j + 1) * (flip if j % 2 else 1) for j in range(n)]


def _compact(poly, dpolys):
    def density(u):
        return torch.where(u.abs() <= 1, poly(u), torch.zeros_like(u))

    def derivs(u, n):
        inside = u.abs() <= 1
        fs = [poly, *dpolys]
        out = []
        for j in range(n):
            v = fs[j](u) if j < len(fs) else torch.zeros_like(u)
            out.append(torch.where(inside, v, torch.zeros_like(u)))
        return out

    return density, derivs


_tri = _compact(lambda u: 1 - u.abs(), [lambda u: -torch.sign(u)])
_uni = _compact(lambda u: torch.full_like(u, 0.5), [])
_epa = _compact(lambda u: 0.75 * (1 - u * u), [lambda u: -1.5 * u, lambda u: torch.full_like(u, -1.5)])

KERNELS = {
    "gaussian": Kernel("gaussian", lambda u: torch.exp(-0.5 * u * u) / _SQRT2PI, _gauss_derivs, 8.6,
                       1 / _SQRT2PI),
    "logistic": Kernel("logistic", _logistic_density, _logistic_derivs, 37.0, 0.25),
    "triangle": Kernel("triangle", _tri[0], _tri[1], 1.0, 1.0),
    "uniform": Kernel("uniform", _uni[0], _uni[1], 1.0, 0.5),
    "epanechnikov": Kernel("epanechnikov", _epa[0], _epa[1], 1.0, 0.75),
}
# aliases: the sigmoid-relaxation surrogate is the logistic kernel; the clipped straight-through
# estimator of sign (hardtanh STE) is 2 × uniform of width 1, i.e. sign's jump 2 times K = ½ on |u| ≤ 1
KERNELS["sigmoid"] = KERNELS["logistic"]
KERNELS["ste"] = KERNELS["uniform"]
KERNELS["normal"] = KERNELS["gaussian"]

_SINGLE = {"heaviside": 1.0, "step": 1.0, "gt": 1.0, "ge": 1.0, "lt": -1.0, "le": -1.0, "sign": 2.0}
_MAX_LATTICE = 256  # at most 2·256+1 jump points of floor/round/… are summed per element


# -- jump structure of each primitive -------------------------------------------------------------


def _lattice_terms(z, h, kern, offset, skip_zero=False):
    """(z_k, J_k) pairs of a unit-jump lattice n + offset within the kernel's reach of z."""
    M = min(int(math.ceil(kern.radius * h)) + 1, _MAX_LATTICE)
    n0 = torch.round(z - offset)
    for j in range(-M, M + 1):
        zk = n0 + (j + offset)
        if skip_zero:
            yield zk, (zk != 0).to(z.dtype)
        else:
            yield zk, None


def _jumps(name, z, h, kern, decimals=0):
    """Yield (z_k, J_k, scale) for the primitive ``name`` at argument z. J_k: None = 1, or a tensor/number.

    ``scale`` rescales the argument (round to decimals: y = z·10^k with width h·10^k)."""
    if name in ("heaviside", "step", "gt", "ge"):
        return [(0.0, None)]
    if name in ("lt", "le"):
        return [(0.0, -1.0)]
    if name == "sign":
        return [(0.0, 2.0)]
    if name in ("floor", "ceil"):
        return _lattice_terms(z, h, kern, 0.0)
    if name in ("round", "round_decimals"):
        return _lattice_terms(z, h, kern, 0.5)
    if name == "trunc":
        return _lattice_terms(z, h, kern, 0.0, skip_zero=True)
    raise KeyError(name)


def _rescale(name, z, h, decimals):
    if name == "round_decimals" and decimals:
        p = 10.0**decimals
        return z * p, h * p
    return z, h


def jump_density(name, z, width, kernel="gaussian", decimals=0):
    """g(z) = Σ_k J_k K_h(z − z_k): the smoothed derivative of primitive ``name`` at plain tensor z."""
    kern = _kernel(kernel)
    z, h = _rescale(name, z, width, decimals)
    acc = None
    for zk, J in _jumps(name, z, h, kern):
        t = kern.density((z - zk) / h) if not (isinstance(zk, float) and zk == 0.0) else kern.density(z / h)
        if J is not None:
            t = t * J
        acc = t if acc is None else acc + t
    return acc / h


def _taylor(name, z, width, kern, K, decimals=0):
    """Taylor coefficients c_0..c_{K-1} (c_0 = 0) of the smoothed increment F_h(z + t) − F_h(z)."""
    coeffs = [torch.zeros_like(z) for _ in range(K)]
    if K == 1:
        return coeffs
    z, h = _rescale(name, z, width, decimals)
    p = 10.0**decimals if name == "round_decimals" else 1.0
    for zk, J in _jumps(name, z, h, kern):
        ds = kern.derivs((z - zk) / h, K - 1)
        for m in range(1, K):
            t = ds[m - 1] * (p ** (m - 1) / (h**m * math.factorial(m)))  # J = 1/p, h here is h·p
            if J is not None:
                t = t * J
            coeffs[m] = coeffs[m] + t
    return coeffs


def _kernel(k) -> Kernel:
    if isinstance(k, Kernel):
        return k
    try:
        return KERNELS[k]
    except KeyError:
        raise ValueError(f"torchlc.smoothing: unknown kernel {k!r}; choose one of {sorted(KERNELS)} "
                         "or pass a torchlc.smoothing.Kernel") from None


# -- the context ----------------------------------------------------------------------------------------

_STACK: list = []
_MODE: list = [None]


def current():
    """The innermost active :class:`smoothing` (None outside every context)."""
    return _STACK[-1] if _STACK else None


class smoothing:
    """Context manager (and per-module option) for smoothed derivatives of discontinuous ops.

    Args:
        width: kernel width h > 0 in units of the jump variable (σ for ``"gaussian"``, the scale s of
            σ(z/s) for ``"logistic"``, the half-support for ``"triangle"``/``"uniform"``/
            ``"epanechnikov"``).
        kernel: a name in :data:`KERNELS` or a :class:`Kernel`.

    Contexts nest (the innermost wins) and are re-entrant. Modules of :mod:`torchlc.nn` also take a
    ``smoothing=`` argument that applies to them only, whatever context is active.
    """

    def __init__(self, width: float, kernel="gaussian"):
        width = float(width)
        if not width > 0 or not math.isfinite(width):
            raise ValueError(f"torchlc.smoothing: width must be a positive finite number, got {width}")
        self.width = width
        self.kernel = _kernel(kernel)
        self._saved = []

    def __repr__(self):
        return f"torchlc.smoothing(width={self.width:g}, kernel={self.kernel.name!r})"

    # context protocol
    def __enter__(self):
        self._saved.append(D.SMOOTHING_HOOK[0])
        _STACK.append(self)
        D.SMOOTHING_HOOK[0] = self._hook
        if _MODE[0] is None:
            mode = _SmoothingMode()
            mode.__enter__()
            _MODE[0] = mode
        return self

    def __exit__(self, *exc):
        _STACK.remove(self) if _STACK and _STACK[-1] is not self else _STACK.pop()
        D.SMOOTHING_HOOK[0] = self._saved.pop()
        if not _STACK and _MODE[0] is not None:
            mode, _MODE[0] = _MODE[0], None
            mode.__exit__(None, None, None)
        return False

    def __call__(self, fn):
        """Use as a decorator: ``@torchlc.smoothing(0.5)``."""
        import functools

        @functools.wraps(fn)
        def inner(*a, **k):
            with self:
                return fn(*a, **k)

        return inner

    # -- the one rule ---------------------------------------------------------------------------------
    def density(self, name, z, decimals=0):
        """Smoothed derivative g(z) of primitive ``name`` (plain tensor z)."""
        return jump_density(name, z, self.width, self.kernel, decimals)

    def vjp(self, g, name, z, decimals=0):
        """g · density(name, z): the backward of a jump op (a fused fast path for single jumps)."""
        J = _SINGLE.get(name)
        if J is None or torch.is_grad_enabled() or self.kernel.name != "gaussian":
            return g * self.density(name, z, decimals)
        # Gaussian single jump: J·exp(−z²/2h²)/(h√2π)·g in five in-place kernels, one allocation
        h = self.width
        t = z.square()
        t.mul_(-0.5 / (h * h)).exp_().mul_(g).mul_(J / (h * _SQRT2PI))
        return t

    def increment(self, name, x, decimals=0) -> Series:
        """Series of the smoothed increment F_h(a + d) − F_h(a) for an LC argument x = a + d (finite
        part; infinite elements are handled by the caller)."""
        s = series(x)
        a, d, bad = A.split_finite(s, name)
        if not d.support:
            return None, a, bad, s
        K = A.n_terms(d.support, s.order) if s.order is not None else 2
        coeffs = _taylor(name, a, self.width, self.kernel, K, decimals)
        ser = A._series_eval(coeffs, d, s.order)
        keep = [i for i, q in enumerate(ser.support) if q > 0]
        inc = Series(ser.planes[keep], tuple(ser.support[i] for i in keep), s.order,
                     A.min_exact(s.exact, s.order))
        return inc, a, bad, s

    def _hook(self, name, rule, func, args, kwargs):
        return _lc_rule(self, name, rule, func, args, kwargs)


# -- forward mode: LC inputs ----------------------------------------------------------------------------


def _real(a: torch.Tensor, like: Series):
    return wrap(a.unsqueeze(0), (S.ZERO,), like.order, None)


def _plus(val, inc: Series, bad, exact_val):
    """val (LC or plain, exact at the standard point) + inc (positive planes); infinite elements
    take the exact rule's value ``exact_val()``."""
    from .ops._util import out

    v = series(val)
    if v.planes.dtype != inc.planes.dtype:
        v = Series(v.planes.to(inc.planes.dtype), v.support, v.order, v.exact)
    if v.order is None:
        v = Series(v.planes, v.support, inc.order, None)
    r = A.add(v, inc)
    res = out(r)
    if bad is not None and bool(bad.any()):
        ex = exact_val()
        rs, es = series(res), series(ex)
        pa, pb, sup = A.aligned(rs, es)
        res = out(Series(torch.where(bad, pb, pa), sup, rs.order, A.min_exact(rs.exact, es.exact)))
    return res


def _lc_rule(cfg, name, rule, func, args, kwargs):
    if name in ("lt", "le", "gt", "ge"):
        a, b = args
        value = rule(func, _std(a), _std(b))
        return value  # the soft companion is attached by the mode (see _compare)
    if name == "where":
        return rule(func, *args, **kwargs)
    x, rest = args[0], args[1:]
    if not isinstance(x, LCTensor):
        return rule(func, *args, **kwargs)
    decimals = kwargs.get("decimals", 0) if name == "round_decimals" else 0
    inc, a, bad, s = cfg.increment(name, x, decimals)
    xs = _real(a, s)
    val = rule(func, xs, *rest, **kwargs)
    if inc is None:
        return rule(func, x, *rest, **kwargs) if bad is not None else val
    return _plus(val, inc, bad, lambda: rule(func, x, *rest, **kwargs))


def _std(x):
    """An LC operand at its standard point (a real LCTensor); plain operands pass through."""
    if isinstance(x, LCTensor):
        s = series(x)
        return _real(A.split_finite(s, "compare")[0], s) if not _has_neg(s) else x
    return x


def _has_neg(s: Series):
    return any(q < 0 for q in s.support)


def lc_apply(cfg, name, x, *rest, **kwargs):
    """Apply primitive ``name`` to an LCTensor with smoothing config ``cfg`` (None: exact)."""
    rules = {
        "heaviside": (D.heaviside, aten.heaviside.default),
        "sign": (D.sign, aten.sign.default),
        "floor": (D.floor, aten.floor.default),
        "ceil": (D.ceil, aten.ceil.default),
        "trunc": (D.trunc, aten.trunc.default),
        "round": (D.round_, aten.round.default),
        "round_decimals": (D.round_decimals, aten.round.decimals),
    }
    wrapped, func = rules[name]
    if cfg is None:
        return wrapped.exact(func, x, *rest, **kwargs)
    return _lc_rule(cfg, name, wrapped.exact, func, (x, *rest), kwargs)


# -- reverse mode: autograd Functions on plain tensors ---------------------------------------------------

_EXACT_OPS = {
    "heaviside": torch.heaviside,
    "sign": torch.sign,
    "floor": torch.floor,
    "ceil": torch.ceil,
    "trunc": torch.trunc,
    "round": torch.round,
}


class _Jump(torch.autograd.Function):
    """Exact forward of a one-argument jump op; derivative g(x) (backward and forward-mode AD)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x, name, cfg, decimals):
        with torch._C.DisableTorchFunction():
            if name == "round_decimals":
                return torch.round(x, decimals=decimals)
            return _EXACT_OPS[name](x)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, name, cfg, decimals = inputs
        ctx.save_for_backward(x)
        ctx.save_for_forward(x)
        ctx.meta = (name, cfg, decimals)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        name, cfg, decimals = ctx.meta
        return cfg.vjp(g, name, x, decimals), None, None, None

    @staticmethod
    def jvp(ctx, t, *_):
        (x,) = ctx.saved_tensors
        name, cfg, decimals = ctx.meta
        return t * cfg.density(name, x, decimals)


def _reduce_to(g, shape):
    if tuple(g.shape) == tuple(shape):
        return g
    return g.sum_to_size(shape) if len(shape) else g.sum()


class _Heaviside(torch.autograd.Function):
    generate_vmap_rule = True

    @staticmethod
    def forward(x, values, cfg):
        with torch._C.DisableTorchFunction():
            return torch.heaviside(x, values)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, values, cfg = inputs
        ctx.save_for_backward(x, values)
        ctx.save_for_forward(x, values)
        ctx.cfg = cfg

    @staticmethod
    def backward(ctx, g):
        x, values = ctx.saved_tensors
        gx = ctx.cfg.vjp(g, "heaviside", x) if ctx.needs_input_grad[0] else None
        gv = None
        if ctx.needs_input_grad[1]:
            gv = _reduce_to(torch.where(x == 0, g, torch.zeros_like(g)), values.shape)
        return gx, gv, None

    @staticmethod
    def jvp(ctx, tx, tv, _):
        x, values = ctx.saved_tensors
        r = tx * ctx.cfg.density("heaviside", x) if tx is not None else torch.zeros_like(x)
        if tv is not None:
            r = r + torch.where(x == 0, tv, torch.zeros_like(tv))
        return r


class _ExactStep(torch.autograd.Function):
    """Exact heaviside with its exact (almost-everywhere) derivative: zero."""

    @staticmethod
    def forward(ctx, x, values):
        with torch._C.DisableTorchFunction():
            return torch.heaviside(x, values)

    @staticmethod
    def backward(ctx, g):
        return torch.zeros_like(g), None


class _ZeroGrad(torch.autograd.Function):
    """``value`` (computed without a graph) as a function of x with the exact a.e. derivative 0."""

    @staticmethod
    def forward(ctx, value, x):
        return value.clone()

    @staticmethod
    def backward(ctx, g):
        return None, torch.zeros_like(g)


class _Compare(torch.autograd.Function):
    """Float 0/1 value of a comparison with derivative ±K_h(a − b) w.r.t. a (∓ w.r.t. b)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(a, b, op, cfg, dtype):
        with torch._C.DisableTorchFunction():
            return op(a, b).to(dtype)

    @staticmethod
    def setup_context(ctx, inputs, output):
        a, b, op, cfg, dtype = inputs
        ctx.save_for_backward(a, b)
        ctx.save_for_forward(a, b)
        ctx.meta = (op, cfg)

    @staticmethod
    def _g(ctx):
        a, b = ctx.saved_tensors
        op, cfg = ctx.meta
        sgn = 1.0 if op in (torch.gt, torch.ge) else -1.0
        return a, b, sgn * cfg.density("step", a - b)

    @staticmethod
    def backward(ctx, g):
        a, b, dens = _Compare._g(ctx)
        ga = _reduce_to(g * dens, a.shape) if ctx.needs_input_grad[0] else None
        gb = _reduce_to(-g * dens, b.shape) if ctx.needs_input_grad[1] else None
        return ga, gb, None, None, None

    @staticmethod
    def jvp(ctx, ta, tb, *_):
        a, b, dens = _Compare._g(ctx)
        t = torch.zeros_like(dens)
        if ta is not None:
            t = t + ta
        if tb is not None:
            t = t - tb
        return t * dens


class _ArgmaxOneHot(torch.autograd.Function):
    """one_hot(argmax(z)) along the last dim; derivative: each winner-vs-j boundary a unit step in
    z* − z_j, smoothed (d onehot = Σ_j K_h(z* − z_j)(e* − e_j)(dz* − dz_j))."""

    generate_vmap_rule = True

    @staticmethod
    def forward(z, cfg):
        with torch._C.DisableTorchFunction():
            idx = z.argmax(-1, keepdim=True)
            return torch.zeros_like(z).scatter_(-1, idx, 1.0)

    @staticmethod
    def setup_context(ctx, inputs, output):
        z, cfg = inputs
        ctx.save_for_backward(z, output)
        ctx.save_for_forward(z, output)
        ctx.cfg = cfg

    @staticmethod
    def _w(ctx):
        z, oh = ctx.saved_tensors
        zstar = (z * oh).sum(-1, keepdim=True)
        w = ctx.cfg.density("step", zstar - z) * (1 - oh)
        return oh, w

    @staticmethod
    def backward(ctx, G):
        oh, w = _ArgmaxOneHot._w(ctx)
        gstar = (G * oh).sum(-1, keepdim=True)
        c = w * (gstar - G)  # per j ≠ *
        return -c + oh * c.sum(-1, keepdim=True), None

    @staticmethod
    def jvp(ctx, t, _):
        oh, w = _ArgmaxOneHot._w(ctx)
        tstar = (t * oh).sum(-1, keepdim=True)
        p = w * (tstar - t)
        return oh * p.sum(-1, keepdim=True) - p


def _wants_grad(*ts) -> bool:
    for t in ts:
        if isinstance(t, torch.Tensor) and not isinstance(t, LCTensor):
            if (t.requires_grad and torch.is_grad_enabled()) or torch._C._functorch.is_functorch_wrapped_tensor(t):
                return t.dtype.is_floating_point
    if torch.autograd.forward_ad._current_level >= 0:
        return any(isinstance(t, torch.Tensor) and t.dtype.is_floating_point and not isinstance(t, LCTensor)
                   for t in ts)
    return False


def _any_lc(*ts) -> bool:
    return any(isinstance(t, LCTensor) for t in ts)


def apply(cfg, name, x, *rest, **kwargs):
    """Primitive ``name`` on a plain tensor or LCTensor under smoothing ``cfg`` (None: exact).

    Used by :mod:`torchlc.nn` modules; ``rest``: heaviside's ``values``; kwargs: ``decimals``."""
    if isinstance(x, LCTensor) or _any_lc(*rest):
        if name == "round" and kwargs.get("decimals", 0):
            name = "round_decimals"
        elif name == "round":
            kwargs = {}
        return lc_apply(cfg, name, x, *rest, **kwargs)
    if name == "heaviside":
        values = rest[0] if rest else torch.zeros((), dtype=x.dtype, device=x.device)
        if not isinstance(values, torch.Tensor):
            values = torch.tensor(values, dtype=x.dtype, device=x.device)
        if cfg is None:
            if x.requires_grad and torch.is_grad_enabled():
                return _ExactStep.apply(x, values)
            with torch._C.DisableTorchFunction():
                return torch.heaviside(x, values)
        return _Heaviside.apply(x, values, cfg)
    if name == "argmax_onehot":
        if cfg is None:
            with torch._C.DisableTorchFunction():
                oh = torch.zeros_like(x).scatter_(-1, x.argmax(-1, keepdim=True), 1.0)
            if x.requires_grad and torch.is_grad_enabled():
                return _ZeroGrad.apply(oh, x)  # the exact derivative: zero almost everywhere
            return oh
        return _ArgmaxOneHot.apply(x, cfg)
    decimals = kwargs.get("decimals", 0)
    if name == "round" and decimals:
        name = "round_decimals"
    if cfg is None:
        with torch._C.DisableTorchFunction():
            return torch.round(x, decimals=decimals) if name == "round_decimals" else _EXACT_OPS[name](x)
    return _Jump.apply(x, name, cfg, decimals)


# -- soft companions of bool results ----------------------------------------------------------------------

_SOFT = "_torchlc_soft"


def soft(mask):
    """The soft companion of a bool tensor produced under smoothing (None if it has none)."""
    return getattr(mask, _SOFT, None)


def _attach(mask, s):
    setattr(mask, _SOFT, s)
    return mask


def _delta(s):
    """The derivative part of a companion: value exactly 0, derivative that of s."""
    if isinstance(s, LCTensor):
        ss = series(s)
        keep = [i for i, q in enumerate(ss.support) if q != 0]
        if not keep:
            return None
        from .ops._util import out

        return out(Series(ss.planes[keep], tuple(ss.support[i] for i in keep), ss.order, ss.exact))
    return s - s.detach()


def exact(mask):
    """Drop the soft companion (the exact bool tensor)."""
    if soft(mask) is not None:
        delattr(mask, _SOFT)
    return mask


def _lc_compare_soft(cfg, op, name, a, b, value):
    """Companion of an LC comparison: exact 0/1 at the standard point + smoothed ε-part of a − b."""
    diff = a - b
    inc, _, bad, s = cfg.increment("gt", diff)
    v = value.to(s.planes.dtype)
    if inc is None:
        return _real(v, s)
    if name in ("lt", "le"):
        inc = A.neg(inc)
    return _plus(v, inc, bad, lambda: _real(op(a, b).to(s.planes.dtype), s))


_CMP = {}
for _n, _op in (("gt", torch.gt), ("ge", torch.ge), ("lt", torch.lt), ("le", torch.le)):
    for _f in (getattr(torch, _n), getattr(torch.Tensor, _n), getattr(torch.Tensor, f"__{_n}__")):
        _CMP[_f] = (_n, _op)
for _alias, _n in (("greater", "gt"), ("greater_equal", "ge"), ("less", "lt"), ("less_equal", "le")):
    for _f in (getattr(torch, _alias), getattr(torch.Tensor, _alias)):
        _CMP[_f] = (_n, dict(gt=torch.gt, ge=torch.ge, lt=torch.lt, le=torch.le)[_n])


def _compare(cfg, func, args, kwargs):
    if kwargs or len(args) != 2:
        return NotImplemented
    a, b = args
    name, op = _CMP[func]
    with torch._C.DisableTorchFunction():
        if _any_lc(a, b):
            value = op(a, b)  # the hook answers at the standard point
            s = _lc_compare_soft(cfg, op, name, a, b, value)
            return _attach(value, s)
        if not _wants_grad(a, b):
            return NotImplemented
        dtype = torch.result_type(a, b)
        if not dtype.is_floating_point:
            return NotImplemented
        dev = (a if isinstance(a, torch.Tensor) else b).device
        ta = a if isinstance(a, torch.Tensor) else torch.as_tensor(a, dtype=dtype, device=dev)
        tb = b if isinstance(b, torch.Tensor) else torch.as_tensor(b, dtype=dtype, device=dev)
        value = op(a, b)
        s = _Compare.apply(ta.to(dtype) if not ta.dtype.is_floating_point else ta,
                           tb.to(dtype) if not tb.dtype.is_floating_point else tb, op, cfg, dtype)
        return _attach(value, s)


def _to_float(cfg, func, args, kwargs):
    m = args[0]
    s = soft(m)
    if s is None:
        return NotImplemented
    if func is torch.Tensor.float:
        dt = torch.float32
    elif func is torch.Tensor.double:
        dt = torch.float64
    elif func is torch.Tensor.half:
        dt = torch.float16
    elif func is torch.Tensor.bfloat16:
        dt = torch.bfloat16
    elif func is torch.Tensor.type_as:
        dt = args[1].dtype
    else:  # .to / .type
        dt = kwargs.get("dtype")
        for x in args[1:]:
            if isinstance(x, torch.dtype):
                dt = x
            elif isinstance(x, torch.Tensor):
                dt = x.dtype
            elif isinstance(x, str) and func is torch.Tensor.type:
                return NotImplemented
        if dt is None or not dt.is_floating_point:
            return NotImplemented
        if any(isinstance(x, (torch.device, str)) for x in args[1:]) or "device" in kwargs:
            return NotImplemented
    if not dt.is_floating_point:
        return NotImplemented
    with torch._C.DisableTorchFunction():
        return s.to(dt)


def _mul(cfg, func, args, kwargs):
    if kwargs or len(args) != 2:
        return NotImplemented
    a, b = args
    sa, sb = soft(a), soft(b)
    if sa is None and sb is None:
        return NotImplemented
    if sa is not None and sb is not None:
        res = _logic(cfg, torch.logical_and, args, kwargs)
        return res
    if sa is not None:
        other = b
        s = sa
    else:
        other = a
        s = sb
    if isinstance(other, torch.Tensor) and other.dtype == torch.bool:
        return NotImplemented
    if isinstance(other, bool):
        return NotImplemented
    with torch._C.DisableTorchFunction():
        return s * other


def _logic(cfg, func, args, kwargs):
    if kwargs:
        return NotImplemented
    if func in (torch.logical_not, torch.Tensor.logical_not, torch.Tensor.__invert__, torch.Tensor.bitwise_not,
                torch.bitwise_not):
        (m,) = args
        s = soft(m)
        if s is None:
            return NotImplemented
        with torch._C.DisableTorchFunction():
            return _attach(func(m), 1 - s)
    a, b = args
    sa, sb = soft(a), soft(b)
    if sa is None and sb is None:
        return NotImplemented
    with torch._C.DisableTorchFunction():
        value = func(a, b)
        if not (isinstance(value, torch.Tensor) and value.dtype == torch.bool):
            return value
        dt = (sa if sa is not None else sb).dtype
        ta = sa if sa is not None else torch.as_tensor(a).to(dt)
        tb = sb if sb is not None else torch.as_tensor(b).to(dt)
        if func in (torch.logical_and, torch.Tensor.logical_and, torch.Tensor.__and__, torch.bitwise_and,
                    torch.Tensor.bitwise_and, torch.mul, torch.Tensor.mul, torch.Tensor.__mul__):
            s = ta * tb
        else:  # or
            s = ta + tb - ta * tb
        return _attach(value, s)


def _where(cfg, func, args, kwargs):
    if kwargs or len(args) != 3:
        return NotImplemented
    cond, a, b = args
    s = soft(cond)
    if s is None:
        return NotImplemented
    with torch._C.DisableTorchFunction():
        sel = torch.where(cond, a, b)
        dl = _delta(s)
        if dl is None:
            return sel
        if not isinstance(a, torch.Tensor):
            a = torch.as_tensor(a, dtype=sel.dtype if not isinstance(sel, LCTensor) else sel.dtype)
        if not isinstance(b, torch.Tensor):
            b = torch.as_tensor(b, dtype=sel.dtype)
        diff = a - b
        if not isinstance(diff, LCTensor):
            diff = torch.where(torch.isfinite(diff), diff, torch.zeros_like(diff))
        return sel + diff * dl


def _unary(name):
    def handler(cfg, func, args, kwargs):
        if len(args) != 1 or (kwargs and set(kwargs) != {"decimals"}):
            return NotImplemented
        x = args[0]
        if isinstance(x, LCTensor) or not _wants_grad(x):
            return NotImplemented
        return apply(cfg, name, x, **kwargs)

    return handler


def _heaviside(cfg, func, args, kwargs):
    if kwargs or len(args) != 2:
        return NotImplemented
    x, values = args
    if _any_lc(x, values) or not _wants_grad(x, values):
        return NotImplemented
    return _Heaviside.apply(x, values, cfg)


def _argmax(cfg, func, args, kwargs):
    """argmax along the last dim of a differentiable tensor: remember the logits for one_hot."""
    x = args[0]
    dim = args[1] if len(args) > 1 else kwargs.get("dim")
    keepdim = args[2] if len(args) > 2 else kwargs.get("keepdim", False)
    if dim is None or keepdim or not (isinstance(x, LCTensor) or _wants_grad(x)):
        return NotImplemented
    if dim != -1 and dim != x.dim() - 1:
        return NotImplemented
    with torch._C.DisableTorchFunction():
        idx = func(*args, **kwargs)
    idx._torchlc_argmax_of = x
    return idx


def _one_hot(cfg, func, args, kwargs):
    idx = args[0]
    z = getattr(idx, "_torchlc_argmax_of", None)
    if z is None:
        return NotImplemented
    n = args[1] if len(args) > 1 else kwargs.get("num_classes", -1)
    with torch._C.DisableTorchFunction():
        value = func(*args, **kwargs)
        if n not in (-1, z.shape[-1]):
            return value
        if isinstance(z, LCTensor):
            s = _lc_argmax_soft(cfg, z)
        else:
            s = _ArgmaxOneHot.apply(z, cfg)
    value = _attach(value, s)
    return value


def _lc_argmax_soft(cfg, z):
    """LC one-hot companion: exact one-hot at the standard point + Σ_j (e* − e_j)·inc(z* − z_j)."""
    sz = series(z)
    a = A.split_finite(sz, "argmax")[0]
    idx = a.argmax(-1, keepdim=True)
    oh = torch.zeros_like(a).scatter_(-1, idx, 1.0)
    zstar = (z * oh).sum(-1, keepdim=True)
    diff = zstar - z
    inc, _, bad, s = cfg.increment("step", diff)
    val = _real(oh, s)
    if inc is None:
        return val
    from .ops._util import out

    p = out(inc)
    eps_part = oh * p.sum(-1, keepdim=True) - p
    return val + eps_part


_HANDLERS: dict = {}
for _f in _CMP:
    _HANDLERS[_f] = _compare
for _f in (torch.Tensor.float, torch.Tensor.double, torch.Tensor.half, torch.Tensor.bfloat16, torch.Tensor.to,
           torch.Tensor.type, torch.Tensor.type_as):
    _HANDLERS[_f] = _to_float
for _f in (torch.mul, torch.Tensor.mul, torch.Tensor.__mul__, torch.Tensor.__rmul__, torch.multiply):
    _HANDLERS[_f] = _mul
for _f in (torch.logical_not, torch.Tensor.logical_not, torch.Tensor.__invert__, torch.Tensor.bitwise_not,
           torch.bitwise_not, torch.logical_and, torch.Tensor.logical_and, torch.Tensor.__and__,
           torch.bitwise_and, torch.Tensor.bitwise_and, torch.logical_or, torch.Tensor.logical_or,
           torch.Tensor.__or__, torch.bitwise_or, torch.Tensor.bitwise_or):
    _HANDLERS[_f] = _logic
_HANDLERS[torch.where] = _where
_HANDLERS[torch.Tensor.where] = lambda cfg, f, args, kw: (
    _where(cfg, torch.where, (args[1], args[0], args[2]), kw) if len(args) == 3 else NotImplemented)
for _name in ("sign", "floor", "ceil", "trunc", "round"):
    for _f in (getattr(torch, _name), getattr(torch.Tensor, _name)):
        _HANDLERS[_f] = _unary(_name)
_HANDLERS[torch.sgn] = _unary("sign")
_HANDLERS[torch.Tensor.sgn] = _unary("sign")
_HANDLERS[torch.fix] = _unary("trunc")
_HANDLERS[torch.Tensor.fix] = _unary("trunc")
_HANDLERS[torch.heaviside] = _heaviside
_HANDLERS[torch.Tensor.heaviside] = _heaviside
_HANDLERS[torch.argmax] = _argmax
_HANDLERS[torch.Tensor.argmax] = _argmax
_HANDLERS[torch.nn.functional.one_hot] = _one_hot


class _SmoothingMode(TorchFunctionMode):
    """Routes plain-tensor jump ops through the smoothed autograd Functions (innermost context)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        h = _HANDLERS.get(func)
        if h is not None:
            cfg = current()
            if cfg is not None:
                r = h(cfg, func, args, kwargs)
                if r is not NotImplemented:
                    return r
        return func(*args, **kwargs)


# ``torchlc.smoothing`` may be exported as this class (``from .smoothing import smoothing`` in the
# package), which hides the module attribute; keep the module's helpers reachable from the class so
# ``torchlc.smoothing.soft(mask)`` and friends work either way.
smoothing.smoothing = smoothing
smoothing.soft = staticmethod(soft)
smoothing.exact = staticmethod(exact)
smoothing.current = staticmethod(current)
smoothing.apply = staticmethod(apply)
smoothing.jump_density = staticmethod(jump_density)
smoothing.Kernel = Kernel
smoothing.KERNELS = KERNELS
