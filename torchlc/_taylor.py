"""Univariate Taylor coefficients: the mathematics of every analytic function, written once.

A function ``taylor_g(a, K)`` returns the first K coefficients ``[g(a), g'(a), g''(a)/2!, …]`` of g at
the standard parts ``a`` (a tensor), built from small jet helpers (``t_mul``, ``t_recip``, ``t_exp``,
``t_integrate``) as JAX's ``jet`` does. The analytic rules (:mod:`torchlc.ops.analytic`,
:mod:`torchlc.ops.special`) and the first-order jets (:mod:`torchlc._jet`) read them; this module
imports torch only.
"""

from __future__ import annotations

import math

import torch


def t_mul(u, v):
    """Product of two truncated univariate series (lists of tensors)."""
    K = min(len(u), len(v))
    return [sum(u[j] * v[k - j] for j in range(k + 1)) for k in range(K)]


def t_recip(u):
    """1/u for a univariate series with u[0] ≠ 0."""
    r0 = u[0].reciprocal()
    out = [r0]
    for k in range(1, len(u)):
        out.append(-r0 * sum(u[j] * out[k - j] for j in range(1, k + 1)))
    return out


def t_exp(u):
    """exp of a univariate series: y' = u'y."""
    out = [u[0].exp()]
    for k in range(1, len(u)):
        out.append(sum(j * u[j] * out[k - j] for j in range(1, k + 1)) / k)
    return out


def t_integrate(c0, du):
    """Series with constant term c0 and derivative du."""
    return [c0] + [du[k] / (k + 1) for k in range(len(du))]


def identity_series(a, K):
    """a + t as a length-K univariate series."""
    out = [a]
    if K > 1:
        out.append(torch.ones_like(a))
    out += [torch.zeros_like(a)] * (K - 2)
    return out[:K]


def inv_factorial(k: int) -> float:
    """1/k! as a float: exact division up to 170! (the largest factorial a float holds), then
    exp(−lgamma(k+1)), which underflows to 0 gracefully (never an OverflowError)."""
    if k <= 170:
        return 1.0 / math.factorial(k) if k > 1 else 1.0
    return math.exp(-math.lgamma(k + 1))


def div_factorial(v, k: int):
    """v / k! for a tensor or number v and any k ≥ 0: an integer divisor while k! fits int64 (20!),
    a float one up to 170!, then a multiplication by 1/k! (which underflows to 0, never overflows)."""
    if k < 2:
        return v
    if k <= 20:
        return v / math.factorial(k)
    if k <= 170:
        return v / float(math.factorial(k))
    return v * inv_factorial(k)


def factorial_series(vals):
    """[v_k / k!]: derivatives to Taylor coefficients, for series of any length."""
    return [div_factorial(v, k) for k, v in enumerate(vals)]


SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def cycle(vals, K):
    """[v0, v1, …] repeating with period len(vals), divided by k!; vals are thunks (computed lazily)."""
    cache = {}

    def get(i):
        if i not in cache:
            cache[i] = vals[i]()
        return cache[i]

    return factorial_series([get(k % len(vals)) for k in range(K)])


def ode(y0, K, step):
    """Univariate Taylor coefficients of y with y(0)=y0 and (k+1)·y_{k+1} = step(y, k)."""
    y = [y0]
    for k in range(K - 1):
        s = step(y, k)
        y.append(s if k == 0 else s / (k + 1))  # y₁ = step itself: no division by 1 (a kernel saved)
    return y


def conv(u, v, k):
    """Σ_{j ≤ k} u_j·v_{k−j}, summed left to right from the first product (no 0 + … kernel)."""
    acc = u[0] * v[k]
    for j in range(1, k + 1):
        acc = acc + u[j] * v[k - j]
    return acc


def taylor_exp(a, K):
    e = a.exp()
    return [e] if K == 1 else factorial_series([e] * K)


def taylor_expm1(a, K):
    c = taylor_exp(a, K)
    return [a.expm1()] + c[1:]


def taylor_log(a, K):
    out_ = [a.log()]
    if K > 1:
        inv = a.reciprocal()
        p = inv
        for k in range(1, K):
            out_.append(p * ((-1) ** (k + 1) / k))
            p = p * inv
    return out_


def taylor_log1p(a, K):
    c = taylor_log(1 + a, K)
    return [a.log1p()] + c[1:]


def taylor_sin(a, K):
    if K == 1:
        return [a.sin()]
    s, c = a.sin(), a.cos()
    return cycle([lambda: s, lambda: c, lambda: -s, lambda: -c], K)


