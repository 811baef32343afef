"""The state ``torchlc.compile`` reads on every call: modules, closures and captured tensors.

A traced graph bakes in what ``fn`` reaches besides its arguments: module training flags and scalar
attributes, which parameters and buffers exist, Python scalars in closures, defaults and globals.
:func:`read_state` collects all of it into a hashable :class:`_State` (part of the cache key), and
the tensors it found (which the trace lifts to graph inputs). See :mod:`torchlc._compile`.
"""

from __future__ import annotations

import enum
import functools
import types
from fractions import Fraction

import torch

from ._tensor import LCTensor

_SCALAR_TYPES = frozenset({
    int, float, bool, complex, str, bytes, type(None), Fraction, torch.dtype, torch.device, torch.layout,
    torch.memory_format, torch.Size, type(Ellipsis), slice, range,
})
_MAX_ITEMS = 64  # longer tuples/lists/dicts (data, not configuration) are not keyed
_MAX_DEPTH = 6  # nesting of containers and functions followed
_MODULE_INTERNAL = frozenset(vars(torch.nn.Module()))  # what every module has: walked explicitly or not read by forward
_N_INTERNAL = len(_MODULE_INTERNAL)
_LIBRARIES = ("torch", "torchlc")  # functions and module classes of these are not walked
_GLOBAL_NAMES: dict = {}  # id(code) -> (code, names of globals it and its nested code may read)
_USER_FORWARD: dict = {}  # module class -> its forward when the class is the user's (walked), else None


_LIBRARY_MODULES: dict = {}  # module name -> whether it is torch's or torchlc's


def _library(obj) -> bool:
    mod = getattr(obj, "__module__", None) or ""
    hit = _LIBRARY_MODULES.get(mod)
    if hit is None:
        hit = _LIBRARY_MODULES[mod] = mod.split(".", 1)[0] in _LIBRARIES
    return hit


def _global_names(code) -> tuple:
    hit = _GLOBAL_NAMES.get(id(code))
    if hit is not None and hit[0] is code:
        return hit[1]
    names, stack = [], [code]
    while stack:
        c = stack.pop()
        names.extend(c.co_names)
        stack.extend(k for k in c.co_consts if isinstance(k, types.CodeType))
    names = tuple(dict.fromkeys(names))
    if len(_GLOBAL_NAMES) > 4096:
        _GLOBAL_NAMES.clear()
    _GLOBAL_NAMES[id(code)] = (code, names)
    return names


def _user_forward(cls):
    fwd = getattr(cls, "forward", None)
    fwd = fwd if type(fwd) is types.FunctionType and not _library(cls) else None
    _USER_FORWARD[cls] = fwd
    return fwd


_OWN_ATTRIBUTES: dict = {}  # module class -> the attribute names beyond _MODULE_INTERNAL of its last instance


def _own_attributes(cls, d) -> tuple:
    """(names, as a frozenset) in a module's ``__dict__`` that every module does not have, in dict
    order. Cached per class by the caller, valid while an instance has as many attributes and all of
    the cached ones (so the same)."""
    names = tuple(k for k in d if k not in _MODULE_INTERNAL)
    hit = _OWN_ATTRIBUTES[cls] = (names, frozenset(names))
    return hit


