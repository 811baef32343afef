"""Hugging Face transformers models (built from tiny configs, random weights, float64) on
``x.nonstd(v)`` against ``torch.func.jvp``.

Token models run on ``inputs_embeds`` (the LC input), vision and audio models on ``pixel_values`` /
``input_values`` / ``input_features``; the encoder-decoders (T5, Whisper) get plain decoder token ids
as well. Attention runs on the library's default implementation (SDPA); the reference's jvp runs
SDPA's math kernel."""

import contextlib

import pytest
import torch
import torchlc

from tests.models.helpers import (
    Float64Throughout,
    build,
    check_forward,
    check_train_grads,
    import_or_skip,
    randn,
)

transformers = import_or_skip("transformers")

B, T, H = 2, 6, 32  # batch, tokens, hidden size
SMALL = dict(
    hidden_size=H, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, vocab_size=64
)
DECODER_IDS = torch.tensor([[1, 5, 7, 3], [2, 9, 4, 8]])
MASK = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])  # the second sequence padded


def _cfg(name, **kwargs):
    cfg = getattr(transformers, name)(**kwargs)
    cfg._attn_implementation = "sdpa"
    return cfg


def _model(cls, cfg):
    return lambda: getattr(transformers, cls)(cfg)


def _decoder_only(cfg_name, **extra):
    # Llama-style configs: grouped-query attention with 4 query and 2 key/value heads
    return _cfg(
        cfg_name,
        **{
            **SMALL,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 32,
            **extra,
        },
    )


def lm_logits(m, e):
    return m(inputs_embeds=e).logits


def encoder_hidden(m, e):
    return m(inputs_embeds=e, attention_mask=MASK).last_hidden_state


def pixels_hidden(m, x):
    return m(pixel_values=x).last_hidden_state


def audio_hidden(m, x):
    return m(input_values=x).last_hidden_state


def seq2seq_embeds(m, e):
    out = m(inputs_embeds=e, attention_mask=MASK, decoder_input_ids=DECODER_IDS)
    return out.last_hidden_state, out.encoder_last_hidden_state


def whisper(m, x):
    out = m(input_features=x, decoder_input_ids=DECODER_IDS)
    return out.last_hidden_state, out.encoder_last_hidden_state


# name -> (constructor, call, input shape)
MODELS = {
    "gpt2": (
        _model(
            "GPT2LMHeadModel",
            _cfg("GPT2Config", n_layer=2, n_embd=H, n_head=2, vocab_size=64, n_positions=32),
        ),
        lm_logits,
        (B, T, H),
    ),
    "bert": (_model("BertModel", _cfg("BertConfig", **SMALL)), encoder_hidden, (B, T, H)),
    "distilbert": (
        _model(
            "DistilBertModel",
            _cfg("DistilBertConfig", dim=H, n_layers=2, n_heads=2, hidden_dim=64, vocab_size=64),
        ),
        encoder_hidden,
        (B, T, H),
    ),
    "vit": (
        _model(
            "ViTModel",
            _cfg("ViTConfig", image_size=16, patch_size=4, **{**SMALL, "vocab_size": None}),
        ),
        pixels_hidden,
        (B, 3, 16, 16),
    ),
    "wav2vec2": (
        _model(
            "Wav2Vec2Model",
            _cfg(
                "Wav2Vec2Config",
                **SMALL,
                conv_dim=(16, 16),
                conv_stride=(5, 2),
                conv_kernel=(10, 3),
                num_conv_pos_embeddings=8,
                num_conv_pos_embedding_groups=2,
                mask_time_prob=0.0,
            ),
        ),
        audio_hidden,
        (B, 200),
    ),
    "whisper": (
        _model(
            "WhisperModel",
            _cfg(
                "WhisperConfig",
                d_model=H,
                encoder_layers=2,
                decoder_layers=2,
                encoder_attention_heads=2,
                decoder_attention_heads=2,
                encoder_ffn_dim=64,
                decoder_ffn_dim=64,
                num_mel_bins=8,
                max_source_positions=8,
                max_target_positions=16,
                vocab_size=64,
                pad_token_id=0,
                decoder_start_token_id=1,
            ),
        ),
        whisper,
        (B, 8, 16),
    ),
    "t5": (
        _model(
            "T5Model",
            _cfg(
                "T5Config",
                d_model=H,
                d_ff=64,
                d_kv=16,
                num_layers=2,
                num_decoder_layers=2,
                num_heads=2,
                vocab_size=64,
                relative_attention_num_buckets=8,
            ),
        ),
        seq2seq_embeds,
        (B, T, H),
    ),
    "llama": (_model("LlamaForCausalLM", _decoder_only("LlamaConfig")), lm_logits, (B, T, H)),
    "mistral": (
        _model("MistralForCausalLM", _decoder_only("MistralConfig", sliding_window=4)),
        lm_logits,
        (B, T, H),
    ),
    "qwen2": (_model("Qwen2ForCausalLM", _decoder_only("Qwen2Config")), lm_logits, (B, T, H)),
    # the experts' reference loop ("eager"): the default grouped_mm has no float64 CPU kernel
    "mixtral": (
        _model(
            "MixtralForCausalLM",
            _decoder_only(
                "MixtralConfig",
                num_local_experts=4,
                num_experts_per_tok=2,
                experts_implementation="eager",
            ),
        ),
        lm_logits,
        (B, T, H),
    ),
}

