"""vmap support: reading planes of (possibly batched) LC tensors and the LC Jacobian."""

from __future__ import annotations

import torch

from ._tensor import LCTensor, series


def read_planes(x) -> torch.Tensor:
    """Planes (T, *shape) of an LCTensor; a plain tensor gives x[None]."""
    if isinstance(x, LCTensor):
        return series(x).planes
    return torch.as_tensor(x).unsqueeze(0)


def jacobian(f, argnums=0, *, side="forward", order=0, chunk_size=None):
    from . import api

    def jac(*args):
        args = list(args)
        x = api._float(torch.as_tensor(args[argnums]))
        n = x.numel()
        cols = []
        step = chunk_size or n or 1
        basis = torch.eye(n, dtype=x.dtype, device=x.device).reshape(n, *x.shape)
        for start in range(0, n, step):
            for i in range(start, min(n, start + step)):
                def g(xi):
                    a = list(args)
                    a[argnums] = xi
                    return f(*a)

                cols.append(api.ngrad(g, x, basis[i], side=side, order=order))
        # stack columns along a new trailing axis, then move input dims last
        J = torch.stack(cols, dim=-1)
        return J.reshape(*J.shape[:-1], *x.shape)

    return jac
