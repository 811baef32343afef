"""torch.compile and torchlc.compile on LC code: values equal eager, gradients equal eager,
speculated supports fall back to eager, in-place mutation of inputs is kept, cache keys carry
the rule hash."""

import torch

import torchlc

f64 = torch.float64


def _mlp():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.ReLU(), torch.nn.Linear(5, 2)).double()


def test_dynamo_lc_in_lc_out_fullgraph_no_grad():
    m = _mlp()
    x = torch.randn(4, 3, dtype=f64).nonstd(torch.randn(4, 3, dtype=f64))
    with torch.no_grad():
        y = torch.compile(m, backend="aot_eager", fullgraph=True)(x)
        ref = m(x)
    assert isinstance(y, torchlc.LCTensor)
    assert torchlc.support(y) == torchlc.support(ref)
    torch.testing.assert_close(torchlc.coeffs(y), torchlc.coeffs(ref), rtol=0, atol=0)


def test_torchlc_compile_training_gradients_equal_eager():
    m = _mlp()
    x = torch.randn(4, 3, dtype=f64)
    v = torch.randn(4, 3, dtype=f64)

    def loss_fn(z):
        y = torch.tanh(m(z)) / (1 + z.abs().sum())
        return y

    step = torchlc.compile(loss_fn, backend="aot_eager", fullgraph=True)
    grads = []
    for fn in (step, loss_fn):
        m.zero_grad()
        y = fn(x.nonstd(v))
        (torchlc.coeff(y, 1) ** 2).sum().backward()
        grads.append([p.grad.clone() for p in m.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_speculated_support_falls_back_to_eager():
    recip = torchlc.compile(lambda z: 1 / z, backend="aot_eager")
    a = recip(torch.tensor([1.0, 2.0], dtype=f64).nonstd())      # traced: every element led by ε⁰
    b = recip(torch.tensor([0.0, 2.0], dtype=f64).nonstd())      # 1/ε: another lead, eager fallback
    assert torchlc.support(a) == (0, 1)
    assert torchlc.coeff(b, -1).tolist() == [1.0, 0.0]
    assert torchlc.coeff(b, 0).tolist() == [0.0, 0.5]


def _mutate(x):
    x.add_(1.0)
    x.mul_(2.0)
    return x.sin()


def test_input_mutation_survives_compilation():
    for compiled in (
        torch.compile(_mutate, backend="aot_eager", fullgraph=True),
        torchlc.compile(_mutate, backend="aot_eager"),
    ):
        for _ in range(2):  # trace call and cached call
            x = torch.tensor([0.5, -1.0], dtype=f64).nonstd(torch.tensor([1.0, 3.0], dtype=f64))
            with torch.no_grad():
                compiled(x)
            assert torchlc.coeff(x, 0).tolist() == [3.0, 0.0]
            assert torchlc.coeff(x, 1).tolist() == [2.0, 6.0]


def test_flatten_context_carries_the_rule_hash():
    x = torch.ones(2).nonstd()
    names, ctx = x.__tensor_flatten__()
    assert torchlc.ops.RULES_HASH in ctx
    y = torchlc.LCTensor.__tensor_unflatten__({n: getattr(x, n) for n in names}, ctx, x.shape, x.stride())
    assert torch.equal(torchlc.coeffs(y), torchlc.coeffs(x))
