"""nn primitives and the functional ops models use, on ``x.nonstd(v)``: the ε⁰ plane is the plain result
and the ε¹ plane ``torch.func.jvp``'s tangent, with grad enabled, under no_grad and under inference_mode.
GEMM/convolution rules run once on all planes; unsupported ops raise NotImplementedError naming the op."""

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

import torchlc
from tests.test_models import TOL, R, check
from torchlc import LCTensor

f64 = torch.float64
IDX = torch.tensor([[0, 2, 1], [1, 0, 0]])
W2 = torch.tensor([0.3, -0.7], dtype=f64)

FUNCTIONAL = {
    "mm": (lambda a, b: a @ b, [(3, 4), (4, 2)]),
    "matmul_batched": (lambda a, b: torch.matmul(a, b), [(2, 3, 4), (4, 2)]),
    "matmul_broadcast": (lambda a, b: torch.matmul(a, b), [(2, 1, 3, 4), (3, 4, 2)]),
    "matmul_vec": (lambda a, b: torch.matmul(a, b), [(3, 4), (4,)]),
    "bmm": (torch.bmm, [(2, 3, 4), (2, 4, 2)]),
    "baddbmm": (lambda c, a, b: torch.baddbmm(c, a, b, beta=0.5, alpha=2.0), [(2, 3, 2), (2, 3, 4), (2, 4, 2)]),
    "addmm": (lambda c, a, b: torch.addmm(c, a, b, beta=0.3, alpha=1.5), [(3, 2), (3, 4), (4, 2)]),
    "einsum": (lambda a, b: torch.einsum("bij,bjk->bik", a, b), [(2, 3, 4), (2, 4, 2)]),
    "einsum_trace_outer": (lambda a, b: torch.einsum("ii,j->j", a, b), [(3, 3), (4,)]),
    "cumsum": (lambda a: a.cumsum(1), [(3, 4)]),
    "cumprod": (lambda a: a.cumprod(-1), [(3, 4)]),
    "logsumexp": (lambda a: a.logsumexp(1), [(3, 4)]),
    "softmax": (lambda a: F.softmax(a, -1), [(3, 4)]),
    "log_softmax": (lambda a: F.log_softmax(a, 0), [(3, 4)]),
    "var": (lambda a: a.var(1), [(3, 4)]),
    "var_unbiased0": (lambda a: a.var((0, 1), correction=0, keepdim=True), [(3, 4)]),
    "std": (lambda a: a.std(0), [(3, 4)]),
    "var_mean": (lambda a: torch.var_mean(a, 1), [(3, 4)]),
    "std_mean": (lambda a: torch.std_mean(a, None, correction=2), [(3, 4)]),
    "mean": (lambda a: a.mean((0, 2)), [(2, 3, 4)]),
    "norm2": (lambda a: a.norm(), [(3, 4)]),
    "vector_norm_dim": (lambda a: torch.linalg.vector_norm(a, 3, dim=1), [(3, 4)]),
    "norm1": (lambda a: a.norm(p=1, dim=0), [(3, 4)]),
    "norm_inf": (lambda a: torch.linalg.vector_norm(a, float("inf"), dim=1), [(3, 4)]),
    "frobenius": (lambda a: torch.linalg.matrix_norm(a), [(2, 3, 4)]),
    "normalize": (lambda a: F.normalize(a, dim=1), [(3, 4)]),
    "pad_constant": (lambda a: F.pad(a, (1, 2, 0, 1), value=0.5), [(2, 3, 4)]),
    "pad_reflect": (lambda a: F.pad(a, (1, 2, 2, 1), mode="reflect"), [(1, 2, 3, 4)]),
    "pad_replicate": (lambda a: F.pad(a, (1, 2), mode="replicate"), [(2, 3, 4)]),
    "pad_circular": (lambda a: F.pad(a, (1, 2, 1, 0), mode="circular"), [(1, 2, 3, 4)]),
    "interp_nearest": (lambda a: F.interpolate(a, scale_factor=2, mode="nearest"), [(1, 2, 3, 4)]),
    "interp_nearest_size": (lambda a: F.interpolate(a, size=5, mode="nearest-exact"), [(1, 2, 3)]),
    "interp_bilinear": (lambda a: F.interpolate(a, size=(5, 3), mode="bilinear"), [(1, 2, 3, 4)]),
    "interp_bilinear_ac": (lambda a: F.interpolate(a, scale_factor=1.5, mode="bilinear", align_corners=True),
                           [(1, 2, 3, 4)]),
    "interp_linear": (lambda a: F.interpolate(a, size=7, mode="linear"), [(1, 2, 3)]),
    "interp_bicubic": (lambda a: F.interpolate(a, size=(5, 6), mode="bicubic"), [(1, 1, 3, 4)]),
    "cat": (lambda a, b: torch.cat([a, b], 1), [(2, 3), (2, 2)]),
    "stack": (lambda a, b: torch.stack([a, b], -1), [(2, 3), (2, 3)]),
    "split": (lambda a: a.split([1, 3], 1), [(2, 4)]),
    "chunk": (lambda a: a.chunk(2, 0), [(4, 3)]),
    "unbind": (lambda a: a.unbind(1), [(2, 3)]),
    "gather": (lambda a: a.gather(1, IDX), [(2, 3)]),
    "scatter": (lambda a, b: a.scatter(1, IDX[:, :2], b), [(2, 3), (2, 2)]),
    "scatter_add": (lambda a, b: a.scatter_add(1, IDX, b), [(2, 3), (2, 3)]),
    "scatter_reduce_sum": (lambda a, b: a.scatter_reduce(1, IDX, b, "sum"), [(2, 3), (2, 3)]),
    "scatter_reduce_mean": (lambda a, b: a.scatter_reduce(1, IDX, b, "mean", include_self=False), [(2, 3), (2, 3)]),
    "pad_constant_default": (lambda a: F.pad(a, (1, 2)), [(2, 3, 4)]),
    "index_select": (lambda a: a.index_select(0, torch.tensor([2, 0, 2])), [(3, 4)]),
    "index_add": (lambda a, b: a.index_add(0, torch.tensor([2, 0, 2]), b, alpha=2), [(3, 4), (3, 4)]),
    "index_put": (lambda a, b: a.index_put((torch.tensor([0, 2]),), b), [(3, 4), (2, 4)]),
    "index_put_acc": (lambda a, b: a.index_put((torch.tensor([0, 0]),), b, accumulate=True), [(3, 4), (2, 4)]),
    "setitem": (lambda a, b: _setitem(a, b), [(3, 4), (4,)]),
    "masked_fill": (lambda a: a.masked_fill(IDX == 0, -1.5), [(2, 3)]),
    "masked_select_where": (lambda a, b: torch.where(IDX > 0, a, b), [(2, 3), (2, 3)]),
    "sdpa": (lambda q, k, v: F.scaled_dot_product_attention(q, k, v), [(2, 2, 3, 4), (2, 2, 5, 4), (2, 2, 5, 3)]),
    "sdpa_causal": (lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=0.3),
                    [(2, 3, 4), (2, 3, 4), (2, 3, 4)]),
    "sdpa_bool_mask": (lambda q, k, v: F.scaled_dot_product_attention(
        q, k, v, attn_mask=torch.tensor([[True, False, True], [True, True, False]])),
        [(1, 2, 2, 4), (1, 2, 3, 4), (1, 2, 3, 4)]),
    "sdpa_float_mask": (lambda q, k, v, m: F.scaled_dot_product_attention(q, k, v, attn_mask=m),
                        [(2, 3, 4), (2, 5, 4), (2, 5, 4), (3, 5)]),
    "sdpa_gqa": (lambda q, k, v: F.scaled_dot_product_attention(q, k, v, enable_gqa=True),
                 [(1, 4, 3, 2), (1, 2, 3, 2), (1, 2, 3, 2)]),
    "unfold": (lambda a: F.unfold(a, 2, stride=1), [(1, 2, 3, 4)]),
    "fold": (lambda a: F.fold(a, (3, 4), 2), [(1, 8, 6)]),
    "pixel_shuffle": (lambda a: F.pixel_shuffle(a, 2), [(1, 4, 2, 3)]),
    "cosine_similarity": (lambda a, b: F.cosine_similarity(a, b), [(3, 4), (3, 4)]),
    "pairwise_distance": (lambda a, b: F.pairwise_distance(a, b), [(3, 4), (3, 4)]),
    "layer_norm_fn": (lambda a, w, b: F.layer_norm(a, (4,), w, b), [(3, 4), (4,), (4,)]),
    "group_norm_fn": (lambda a, w, b: F.group_norm(a, 2, w, b), [(2, 4, 3), (4,), (4,)]),
    "batch_norm_fn": (lambda a, w: F.batch_norm(a, W2, W2.exp(), w, None, training=False), [(3, 2), (2,)]),
    "batch_norm_fn_train": (lambda a, w, b: F.batch_norm(a, None, None, w, b, training=True), [(3, 2), (2,), (2,)]),
    "instance_norm_fn": (lambda a: F.instance_norm(a), [(2, 3, 4)]),
    "rms_norm_fn": (lambda a, w: F.rms_norm(a, (4,), w), [(3, 4), (4,)]),
    "local_response_norm": (lambda a: F.local_response_norm(a, 2), [(1, 3, 4)]),
    "max_pool_indices": (lambda a: F.max_pool2d(a, 2, return_indices=True)[0], [(1, 2, 4, 4)]),
    "lp_pool": (lambda a: F.lp_pool2d(a, 2, 2), [(1, 2, 4, 4)]),
    "conv_fn_groups_lcweight": (lambda x, w: F.conv2d(x, w, groups=2, stride=(1, 2)), [(1, 4, 4, 5), (2, 2, 2, 2)]),
    "conv_transpose_lcweight_bias": (lambda x, w, b: F.conv_transpose2d(x, w, b, stride=2, groups=2),
                                     [(1, 4, 2, 3), (4, 1, 3, 3), (2,)]),
}


