"""Graph passes on ``torchlc.compile``'s traced plane graphs, before Inductor: exact rewrites that let
Inductor compute both planes of an element in one thread.

A first-order rule's result is a stack of planes ``(T, *shape)``. Three patterns in the traced graphs
make Inductor write tensors out only to read them back, or read every plane once per *output*
element instead of once per element:

* an **in-place rule's write-back**, ``dst.copy_(result)`` (``relu_``, ``+=``): ``dst`` must exist as
  a buffer, so its producer (a BatchNorm's affine) is written out only to be overwritten;
* a **decision broadcast over the planes**, ``where(mask, 0, P)`` with ``mask`` of shape ``shape``
  computed from ``P[0]`` and ``P[1]`` (relu, abs, clamp): Inductor inlines the mask into the kernel
  over ``(T, *shape)``, so each of the ``T·n`` outputs reads both planes;
* a **pick of a plane from a stack**, ``stack([a, b])[0]``: the next rule's ``P[0]`` reads the
  stack's buffer, so the stack must be written out and its producer cannot fuse into the consumer.

:func:`functional_copies` replaces the first by the value written (later readers rewired to it),
:func:`unroll_plane_broadcasts` writes the second as ``stack([where(mask, 0, P[0]), where(mask, 0,
P[1])])`` (the same op per plane: bit for bit the same numbers), and :func:`push_selects` takes
planes from what a tensor was built of (``stack([a, b])[i]`` is the i-th input; through cats, slices,
expands and pointwise ops). Each applies only where no in-place write can tell the rewritten values
apart. With them, Inductor fuses a convolution's BatchNorm, residual add and ReLU into one kernel that
reads each plane once and writes both result planes, as it does for the plain model
(``tests/test_plane_passes.py`` checks the rewrites bit for bit on a catalogue of graphs, and
Inductor's CPU code for such a block).
"""

from __future__ import annotations

import operator

import torch
from torch import fx

aten = torch.ops.aten

#: planes a pointwise node may have for :func:`unroll_plane_broadcasts` (first order is 2; a few more
#: keep small higher-order graphs in reach without unrolling long series)
MAX_PLANES = 4


def _is_view(node: fx.Node) -> bool:
    """An aten op returning an alias of its first argument (view, select, expand, unbind's items, ...)."""
    t = node.target
    if node.op == "call_function" and t is operator.getitem:
        return _is_view(node.args[0])
    if node.op != "call_function" or not isinstance(t, torch._ops.OpOverload):
        return False
    rets = t._schema.returns
    return bool(rets) and rets[0].alias_info is not None and not rets[0].alias_info.is_write


def _mutated(node: fx.Node) -> list:
    """The nodes an in-place (or out=) op writes into."""
    t = node.target
    if node.op != "call_function" or not isinstance(t, torch._ops.OpOverload) or not t._schema.is_mutable:
        return []
    out = []
    for i, a in enumerate(t._schema.arguments):
        if a.alias_info is not None and a.alias_info.is_write:
            v = node.args[i] if i < len(node.args) else node.kwargs.get(a.name)
            if isinstance(v, fx.Node):
                out.append(v)
    return out


def _root(node: fx.Node) -> fx.Node:
    while _is_view(node):
        node = node.args[0]
    return node


def _views_of(node: fx.Node) -> set:
    """``node`` and every node that is a view of it, transitively."""
    seen, todo = {node}, [node]
    while todo:
        for u in todo.pop().users:
            if u not in seen and _is_view(u):
                seen.add(u)
                todo.append(u)
    return seen


def _per_element(t) -> bool:
    """A pointwise aten op that may run per plane: not in place (splitting would write views) and
    not random (splitting would change which random numbers each element gets)."""
    return (isinstance(t, torch._ops.OpOverload) and torch.Tag.pointwise in t.tags and not t._schema.is_mutable
            and torch.Tag.nondeterministic_seeded not in t.tags)


def _dense(t: torch.Tensor) -> bool:
    return torch._prims_common.is_non_overlapping_and_dense_or_false(t)


def _val(node):
    v = node.meta.get("val") if isinstance(node, fx.Node) else None
    return v if isinstance(v, torch.Tensor) else None


_REDUCING = (aten._softmax.default, aten._log_softmax.default, aten.cumsum.default, aten.cumprod.default)


def _feeds_a_reduction(n: fx.Node) -> bool:
    """Whether a reduction reads ``n`` (directly or through views)."""
    return any(u.op == "call_function" and (u.target in _REDUCING or isinstance(u.target, torch._ops.OpOverload)
                                            and torch.Tag.reduction in u.target.tags)
               for v in _views_of(n) for u in v.users)


