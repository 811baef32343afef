"""Series algebra on planes, written once for every layout (layouts decode to planes first).

Every function takes and returns :class:`~torchlc._tensor.Series` objects (planes (T, *shape) over a
static support) and implements semantics §2–§3: termwise sums, the truncated Cauchy product, the
leading-term expansion for reciprocals and powers, and Taylor series of analytic functions.
"""

from __future__ import annotations

import functools
from fractions import Fraction

import torch
from torch.fx.experimental.proxy_tensor import disable_proxy_modes_tracing

from . import _support as S
from . import _taylor as T
from . import kernels
from ._context import grad_free as _grad_free
from ._context import inner_is_plain as _inner_is_plain
from ._context import speculation_record
from ._series import Series, broadcast_planes, min_exact, plain, result_order
from ._taylor import fma_sum as _fma_sum
from .errors import DomainError, TermBudgetError, TruncationError, is_strict
from .kernels.alloc import empty as _empty_planes

NAN = float("nan")
FIRST_ORDER = (S.ZERO, Fraction(1))


@functools.lru_cache(maxsize=8192)
def _bshape_cached(*shapes):
    return torch.broadcast_shapes(*shapes)


def bshape(*shapes):
    """torch.broadcast_shapes, cached (the torch version is pure Python and dominates small ops)."""
    return _bshape_cached(*(tuple(s) for s in shapes))


def _ndim(*xs):
    return max(x.planes.dim() - 1 for x in xs)


def aligned(a: Series, b: Series):
    """Planes of a and b over their union support, broadcast to a common element shape."""
    nd = _ndim(a, b)
    pa, pb = broadcast_planes(a.planes, nd), broadcast_planes(b.planes, nd)
    if a.support == b.support:
        return pa, pb, a.support
    u = S.union(a.support, b.support)
    shape = bshape(pa.shape[1:], pb.shape[1:])
    return place(pa, a.support, u, shape), place(pb, b.support, u, shape), u


def place(p, sup, u, shape):
    """Planes p over ``sup`` re-laid over the larger support ``u`` (zeros elsewhere). ``u`` must hold
    every exponent of ``sup``: a plane left out would be a term silently dropped (prod and cumprod
    once padded or carried planes into a support without their exponents). Truncation is never done
    here but by the callers that own the order."""
    if not set(sup) <= set(u):
        raise RuntimeError(f"torchlc internal error: placing support {sup} into {u} would drop "
                           f"{sorted(set(sup) - set(u))}; please report this")
    pos = dict(zip(sup, range(len(sup))))
    zero = None
    planes = []
    for q in u:
        if q in pos:
            planes.append(p[pos[q]].expand(shape))
        else:
            if zero is None:
                zero = p.new_zeros(shape)
            planes.append(zero)
    return torch.stack(planes)


def exact_zero(a: Series):
    """Mask of elements of a known to be exactly 0 (None if unknown): a's own mask, or, for an exact
    real-valued operand (a plain tensor or an untruncated real LC), its zero entries."""
    if a.zero is not None:
        return a.zero
    if a.exact is None and a.support == (S.ZERO,):
        return a.planes[0] == 0
    return None


def _either(za, zb):
    if za is None:
        return zb
    if zb is None:
        return za
    return za | zb


def exact_add(a: Series, b: Series):
    return min_exact(a.exact, b.exact)


def add(a: Series, b: Series, alpha=1) -> Series:
    """a + alpha·b termwise (no truncation: the union support stays within the operands' orders)."""
    order = result_order(a, b)
    if b.order is None and b.support == (S.ZERO,) and a.support != (S.ZERO,):
        # plain operand: only the ε⁰ plane changes
        nd = _ndim(a, b)
        pa = broadcast_planes(a.planes, nd)
        bb = b.planes[0] if alpha == 1 else b.planes[0] * alpha
        if S.ZERO in a.support:
            k = a.support.index(S.ZERO)
            shape = bshape(pa.shape[1:], bb.shape)
            dtype = torch.result_type(pa, bb)
            if _grad_free(pa, bb):
                # one pass: the sum written into the ε⁰ plane, the other planes copied beside it
                # (a cat would first materialise pa[k] + bb, then copy every plane again)
                # pa's strides where the shapes agree: planes that view an interleaved buffer (the
                # scores of a product on the GEMM path) stay interleaved for the next product
                planes = (torch.empty_like(pa) if dtype == pa.dtype and tuple(shape) == pa.shape[1:]
                          else torch.empty((pa.shape[0], *shape), dtype=dtype, device=pa.device))
                torch.add(pa[k], bb, out=planes[k])
                if k > 0:
                    planes[:k].copy_(pa[:k])
                if k + 1 < pa.shape[0]:
                    planes[k + 1 :].copy_(pa[k + 1 :])
                return Series(planes, a.support, order, a.exact)
            T = pa.shape[0]
            if T > 1 and bb.dtype == pa.dtype and bb.dim() >= 1:
                # one broadcast add, −0.0 on the other planes: x + (−0.0) is x for every x (±0, ±inf and
                # NaN included), so those planes come out bit for bit. Traced graphs then hold no cat of
                # planes, and the addend is selected by a plane index rather than stacked, so Inductor
                # computes the whole sum inside the kernel that reads it
                plane = torch.arange(T, device=pa.device).view(T, *(1,) * (pa.dim() - 1))
                return Series(pa + torch.where(plane == k, bb, -0.0), a.support, order, a.exact)
            parts = [pa[:k].expand(k, *shape), (pa[k] + bb).unsqueeze(0), pa[k + 1 :].expand(-1, *shape)]
            return Series(torch.cat(parts).to(dtype), a.support, order, a.exact)
    pa, pb, sup = aligned(a, b)
    planes = pa + pb if alpha == 1 else torch.add(pa, pb, alpha=alpha)
    res = Series(planes, sup, order, exact_add(a, b))
    if res.exact is not None and (a.zero is not None or b.zero is not None):
        za, zb = exact_zero(a), exact_zero(b)
        if za is not None and zb is not None:
            res.zero = za & zb
    return res