def _setitem(a, b):
    a = a.clone()
    a[1] = b
    return a


@pytest.mark.parametrize("name", list(FUNCTIONAL))
def test_functional(name):
    f, shapes = FUNCTIONAL[name]
    check(f, [R(*s, seed=i) for i, s in enumerate(shapes)])


def test_cdist_against_its_formula():
    # jvp has no forward AD for _cdist_forward
    a, b, va, vb = R(3, 4), R(2, 4, seed=1), R(3, 4, seed=2), R(2, 4, seed=3)
    y = torch.cdist(a.nonstd(va), b.nonstd(vb))
    val, tan = torch.func.jvp(lambda a, b: ((a[:, None] - b[None]) ** 2).sum(-1).sqrt(), (a, b), (va, vb))
    assert_close(torchlc.coeff(y, 0), val, **TOL)
    assert_close(torchlc.coeff(y, 1), tan, **TOL)


def test_conv_runs_one_kernel_for_all_planes():
    x, v, w, b = R(2, 3, 6, 6), R(2, 3, 6, 6, seed=2), R(4, 3, 3, 3, seed=1), R(4, seed=3)
    with torch.profiler.profile(record_shapes=True) as prof:
        y = F.conv2d(x.nonstd(v), w, b)
    shapes = [e.input_shapes[0] for e in prof.events() if e.name == "aten::convolution"]
    # the LC-level call, then one kernel on the planes folded into the batch (2 planes × 2 rows)
    assert shapes == [[2, 3, 6, 6], [4, 3, 6, 6]]
    # bias only on the ε⁰ plane: the ε¹ plane is conv(v, w) exactly
    assert torch.equal(torchlc.coeff(y, 1), F.conv2d(v, w))
    assert_close(torchlc.coeff(y, 0), F.conv2d(x, w, b), **TOL)