# models whose RMS norms (and Mixtral's router) compute in float32 inside a float64 model: compared
# with those casts off (see helpers.Float64Throughout); test_float32_norms_as_written runs one as is
FLOAT32_INSIDE = {"t5", "llama", "mistral", "qwen2", "mixtral"}


def _context(name):
    return Float64Throughout if name in FLOAT32_INSIDE else None


@pytest.mark.parametrize("name", list(MODELS))
def test_eval(name):
    make, call, shape = MODELS[name]
    check_forward(
        build(make), call, [randn(*shape)], context=_context(name) or contextlib.nullcontext
    )


@pytest.mark.parametrize("name", ["llama", "mixtral"])
def test_float32_norms_as_written(name):
    # the RMS norms (and Mixtral's router softmax on router_logits.float()) compute in float32: the
    # planes agree with the reference to float32 rounding
    make, call, shape = MODELS[name]
    check_forward(build(make), call, [randn(*shape)], tol=dict(rtol=1e-4, atol=1e-6))


@pytest.mark.parametrize("name", list(MODELS))
def test_train(name):
    # train mode: dropout (hidden, attention probabilities inside SDPA) draws the same masks under the
    # same seed on the LC run and the reference
    make, call, shape = MODELS[name]
    check_forward(
        build(make),
        call,
        [randn(*shape)],
        train=True,
        context=_context(name) or contextlib.nullcontext,
    )


def test_train_wav2vec2_frozen_feature_encoder():
    # as fine-tuning runs it: the convolutional feature encoder frozen (it then leaves requires_grad alone)
    make, call, shape = MODELS["wav2vec2"]
    model = build(make)
    model.freeze_feature_encoder()
    check_forward(model, call, [randn(*shape)], train=True)


@pytest.mark.parametrize("name", ["gpt2", "llama", "mixtral"])
def test_train_grads(name):
    make, call, shape = MODELS[name]
    check_train_grads(
        build(make), call, randn(*shape), context=_context(name) or contextlib.nullcontext
    )


@pytest.mark.parametrize("name", ["gpt2", "llama"])
@pytest.mark.parametrize("grad", [False, True], ids=["no_grad", "grad"])
def test_torchlc_compile_equals_eager(name, grad):
    """torchlc.compile traces these models whole: their mask code reads a tensor on the host unless
    ``torch.compiler.is_compiling()``, which the trace therefore sets (as torch.export does). Without a
    cache (``use_cache=False``, as in training) they check for packed sequences that way."""
    make, _, shape = MODELS[name]
    model = build(make).eval()

    def call(m, e):
        return m(inputs_embeds=e, use_cache=False).logits

    x, v = randn(*shape), randn(*shape, seed=7)
    context = _context(name) or contextlib.nullcontext
    compiled = torchlc.compile(lambda e: call(model, e), backend="aot_eager")
    with torch.set_grad_enabled(grad), context():
        want = call(model, x.nonstd(v))
        got = compiled(x.nonstd(v))
        got_again = compiled(x.nonstd(v))  # the cached graph
    assert not torch.compiler.is_compiling()  # the flag is restored after the trace
    for y in (got, got_again):
        assert torchlc.support(y) == torchlc.support(want)
        for q in torchlc.support(want):
            torch.testing.assert_close(torchlc.coeff(y, q), torchlc.coeff(want, q))