# elements per plane from which add_number writes each plane once (1.0 + x of 2×512×3072 float32 on
# one CPU core: 1.6-1.7 against 2.1-2.9 ms) rather than clone and add in place (below it: 21 against
# 28 µs of host time for 4×8)
_ONE_PASS_NUMEL = 1 << 16


def add_number(a: Series, c):
    """a + c for a real Python number c, or None (the general :func:`add`) when autograd records or
    a holds no ε⁰ plane: a copy of the planes with c added to the ε⁰ one in place. The same roundings
    as adding c as a tensor of a's dtype; no tensor is made for c and no shapes are broadcast."""
    if S.ZERO not in a.support or not _grad_free(a.planes):
        return None
    k = a.support.index(S.ZERO)
    if a.planes[k].numel() < _ONE_PASS_NUMEL:  # small: fewer Python steps (host time) over fewer passes
        planes = a.planes.clone()
        planes[k].add_(c)
        return Series(planes, a.support, a.order, a.exact)
    # the sum written straight into the ε⁰ plane and the other planes copied beside it: one pass over
    # the data (a clone, then adding in place, would write and read the ε⁰ plane once more)
    planes = torch.empty_like(a.planes)
    torch.add(a.planes[k], c, out=planes[k])
    if k > 0:
        planes[:k].copy_(a.planes[:k])
    if k + 1 < planes.shape[0]:
        planes[k + 1 :].copy_(a.planes[k + 1 :])
    return Series(planes, a.support, a.order, a.exact)


def add_bias(res: Series, bias) -> Series:
    """res + bias for a fresh result ``res`` (e.g. a GEMM output) and a plain bias: added into the
    ε⁰ plane in place when no autograd recording is needed (no extra pass over the other planes)."""
    if bias is None:
        return res
    b = bias if isinstance(bias, Series) else None
    if (
        b is None
        and isinstance(bias, torch.Tensor)
        and S.ZERO in res.support
        and _grad_free(res.planes, bias)
        and bshape(res.planes.shape[1:], bias.shape) == res.planes.shape[1:]
        and torch.result_type(res.planes, bias) == res.planes.dtype  # else promote, as add does
    ):
        res.planes[res.support.index(S.ZERO)].add_(bias)
        return res
    return add(res, b if b is not None else plain(bias))


def neg(a: Series) -> Series:
    return Series(-a.planes, a.support, a.order, a.exact)


def scale(a: Series, c) -> Series:
    """a·c for a plain tensor or number c (no new exponents)."""
    if isinstance(c, torch.Tensor):
        nd = max(a.planes.dim() - 1, c.dim())
        return Series(broadcast_planes(a.planes, nd) * c, a.support, a.order, a.exact)
    return Series(a.planes * c, a.support, a.order, a.exact)


def is_plain(a: Series) -> bool:
    return a.order is None and a.support == (S.ZERO,)


def min_lead_bound(a: Series):
    """Static lower bound on the leading exponent of any element of a."""
    return a.support[0]


def exact_mul(a, b, order, truncated: bool, lead_bound=min_lead_bound):
    """Exactness of a truncated product: errors of a above a.exact are multiplied by b, whose leading
    exponent is at least ``lead_bound(b)`` (semantics §2; for a Series min(support b), the default;
    the CSR layout passes its own bound)."""
    bounds = []
    if a.exact is not None:
        bounds.append(a.exact + lead_bound(b))
    if b.exact is not None:
        bounds.append(b.exact + lead_bound(a))
    if truncated:
        bounds.append(order)
    return min_exact(*bounds)


_PLANS_BY_ID: dict = {}


def _product_plan(sa, sb, oa, ob, ea, eb):
    """Metadata of the truncated product of LC operands with supports sa, sb, orders oa, ob and
    exactness ea, eb: (order, out support, Cauchy groups, exactness). Pure exponent arithmetic on
    Fractions, cached: it cost more than the product's kernel for small tensors.

    Looked up by the identity of the metadata objects first: they are nearly always the same objects
    (module constants, or earlier plans' results), and hashing the Fractions for the value-keyed cache
    took ~6 Python-level ``Fraction.__hash__`` calls per product. An entry keeps its key objects
    alive, so their ids cannot be reused while it exists."""
    key = (id(sa), id(sb), id(oa), id(ob), id(ea), id(eb))
    hit = _PLANS_BY_ID.get(key)
    if hit is not None and hit[0] is sa and hit[1] is sb and hit[2] is oa and hit[3] is ob and hit[4] is ea and hit[5] is eb:
        return hit[6]
    plan = _product_plan_by_value(sa, sb, oa, ob, ea, eb)
    if len(_PLANS_BY_ID) >= 4096:
        _PLANS_BY_ID.clear()
    _PLANS_BY_ID[key] = (sa, sb, oa, ob, ea, eb, plan)
    return plan