def test_linear_runs_one_gemm_for_all_planes():
    x, v, w, b = R(5, 3), R(5, 3, seed=1), R(4, 3, seed=2), R(4, seed=3)
    with torch.profiler.profile(record_shapes=True) as prof:
        y = F.linear(x.nonstd(v), w, b)
    mm = [e.input_shapes for e in prof.events() if e.name in ("aten::mm", "aten::addmm")]
    assert [10, 3] in [s[0] for s in mm] or [10, 3] in [s[1] for s in mm]
    assert torch.equal(torchlc.coeff(y, 1), v @ w.T)


def test_lc_times_lc_matmul_is_two_gemms():
    # (a0 + a1ε)(b0 + b1ε): [a0; a1]·b0 in one GEMM, a0·b1 accumulated into the ε¹ rows
    a0, a1, b0, b1 = R(5, 3), R(5, 3, seed=1), R(3, 4, seed=2), R(3, 4, seed=3)
    with torch.profiler.profile() as prof:
        y = a0.nonstd(a1) @ b0.nonstd(b1)
    gemms = [e.name for e in prof.events() if e.name in ("aten::mm", "aten::addmm", "aten::addmm_")]
    assert gemms.count("aten::mm") == 2 and gemms.count("aten::addmm_") == 1  # LC-level mm, then 2 GEMMs
    assert torch.equal(torchlc.coeff(y, 0), a0 @ b0)
    assert_close(torchlc.coeff(y, 1), a1 @ b0 + a0 @ b1, **TOL)
    assert (y._support, y._order) == ((0, 1), 1)
    # with autograd recording, the out-of-place formula: gradients reach both factors' planes
    w = b1.clone().requires_grad_()
    y = a0.nonstd(a1) @ b0.nonstd(w)
    torchlc.coeff(y, 1).sum().backward()
    assert_close(w.grad, a0.T @ torch.ones(5, 4, dtype=a0.dtype), **TOL)


