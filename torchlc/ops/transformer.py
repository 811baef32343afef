"""PyTorch's fused eval encoder layer (the TransformerEncoderLayer fast path) on LC inputs: first-order
inputs with plain weights run the layer's jet on the planes (a CUDA graph in eager mode, one opaque
custom op when traced on CUDA); other inputs the same math, unfused, through the LC rules."""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from .. import _algebra as A
from .. import _graphs, _jet
from .._algebra import Series
from .._context import is_wrapped as _is_wrapped
from .._context import tracing as _tracing
from .._dispatch import implements
from ._util import first_order, out
from .attention import _mha_jet, _mha_math, _plain_weights

aten = torch.ops.aten


def _residual_blocks(x, sa, ff, ln1, ln2, norm_first):
    """The encoder layer's residual structure, shared by the jet and the LC paths (``x + …`` adds
    planes termwise in the first, LC numbers in the second)."""
    if norm_first:
        x = x + sa(ln1(x))
        return x + ff(ln2(x))
    x = ln1(x + sa(x))
    return ln2(x + ff(x))


def _encoder_layer_jet(weights, consts, X, mask=None):
    """PyTorch's fused eval encoder layer on first-order planes X (2, B, L, E), plain weights (in the
    aten op's order) and ``consts`` (embed_dim, num_heads, use_gelu, norm_first, eps, mask_type);
    ``mask`` is the caller's copy of the mask (a CUDA graph's static buffer when graphed)."""
    (qkv_weight, qkv_bias, proj_weight, proj_bias, norm_weight_1, norm_bias_1, norm_weight_2, norm_bias_2,
     ffn_weight_1, ffn_bias_1, ffn_weight_2, ffn_bias_2) = weights
    embed_dim, num_heads, use_gelu, norm_first, eps, mask_type = consts
    mha = (embed_dim, num_heads, qkv_weight, qkv_bias, proj_weight)
    if norm_first:

        def ff(Y):
            h = _jet.linear(Y, ffn_weight_1, ffn_bias_1)
            return _jet.linear(_jet.gelu(h) if use_gelu else _jet.relu(h), ffn_weight_2, ffn_bias_2)

        def ln(w, b):
            return lambda Y: _jet.layer_norm(Y, 1, w, b, eps)

        return _residual_blocks(X, lambda Y: _mha_jet(Y, Y, Y, *mha, proj_bias, mask, mask_type, True, False)[0], ff,
                                ln(norm_weight_1, norm_bias_1), ln(norm_weight_2, norm_bias_2), True)
    # post-norm: each linear's bias goes into the kernel that consumes its output (the add & norm,
    # the relu), which also adds the residual: no separate passes over the planes
    sa = _mha_jet(X, X, X, *mha, None, mask, mask_type, True, False)[0]  # out-projection's bias: below
    X1 = _jet.layer_norm(sa, 1, norm_weight_1, norm_bias_1, eps, residual=X, bias0=proj_bias)
    h = _jet.linear(X1, ffn_weight_1)
    h = _jet.gelu(_jet.add_to_plane(h, 0, ffn_bias_1)) if use_gelu else _jet.relu(h, bias0=ffn_bias_1)
    Y = _jet.linear(h, ffn_weight_2)
    return _jet.layer_norm(Y, 1, norm_weight_2, norm_bias_2, eps, residual=X1, bias0=ffn_bias_2)


def _encoder_layer_eager(X, mask, weights, consts):
    """The layer's jet run eagerly: ~100 torch calls for ~20 kernels, so on CUDA, where the host time
    is most of it, it replays as a CUDA graph from the second call with this signature (_graphs)."""
    moving = (X,) if mask is None else (X, mask)
    return _graphs.graphed("encoder_layer", functools.partial(_encoder_layer_jet, weights, consts), moving,
                           weights, consts)


@torch.library.custom_op("torchlc::encoder_layer_jet", mutates_args=())
def encoder_layer_jet(planes: torch.Tensor, mask: torch.Tensor | None, weights: list[torch.Tensor], embed_dim: int,
                      num_heads: int, use_gelu: bool, norm_first: bool, eps: float,
                      mask_type: int | None) -> torch.Tensor:
    """The encoder layer's jet as one opaque op in traced graphs (torch.compile, torchlc.compile) on
    CUDA: it runs the hand-fused eager jet (Triton kernels, and a CUDA graph of its own in default
    mode) where Inductor would otherwise generate ~100 kernels from the jet's formulas, several per
    layer norm and softmax jet. Planes in, planes (2, B, L, E) out, contiguous."""
    consts = (embed_dim, num_heads, use_gelu, norm_first, eps, mask_type)
    return _encoder_layer_eager(planes, mask, tuple(weights), consts).contiguous()


@encoder_layer_jet.register_fake
def _encoder_layer_jet_fake(planes, mask, weights, embed_dim, num_heads, use_gelu, norm_first, eps, mask_type):
    return planes.new_empty(planes.shape)


# devices on which traced graphs call the layer's jet as the opaque op above instead of tracing its
# formulas: where hand-fused kernels and eager CUDA graphs exist. On CPU, Inductor's code for the
# formulas is what the eager jet would run anyway.
OPAQUE_ENCODER_DEVICES = {"cuda"}


@implements([aten._transformer_encoder_layer_fwd.default], kind="jet")
def transformer_encoder_layer_fwd(func, src, embed_dim, num_heads, qkv_weight, qkv_bias, proj_weight,
                                  proj_bias, use_gelu, norm_first, eps, norm_weight_1, norm_bias_1,
                                  norm_weight_2, norm_bias_2, ffn_weight_1, ffn_bias_1, ffn_weight_2,
                                  ffn_bias_2, mask=None, mask_type=None):
    """PyTorch's fused eval encoder layer. First-order inputs with plain weights: on the planes with
    the jets (one LC dispatch and 22 CUDA kernels per layer instead of ~45 LC dispatches; one opaque
    op when traced on CUDA); otherwise the same math through the LC rules."""
    weights = (qkv_weight, qkv_bias, proj_weight, proj_bias, norm_weight_1, norm_bias_1, norm_weight_2,
               norm_bias_2, ffn_weight_1, ffn_bias_1, ffn_weight_2, ffn_bias_2)
    consts = (embed_dim, num_heads, use_gelu, norm_first, eps, mask_type)
    s = first_order(src)
    if s is not None and eps > 0 and _plain_weights(*weights, mask):
        P = s.planes
        if _tracing() and P.device.type in OPAQUE_ENCODER_DEVICES and not _is_wrapped(P):
            P = torch.ops.torchlc.encoder_layer_jet(P, mask, list(weights), *consts)
        else:
            P = _encoder_layer_eager(P, mask, weights, consts)
        return out(Series(P, s.support, s.order, A.min_exact(s.exact, s.order)))

    def ff(x):
        h = F.linear(x, ffn_weight_1, ffn_bias_1)
        return F.linear(F.gelu(h) if use_gelu else F.relu(h), ffn_weight_2, ffn_bias_2)

    def ln(w, b):
        return lambda x: F.layer_norm(x, (embed_dim,), w, b, eps)

    mha_args = (embed_dim, num_heads, qkv_weight, qkv_bias, proj_weight, proj_bias, mask, mask_type)
    return _residual_blocks(src, lambda x: _mha_math(x, x, x, *mha_args)[0], ff, ln(norm_weight_1, norm_bias_1),
                            ln(norm_weight_2, norm_bias_2), norm_first)