def taylor_cos(a, K):
    if K == 1:
        return [a.cos()]
    s, c = a.sin(), a.cos()
    return cycle([lambda: c, lambda: -s, lambda: -c, lambda: s], K)


def taylor_sinh(a, K):
    if K == 1:
        return [a.sinh()]
    return cycle([a.sinh, a.cosh], K)


def taylor_cosh(a, K):
    if K == 1:
        return [a.cosh()]
    return cycle([a.cosh, a.sinh], K)


def taylor_tan(a, K):
    return ode(a.tan(), K, lambda y, k: (1.0 if k == 0 else 0.0) + conv(y, y, k))


def taylor_tanh(a, K):
    return ode(a.tanh(), K, lambda y, k: (1.0 if k == 0 else 0.0) - conv(y, y, k))


def taylor_sigmoid(a, K):
    return ode(torch.sigmoid(a), K, lambda y, k: y[k] - conv(y, y, k))


def from_derivative(y0, dseries):
    return t_integrate(y0, dseries)


def taylor_atan(a, K):
    if K == 1:
        return [a.atan()]
    x = identity_series(a, K - 1)
    q = t_recip([1 + x[0] * x[0]] + t_mul(x, x)[1:]) if K > 1 else []
    return from_derivative(a.atan(), q)


def rsqrt_series(u):
    """(u)^(-1/2) for a univariate series with u[0] > 0: y' = -½ u'/u · y."""
    y = [u[0].rsqrt()]
    inv = t_recip(u)
    du = [(k + 1) * u[k + 1] for k in range(len(u) - 1)]
    ratio = t_mul(du, inv)  # u'/u
    for k in range(len(u) - 1):
        y.append(-0.5 * conv(ratio, y, k) / (k + 1))
    return y


def taylor_asin(a, K):
    if K == 1:
        return [a.asin()]
    x = identity_series(a, K - 1)
    one_minus = [1 - a * a] + [-v for v in t_mul(x, x)[1:]]
    return from_derivative(a.asin(), rsqrt_series(one_minus))


def taylor_acos(a, K):
    c = taylor_asin(a, K)
    return [a.acos()] + [-v for v in c[1:]]


def taylor_erf(a, K):
    if K == 1:
        return [torch.erf(a)]
    x = identity_series(a, K - 1)
    sq = t_mul(x, x)
    g = t_exp([-v for v in sq])
    return from_derivative(torch.erf(a), [v * (2 / math.sqrt(math.pi)) for v in g])


def taylor_erfc(a, K):
    c = taylor_erf(a, K)
    return [torch.erfc(a)] + [-v for v in c[1:]]


def taylor_silu(a, K):
    if K == 1:
        return [torch.nn.functional.silu(a)]
    x = identity_series(a, K)
    return t_mul(x, sigmoid_series(x))


def taylor_gelu(a, K):
    if K == 1:
        return [torch.nn.functional.gelu(a)]
    x = identity_series(a, K)
    phi = t_exp([-0.5 * v for v in t_mul(x, x)])[: K - 1]
    cdf = from_derivative(0.5 * (1 + torch.erf(a / math.sqrt(2))), [v / math.sqrt(2 * math.pi) for v in phi])
    res = t_mul(x, cdf)
    return [torch.nn.functional.gelu(a)] + res[1:]


def taylor_gelu_tanh(a, K):
    if K == 1:
        return [torch.nn.functional.gelu(a, approximate="tanh")]
    x = identity_series(a, K)
    x3 = t_mul(t_mul(x, x), x)
    u = [SQRT_2_OVER_PI * (x[k] + 0.044715 * x3[k]) for k in range(K)]
    t = tanh_series(u)
    half = [0.5 * ((1.0 if k == 0 else 0.0) + t[k]) for k in range(K)]
    res = t_mul(x, half)
    return [torch.nn.functional.gelu(a, approximate="tanh")] + res[1:]


# -- series rules --------------------------------------------------------------------------------
# g(u) for a univariate series u = [u0, u1, …, um] (u_j = 0 for j > m) through t^n, by the O(n²)
# recurrences of an ODE that g satisfies, as jax.experimental.jet's rules do: y' = g'(u)·u' gives
# k·y_k = Σ_j j·u_j·w_{k−j} with w the series of g'(u). The composition through the coefficient
# table (Σ_k c_k·(u − u0)^k) costs O(n³) products; these cost O(n²) and need no coefficient table.
#
# ``out`` is a list of n + 1 destinations: planes of one preallocated buffer, written with out= and
# in-place kernels (grad-free, untraced; no temporaries of the result's size), or all None (new
# tensors: the autograd-safe form). Each rule returns the list of coefficients y_0…y_n.