def test_unsupported_ops_name_themselves():
    x = R(2, 3).nonstd()
    with pytest.raises(NotImplementedError, match="aten"):
        torch.linalg.svd(x)


@pytest.mark.parametrize("dim", [1, 2, 3])
@pytest.mark.parametrize("kernel,stride,padding,dilation,ceil_mode",
                         [(2, 2, 0, 1, False), (3, 2, 1, 1, True), (3, 1, 1, 2, False), (2, 1, 1, 2, True)])
def test_max_pool_rule_matches_jvp_and_indices(dim, kernel, stride, padding, dilation, ceil_mode):
    # the LC rule for max_pool{2,3}d_with_indices (torch 2.11 has no decomposition for them): values
    # and tangent as jvp, indices as torch's (first maximum of each window, padding excluded)
    F = torch.nn.functional
    pool = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[dim]
    g = torch.Generator().manual_seed(dim)
    x = torch.randn((2, 3) + (7,) * dim, generator=g, dtype=torch.float64)
    v = torch.randn(x.shape, generator=g, dtype=torch.float64)

    def f(t, **kw):
        return pool(t, kernel, stride, padding, dilation, ceil_mode=ceil_mode, **kw)

    y, ind = f(x.nonstd(v), return_indices=True)
    y0, y1 = torch.func.jvp(f, (x,), (v,))
    torch.testing.assert_close(torchlc.coeff(y, 0), y0, rtol=0, atol=0)
    torch.testing.assert_close(torchlc.coeff(y, 1), y1, rtol=1e-12, atol=1e-12)
    assert torch.equal(ind, f(x, return_indices=True)[1])
    # ties in the field's order: the first maximum, as torch
    z = torch.zeros_like(x)
    assert torch.equal(f(z.nonstd(z), return_indices=True)[1], f(z, return_indices=True)[1])


@pytest.mark.parametrize("dim", [1, 2, 3])
@pytest.mark.parametrize("affine", [True, False])
def test_eval_batch_norm_is_one_affine_pass(dim, affine):
    # eval batch norm: y = α·x + β per channel, α scaling every plane and β only the ε⁰ plane: on CPU
    # one mul over all planes and β added in place to the ε⁰ plane (CUDA: one addcmul), no LC mul and
    # add, no cat; the ε¹ plane is exactly α·v
    torch.manual_seed(0)
    bn = getattr(torch.nn, f"BatchNorm{dim}d")(3, affine=affine).double().eval()
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        if affine:
            bn.weight.uniform_(0.5, 2)
            bn.bias.uniform_(-1, 1)
    shape = (4, 3) + (5,) * dim
    x, v = R(*shape), R(*shape, seed=1)
    with torch.no_grad(), torch.profiler.profile(record_shapes=True) as prof:
        y = bn(x.nonstd(v))
    big = [e.name for e in prof.events()
           if e.name in ("aten::addcmul", "aten::mul", "aten::add", "aten::add_", "aten::cat", "aten::sub")
           and e.input_shapes and e.input_shapes[0] and len(e.input_shapes[0]) > dim + 1]
    assert sorted(big) == ["aten::add_", "aten::mul"]
    val, tan = torch.func.jvp(bn, (x,), (v,))
    assert_close(torchlc.coeff(y, 0), val, **TOL)
    assert_close(torchlc.coeff(y, 1), tan, **TOL)
    # higher order and a support without ε¹: every plane scaled, β on ε⁰ only
    z = x + v * torchlc.eps(0.5, order=3) + x * torchlc.eps(2, order=3)
    with torch.no_grad():
        yz = bn(z)
    alpha = (bn.running_var + bn.eps).rsqrt() * (bn.weight if affine else 1)
    a = alpha.view((1, 3) + (1,) * dim)
    assert_close(torchlc.coeff(yz, 0.5), v * a, **TOL)
    assert_close(torchlc.coeff(yz, 2), x * a, **TOL)
    assert_close(torchlc.coeff(yz, 0), val, **TOL)
    # with grad: the parameters' gradients through the affine map agree with the reference formula
    if affine:
        loss = torchlc.coeff(bn(x.nonstd(v)), 1).square().sum()
        gw, = torch.autograd.grad(loss, [bn.weight])
        w = bn.weight.detach().requires_grad_()
        ref = (v * ((bn.running_var + bn.eps).rsqrt() * w).view((1, 3) + (1,) * dim)).square().sum()
        gref, = torch.autograd.grad(ref, [w])
        assert_close(gw, gref, **TOL)


