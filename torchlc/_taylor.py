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
        y.append(step(y, k) / (k + 1))
    return y


def conv(u, v, k):
    return sum(u[j] * v[k - j] for j in range(k + 1))


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


def sigmoid_series(u):
    """sigmoid of a univariate series u: y' = y(1 − y)·u'."""
    y = [torch.sigmoid(u[0])]
    du = [(k + 1) * u[k + 1] for k in range(len(u) - 1)]
    for k in range(len(u) - 1):
        w = [y[j] - conv(y, y, j) for j in range(k + 1)]
        y.append(conv(w, du, k) / (k + 1))
    return y


def tanh_series(u):
    """tanh of a univariate series u: y' = (1 − y²)·u'."""
    y = [torch.tanh(u[0])]
    du = [(k + 1) * u[k + 1] for k in range(len(u) - 1)]
    for k in range(len(u) - 1):
        w = [(1.0 if j == 0 else 0.0) - conv(y, y, j) for j in range(k + 1)]
        y.append(conv(w, du, k) / (k + 1))
    return y


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