class _State:
    """One read of what a trace of ``fn`` may have baked in besides its inputs: ``items`` (hashable:
    scalars by value, tensors by id and ``requires_grad``, module classes, ``training`` flags,
    attribute names, hook handles, functions) and ``tensors`` (every tensor reached, in order; the
    cache entry keeps them alive, so their ids stay theirs).

    This runs on every call, so it is written for host time (~1-2 µs per module). With ``labels``,
    ``regions`` records where each module's or function's items start, with its name, for the
    recompile warning only."""

    __slots__ = ("items", "tensors", "regions", "seen")

    def __init__(self, labels: bool = False):
        self.items: list = []
        self.tensors: list = []
        self.regions = [] if labels else None
        self.seen: set = set()

    def label(self, i: int, old) -> str:
        """What item ``i`` (``old`` before) is: the module's or function's name and the attribute's."""
        name = "?"
        for start, path in self.regions:
            if start > i:
                break
            name = path
        items, new = self.items, self.items[i]
        if type(new) is tuple and len(new) == 5 and isinstance(new[0], type) and type(old) is tuple:
            fields = ("class", "training", "parameters", "buffers", "submodules")  # a module's header
            return ", ".join(f"{name}.{f} {a!r} -> {b!r}" for f, a, b in zip(fields, old, new) if a != b)
        if type(new) is tuple and new and type(new[0]) is str and type(old) is tuple:  # (attribute, type, value)
            return f"{name}.{new[0]} {old[-1]!r} -> {new[-1]!r}"
        for j in (i - 1, i - 2):  # a variable's name precedes its (type and) value
            if j >= 0 and type(items[j]) is str:
                var = "" if name.endswith(items[j]) else f" ({items[j]})"
                return f"{name}{var} {old!r} -> {new!r}"
            if j < 0 or type(items[j]) is not type:
                break
        if type(new) is int and type(old) is int:
            return f"{name}: a tensor (parameter, buffer or captured) was replaced"
        if type(new) is bool:
            return f"{name}: requires_grad {old} -> {new}"
        return name

    def value(self, v, path, depth=0):
        t = type(v)
        if t in _SCALAR_TYPES:
            self.items.append(t)
            self.items.append(v)
        elif isinstance(v, torch.Tensor):
            self.tensor(v)
        elif isinstance(v, torch.nn.Module):
            self.module(v, path, depth)
        elif t is types.FunctionType:
            self.function(v, path, depth)
        elif depth >= _MAX_DEPTH:
            return
        elif t is types.MethodType:
            self.value(v.__self__, path, depth + 1)
            self.value(v.__func__, path, depth + 1)
        elif t is functools.partial:
            self.value(v.func, path, depth + 1)
            self.value(v.args, path, depth + 1)
            self.value(v.keywords, path, depth + 1)
        elif t is tuple or t is list:
            if len(v) <= _MAX_ITEMS:
                self.items.append(t)
                self.items.append(len(v))
                for e in v:
                    self.value(e, path, depth + 1)
        elif t is dict:
            if len(v) <= _MAX_ITEMS:
                self.items.append(tuple(v))  # the keys (hashable), then the values
                for e in v.values():
                    self.value(e, path, depth + 1)
        elif isinstance(v, enum.Enum):
            self.items.append(v)
        elif callable(getattr(t, "cache_key", None)):  # torchlc.smoothing (a module's smoothing=)
            self.items.append(t)
            self.items.append(v.cache_key())

    def tensor(self, v):
        if type(v) is LCTensor:  # a captured LC tensor: its metadata and its storage tensors
            names, ctx = v.__tensor_flatten__()
            self.items.append(ctx)
            for n in names:
                self.tensor(getattr(v, n))
            return
        self.items.append(id(v))
        self.items.append(v.requires_grad)
        self.tensors.append(v)

    def module(self, m, path, depth):
        if id(m) in self.seen:
            return
        self.seen.add(id(m))
        if self.regions is not None:
            self.regions.append((len(self.items), path))
        items, d = self.items, m.__dict__
        cls = type(m)
        params, buffers, children = d["_parameters"], d["_buffers"], d["_modules"]
        items.append((cls, d["training"], len(params), len(buffers), len(children)))
        if d["_forward_hooks"] or d["_forward_pre_hooks"]:  # (the *_with_kwargs dicts share their handles)
            items.append((tuple(d["_forward_hooks"]), tuple(d["_forward_pre_hooks"])))
        tensors = self.tensors
        for ts in (params, buffers):
            for t in ts.values():
                if t is None:
                    items.append(None)
                elif type(t) is LCTensor:
                    self.tensor(t)
                else:
                    items.append(id(t))
                    items.append(t.requires_grad)
                    tensors.append(t)
        if len(d) > _N_INTERNAL:  # the module's own attributes (Linear: in_features, ...)
            own = _OWN_ATTRIBUTES.get(cls)
            if own is None or len(own[0]) + _N_INTERNAL != len(d) or not d.keys() >= own[1]:
                own = _own_attributes(cls, d)
            for k in own[0]:
                v = d[k]
                t = type(v)
                if t in _SCALAR_TYPES:
                    items.append((k, t, v))
                else:
                    items.append(k)
                    self.value(v, path and f"{path}.{k}", depth + 1)
        for k, c in children.items():
            if c is None:
                items.append(None)
            else:
                self.module(c, path and (f"{path}[{k}]" if k.isdigit() else f"{path}.{k}"), depth)
        fwd = _USER_FORWARD.get(cls, _USER_FORWARD)
        if fwd is _USER_FORWARD:
            fwd = _user_forward(cls)
        if fwd is not None:  # a user's forward: its defaults and the globals it names
            self.function(fwd, path and f"{path}.forward", depth)

    def function(self, f, path, depth):
        if id(f) in self.seen or depth > _MAX_DEPTH or _library(f) or "_torchlc_cache" in f.__dict__:
            return
        self.seen.add(id(f))
        if self.regions is not None:
            self.regions.append((len(self.items), path))
        self.items.append(f)  # the function itself (the key keeps it alive: its id is not reused)
        code = f.__code__
        if f.__closure__:
            for name, cell in zip(code.co_freevars, f.__closure__):
                try:
                    v = cell.cell_contents
                except ValueError:  # an empty cell (a name assigned later)
                    continue
                if self.regions is not None:
                    self.regions.append((len(self.items), f"{path}:{name}"))
                self.items.append(name)
                self.value(v, path and f"{path}:{name}", depth + 1)
        if f.__defaults__:
            self.value(f.__defaults__, path and f"{path}.__defaults__", depth + 1)
        if f.__kwdefaults__:
            self.value(f.__kwdefaults__, path and f"{path}.__kwdefaults__", depth + 1)
        g = f.__globals__
        for name in _global_names(code):
            v = g.get(name, g)
            if v is g or type(v) is types.ModuleType or isinstance(v, type):
                continue
            if self.regions is not None:
                self.regions.append((len(self.items), f"global {name}"))
            self.items.append(name)
            self.value(v, path and f"global {name}", depth + 1)


def _read_state(fn, labels: bool = False) -> _State:
    st = _State(labels)
    root = (getattr(fn, "__qualname__", None) or type(fn).__name__) if labels else None
    if isinstance(fn, (torch.nn.Module, types.FunctionType, types.MethodType, functools.partial)):
        st.value(fn, root)
    elif hasattr(fn, "__dict__"):  # another callable object: its attributes and its __call__
        st.items.append(type(fn))
        st.value(vars(fn), root, 1)
        call = type(fn).__dict__.get("__call__")  # a user class's own __call__ (torch's are not walked)
        if type(call) is types.FunctionType:
            st.function(call, root and f"{root}.__call__", 1)
    return st
