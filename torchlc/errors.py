"""Errors and the strict-mode switch.

Outside the field (an analytic function of an infinite number, log of a non-positive number, an
even root of a negative number) torchlc returns NaN coefficients, like PyTorch does for real
numbers. Inside ``with torchlc.strict():`` the same situations raise :class:`DomainError`.
"""

from __future__ import annotations

import contextlib

from . import _context

__all__ = ["DomainError", "TruncationError", "TermBudgetError", "strict", "is_strict"]


class DomainError(ArithmeticError):
    """An operation left the Levi-Civita field (raised only inside :func:`strict`).

    Example:
        >>> import torch, torchlc
        >>> with torchlc.strict():
        ...     torchlc.eps(-1).exp()        # exp of an infinite number
        Traceback (most recent call last):
        ...
        torchlc.errors.DomainError: exp: argument is infinite (leading exponent < 0) ...
    """


class TruncationError(ArithmeticError):
    """A coefficient or a decision needs more terms than the tensor's truncation order kept.

    The message names the order that is needed, e.g. ``x.nonstd(order=2)``.

    Example:
        >>> import torch, torchlc
        >>> y = 1 / torchlc.eps() * (torch.tensor(1.0).nonstd() ** 2)   # ε⁻¹·(1+ε)² loses one order
        >>> torchlc.coeff(y, 1)
        Traceback (most recent call last):
        ...
        torchlc.errors.TruncationError: coefficient of ε^1 is not exact: ...
    """


class TermBudgetError(ValueError):
    """An op would need more series terms or exponents than the term budget (``torchlc._algebra.MAX_TERMS``, 4096).

    Raised at once, before any work, naming the count: e.g. 1/(1 + ε^(1/10⁹)) at order 1 needs a
    billion terms of the geometric series. Lower the truncation order or use coarser exponents.
    """


def is_strict() -> bool:
    """True inside a :func:`strict` block of this thread, task or context."""
    return _context.STRICT.get(False)


@contextlib.contextmanager
def strict(enabled: bool = True):
    """Raise :class:`DomainError` instead of producing NaN for results outside the field.

    Checking needs one host-device synchronisation per checked op, so it is off by default. The mode is
    context-local: other threads and asyncio tasks are not affected.

    Example:
        >>> import torch, torchlc
        >>> torchlc.eps().log()                        # log of an infinitesimal: NaN
        LCTensor(nan + nanε, order=1)
        >>> with torchlc.strict():
        ...     torchlc.eps().log()
        Traceback (most recent call last):
        ...
        torchlc.errors.DomainError: log: ...
    """
    with _context.STRICT.entered(bool(enabled)):
        yield