@pytest.mark.parametrize("op", ["cudnn_batch_norm", "miopen_batch_norm"])
@pytest.mark.parametrize("training", [False, True])
def test_vendor_batch_norm_entries_are_one_dispatch(op, training):
    # torch.batch_norm calls cuDNN's (or MIOpen's) entry for CUDA float32 inputs: it is a rule of its
    # own (one LC dispatch, the affine pass in eval), equal to the native batch norm
    def make():
        bn = torch.nn.BatchNorm2d(3).double().train(training)
        with torch.no_grad():
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
            bn.weight.uniform_(0.5, 2)
            bn.bias.uniform_(-1, 1)
        return bn

    torch.manual_seed(0)
    a, b = make(), make()
    b.load_state_dict(a.state_dict())
    x, v = R(4, 3, 5, 5), R(4, 3, 5, 5, seed=1)
    args = (a.weight, a.bias, a.running_mean, a.running_var, training, 0.1, 1e-5)
    seen = []
    xl = x.nonstd(v)
    inner = LCTensor._dispatcher
    with torch.no_grad(), pytest.MonkeyPatch.context() as mp:
        mp.setattr(LCTensor, "_dispatcher", staticmethod(lambda f, a, k: seen.append(f.__name__) or inner(f, a, k)))
        got = getattr(torch.ops.aten, op).default(xl, *args)
    # its own rule (first), and in eval nothing else: the affine pass runs on the planes
    assert seen[0] == f"{op}.default" and (training or len(seen) == 1), seen
    with torch.no_grad():
        want = torch.ops.aten.native_batch_norm.default(
            x.nonstd(v), b.weight, b.bias, b.running_mean, b.running_var, training, 0.1, 1e-5)
    assert torch.equal(torchlc.coeffs(got[0]), torchlc.coeffs(want[0]))
    assert torch.equal(a.running_mean, b.running_mean) and torch.equal(a.running_var, b.running_var)


def test_plain_bias_adds_write_planes_once():
    # an LC value plus a plain tensor: the sum into the ε⁰ plane, the ε¹ plane copied, no cat
    x, v, b = R(4, 6), R(4, 6, seed=1), R(6, seed=2)
    xl = x.nonstd(v)
    with torch.no_grad(), torch.profiler.profile() as prof:
        y = xl + b
    names = [e.name for e in prof.events()]
    assert "aten::cat" not in names
    assert torch.equal(torchlc.coeff(y, 1), v) and torch.equal(torchlc.coeff(y, 0), x + b)
    # mixed dtypes promote as torch does; grad recording keeps the out-of-place formula
    y32 = x.float().nonstd(v.float()) + b
    assert y32.dtype == torch.float64 and torch.equal(torchlc.coeff(y32, 1), v.float().double())
    bg = b.clone().requires_grad_()
    torchlc.coeff(x.nonstd(v) + bg, 0).sum().backward()
    assert torch.equal(bg.grad, torch.full_like(b, 4.0))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_plain_adds_give_the_same_planes_recorded_or_not(dtype):
    """LC + a plain tensor of the planes' dtype, with autograd recording (one broadcast add, −0.0 on
    the planes other than ε⁰) and without (the sum written into the ε⁰ plane, the others copied):
    the same planes bit for bit, signed zeros, ±inf and NaN included, for broadcasts either way,
    first-order and three-plane series, empty tensors; and the same dtype and shape as without."""
    import itertools

    from torchlc import _algebra as A
    from torchlc._series import Series, plain

    specials = torch.tensor([float("nan"), float("inf"), -float("inf"), -0.0, 0.0, -0.0, 1.5, -2.0])
    cases = [((3, 4), (4,)), ((2, 3, 4), (3, 1)), ((5,), (5,)), ((2, 3), (1, 3)), ((0, 3), (3,)),
             ((3,), (2, 3)), ((1, 4), (3, 1))]
    supports = [A.FIRST_ORDER, (A.S.ZERO, A.Fraction(1), A.Fraction(2)), (A.Fraction(-1), A.S.ZERO)]
    for (pshape, bshape), support in itertools.product(cases, supports):
        g = torch.Generator().manual_seed(len(pshape) * 10 + len(bshape))
        P = torch.randn(len(support), *pshape, generator=g).to(dtype)
        b = torch.randn(bshape, generator=g).to(dtype)
        if P.numel():
            P.view(-1)[: min(P.numel(), 8)] = specials[: min(P.numel(), 8)].to(dtype)
        b.view(-1)[: min(b.numel(), 8)] = specials.flip(0)[: min(b.numel(), 8)].to(dtype)
        free = A.add(Series(P.clone(), support, 1), plain(b)).planes
        rec = A.add(Series(P.clone().requires_grad_(), support, 1), plain(b)).planes.detach()
        assert rec.shape == free.shape and rec.dtype == free.dtype, (pshape, bshape, support)
        assert torch.equal(rec.nan_to_num(7.5), free.nan_to_num(7.5)), (pshape, bshape, support)
        num = ~free.isnan()  # (a NaN's sign bit means nothing; an add may return the canonical NaN)
        assert torch.equal(rec.signbit()[num], free.signbit()[num]), (pshape, bshape, support)


