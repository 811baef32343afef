"""The ``@triton.jit`` kernels of :mod:`torchlc.kernels.elementwise` (imported, and Triton with them,
on the first launch: see :mod:`torchlc.kernels._lazy`)."""

import triton
import triton.language as tl


@triton.jit
def _relu2_kernel(p_ptr, bias_ptr, o_ptr, n, row, HAS_BIAS: tl.constexpr, OP: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = offs < n
    a = tl.load(p_ptr + offs, mask=m)
    if HAS_BIAS:  # a + bias computed in OP (float32 for half types, like torch), rounded to the dtype
        a = (a.to(OP) + tl.load(bias_ptr + offs % row, mask=m).to(OP)).to(a.dtype)
    b = tl.load(p_ptr + n + offs, mask=m)
    nonpos = ((a < 0) | ((a == 0) & (b <= 0))) & (b == b)  # a NaN anywhere stays NaN
    zero = tl.zeros_like(a)
    tl.store(o_ptr + offs, tl.where(nonpos, zero, a), mask=m)
    tl.store(o_ptr + n + offs, tl.where(nonpos, zero, b), mask=m)

@triton.jit
def _abs2_kernel(p_ptr, o_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = offs < n
    a = tl.load(p_ptr + offs, mask=m)
    b = tl.load(p_ptr + n + offs, mask=m)
    lead = tl.where(a != 0, a, b)
    s = (lead > 0).to(a.dtype) - (lead < 0).to(a.dtype)
    tl.store(o_ptr + offs, a * s, mask=m)
    tl.store(o_ptr + n + offs, b * s, mask=m)


@triton.jit
def _prod2(a0, a1, b0, b1, OP: tl.constexpr):
    # (a0 + a1 ε)(b0 + b1 ε) = a0 b0 + (a0 b1 + a1 b0) ε + (dropped ε²), rounded as the torch path on
    # CUDA rounds it: mul(a0, b0), mul(a0, b1), then addcmul_(·, a1, b0), one fused multiply-add; each
    # in OP (float32 for half types, as PyTorch's op math) and rounded to the dtype in between. Explicit
    # roundings and fma: the compiler's own contraction choices would differ between kernels.
    dt = a0.dtype
    A0, A1, B0, B1 = a0.to(OP), a1.to(OP), b0.to(OP), b1.to(OP)
    p0 = (A0 * B0).to(dt)
    t = (A0 * B1).to(dt).to(OP)
    p1 = tl.fma(A1, B0, t).to(dt)
    return p0, p1

@triton.jit
def _mul2_kernel(x_ptr, y_ptr, o_ptr, n, OP: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = offs < n
    a0 = tl.load(x_ptr + offs, mask=m)
    a1 = tl.load(x_ptr + n + offs, mask=m)
    b0 = tl.load(y_ptr + offs, mask=m)
    b1 = tl.load(y_ptr + n + offs, mask=m)
    p0, p1 = _prod2(a0, a1, b0, b1, OP)
    tl.store(o_ptr + offs, p0, mask=m)
    tl.store(o_ptr + n + offs, p1, mask=m)

@triton.jit
def _powint2_kernel(x_ptr, o_ptr, n, N: tl.constexpr, OP: tl.constexpr, BLOCK: tl.constexpr):
    # (a0 + a1 ε)^N for N = 3, 4 as the product path computes it, x·x then (x·x)·x or (x·x)·(x·x), each
    # product _mul2_kernel's (same roundings), in registers instead of through memory
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = offs < n
    a0 = tl.load(x_ptr + offs, mask=m)
    a1 = tl.load(x_ptr + n + offs, mask=m)
    s0, s1 = _prod2(a0, a1, a0, a1, OP)
    if N == 3:
        r0, r1 = _prod2(s0, s1, a0, a1, OP)
    else:
        r0, r1 = _prod2(s0, s1, s0, s1, OP)
    tl.store(o_ptr + offs, r0, mask=m)
    tl.store(o_ptr + n + offs, r1, mask=m)

@triton.jit
def _floor2_kernel(p_ptr, o_ptr, n, BLOCK: tl.constexpr):
    # floor(a + dε) = floor(a) − [a integer and d < 0]
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = offs < n
    a = tl.load(p_ptr + offs, mask=m)
    d = tl.load(p_ptr + n + offs, mask=m)
    fl = tl.floor(a)
    drop = (fl == a) & (d < 0)
    res = fl - drop.to(a.dtype)
    tl.store(o_ptr + offs, tl.where(d == d, res, d), mask=m)  # a NaN anywhere gives NaN

@triton.jit
def _heaviside2_kernel(p_ptr, v_ptr, o_ptr, n, BLOCK: tl.constexpr):
    # H(a + dε) by the sign of the leading coefficient; v where the element is exactly 0
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = offs < n
    a = tl.load(p_ptr + offs, mask=m)
    d = tl.load(p_ptr + n + offs, mask=m)
    v = tl.load(v_ptr + offs, mask=m)
    lead = tl.where(a != 0, a, d)
    one = tl.full(a.shape, 1.0, a.dtype)
    zero = tl.zeros_like(a)
    undefined = (a != a) | (d != d)  # a NaN anywhere: 0, as torch.heaviside(nan)
    h = tl.where(lead > 0, one, tl.where((lead < 0) | undefined, zero, v))
    tl.store(o_ptr + offs, tl.where(undefined, zero, h), mask=m)


@triton.jit
def _analytic2_kernel(p_ptr, o_ptr, n, FN: tl.constexpr, BLOCK: tl.constexpr):
    # g(a + dε) = g(a) + g'(a)·d ε for g = sin (FN 0), cos (1), exp (2), sigmoid (3), silu (4),
    # gelu (5, the erf form); half precision computes in float32, as torch's kernels
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = offs < n
    a = tl.load(p_ptr + offs, mask=m)
    d = tl.load(p_ptr + n + offs, mask=m)
    if a.dtype != tl.float64:
        a = a.to(tl.float32)
        d = d.to(tl.float32)
    if FN == 0:
        g = tl.sin(a)
        dg = tl.cos(a)
    elif FN == 1:
        g = tl.cos(a)
        dg = -tl.sin(a)
    elif FN == 2:
        g = tl.exp(a)
        dg = g
    elif FN == 3:  # σ' = σ(1 − σ)
        g = tl.sigmoid(a)
        dg = g * (1.0 - g)
    elif FN == 4:  # silu(a) = a·σ(a), silu' = σ(1 + a(1 − σ))
        s = tl.sigmoid(a)
        g = a * s
        dg = s * (1.0 + a * (1.0 - s))
    else:  # gelu(a) = a·Φ(a), gelu' = Φ(a) + a·φ(a)
        cdf = 0.5 * (1.0 + tl.math.erf(a * 0.7071067811865476))
        g = a * cdf
        dg = cdf + a * (tl.exp(-0.5 * a * a) * 0.3989422804014327)
    tl.store(o_ptr + offs, g, mask=m)
    tl.store(o_ptr + n + offs, dg * d, mask=m)
