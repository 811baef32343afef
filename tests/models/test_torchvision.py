"""torchvision models (random weights, float64) on ``x.nonstd(v)`` against ``torch.func.jvp``.

The convnets, convnext_tiny and swin_t are the library's own constructors at a small input size;
ViT and MaxViT (and ConvNeXt and Swin again, with stochastic depth and dropout for train mode) use
their model classes with tiny configs of the named variants."""

import pytest

from tests.models.helpers import build, check_forward, check_train_grads, import_or_skip, randn

tv = import_or_skip("torchvision")
M = tv.models


def _vit():
    return M.VisionTransformer(
        image_size=32,
        patch_size=8,
        num_layers=2,
        num_heads=2,
        hidden_dim=32,
        mlp_dim=64,
        num_classes=10,
    )


def _maxvit():
    return M.MaxVit(
        input_size=(32, 32),
        stem_channels=8,
        partition_size=2,
        block_channels=[8, 16],
        block_layers=[1, 1],
        head_dim=4,
        stochastic_depth_prob=0.1,
        num_classes=10,
    )


def _convnext():
    from torchvision.models.convnext import CNBlockConfig

    return M.ConvNeXt(
        [CNBlockConfig(16, 32, 2), CNBlockConfig(32, None, 2)],
        stochastic_depth_prob=0.1,
        num_classes=10,
    )


def _swin():
    return M.SwinTransformer(
        patch_size=[4, 4],
        embed_dim=16,
        depths=[2, 2],
        num_heads=[2, 2],
        window_size=[2, 2],
        stochastic_depth_prob=0.1,
        dropout=0.1,
        attention_dropout=0.1,
        num_classes=10,
    )


# name -> (constructor, input shape)
MODELS = {
    "resnet18": (lambda: M.resnet18(num_classes=10), (2, 3, 32, 32)),
    "mobilenet_v3_small": (lambda: M.mobilenet_v3_small(num_classes=10), (2, 3, 32, 32)),
    "efficientnet_b0": (lambda: M.efficientnet_b0(num_classes=10), (2, 3, 32, 32)),
    "regnet_y_400mf": (lambda: M.regnet_y_400mf(num_classes=10), (2, 3, 32, 32)),
    "shufflenet_v2_x0_5": (lambda: M.shufflenet_v2_x0_5(num_classes=10), (2, 3, 32, 32)),
    "squeezenet1_1": (lambda: M.squeezenet1_1(num_classes=10), (2, 3, 32, 32)),
    "densenet121": (lambda: M.densenet121(num_classes=10), (2, 3, 32, 32)),
    "vit_b_16-tiny": (_vit, (2, 3, 32, 32)),
    "maxvit_t-tiny": (_maxvit, (2, 3, 32, 32)),
    "convnext_tiny-tiny": (_convnext, (2, 3, 32, 32)),
    "convnext_tiny": (lambda: M.convnext_tiny(num_classes=10), (1, 3, 32, 32)),
    "swin_t-tiny": (_swin, (2, 3, 32, 32)),
    # the real swin_t: 16x16 patches padded to its 7x7 windows, shifted windows with their masks
    "swin_t": (lambda: M.swin_t(num_classes=10), (1, 3, 64, 64)),
}


def _call(m, x):
    return m(x)


@pytest.mark.parametrize("name", list(MODELS))
def test_eval(name):
    make, shape = MODELS[name]
    check_forward(build(make), _call, [randn(*shape)])


# train mode: BatchNorm on batch statistics (and its running statistics updated), dropout and
# stochastic depth drawing the same masks under the same seed on the LC run and the reference
TRAIN = [
    "mobilenet_v3_small",
    "efficientnet_b0",
    "vit_b_16-tiny",
    "swin_t-tiny",
    "convnext_tiny-tiny",
]


@pytest.mark.parametrize("name", TRAIN)
def test_train(name):
    make, shape = MODELS[name]
    if name in ("mobilenet_v3_small", "efficientnet_b0"):
        # 64x64: at 32x32 the last BatchNorms normalise over 2 values (1x1 maps, batch 2), which
        # amplifies rounding differences to 1e-7 (see test_train_grads_resnet18)
        shape = (2, 3, 64, 64)
    check_forward(build(make), _call, [randn(*shape)], train=True)


def test_train_grads_resnet18():
    # 64x64: the last stage's BatchNorm normalises over 2x2x2 values (at 32x32 over 2 values, and the
    # ε¹ plane, divided by a tiny batch deviation, is ill-conditioned)
    check_train_grads(build(MODELS["resnet18"][0]), _call, randn(2, 3, 64, 64))


def test_njacfwd_of_resnet18_chunked_matches_autograd():
    """vmap on a real model: torchlc.njacfwd batches the basis directions of the input through
    resnet18 with torch.func.vmap (chunk_size bounds the batch); its ε⁰ plane is the Jacobian and its
    ε⁻¹ plane the jumps (none here: no relu kink is hit exactly)."""
    import torch

    import torchlc

    torch.manual_seed(0)
    m = tv.models.resnet18(num_classes=3).eval().double()
    x = torch.randn(1, 3, 8, 8, dtype=torch.float64)
    J = torchlc.njacfwd(m, chunk_size=48)(x)
    assert J.shape == (1, 3, 1, 3, 8, 8)
    ref = torch.autograd.functional.jacobian(m, x)
    torch.testing.assert_close(torchlc.coeff(J, 0), ref, rtol=1e-10, atol=1e-12)
    assert torch.count_nonzero(torchlc.coeff(J, -1)) == 0