@functools.lru_cache(maxsize=4096)
def _product_plan_by_value(sa, sb, oa, ob, ea, eb):
    a, b = Series(None, sa, oa, ea), Series(None, sb, ob, eb)
    order = result_order(a, b)
    if len(sa) * len(sb) > MAX_TERMS:
        check_budget(len(S.product_groups(sa, sb, order)[0]), "a product's support")
    out_sup, groups = S.product_groups(sa, sb, order)
    return order, out_sup, groups, exact_mul(a, b, order, S.truncates(sa, sb, order))


def bilinear(a: Series, b: Series, op=torch.mul) -> Series:
    """Truncated Cauchy product (see _bilinear); for elementwise products of a truncated result it
    also records which elements are exactly 0 because a factor is (an exact real zero, or a known
    exact zero), so decisions there need no higher order."""
    res = _bilinear(a, b, op)
    if res.exact is not None and op is torch.mul and res.zero is None:
        if a.zero is not None or b.zero is not None or a.support == (S.ZERO,) or b.support == (S.ZERO,):
            zero = _either(exact_zero(a), exact_zero(b))
            if zero is not None:
                try:
                    res.zero = zero.expand(res.planes.shape[1:])
                except RuntimeError:  # not broadcastable to the result (cannot happen for mul)
                    pass
    return res


def _bilinear(a: Series, b: Series, op=torch.mul) -> Series:
    """Truncated Cauchy product Σ_{p+q≤order} op(a_p, b_q) ε^{p+q} for a bilinear ``op``
    (elementwise mul, mm, bmm, conv, …). Plain operands take the one-GEMM path."""
    if is_plain(b) or is_plain(a):
        lc, pl, lc_first = (a, b, True) if is_plain(b) else (b, a, False)
        planes = _fold_op(op, lc.planes, pl.planes[0], lc_first)
        return Series(planes, lc.support, result_order(a, b), lc.exact)
    order, out_sup, groups, exact = _product_plan(a.support, b.support, a.order, b.order, a.exact, b.exact)
    pa, pb = a.planes, b.planes
    if not groups:  # every term is above the cutoff: the product truncates to 0
        z = torch.zeros_like(op(pa[0], pb[0]))
        return Series(z.unsqueeze(0), (S.ZERO,), order, exact)
    if op is torch.mm and a.support == b.support == out_sup == FIRST_ORDER:
        # (a0 + a1ε)(b0 + b1ε) = a0b0 + (a1b0 + a0b1)ε: the row-stacked planes times b0 in one GEMM,
        # then a0b1 accumulated into the ε¹ rows (2 launches instead of 3 GEMMs, an add and a stack).
        # When autograd records, the same GEMMs out of place (the accumulating GEMM rounds its sum once,
        # in its accumulation type: a separate add of rounded products would differ in half precision)
        T, M, K = pa.shape
        Y = torch.mm(pa.reshape(T * M, K), pb[0]).view(T, M, pb.shape[-1])
        if _grad_free(pa, pb):
            Y[1].addmm_(pa[0], pb[1])
            return Series(Y, out_sup, order, exact)
        return Series(torch.stack([Y[0], torch.addmm(Y[1], pa[0], pb[1])]), out_sup, order, exact)
    if op is torch.mul:
        if (
            a.support == b.support == FIRST_ORDER
            and pa.shape == pb.shape
            and pa.dtype == pb.dtype
            and out_sup == FIRST_ORDER
            and kernels.usable(pa, pb)
        ):
            return Series(kernels.mul2(pa, pb), out_sup, order, exact)
        nd = _ndim(a, b)
        pa, pb = broadcast_planes(pa, nd), broadcast_planes(pb, nd)
        square = a.support == b.support and _same_planes(pa, pb)
        if not _grad_free(pa, pb):  # autograd records: new tensors, the same operations
            return Series(torch.stack(_cauchy_mul(pa, pb, None, groups, square)), out_sup, order, exact)
        shape = bshape(pa.shape[1:], pb.shape[1:])
        dtype = torch.result_type(pa, pb)
        out = _empty_planes((len(out_sup), *shape), dtype, pa.device, like=pa[0])
        n = out[0].numel()
        cuts = blocks((pa[0], pb[0]), n) if pa[0].shape == pb[0].shape == shape else None
        if cuts is None:
            _cauchy_mul(pa, pb, out, groups, square)
        else:  # block by block (same kernels per element: the same numbers)
            fa, fb, fo = pa.reshape(len(pa), n), pb.reshape(len(pb), n), out.view(len(out), n)
            for lo, hi in cuts:
                _cauchy_mul(fa[:, lo:hi], fb[:, lo:hi], fo[:, lo:hi], groups, square)
        return Series(out, out_sup, order, exact)
    planes = []
    for _, pairs in groups:
        acc = None
        for i, j in pairs:
            t = op(pa[i], pb[j])
            acc = t if acc is None else acc + t
        planes.append(acc)
    return Series(torch.stack(planes), out_sup, order, exact)