def test_mixed_dtype_biases_act_as_torch_in_every_grad_mode():
    """A float32 bias on bfloat16 LC planes: addmm/baddbmm raise as torch's do (no promotion there),
    and LC + the bias promotes as torch's add, with or without autograd recording (the in-place ε⁰
    write kept bfloat16 planes without recording)."""
    x = torch.randn(3, 4, dtype=torch.bfloat16).nonstd(torch.randn(3, 4, dtype=torch.bfloat16))
    w, b = torch.randn(5, 4, dtype=torch.bfloat16), torch.randn(5)
    with pytest.raises(RuntimeError, match="same dtype"):
        torch.addmm(b, torch.randn(3, 4, dtype=torch.bfloat16), w.t())  # torch's own behaviour
    for grad in (False, True):
        with torch.set_grad_enabled(grad):
            with pytest.raises(RuntimeError, match="same dtype"):
                torch.addmm(b.clone().requires_grad_(grad), x, w.t())
            with pytest.raises(RuntimeError, match="same dtype|dtypes must be the same"):  # torch's words
                torch.baddbmm(b[:4].clone().requires_grad_(grad), x[None], torch.randn(1, 4, 4, dtype=torch.bfloat16))
            y = torch.mm(x, w.t()) + b.clone().requires_grad_(grad)
            assert y.dtype == torch.float32 == (torch.randn(3, 5, dtype=torch.bfloat16) + b).dtype
            assert torch.equal(torchlc.coeff(y, 0), torchlc.coeff(torch.mm(x, w.t()), 0).float() + b)


def test_eval_batch_norm_never_uses_stale_statistics():
    # the eval affine map is cached by the identity and version of parameters and statistics: every
    # way of changing them (in place, reassignment, load_state_dict, an optimizer step) is seen
    torch.manual_seed(0)
    bn = torch.nn.BatchNorm2d(3).double().eval()
    x, v = R(2, 3, 4, 4), R(2, 3, 4, 4, seed=1)

    def check_against_jvp():
        with torch.no_grad():
            y = bn(x.nonstd(v))
        val, tan = torch.func.jvp(bn, (x,), (v,))
        assert_close(torchlc.coeff(y, 0), val, **TOL)
        assert_close(torchlc.coeff(y, 1), tan, **TOL)

    check_against_jvp()
    with torch.no_grad():
        bn.running_var.mul_(3.0)
        bn.running_mean.add_(1.0)
    check_against_jvp()
    bn.weight = torch.nn.Parameter(torch.full((3,), 2.0, dtype=torch.float64))
    check_against_jvp()
    sd = {k: t.clone() + 0.5 if t.is_floating_point() else t for k, t in bn.state_dict().items()}
    bn.load_state_dict(sd)
    check_against_jvp()
    opt = torch.optim.SGD(bn.parameters(), lr=0.1)
    torchlc.coeff(bn(x.nonstd(v)), 1).sum().backward()
    opt.step()
    check_against_jvp()
    with torch.inference_mode():  # inference tensors have no version counter: computed afresh
        y = bn(x.nonstd(v))
    assert_close(torchlc.coeff(y, 1), torch.func.jvp(bn, (x,), (v,))[1], **TOL)
