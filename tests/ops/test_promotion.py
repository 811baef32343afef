"""Type promotion as torch's, decided on the elements.

An LC operand's planes carry an extra leading dim, so a rule computing on them would promote an LC
operand of 0-d elements, or a plain 0-d operand, as a dimensioned tensor (float32 + a float64 0-d
tensor gave float64). The dispatcher decides promotion once, on the elements (``_dispatch._promoted``).
Property over the promoting elementwise ops, LC dtypes, 0-d and dimensioned LC operands, and every
kind of other operand on either side: the result's dtype and shape are torch's, and where torch
refuses, LC refuses too."""

import itertools

import pytest
import torch

import torchlc  # noqa: F401  (registers Tensor.nonstd)

OPS = {
    "add": torch.add, "sub": torch.sub, "rsub": torch.rsub, "mul": torch.mul, "div": torch.div,
    "div floor": lambda a, b: torch.div(a, b, rounding_mode="floor"), "pow": torch.pow,
    "maximum": torch.maximum, "minimum": torch.minimum, "fmax": torch.fmax, "fmin": torch.fmin,
    "atan2": torch.atan2, "hypot": torch.hypot, "copysign": torch.copysign, "fmod": torch.fmod,
    "remainder": torch.remainder, "xlogy": torch.xlogy, "floor_divide": torch.floor_divide,
    "where": lambda a, b: torch.where(torch.tensor(True), a, b), "eq": torch.eq, "lt": torch.lt, "ge": torch.ge,
    "clamp min": lambda a, b: torch.clamp(a, min=b), "clamp max": lambda a, b: torch.clamp(a, max=b),
}
OTHERS = {
    "f64 tensor": lambda: torch.tensor([1.5, 2.0, 3.0], dtype=torch.float64),
    "bf16 tensor": lambda: torch.tensor([1.5, 2.0, 3.0], dtype=torch.bfloat16),
    "int tensor": lambda: torch.tensor([1, 2, 3]),
    "bool tensor": lambda: torch.tensor([True, False, True]),
    "f32 0-d": lambda: torch.tensor(2.0),
    "f64 0-d": lambda: torch.tensor(2.0, dtype=torch.float64),
    "f16 0-d": lambda: torch.tensor(2.0, dtype=torch.float16),
    "int 0-d": lambda: torch.tensor(2),
    "float": lambda: 2.5,
    "int": lambda: 2,
}
LC_DTYPES = [torch.float32, torch.float64, torch.bfloat16, torch.float16]


def _outcome(op, args):
    try:
        r = op(*args)
    except (RuntimeError, TypeError) as e:
        return type(e)
    return r.dtype, tuple(r.shape)


@pytest.mark.parametrize("name", list(OPS))
def test_lc_results_promote_as_torch(name):
    op = OPS[name]
    wrong = []
    for dtype, (other, make), zero_dim, side in itertools.product(LC_DTYPES, OTHERS.items(), (False, True), (0, 1)):
        x = torch.tensor(0.75, dtype=dtype) if zero_dim else torch.tensor([0.5, -1.25, 2.0], dtype=dtype)
        o = make()
        plain = (x, o) if side == 0 else (o, x)
        lc = (x.nonstd(), o) if side == 0 else (o, x.nonstd())
        want, got = _outcome(op, plain), _outcome(op, lc)
        if isinstance(want, type):
            ok = isinstance(got, type)  # torch refuses: so does LC
        else:
            ok = got == want
        if not ok:
            wrong.append((str(dtype), other, "0-d LC" if zero_dim else "LC", "LC first" if side == 0 else "LC second",
                          want, got))
    assert not wrong, wrong


DTYPE_ARGS = {
    "sum": lambda t: t.sum(dtype=torch.float64), "sum dim": lambda t: t.sum(-1, dtype=torch.float64),
    "mean": lambda t: t.mean(-1, dtype=torch.float64), "prod": lambda t: t.prod(-1, dtype=torch.float64),
    "prod all": lambda t: t.prod(dtype=torch.float64), "cumsum": lambda t: t.cumsum(-1, dtype=torch.float64),
    "softmax": lambda t: torch.softmax(t, -1, dtype=torch.float64),
    "log_softmax": lambda t: torch.log_softmax(t, -1, dtype=torch.float64),
    "vector_norm": lambda t: torch.linalg.vector_norm(t, dim=-1, dtype=torch.float64),
    "clamp by 0-d": lambda t: t.clamp(min=torch.tensor(0.0, dtype=torch.float64)),
    "clamp by tensor": lambda t: t.clamp(min=torch.zeros(3, dtype=torch.float64)),
    "addcmul": lambda t: torch.addcmul(t, t, torch.ones(3, dtype=torch.float64)),
    "matmul": lambda t: t @ torch.ones(3, 2, dtype=torch.float64),
}


@pytest.mark.parametrize("name", list(DTYPE_ARGS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_dtype_arguments_and_mixed_operands_give_torchs_dtype(name, dtype):
    """Reductions with a dtype argument, clamps by tensors and mixed-dtype products: torch's result
    dtype and shape (prod ignored its dtype; a 0-d float64 clamp bound made the result float64)."""
    f = DTYPE_ARGS[name]
    x = torch.tensor([[0.5, -1.25, 2.0], [3.0, 0.25, -0.5]], dtype=dtype)
    assert _outcome(f, (x.nonstd(),)) == _outcome(f, (x,))