def _cauchy_mul(pa, pb, out, groups, square):
    """The elementwise truncated product's planes: Σ pa[i]·pb[j] over the pairs of each group k,
    written into out[k] in place, or (out None, when autograd records) returned as new tensors by the
    same operations, so that no value depends on the grad mode.

    The terms accumulate in the group's pair order, each by a multiply-add (torch's addcmul: one
    rounding per term where the device fuses it). A square (pb the same planes as pa) takes each
    cross pair a_i·a_j, i < j, once, doubles their sum (exact in binary floating point) and then adds
    the diagonal term a_m·a_m: at first order 2·(a₀a₁), which is also what the unfolded sum gives
    (fma(a₁, a₀, a₀a₁) rounds to 2·(a₀a₁)) and what torch.func.jvp gives. Doubling the sum rather
    than a factor, the cross terms never overflow where the coefficient does not ((2a_i)·a_j would
    for |a_i| above half the largest float)."""
    res = []
    for k, pairs in groups:
        dst = None if out is None else out[k]
        if not square:
            res.append(_fma_sum([(1, pa[i], pb[j]) for i, j in pairs], dst))
            continue
        cross = [(1, pa[i], pa[j]) for i, j in pairs if i < j]
        acc = None
        if cross:
            acc = _fma_sum(cross, dst)
            acc = acc * 2 if dst is None else acc.mul_(2)
        diag = [(1, pa[i], pa[i]) for i, j in pairs if i == j]
        res.append(_fma_sum(diag, dst, base=acc) if diag else acc)
    return res


def _same_planes(p: torch.Tensor, q: torch.Tensor) -> bool:
    """Whether two plane tensors are views of the same elements (so their product is a square); in
    traced code (no data pointers) only when they are one tensor."""
    return p is q or (_inner_is_plain(p) and _inner_is_plain(q) and p.data_ptr() == q.data_ptr()
                      and p.shape == q.shape and p.stride() == q.stride() and p.dtype == q.dtype
                      and p.device == q.device)


def _fold_op(op, lc_planes, plain, lc_first):
    """Apply a bilinear op with one plain operand to every plane at once."""
    if op is torch.mul:
        nd = max(lc_planes.dim() - 1, plain.dim())
        return broadcast_planes(lc_planes, nd) * plain
    if op is torch.mm and lc_first:
        T, M, K = lc_planes.shape
        return torch.mm(lc_planes.reshape(T * M, K), plain).view(T, M, plain.shape[-1])
    if op is torch.mm:
        return torch.matmul(plain, lc_planes)
    return torch.stack([op(p, plain) if lc_first else op(plain, p) for p in lc_planes])



# -- leading terms -------------------------------------------------------------------------------


def lead_index(planes: torch.Tensor) -> torch.Tensor:
    """Per element, the index of its first nonzero plane (0 for a zero element)."""
    if planes.shape[0] == 1:
        return torch.zeros(planes.shape[1:], dtype=torch.long, device=planes.device)
    return (planes != 0).to(torch.uint8).argmax(0)


def lead_coeff(planes: torch.Tensor) -> torch.Tensor:
    """Each element's leading coefficient (0 for a zero element); a NaN stays NaN."""
    lead = planes[-1]
    for t in range(planes.shape[0] - 2, -1, -1):
        p = planes[t]
        lead = torch.where(p != 0, p, lead)
    return lead


def lead_sign(planes: torch.Tensor) -> torch.Tensor:
    """Sign of each element's leading coefficient (0 for zero): the field's order (semantics §4).
    An element with a NaN coefficient anywhere is undefined: its sign is NaN (torch.sign(nan) is 0,
    so this is explicit)."""
    s = torch.sign(lead_coeff(planes))
    nan = torch.isnan(planes[0]) if planes.shape[0] == 1 else torch.isnan(planes).any(0)
    return torch.where(nan, float("nan"), s)


def relu(s: Series) -> Series:
    """relu by the sign of the leading coefficient (semantics §4); NaN stays NaN, like torch.relu."""
    if s.support == FIRST_ORDER and (res := kernels.fused("relu", s.planes)) is not None:
        return Series(res, s.support, s.order, s.exact)
    if s.planes.shape[0] == 2:  # first order: 6 elementwise kernels instead of the general 9
        nonpos = kernels.cpu.relu_nonpos(s.planes[0], s.planes[1])
    else:
        nonpos = lead_sign(s.planes) <= 0  # NaN stays NaN, like torch.relu
    return Series(torch.where(nonpos, 0, s.planes), s.support, s.order, s.exact)


def occurring_leads(planes: torch.Tensor) -> list:
    """Indices of planes that lead some element. Eager: from the data (one host sync);
    traced/vmapped: every plane (a static over-approximation: same values, more planes)."""
    T = planes.shape[0]
    if T == 1:
        return [0]
    rec = speculation_record()
    if rec is not None:
        li = lead_index(planes)
        with disable_proxy_modes_tracing():
            counts = torch.bincount(li.reshape(-1), minlength=T).tolist()
        occ = [t for t, c in enumerate(counts) if c > 0] or [0]
        ok = li == occ[0]
        for t in occ[1:]:
            ok = ok | (li == t)
        rec.append((~ok).any())
        return occ
    if not _inner_is_plain(planes):
        return list(range(T))
    li = lead_index(planes)
    # a zero element is led by nothing; attribute it to its own (zero) first plane
    counts = torch.bincount(li.reshape(-1), minlength=T)
    return [t for t, c in enumerate(counts.tolist()) if c > 0] or [0]


