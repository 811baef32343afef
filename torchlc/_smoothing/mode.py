"""The torch function mode that routes plain-tensor jump ops through smoothing, and its installation.

Which smoothing is in effect is context-local (``_context.SMOOTHING``: thread, asyncio task,
``contextvars.Context``). torch's stack of function modes is only thread-local: the asyncio tasks and
generators of one thread share it. So the mode decides nothing itself: for every call in its table
it reads ``_context.smoothing()`` and passes through when that is None (a task or generator without
smoothing, sharing the thread with one that has it).

Installation is per thread and reference-counted: :func:`activate` (a block's enter) pushes the
thread's one mode when the thread's first block enters; :func:`deactivate` (a block's exit) removes
it when the thread's last block exits, by identity, wherever it sits on torch's stack (modes pushed
above it since stay, in order), so blocks may exit in any order and another mode is never popped. A
block that exits on another thread than the one it entered on (a generator resumed elsewhere)
cannot touch the entering thread's stack: its count drops there, and the entering thread keeps the
idle mode until its next block exits (inert meanwhile: it only reads the smoothing stack).
"""

from __future__ import annotations

import threading

import torch
from torch._C import (
    _len_torch_function_stack,
    _pop_torch_function_stack,
    _push_on_torch_function_stack,
)
from torch.overrides import TorchFunctionMode

from .. import _context
from .handlers import HANDLERS

__all__ = ["SmoothingMode", "activate", "deactivate", "installed"]


class SmoothingMode(TorchFunctionMode):
    """Routes plain-tensor jump ops through the smoothed autograd Functions of the innermost block of
    the current context; everything else, and everything outside a block, passes through."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        h = HANDLERS.get(func)
        if h is not None:
            cfg = _context.smoothing()
            if cfg is not None:
                r = h(cfg, func, args, kwargs)
                if r is not NotImplemented:
                    return r
        return func(*args, **kwargs)


class _Thread:
    """One thread's installation: its mode (None when not installed) and its number of open blocks."""

    __slots__ = ("ident", "mode", "count", "lock")

    def __init__(self):
        self.ident = threading.get_ident()
        self.mode = None
        self.count = 0
        self.lock = threading.Lock()  # only a cross-thread exit ever contends


_LOCAL = threading.local()


def _this_thread() -> _Thread:
    t = getattr(_LOCAL, "state", None)
    if t is None:
        t = _LOCAL.state = _Thread()
    return t


def _remove(mode) -> bool:
    """Take ``mode`` off this thread's torch function-mode stack by identity; the modes above it go
    back in their order. False (and the stack unchanged) if it is not there."""
    above = []
    found = False
    while _len_torch_function_stack():
        m = _pop_torch_function_stack()
        if m is mode:
            found = True
            break
        above.append(m)
    for m in reversed(above):
        _push_on_torch_function_stack(m)
    return found


def _sync(t: _Thread) -> None:
    """Make this thread's stack agree with its count (call on the owning thread, lock held)."""
    if t.count > 0 and t.mode is None:
        t.mode = SmoothingMode()
        _push_on_torch_function_stack(t.mode)
    elif t.count == 0 and t.mode is not None and _remove(t.mode):
        t.mode = None
    # a mode not found (exit inside another mode's handler, which has popped it for the call) stays
    # recorded, inert, and is removed at the next activate/deactivate of this thread


def activate() -> _Thread:
    """A block enters on this thread: install the mode if it is the thread's first. Returns the
    token for :func:`deactivate`."""
    t = _this_thread()
    with t.lock:
        t.count += 1
        _sync(t)
    return t


def deactivate(t: _Thread) -> None:
    """The block that :func:`activate` returned ``t`` for exits (on any thread)."""
    with t.lock:
        t.count = max(t.count - 1, 0)
        if t.ident == threading.get_ident():
            _sync(t)


def installed() -> bool:
    """Whether this thread has the smoothing mode on torch's function-mode stack (for tests)."""
    t = getattr(_LOCAL, "state", None)
    if t is None or t.mode is None:
        return False
    return any(torch._C._get_function_stack_at(i) is t.mode for i in range(_len_torch_function_stack()))