def fma_sum(terms, dst=None, base=None):
    """base + Σ c·x·y over terms [(c, x, y)] (c a number, x and y tensors; base None, a number or a
    tensor), written into ``dst`` or returned as a new tensor (dst None). Both forms run the same
    operations in the same order (a unit term first when there is no base, then multiply-adds), so
    that no value depends on the grad mode: the rules write into ``dst`` only when autograd does
    not record."""
    if not terms:
        if base is None:
            if dst is None:
                raise ValueError("fma_sum of nothing")
            return dst.fill_(0)
        if dst is None:
            return base
        return dst.copy_(base) if isinstance(base, torch.Tensor) else dst.fill_(base)
    terms = list(terms)
    if base is None and (i := next((i for i, t in enumerate(terms) if t[0] == 1), None)) is not None:
        _, x, y = terms.pop(i)  # a unit term starts the sum without a zero pass
        acc = x * y if dst is None else torch.mul(x, y, out=dst)
    else:
        c, x, y = terms.pop(0)
        b = base if isinstance(base, torch.Tensor) else x.new_full((), 0 if base is None else base)
        acc = torch.addcmul(b, x, y, value=c) if dst is None else torch.addcmul(b, x, y, value=c, out=dst)
    for c, x, y in terms:
        acc = torch.addcmul(acc, x, y, value=c) if dst is None else acc.addcmul_(x, y, value=c)
    return acc


def scratch_planes(u, out, scratch, k):
    """k scratch destinations: None in the new-tensor form; else from ``scratch(k)`` (the caller's
    allocator) or k new tensors like u0."""
    if out[0] is None:
        return [None] * k
    if scratch is not None:
        return scratch(k)
    return [torch.empty_like(u[0]) for _ in range(k)]


def _window(u, n):
    """Scratch planes a rule y' = w·u' needs: y_k reads w_{k−1}…w_{k−m} only, so w_k may overwrite
    w_{k−m} (m = len(u) − 1: one plane for x.nonstd(v, order=K) itself)."""
    return max(1, min(n, len(u) - 1))


def _deriv_terms(u, w, k):
    """[(j/k, u_j, w_{k−j})]: the terms of y_k for y' = w·u' (j = 1…min(k, m), largest j first)."""
    m = len(u) - 1
    return [(j / k, u[j], w[k - j]) for j in range(min(k, m), 0, -1)]


def exp_series(u, out, scratch=None):
    """exp(u): y' = y·u'."""
    y = [torch.exp(u[0], out=out[0]) if out[0] is not None else u[0].exp()]
    for k in range(1, len(out)):
        y.append(fma_sum(_deriv_terms(u, y, k), out[k]))
    return y


def expm1_series(u, out, scratch=None):
    y = exp_series(u, out)
    y[0] = torch.expm1(u[0], out=out[0]) if out[0] is not None else u[0].expm1()
    return y


def _log_like(u, out, u0, y0):
    """log-type series: y' = u'/v with v = u but constant term ``u0``:
    y_k = (u_k − Σ_{j<k} (j/k)·y_j·u_{k−j}) / u0."""
    n, m = len(out) - 1, len(u) - 1
    r = u0.reciprocal()
    y = [y0]
    for k in range(1, n + 1):
        terms = [(-j / k, y[j], u[k - j]) for j in range(max(1, k - m), k)]
        base = u[k] if k <= m else None
        if out[k] is None:
            y.append(fma_sum(terms, base=base) * r)
        else:
            y.append(fma_sum(terms, out[k], base=base).mul_(r))
    return y


def log_series(u, out, scratch=None):
    """log(u): y' = u'/u."""
    return _log_like(u, out, u[0], torch.log(u[0], out=out[0]) if out[0] is not None else u[0].log())


def log1p_series(u, out, scratch=None):
    """log1p(u): y' = u'/(1 + u)."""
    y0 = torch.log1p(u[0], out=out[0]) if out[0] is not None else u[0].log1p()
    return _log_like(u, out, 1 + u[0], y0)