def unroll_plane_broadcasts(gm: fx.GraphModule) -> int:
    """Write a pointwise op over planes ``(T, *shape)`` that broadcasts an operand of the planes' own
    size along the plane dimension (a mask, a ``shape``-sized tensor) as one op per plane, stacked:
    Inductor then computes the broadcast operand once per element instead of once per plane.
    Returns the nodes rewritten."""
    g = gm.graph
    done = 0
    for n in list(g.nodes):
        t = n.target
        if n.op != "call_function" or not _per_element(t):
            continue
        out = _val(n)
        if out is None or out.dim() < 2 or not 2 <= out.shape[0] <= MAX_PLANES or n.kwargs:
            continue
        T, nd = out.shape[0], out.dim()
        kinds = []
        for a in n.args:
            v = _val(a)
            if v is None:
                kinds.append(None)
            elif v.dim() == nd and v.shape[0] == T:
                kinds.append("plane")
            elif v.dim() == nd and v.shape[0] == 1:
                kinds.append("one")
            else:
                kinds.append("shared")
        if _feeds_a_reduction(n):
            continue  # Inductor fuses the op into the reduction's loop; a stack would be written out
        # worth it only when a shared operand is as large as a plane: a per-channel scale is cheap to
        # read again, a mask computed from both planes is not
        plane_numel = out.numel() // T
        if "plane" not in kinds or not any(
                k in ("shared", "one") and _val(a).numel() >= plane_numel for k, a in zip(kinds, n.args)):
            continue
        with g.inserting_before(n):
            parts = []
            for i in range(T):
                args = []
                for k, a in zip(kinds, n.args):
                    if k in ("plane", "one"):
                        sel = g.call_function(aten.select.int, (a, 0, i if k == "plane" else 0))
                        sel.meta["val"] = _val(a).select(0, i if k == "plane" else 0)
                        args.append(sel)
                    else:
                        args.append(a)
                p = g.call_function(t, tuple(args))
                p.meta["val"] = out.select(0, i)
                parts.append(p)
            st = g.call_function(aten.stack.default, (parts,))
            st.meta["val"] = out
        n.replace_all_uses_with(st)
        g.erase_node(n)
        done += 1
    if done:
        gm.recompile()
    return done


def functional_copies(gm: fx.GraphModule) -> int:
    """Replace ``dst.copy_(src)`` by the value it writes, a new tensor, where ``dst`` is a tensor the
    graph made (not an input, not a view): the write of an in-place rule's result back into its
    operand (``relu_``, ``add_``, ``+=``). Readers of ``dst`` after the write read the new tensor
    instead (views of it taken after the write too), so Inductor need not write ``dst`` out only to
    overwrite it, and its producer can fuse into the next kernel. Not where a view of ``dst`` taken
    before the write is read after it (it would have to see the write). Returns the copies replaced."""
    g = gm.graph
    done = 0
    for n in list(g.nodes):
        if n.op != "call_function" or n.target is not aten.copy_.default or n.kwargs:
            continue
        dst = n.args[0]
        if not isinstance(dst, fx.Node) or dst.op != "call_function" or _is_view(dst) or _mutated(dst):
            continue
        order = {m: i for i, m in enumerate(g.nodes)}
        at = order[n]
        early_views = [w for w in _views_of(dst) if w is not dst and order[w] < at]
        if any(order[r] > at for w in early_views for v in _views_of(w) for r in v.users):
            continue
        later = [u for u in dst.users if u is not n and order[u] > at]
        c = _copy_value(g, n, dst, n.args[1])
        n.replace_all_uses_with(c)
        for u in later:
            u.replace_input_with(dst, c)
        g.erase_node(n)
        done += 1
    if done:
        gm.recompile()
    return done


def _copy_value(g: fx.Graph, n: fx.Node, dst: fx.Node, src) -> fx.Node:
    """The value ``dst.copy_(src)`` leaves in ``dst``, as a new tensor that does not read ``dst``
    (Inductor would write ``dst`` out only to overwrite it): a clone of ``src`` where it has ``dst``'s
    shape, dtype and (dense) strides, ``src`` broadcast and converted where ``dst`` is contiguous,
    ``aten.copy(dst, src)`` otherwise."""
    d, s = _val(dst), _val(src)
    known = d is not None and s is not None and s.device == d.device
    with g.inserting_before(n):
        if known and s.shape == d.shape and s.dtype == d.dtype and s.stride() == d.stride() and _dense(s):
            c = g.call_function(aten.clone.default, (src,))  # keeps dense strides
        elif known and d.is_contiguous():
            if s.shape != d.shape:
                src = g.call_function(aten.expand.default, (src, list(d.shape)))
                src.meta["val"] = s.expand(d.shape)
            c = g.call_function(aten._to_copy.default, (src,), {"dtype": d.dtype,
                                                                 "memory_format": torch.contiguous_format})
        else:
            c = g.call_function(aten.copy.default, (dst, src))
    c.meta.update(n.meta)
    return c


