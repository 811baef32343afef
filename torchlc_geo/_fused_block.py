"""Whole-block fused autograd function for the eager CPU path (plain tensors, first order).

Computes exactly ``h + α·fc2(act(fc1(rms_norm(h))))`` (norm ``rms`` or ``none``, activation
``relu`` or ``tanh``) on the feature-major layout with embedding-bag kernels, and a hand-written
backward that gathers over the fan-out tables.  One autograd node per block instead of ~40 keeps
small models from being dispatch-bound.  Full-size ``(n, B)`` temporaries are kept to a minimum
(in-place bias/activation, ``vecdot`` reductions, in-place norm backward): at n = 256, B = 256 every
fresh 256 KiB buffer costs page faults on a first touch, which measured as much as the arithmetic.  :class:`~torchlc_geo.model.GeoSparseBlock` uses it only
where it applies (``compute_mode`` auto/fused on plain CPU tensors outside transforms and
compilation, no active DropPath); everything else takes the generic path.
"""

from __future__ import annotations

import threading

import torch

_A = torch.ops.aten


def _eb(x, idx_flat, offsets, w_flat):
    return _A._embedding_bag_forward_only(x, idx_flat, offsets, False, 0, False, w_flat)[0]


def _rev_weights(w, rev_eid):
    return torch.cat([w.reshape(-1), w.new_zeros(1)]).index_select(0, rev_eid)


_TLS = threading.local()


def _scratch(like: torch.Tensor) -> torch.Tensor:
    """A per-thread ``(n, B)`` buffer for pure temporaries (never saved, never returned): reusing it
    avoids page-faulting a fresh buffer on every call."""
    key = (tuple(like.shape), like.dtype, like.device)
    buf = getattr(_TLS, "buf", None)
    if buf is None or buf[0] != key:
        buf = (key, torch.empty_like(like, memory_format=torch.contiguous_format))
        _TLS.buf = buf
    return buf[1]


def _colmean_prod(a, b):
    # mean over features (dim 0) of a·b, as a (1, B) row
    return torch.mul(a, b, out=_scratch(a)).mean(0, keepdim=True)


class FusedBlock(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, nw, w1, b1, w2, b2, alpha, t1, t2, act, eps):
        idx1, off1 = t1[0], t1[1]
        idx2, off2 = t2[0], t2[1]
        # the norm's per-sample scale r commutes with the sparse layer: fc1(h·r) = fc1(h)·r, so the
        # normalised input is never materialised
        z1 = None
        if nw is not None:
            r = _colmean_prod(h, h).add_(eps).rsqrt_()
            nwg = nw.index_select(0, idx1).view_as(w1)
            W1 = w1 * nwg
            z1 = _eb(h, idx1, off1, W1.reshape(-1))
            if b1 is not None:
                z1 = torch.addcmul(b1[:, None], z1, r, out=z1)
            else:
                z1.mul_(r)
        else:
            r, nwg, W1 = None, None, w1
            z1 = _eb(h, idx1, off1, W1.reshape(-1))
            if b1 is not None:
                z1.add_(b1[:, None])
        a = z1.relu_() if act == "relu" else z1.tanh_()
        W2 = w2 * alpha
        z2 = _eb(a, idx2, off2, W2.reshape(-1))
        if b2 is not None:
            z2.add_(b2[:, None], alpha=float(alpha))
        ctx.t1, ctx.t2, ctx.act = t1, t2, act
        ctx.has_nw, ctx.has_b1, ctx.has_b2 = nw is not None, b1 is not None, b2 is not None
        ctx.save_for_backward(h, r, a, nw, nwg, w1, W1, w2, W2, b2, alpha)
        return z2.add_(h)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):
        h, r, a, nw, nwg, w1, W1, w2, W2, b2, alpha = ctx.saved_tensors
        idx1, off1, o2b1, rev1, reid1, roff1 = ctx.t1
        idx2, off2, o2b2, rev2, reid2, roff2 = ctx.t2
        g = g.contiguous()
        # fc2 (weights α·w2, bias α·b2)
        ga = _eb(g, rev2, roff2, _rev_weights(W2, reid2))
        gW2 = _A._embedding_bag_per_sample_weights_backward(g, a, idx2, off2, o2b2, 0).view_as(w2)
        gw2 = gW2 * alpha
        galpha = torch.dot(gW2.reshape(-1), w2.reshape(-1)).reshape(1)
        gb2 = None
        if ctx.has_b2:
            gB2 = g.sum(1)
            gb2 = gB2 * alpha
            galpha = galpha + torch.dot(gB2, b2)
        # activation (single fused kernels, written over ga)
        if ctx.act == "relu":
            gz1 = _A.threshold_backward.grad_input(ga, a, 0, grad_input=ga)
        else:
            gz1 = _A.tanh_backward.grad_input(ga, a, grad_input=ga)
        # fc1 (weights w1·nw[idx1])
        gxn = _eb(gz1, rev1, roff1, _rev_weights(W1, reid1))
        gb1 = gz1.sum(1) if ctx.has_b1 else None
        # weight gradient against the normalised input h·r: the same as (gz1·r) against h
        gz1s = gz1.mul_(r) if ctx.has_nw else gz1
        gW1 = _A._embedding_bag_per_sample_weights_backward(gz1s, h, idx1, off1, o2b1, 0).view_as(w1)
        gnw = None
        if ctx.has_nw:
            gw1 = gW1 * nwg
            gnw = torch.zeros_like(nw).index_add_(0, idx1, (gW1 * w1).reshape(-1))
            # rms normalisation: xn = h·r, r = (mean(h²) + eps)^(-1/2):
            # gh = gxn·r − h·c + g with c = r³·mean(gxn·h), computed in place over gxn
            c = _colmean_prod(gxn, h).mul_(r.pow(3))
            gh = torch.addcmul(g, gxn, r, out=gxn).addcmul_(h, c, value=-1)
        else:
            gw1 = gW1
            gh = gxn.add_(g)
        return gh, gnw, gw1, gb1, gw2, gb2, galpha, None, None, None, None