def _pair_series(u, out, scratch, f, g, sy, sz):
    """y = f(u) with its companion z = g(u): y' = sy·z·u', z' = sz·y·u' (sin: +1, −1; cos: −1, +1;
    sinh and cosh: +1, +1)."""
    n = len(out) - 1
    W = _window(u, n)
    zs = scratch_planes(u, out, scratch, W)
    y = [f(u[0]) if out[0] is None else f(u[0], out=out[0])]
    z = [g(u[0]) if zs[0] is None else g(u[0], out=zs[0])]
    for k in range(1, n + 1):
        y.append(fma_sum([(sy * c, a, b) for c, a, b in _deriv_terms(u, z, k)], out[k]))
        if k < n:
            z.append(fma_sum([(sz * c, a, b) for c, a, b in _deriv_terms(u, y, k)], zs[k % W]))
    return y


def sin_series(u, out, scratch=None):
    return _pair_series(u, out, scratch, torch.sin, torch.cos, 1, -1)


def cos_series(u, out, scratch=None):
    return _pair_series(u, out, scratch, torch.cos, torch.sin, -1, 1)


def sinh_series(u, out, scratch=None):
    return _pair_series(u, out, scratch, torch.sinh, torch.cosh, 1, 1)


def cosh_series(u, out, scratch=None):
    return _pair_series(u, out, scratch, torch.cosh, torch.sinh, 1, 1)