def _picks(node: fx.Node):
    """``(source, i)`` when ``node`` takes plane ``i`` of ``source``: ``select(source, 0, i)`` or
    ``unbind(source)[i]``; None otherwise."""
    if node.op != "call_function":
        return None
    if node.target is aten.select.int and len(node.args) == 3 and node.args[1] == 0 and not node.kwargs:
        src, i = node.args[0], node.args[2]
    elif node.target is operator.getitem and isinstance(node.args[0], fx.Node) \
            and node.args[0].target is aten.unbind.int and (node.args[0].args[1:] or (0,))[0] == 0:
        src, i = node.args[0].args[0], node.args[1]
    else:
        return None
    v = _val(src)
    if not isinstance(src, fx.Node) or v is None or v.dim() == 0 or not isinstance(i, int):
        return None
    return src, i + v.shape[0] if i < 0 else i


def _pushed(g: fx.Graph, src: fx.Node, i: int, frozen: set):
    """A node with the value of ``src[i]`` that does not read ``src``, or None (see
    :func:`push_selects`). New nodes go before ``src``'s pick, which the caller set as insert point."""
    t, args = src.target, src.args
    v = _val(src)
    if src.op != "call_function" or src.kwargs and t is not aten.expand.default:
        return None
    if t is aten.stack.default and (args[1:] or (0,))[0] == 0:
        return args[0][i]
    if t is aten.unsqueeze.default and args[1] == 0:
        return args[0]
    if t is aten.cat.default and (args[1:] or (0,))[0] == 0:
        for x in args[0]:
            n = _val(x).shape[0]
            if i < n:
                return _select(g, x, i)
            i -= n
        return None
    if t is aten.slice.Tensor and (args[1:] or (0,))[0] == 0:
        n = _val(args[0]).shape[0]
        start = args[2] if len(args) > 2 else None
        step = args[4] if len(args) > 4 else 1
        start = 0 if start is None else (start + n if start < 0 else min(start, n))
        return _select(g, args[0], start + i * step)
    if t is aten.expand.default and not src.kwargs:
        y = _val(args[0])
        inner = _select(g, args[0], i if y.shape[0] == v.shape[0] else 0) if y.dim() == v.dim() else args[0]
        if tuple(_val(inner).shape) == tuple(v.shape[1:]):
            return inner
        e = g.call_function(aten.expand.default, (inner, list(v.shape[1:])))
        e.meta["val"] = v.select(0, i)
        return e
    # (planes of at least one dim each: a 0-d plane would take part in type promotion as a scalar)
    if _per_element(t) and src not in frozen and v.dim() >= 2:
        if not all(_picks(u) is not None or u.target is aten.unbind.int and (u.args[1:] or (0,))[0] == 0
                   for u in src.users):
            return None  # computed whole for another reader: picking from it costs nothing more
        new = []
        for a in args:
            va = _val(a)
            if va is None or va.dim() < v.dim():
                new.append(a)
            elif va.shape[0] == v.shape[0]:
                new.append(_select(g, a, i))
            else:  # broadcast along the planes
                new.append(_select(g, a, 0))
        p = g.call_function(t, tuple(new))
        p.meta["val"] = v.select(0, i)
        return p
    return None


def _select(g: fx.Graph, x: fx.Node, i: int) -> fx.Node:
    n = g.call_function(aten.select.int, (x, 0, i))
    n.meta["val"] = _val(x).select(0, i)
    return n


def push_selects(gm: fx.GraphModule) -> int:
    """Take planes from what a tensor was built of instead of from the tensor: ``stack(xs)[i]`` is
    ``xs[i]``, ``cat(xs)[i]`` a plane of the input holding it, ``slice``/``unsqueeze``/``expand`` map
    the index, and a pointwise op whose readers all take planes is computed per plane. The tensors
    then need not be written out, so producers fuse into consumers.

    Only where no in-place write can tell the values apart: nothing rewritten reads or is a tensor
    (or a view of one) that the graph writes into. Returns the picks replaced."""
    done = 0
    while n := _push_selects_once(gm.graph):  # readers a sweep removed may free more: to a fixed point
        done += n
        gm.graph.eliminate_dead_code()
    if done:
        gm.recompile()
    return done


def _push_selects_once(g: fx.Graph) -> int:
    written = {_root(m) for n in g.nodes for m in _mutated(n)}
    frozen = {n for n in g.nodes if _root(n) in written}
    done = 0
    todo = [n for n in g.nodes if _picks(n) is not None]
    while todo:
        pick = todo.pop()
        if pick.graph is not g or not pick.users and pick.op != "output":
            continue
        found = _picks(pick)
        if found is None or found[0] in frozen or any(isinstance(a, fx.Node) and _root(a) in written
                                                        for a in found[0].all_input_nodes):
            continue
        src, i = found
        if any(u.op == "output" for u in pick.users):
            continue  # a graph output keeps its strides
        with g.inserting_before(pick):
            rep = _pushed(g, src, i, frozen)
        if rep is None or rep is pick:
            continue
        pick.replace_all_uses_with(rep)
        done += 1
        todo += [u for u in rep.users if _picks(u) is not None]
        todo += [n for n in (rep, *rep.all_input_nodes) if _picks(n) is not None]
    return done
