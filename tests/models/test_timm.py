"""timm models (``pretrained=False``, random weights, float64) on ``x.nonstd(v)`` against
``torch.func.jvp``: the registered variants at small input sizes, or (ViT-like models) with
fewer/narrower blocks passed to ``timm.create_model``."""

import contextlib

import pytest

from tests.models.helpers import (
    Float64Throughout,
    build,
    check_forward,
    check_train_grads,
    import_or_skip,
    randn,
)

timm = import_or_skip("timm")


def C(name, **kwargs):
    return lambda: timm.create_model(name, pretrained=False, num_classes=10, **kwargs)


def _mixer():
    from timm.models.mlp_mixer import MlpMixer

    return MlpMixer(num_classes=10, img_size=32, patch_size=8, num_blocks=2, embed_dim=32)


# name -> (constructor, input shape)
MODELS = {
    "resnet26d": (C("resnet26d"), (2, 3, 32, 32)),
    "deit_tiny_patch16_224-tiny": (
        C("deit_tiny_patch16_224", img_size=32, patch_size=8, depth=2, embed_dim=32, num_heads=2),
        (2, 3, 32, 32),
    ),
    "levit_128s": (C("levit_128s", img_size=64), (2, 3, 64, 64)),
    # the attention bias is fixed at 7x7 tokens: 224x224 input, narrow stages
    "efficientformer_l1-tiny": (
        C("efficientformer_l1", depths=(1, 1, 1, 1), embed_dims=(8, 16, 24, 32)),
        (1, 3, 224, 224),
    ),
    # float64 depthwise convolutions run group by group (aten::_slow_conv2d_forward): one small image
    "efficientvit_b0": (C("efficientvit_b0"), (1, 3, 32, 32)),
    "efficientvit_m0": (C("efficientvit_m0", img_size=32), (1, 3, 32, 32)),
    "mixer_s16_224-tiny": (_mixer, (2, 3, 32, 32)),
    "convnext_atto": (C("convnext_atto"), (2, 3, 32, 32)),
    "poolformer_s12": (C("poolformer_s12"), (2, 3, 32, 32)),
    "mobilevit_xxs": (C("mobilevit_xxs"), (2, 3, 64, 64)),
    "coatnet_nano_rw_224": (C("coatnet_nano_rw_224", img_size=64), (2, 3, 64, 64)),
}


def _call(m, x):
    return m(x)


# models whose forward computes in float32 inside a float64 model, compared with those casts off
# (helpers.Float64Throughout): EfficientViT's LiteMLA casts q, k, v with .float()
FLOAT32_INSIDE = {"efficientvit_b0"}


@pytest.mark.parametrize("name", list(MODELS))
def test_eval(name):
    make, shape = MODELS[name]
    context = Float64Throughout if name in FLOAT32_INSIDE else contextlib.nullcontext
    check_forward(build(make), _call, [randn(*shape)], context=context)


# train mode: BatchNorm on batch statistics, dropout and DropPath drawing the same masks under the
# same seed on the LC run and the reference
TRAIN = ["levit_128s", "convnext_atto", "mobilevit_xxs"]


@pytest.mark.parametrize("name", TRAIN)
def test_train(name):
    make, shape = MODELS[name]
    check_forward(build(make), _call, [randn(*shape)], train=True)


def test_float32_attention_as_written():
    # EfficientViT's LiteMLA computes in float32: the planes agree with the reference to float32 rounding
    make, shape = MODELS["efficientvit_b0"]
    check_forward(build(make), _call, [randn(*shape)], tol=dict(rtol=1e-4, atol=1e-6))


def test_train_grads_deit():
    # LayerNorm, GELU, attention, dropout (the same masks under the same seed) and DropPath
    make = C(
        "deit_tiny_patch16_224",
        img_size=32,
        patch_size=8,
        depth=2,
        embed_dim=32,
        num_heads=2,
        drop_rate=0.1,
        proj_drop_rate=0.1,
        attn_drop_rate=0.1,
        drop_path_rate=0.1,
    )
    check_train_grads(build(make), _call, randn(2, 3, 32, 32))