def _series_eval(coeffs, d: Series, rel_order):
    """Σ_k coeffs[k]·d^k (coeffs: list of elementwise tensors) truncated at exponent ``rel_order``,
    by Horner's rule with truncated Cauchy products. d has a positive support."""
    if not d.support or len(coeffs) == 1:
        return Series(coeffs[0].unsqueeze(0), (S.ZERO,))
    m = dense_steps(d.support, rel_order)
    if m is not None and all(c.shape == d.planes.shape[1:] for c in coeffs):
        # d = Σ_{i≤m} d_i t^i in t = ε^g: Σ c_k d^k through t^n, at most (K−1)·m
        g = d.support[0]
        n = min(int(rel_order // g), (len(coeffs) - 1) * m)
        u = [coeffs[0], *d.planes.unbind(0)]
        c = len(coeffs[: n + 1])
        return _dense(lambda ins, dst, tmp: T.compose(ins[:c], ins[c:], dst, tmp), [*coeffs[:c], *u], n, g,
                      (*coeffs, d.planes))
    if len(d.support) == 1:
        # one exponent g: d^k is a single plane at k·g
        g = d.support[0]
        dp = d.planes[0]
        K = min(len(coeffs), int(rel_order // g) + 1)
        if K == 2 and _grad_free(coeffs[0], coeffs[1], dp):
            shape = bshape(coeffs[0].shape, coeffs[1].shape, dp.shape)
            out = torch.empty((2, *shape), dtype=torch.result_type(coeffs[1], dp), device=dp.device)
            out[0].copy_(coeffs[0])
            torch.mul(coeffs[1], dp, out=out[1])
            return Series(out, (S.ZERO, g))
        planes, sup, power = [coeffs[0]], [S.ZERO], None
        for k in range(1, len(coeffs)):
            if k * g > rel_order:
                break
            power = dp if power is None else power * dp
            planes.append(coeffs[k] * power)
            sup.append(k * g)
        shape = bshape(*(p.shape for p in planes))
        return Series(torch.stack([p.expand(shape) for p in planes]), tuple(sup))
    acc = Series(coeffs[-1].unsqueeze(0), (S.ZERO,))
    for c in reversed(coeffs[:-1]):
        acc = bilinear(Series(acc.planes, acc.support, rel_order), Series(d.planes, d.support, rel_order))
        acc = add(Series(acc.planes, acc.support, rel_order), Series(c.unsqueeze(0), (S.ZERO,)))
    return Series(acc.planes, acc.support)


# The term budget: the most series terms, or distinct exponents of one result, an op may produce. A
# wider result raises TermBudgetError at once instead of running for minutes and gigabytes.
MAX_TERMS = 4096


def check_budget(n: int, what: str) -> None:
    if n > MAX_TERMS:
        raise TermBudgetError(
            f"{what} would need {n} terms, more than torchlc's budget of {MAX_TERMS} "
            f"(torchlc._algebra.MAX_TERMS); lower the truncation order or use coarser exponents"
        )


def n_terms(d_support, rel_order) -> int:
    """How many series terms (k = 0..K) can reach exponents ≤ rel_order (within the term budget)."""
    if not d_support or rel_order < 0:
        return 1
    g = d_support[0]
    K = int(rel_order // g) + 1
    check_budget(K, f"a series in ε^{g} through ε^{rel_order}")
    return K


def _binom_coeffs(r, K):
    out, c = [], Fraction(1)
    for k in range(K):
        out.append(c)
        c = c * (r - k) / (k + 1)
    return out


def power(x: Series, r, *, nonzero: bool = False) -> Series:
    """x^r for a rational r (semantics §3): x = a ε^l (1+d), x^r = a^r ε^{lr} Σ C(r,k) d^k.

    Elements are grouped by which plane leads them; a < 0 with an even-denominator r is NaN.
    ``nonzero``: the caller knows x's ε⁰ coefficient is nonzero (or NaN) everywhere, so the
    first-order path need not read the data to check it (a host sync on a GPU)."""
    r = r if type(r) is Fraction else Fraction(r)
    if (fast := _power_first_order(x, r, nonzero)) is not None:
        return fast
    order = x.order
    planes, sup = x.planes, x.support
    leads = occurring_leads(planes)
    li = lead_index(planes) if len(leads) > 1 else None
    parts = []
    exact_bounds = []
    for L in leads:
        l = sup[L]  # noqa: E741  (λ, the leading exponent, as on the semantics page)
        a = planes[L]
        mask = None if li is None else li == L
        if mask is not None:
            a = torch.where(mask, a, torch.ones_like(a))
        ar = _real_power(a, r)
        if r.denominator % 2 == 0 and is_strict():
            neg = a < 0 if mask is None else (a < 0) & mask
            check_domain(neg, lambda m: f"x**{r}: even root of a negative number in {int(m.sum())} element(s)")
        d_sup = tuple(q - l for q in sup[L + 1 :])
        lr = l * r
        rel = (order - lr) if order is not None else None
        if rel is not None and rel < 0:
            # every term of this group is above the cutoff: these elements truncate to 0 (but the
            # zero elements, which land in the first group, stay outside the field for r < 0)
            z = planes.new_zeros((1, *planes.shape[1:]))
            if L == 0 and r < 0:
                z = torch.where(a == 0, NAN, z)
            parts.append((mask, Series(z, (S.ZERO,))))
            exact_bounds.append(order)
            continue
        K = n_terms(d_sup, rel) if rel is not None else (int(r) + 1 if r.denominator == 1 and r >= 0 else None)
        if K is None:
            raise ValueError("torchlc: x**r with a non-integer r needs a truncation order")
        if r.denominator == 1 and r >= 0:
            K = min(K, int(r) + 1)
        coeffs = [torch.full_like(a, float(c)) if c != 1 else torch.ones_like(a) for c in _binom_coeffs(r, K)]
        if d_sup:
            d = Series(planes[L + 1 :] / a, d_sup)
            ser = _series_eval(coeffs, d, rel if rel is not None else Fraction(10**9))
        else:
            ser = Series(coeffs[0].unsqueeze(0), (S.ZERO,))
        ser_planes = ser.planes * ar
        if L == 0:
            # zero elements land in the first group: 0^r is 0 (r > 0), 1 (r = 0), outside the field (r < 0)
            zero = a == 0
            if r < 0:
                check_domain(zero if mask is None else zero & mask,
                             lambda m: f"x**{r}: power of an exact zero in {int(m.sum())} element(s)")
            fill = float("nan") if r < 0 else 0.0
            ser_planes = torch.where(zero, fill, ser_planes)
            if r == 0:
                ser_planes = torch.where(zero & (torch.arange(ser_planes.shape[0], device=a.device)
                                                 .reshape(-1, *[1] * a.dim()) == 0), 1.0, ser_planes)
        ser_sup = tuple(q + lr for q in ser.support)
        if order is not None:
            keep = [i for i, q in enumerate(ser_sup) if q <= order]
            ser_planes, ser_sup = ser_planes[keep], tuple(ser_sup[i] for i in keep)
        parts.append((mask, Series(ser_planes, ser_sup)))
        # truncation inside the series, and propagated input error ε^{>e}·r·x^{r-1}
        full_top = (sup[-1] - l) * r + lr if (r.denominator == 1 and r >= 0) else None
        if d_sup and (full_top is None or (order is not None and full_top > order)):
            exact_bounds.append(order)
        if x.exact is not None:
            exact_bounds.append(x.exact + (r - 1) * l)
    if x.exact is not None and r > 0 and _has_truncated_zero(x):
        # an element zero through ε^e whose higher terms were dropped is O(ε^{>e}), so its r-th power
        # is known to vanish only through ε^{r·e}: √(ε·ε) at order 1 is not 0 + 0ε but ε
        exact_bounds.append(r * x.exact)
    if not parts:
        return Series(planes.new_zeros((1, *planes.shape[1:])), (S.ZERO,), order, min_exact(*exact_bounds))
    out = _merge_groups(parts)
    return Series(out.planes, out.support, order, min_exact(*exact_bounds) if exact_bounds else None)


def _power_first_order(x: Series, r: Fraction, nonzero: bool = False):
    """x^r for first-order x = a + bε (``x.nonstd(v)`` and what follows from it: RMS norms' rsqrt,
    sqrt, 1/x) when every element is led by its a ≠ 0: a^r + (r·(b/a))·a^r ε. These are the general
    rule's formulas for this case in its order of operations, so the planes are bit for bit the same,
    without its grouping by leading plane (rsqrt of a (1, 8, 64) input: about 5 kernels against 20).
    None (the general rule) for integer r ≥ 0, or when some a is 0. ``nonzero`` (the caller knows
    a ≠ 0) needs no look at the data, so traced code takes this path too, without the general rule's
    speculation on which plane leads (a compiled RMS norm: no lead-plane argmax, no guard per call)."""
    if x.support != FIRST_ORDER or x.order != 1 or (r.denominator == 1 and r >= 0):
        return None
    a, b = x.planes[0], x.planes[1]
    plain = speculation_record() is None and _inner_is_plain(x.planes)
    strict_root = r.denominator % 2 == 0 and is_strict()
    if not nonzero and not (plain and bool((a != 0).all())):  # (known nonzero: no host read)
        return None
    if strict_root:
        if not plain:  # the domain check reads the data: the general rule's traced form
            return None
        check_domain(a < 0, lambda m: f"x**{r}: even root of a negative number in {int(m.sum())} element(s)")
    if not _grad_free(x.planes):  # autograd records or a trace runs: no out= and no in-place steps
        ar = _real_power(a, r)
        planes = torch.stack([ar, torch.full_like(a, float(r)) * (b / a) * ar])
        return Series(planes, FIRST_ORDER, 1, min_exact(FIRST_ORDER[1], x.exact))
    planes = torch.empty((2, *a.shape), dtype=a.dtype, device=a.device)
    ar = _real_power(a, r, out=planes[0])
    # r·(b/a)·a^r written into the ε¹ plane (no stack). r times b/a as the general rule's
    # full_like(a, r) * (b/a): a Python number r multiplies in the op's math type without first
    # rounding to the dtype, which is the same product only where r is exact in every float dtype
    q = b / a
    c1 = q.mul_(float(r)) if r.denominator in (1, 2, 4) and abs(r.numerator) <= 128 else torch.full_like(a, float(r)) * q
    torch.mul(c1, ar, out=planes[1])
    # exact through the order (the series is truncated there) and through what x was exact
    return Series(planes, FIRST_ORDER, 1, min_exact(FIRST_ORDER[1], x.exact))


def _has_truncated_zero(x: Series) -> bool:
    """Whether some element is zero in every plane without being known to be exactly 0. Eager: from
    the data (one host sync); speculated: from the example data, recorded; traced: assumed."""
    zero = (x.planes == 0).all(0)
    if x.zero is not None:
        zero = zero & ~x.zero.expand(zero.shape)
    rec = speculation_record()
    if rec is not None:
        with disable_proxy_modes_tracing():
            seen = bool(zero.any())
        rec.append(zero.any() != seen)
        return seen
    if not _inner_is_plain(zero):
        return True
    return bool(zero.any())


def _merge_groups(parts):
    """Combine per-lead-group results: element-wise select by each group's mask."""
    if len(parts) == 1:
        return parts[0][1]
    sup = parts[0][1].support
    for _, s in parts[1:]:
        sup = S.union(sup, s.support)
    out = None
    for mask, s in parts:
        p = place(s.planes, s.support, sup, s.planes.shape[1:]) if s.support != sup else s.planes
        out = p if out is None else torch.where(mask, p, out)
    return Series(out, sup)


def _real_power(a: torch.Tensor, r: Fraction, out: torch.Tensor | None = None) -> torch.Tensor:
    """a^r on reals with the field's rule: a < 0 needs an odd denominator (real odd root). With
    ``out`` the result is written there (and returned)."""
    if out is not None:
        if r.denominator == 1:
            return torch.pow(a, int(r), out=out) if r != -1 else torch.reciprocal(a, out=out)
        if r == S.HALF:
            return torch.sqrt(a, out=out)
        if r == S.MINUS_HALF:
            return torch.rsqrt(a, out=out)
        return out.copy_(_real_power(a, r))
    if r.denominator == 1:
        return a.pow(int(r)) if r != -1 else a.reciprocal()
    if r == S.HALF:
        return a.sqrt()
    if r == S.MINUS_HALF:
        return a.rsqrt()
    mag = a.abs().pow(float(r))
    if r.denominator % 2 == 1:
        sgn = torch.sign(a) if r.numerator % 2 else torch.ones_like(a)
        return torch.where(a < 0, sgn * mag, mag) if r.numerator % 2 else mag
    return torch.where(a < 0, torch.full_like(a, NAN), mag)


# -- analytic functions ----------------------------------------------------------------------------


def split_finite(x: Series, name: str):
    """(a, d, bad): standard part a, positive part d, mask of infinite elements (or None)."""
    sup = x.support
    neg = [i for i, q in enumerate(sup) if q < 0]
    zero = sup.index(S.ZERO) if S.ZERO in sup else None
    pos0 = next((i for i, q in enumerate(sup) if q > 0), len(sup))
    a = x.planes[zero] if zero is not None else x.planes.new_zeros(x.planes.shape[1:])
    d = Series(x.planes[pos0:], sup[pos0:])
    bad = None
    if neg:
        bad = (x.planes[: len(neg)] != 0).any(0)
        if is_strict() and bool(bad.any()):
            raise DomainError(
                f"{name}: argument is infinite (leading exponent < 0) in {int(bad.sum())} element(s); "
                "analytic functions are defined on finite numbers only"
            )
    return a, d, bad


# From this many elements a first-order argument also takes the series rule below (written in place:
# no Taylor-coefficient temporaries, no stack); smaller ones keep the fewer Python calls above.
DENSE_MIN = 1 << 16


def dense_steps(sup, order):
    """m when ``sup`` = (g, 2g, …, mg) with mg ≤ order: a dense univariate series in t = ε^g (the
    series of x.nonstd(v, order=K) and of everything analytic computed from it); else None."""
    g = sup[0]
    if sup[-1] > order or any(q != (i + 1) * g for i, q in enumerate(sup)):
        return None
    return len(sup)


# Elements per block of the blocked in-place kernels: the ~20 planes a series rule or a product reads
# and writes stay in cache for one block (10 MB at 2^16 float64 elements) instead of streaming every
# full plane through memory once per kernel. Each element's kernels are the same, so blocking changes
# no number.
BLOCK = 1 << 16


def blocks(tensors, numel):
    """Element ranges (start, stop) of ``BLOCK`` elements on CPU (a GPU keeps one kernel per plane), or
    None when the tensors cannot be cut into blocks as flat views (too small, not all contiguous with
    ``numel`` elements)."""
    if numel < 2 * BLOCK or any(t.device.type != "cpu" or not t.is_contiguous() or t.numel() != numel
                                for t in tensors):
        return None
    return [(s, min(numel, s + BLOCK)) for s in range(0, numel, BLOCK)]


def _dense(run, ins, n, g, operands) -> Series:
    """Planes ε^0, ε^g, …, ε^{ng} written by ``run(ins, dst, scratch)``: ``ins`` its elementwise input
    tensors (all of one shape), dst the n + 1 destinations, scratch(k) k scratch planes. Grad-free and
    untraced: planes of one buffer written in place (no stack), block by block; otherwise new
    tensors, stacked."""
    if not _grad_free(*operands):
        return Series(torch.stack(run(ins, [None] * (n + 1), None)), tuple(k * g for k in range(n + 1)))
    ref = ins[-1]
    shape, dev = ref.shape, ref.device
    dtype = functools.reduce(torch.promote_types, (t.dtype for t in ins))
    buf = _empty_planes((n + 1, *shape), dtype, dev, like=ref)
    cuts = blocks(ins, ref.numel())
    if cuts is None:
        run(ins, list(buf.unbind(0)), lambda k: list(_empty_planes((k, *shape), dtype, dev, like=ref).unbind(0)))
    else:
        flat, out = [t.view(-1) for t in ins], buf.view(n + 1, -1)
        for lo, hi in cuts:
            run([t[lo:hi] for t in flat], list(out[:, lo:hi].unbind(0)),
                lambda k, w=hi - lo: list(torch.empty((k, w), dtype=dtype, device=dev).unbind(0)))
    return Series(buf, tuple(k * g for k in range(n + 1)))


def analytic(x: Series, taylor, name: str) -> Series:
    """g(x) for finite x = a + d: Σ_k c_k(a) d^k where ``taylor(a, K)`` returns the Taylor
    coefficients c_0..c_{K-1} of g at a (elementwise tensors). Infinite elements become NaN.

    A dense d (ε^g, ε^{2g}, …: every higher-order jet) with a series rule for g (``_taylor.SERIES``:
    exp, log, sin, tanh, …) takes that rule's O(K²) recurrence instead of the O(K³) composition."""
    if (x.support == FIRST_ORDER and x.order == 1 and (jvp := T.first_order_jvp(taylor, x.planes)) is not None
            and _inner_is_plain(x.planes)):
        # first order with PyTorch's derivative kernel: g(a) and g'(a)·b in two kernels, with or
        # without autograd (so a result never depends on the grad mode: reentrant checkpointing
        # recomputes under grad what it first ran without)
        P = x.planes
        planes = jvp(P[0], P[1], torch.empty_like(P) if _grad_free(P) else None)
        return Series(planes, FIRST_ORDER, x.order, min_exact(x.exact, x.order))
    if x.support == FIRST_ORDER and x.order == 1 and (x.planes[0].numel() < DENSE_MIN or taylor not in T.SERIES):
        # first order (x.nonstd(v) and what follows from it): g(a) + g'(a)·b ε, nothing to truncate
        # or check (no infinite elements), two kernels besides the Taylor coefficients
        c0, c1 = taylor(x.planes[0], 2)
        return Series(torch.stack([c0, c1 * x.planes[1]]), FIRST_ORDER, x.order, min_exact(x.exact, x.order))
    a, d, bad = split_finite(x, name)
    order = x.order
    K = n_terms(d.support, order) if order is not None else 1
    if d.support and order is None:
        raise ValueError(f"torchlc: {name} of an untruncated series needs an order")
    rule = T.SERIES.get(taylor) if d.support else None
    if rule is not None and dense_steps(d.support, order) is not None and a.shape == d.planes.shape[1:]:
        u = [a, *d.planes.unbind(0)]
        ser = _dense(rule, u, K - 1, d.support[0], (x.planes,))
    elif d.support:
        ser = _series_eval(taylor(a, K), d, order)
    else:
        ser = Series(taylor(a, 1)[0].unsqueeze(0), (S.ZERO,))
    planes = ser.planes
    if bad is not None:
        planes = torch.where(bad, torch.full_like(planes, NAN), planes)
    truncated = bool(d.support) and order is not None
    exact = min_exact(x.exact, order if truncated else None)
    return Series(planes, ser.support, order, exact)


def check_domain(bad: torch.Tensor, msg):
    """Raise DomainError in strict mode when any element is outside the field. ``msg`` is a string
    or a function of the mask (so nothing is synchronised outside strict mode)."""
    if is_strict() and bool(bad.any()):
        raise DomainError(msg(bad) if callable(msg) else msg)


def trusted_lead_sign(x: Series, what: str, matters=None) -> torch.Tensor:
    """Sign of each element's leading coefficient among the planes known to be exact.

    If an element is zero through ``exact_through`` but the tensor was truncated, its sign depends on
    dropped terms; where that decision ``matters`` (a mask; default everywhere) raise TruncationError
    naming the order needed (one host sync, only for truncated inputs)."""
    planes = x.planes
    if x.exact is None:
        return lead_sign(planes)
    # a NaN coefficient anywhere, exact or not, makes the element NaN (never a tie to refuse)
    s = torch.where(torch.isnan(planes).any(0), NAN, lead_sign(exact_planes(x)))
    rec = speculation_record()
    if rec is not None:
        amb = s == 0
        rec.append((amb & matters).any() if matters is not None else amb.any())
    elif _inner_is_plain(s):
        amb = s == 0
        if matters is not None:
            amb = amb & matters
        if x.zero is not None:
            amb = amb & ~x.zero.expand(amb.shape)
        if bool(amb.any()):
            raise TruncationError(
                f"{what}: {int(amb.sum())} element(s) are zero through ε^{x.exact} but terms above "
                f"were truncated, so the result depends on them; rerun with a higher order "
                f"(e.g. x.nonstd(order={needed_order(x)}))"
            )
    return s


def exact_planes(x: Series) -> torch.Tensor:
    """The planes through ``exact_through``, the ones decisions may read (all of them when nothing
    was dropped; one zero plane when none is exact)."""
    if x.exact is None:
        return x.planes
    keep = [i for i, q in enumerate(x.support) if q <= x.exact]
    return x.planes[keep] if keep else x.planes.new_zeros((1, *x.planes.shape[1:]))


def needed_order(x: Series):
    """A truncation order at which what is undecided through ``x.exact`` gets decided (a lower bound
    named in TruncationError messages)."""
    order = x.order if x.order is not None else x.exact
    return order + (order - x.exact) + 1