def _square_terms(y, k, c):
    """c·Σ_{i=0..k} y_i·y_{k−i} as terms (pairs folded: 2c·y_i·y_{k−i} for i < k − i)."""
    terms = [(2 * c, y[i], y[k - i]) for i in range(0, (k + 1) // 2)]
    if k % 2 == 0:
        terms.append((c, y[k // 2], y[k // 2]))
    return terms


def _riccati(u, out, scratch, y0, w0, sign, linear):
    """y' = w·u' with w = c0 + sign·y² (+ y when ``linear``): tanh (1 − y²), tan (1 + y²), sigmoid
    (y − y²). w_k = [y_k if linear] + sign·Σ y_i·y_{k−i} for k ≥ 1."""
    n = len(out) - 1
    W = _window(u, n)
    ws = scratch_planes(u, out, scratch, W)
    y, w = [y0], [fma_sum([(sign, y0, y0)], ws[0], base=w0)]
    for k in range(1, n + 1):
        y.append(fma_sum(_deriv_terms(u, w, k), out[k]))
        if k < n:
            w.append(fma_sum(_square_terms(y, k, sign), ws[k % W], base=y[k] if linear else None))
    return y


def tanh_series(u, out=None, scratch=None):
    """tanh of a univariate series u: y' = (1 − y²)·u' (``out`` None: len(u) new coefficients)."""
    if out is None:
        out = [None] * len(u)
    y0 = torch.tanh(u[0]) if out[0] is None else torch.tanh(u[0], out=out[0])
    return _riccati(u, out, scratch, y0, 1.0, -1, False)


def tan_series(u, out, scratch=None):
    """tan(u): y' = (1 + y²)·u'."""
    y0 = torch.tan(u[0]) if out[0] is None else torch.tan(u[0], out=out[0])
    return _riccati(u, out, scratch, y0, 1.0, 1, False)


def sigmoid_series(u, out=None, scratch=None):
    """sigmoid of a univariate series u: y' = y(1 − y)·u' (``out`` None: len(u) new coefficients)."""
    if out is None:
        out = [None] * len(u)
    y0 = torch.sigmoid(u[0]) if out[0] is None else torch.sigmoid(u[0], out=out[0])
    return _riccati(u, out, scratch, y0, y0, -1, True)


def compose(coeffs, u, out, scratch=None):
    """Σ_k c_k·(u − u0)^k through t^n for Taylor coefficients ``coeffs`` = [c_0, …] of g at u0 (any g,
    any number of coefficients: the generic path, O(n³/6) products through the powers of u − u0)."""
    n, m = len(out) - 1, len(u) - 1
    K = min(n, len(coeffs) - 1)
    y = [coeffs[0] if out[0] is None else out[0].copy_(coeffs[0])] + [None] * n
    slots = [scratch_planes(u, out, scratch, n), scratch_planes(u, out, scratch, n)] if K > 1 else None
    power = {i: u[i] for i in range(1, min(m, n) + 1)}  # (u − u0)^1, nonzero at t^1…t^m
    for k in range(1, K + 1):
        if k > 1:  # (u − u0)^k = (u − u0)^{k−1}·(u − u0), nonzero at t^k…t^{min(n, k·m)}
            dst = slots[k % 2]
            power = {i: fma_sum([(1, u[j], power[i - j]) for j in range(1, m + 1) if (i - j) in power], dst[i - 1])
                     for i in range(k, min(n, k * m) + 1)}
        for i, p in power.items():
            if y[i] is None:
                y[i] = fma_sum([(1, coeffs[k], p)], out[i])
            elif out[i] is not None:
                y[i].addcmul_(coeffs[k], p)
            else:
                y[i] = torch.addcmul(y[i], coeffs[k], p)
    for i in range(1, n + 1):
        if y[i] is None:
            y[i] = torch.zeros_like(u[1]) if out[i] is None else out[i].zero_()
    return y


# The series rule of each Taylor-table function that has one (the analytic rules look it up).
SERIES = {
    taylor_exp: exp_series,
    taylor_expm1: expm1_series,
    taylor_log: log_series,
    taylor_log1p: log1p_series,
    taylor_sin: sin_series,
    taylor_cos: cos_series,
    taylor_sinh: sinh_series,
    taylor_cosh: cosh_series,
    taylor_tan: tan_series,
    taylor_tanh: tanh_series,
    taylor_sigmoid: sigmoid_series,
}


# -- first order through PyTorch's derivative kernels ----------------------------------------------
# g(a) + g'(a)·b ε, the first-order jet (x.nonstd(v) and everything computed from it), as two kernels:
# the plain op and PyTorch's own backward kernel, which multiplies an incoming tangent by g' in one
# pass. The Taylor coefficients above would take 5 (tanh) to 30 (gelu) kernels for the same two
# numbers, and on a host-bound forward each kernel is a few microseconds. The ε⁰ plane is then the
# plain op's value bit for bit, and the ε¹ plane PyTorch's forward-AD formula (derivatives.yaml
# computes these jvps with the same kernels). Real floating dtypes only: the backward kernels
# conjugate g' for complex arguments (a vector-Jacobian product, not a jvp). Only kernels with a
# derivative of their own (gradcheck'd, tests/ops/test_first_order_kernels.py), since the rules take
# them under autograd too: silu_backward has none, so silu's tangent is built from plain ops.


_A = torch.ops.aten


def _jvp_gelu(a, b, out, approximate="none"):
    if out is None:
        return torch.stack([_A.gelu.default(a, approximate=approximate),
                            _A.gelu_backward.default(b, a, approximate=approximate)])
    _A.gelu.out(a, approximate=approximate, out=out[0])
    _A.gelu_backward.grad_input(b, a, approximate=approximate, grad_input=out[1])
    return out


def _jvp_gelu_tanh(a, b, out):
    return _jvp_gelu(a, b, out, "tanh")


def _jvp_of_output(fn, backward):
    """g(a) and g'(a)·b where the backward kernel takes g's output (tanh, sigmoid)."""

    def jvp(a, b, out):
        if out is None:
            y = fn(a)
            return torch.stack([y, backward.default(b, y)])
        fn(a, out=out[0])
        backward.grad_input(b, out[0], grad_input=out[1])
        return out

    return jvp


def _jvp_silu(a, b, out):
    """silu'(a)·b with silu'(a) = s + a·s(1 − s), s = sigmoid(a), formed before it meets b (so an
    infinite tangent times a zero argument stays infinite, as in torch.func.jvp). Not silu_backward,
    which has no derivative (these rules run under autograd too)."""
    s = torch.sigmoid(a)
    d = torch.addcmul(s, a, s - s * s)
    if out is None:
        return torch.stack([_A.silu.default(a), d * b])
    _A.silu.out(a, out=out[0])
    torch.mul(d, b, out=out[1])
    return out


FIRST_ORDER_JVP = {
    taylor_silu: _jvp_silu,
    taylor_gelu: _jvp_gelu,
    taylor_gelu_tanh: _jvp_gelu_tanh,
    taylor_tanh: _jvp_of_output(torch.tanh, _A.tanh_backward),
    taylor_sigmoid: _jvp_of_output(torch.sigmoid, _A.sigmoid_backward),
}


def first_order_jvp(taylor, a):
    """The two-kernel first-order rule of ``taylor``'s function for planes like ``a``, or None: a
    function ``(a, b, out)`` returning the planes (2, *shape), written into ``out`` when it is given
    (no stack: one pass less over both planes; not under autograd, which refuses out=)."""
    if a.is_complex() or not a.is_floating_point():
        return None
    return FIRST_ORDER_JVP.get(taylor)
