"""FastDecoder against the HF forward with a DynamicCache: small random Llama / Qwen2 models, fp32 and int8."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn
from transformers import DynamicCache, LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

from audio_r1.config import PRESETS
from audio_r1.fast_decoder import CacheCapacityError, FastDecoder, unsupported_reason
from audio_r1.modeling import build_decoder

TOLERANCE = 1e-4
BF16_TOLERANCE = 0.05  # a few bf16 ulps at logits of order one
STEPS = 10
PADDING = (0, 2, 5)  # left padding per row of a batch of 3
LENGTH = 9

SIZES = dict(
    vocab_size=97,
    hidden_size=64,
    intermediate_size=96,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_key_value_heads=2,
    initializer_range=0.2,  # logits of order one, so a 1e-4 tolerance means something
    max_position_embeddings=256,
)


def _randomise_biases(lm: nn.Module) -> nn.Module:
    """HF initialises biases to zero; give them values so the bias paths are exercised."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for module in lm.modules():
            if isinstance(module, nn.Linear) and module.bias is not None:
                module.bias.copy_(torch.randn(module.bias.shape, generator=generator) * 0.2)
    return lm


def _llama(tied: bool, **extra) -> nn.Module:
    torch.manual_seed(0)
    config = LlamaConfig(**SIZES, tie_word_embeddings=tied, rope_theta=10000.0, **extra)
    return _randomise_biases(LlamaForCausalLM(config)).eval()


def _qwen2(tied: bool) -> nn.Module:
    torch.manual_seed(0)
    config = Qwen2Config(**SIZES, tie_word_embeddings=tied, rope_theta=1e6, use_sliding_window=False)
    return _randomise_biases(Qwen2ForCausalLM(config)).eval()


def _int8(lm: nn.Module) -> nn.Module:
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao deprecation notices
        return quantize_dynamic(lm, {nn.Linear}, dtype=torch.qint8, inplace=False)


MODELS = {
    "llama-tied": lambda: _llama(tied=True),
    "llama-untied": lambda: _llama(tied=False),
    "llama-biases": lambda: _llama(tied=False, attention_bias=True, mlp_bias=True),
    "llama-linear-rope": lambda: _llama(
        tied=True, rope_parameters={"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0}
    ),
    "qwen2-untied": lambda: _qwen2(tied=False),
    "qwen2-tied": lambda: _qwen2(tied=True),
}


def _batch(lm: nn.Module, padding: tuple[int, ...] = PADDING) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Left-padded prompt embeddings, 0/1 mask and positions, as the engine builds them."""
    generator = torch.Generator().manual_seed(2)
    ids = torch.randint(0, lm.config.vocab_size, (len(padding), LENGTH), generator=generator)
    mask = torch.ones_like(ids)
    for row, pad in enumerate(padding):
        mask[row, :pad] = 0
    with torch.inference_mode():
        embeds = lm.get_input_embeddings()(ids)
    return embeds, mask, (mask.cumsum(-1) - 1).clamp(min=0)


@torch.inference_mode()
def _reference(lm: nn.Module, embeds, mask, positions, steps: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """HF forward with a DynamicCache, greedy, the way `Engine._decode` calls it: logits and tokens per step."""
    out = lm(inputs_embeds=embeds, attention_mask=mask, position_ids=positions,
             past_key_values=DynamicCache(config=lm.config), use_cache=True, logits_to_keep=1)
    logits, tokens = [out.logits[:, -1]], []
    next_position = positions[:, -1:] + 1
    for _ in range(steps):
        token = logits[-1].argmax(-1, keepdim=True)
        tokens.append(token)
        mask = torch.cat([mask, torch.ones_like(token)], dim=1)
        out = lm(input_ids=token, attention_mask=mask, position_ids=next_position,
                 past_key_values=out.past_key_values, use_cache=True)
        logits.append(out.logits[:, -1])
        next_position = next_position + 1
    return logits, tokens


def _fast(decoder: FastDecoder, embeds, mask, positions, tokens: list[torch.Tensor]) -> list[torch.Tensor]:
    """FastDecoder fed the reference's tokens: logits after prefill and after each decode step."""
    decoder.start(embeds.shape[0], embeds.shape[1] + len(tokens))
    logits = [decoder.prefill(embeds, mask, positions)]
    next_position = positions[:, -1:] + 1
    for token in tokens:
        logits.append(decoder.decode(token, next_position))
        next_position = next_position + 1
    return logits


def _assert_parity(lm: nn.Module, padding: tuple[int, ...] = PADDING, tolerance: float = TOLERANCE) -> None:
    embeds, mask, positions = _batch(lm, padding)
    expected, tokens = _reference(lm, embeds, mask, positions, STEPS)
    got = _fast(FastDecoder(lm), embeds, mask, positions, tokens)
    assert len(got) == STEPS + 1
    for step, (want, have) in enumerate(zip(expected, got, strict=True)):
        assert have.shape == want.shape == (len(padding), lm.config.vocab_size)
        error = (have - want).abs().max().item()
        assert error <= tolerance, f"step {step}: max |logit difference| {error:.2e}"
        assert torch.equal(have.argmax(-1), want.argmax(-1)), f"step {step}: greedy token differs"


@pytest.mark.parametrize("name", sorted(MODELS))
def test_fp32_matches_transformers(name: str) -> None:
    lm = MODELS[name]()
    assert FastDecoder.supports(lm)
    _assert_parity(lm)


@pytest.mark.parametrize("name", ["llama-tied", "llama-untied", "qwen2-untied", "qwen2-tied"])
def test_int8_matches_the_same_quantised_lm(name: str) -> None:
    lm = _int8(MODELS[name]())
    assert isinstance(lm.model.layers[0].self_attn.q_proj, torch.ao.nn.quantized.dynamic.Linear)
    assert FastDecoder.supports(lm)
    _assert_parity(lm)


@pytest.mark.parametrize("int8", [False, True], ids=["fp32", "int8"])
@pytest.mark.parametrize("padding", [(0,), (0, 0)], ids=["batch1", "batch2"])
def test_unpadded_batches_match(int8: bool, padding: tuple[int, ...]) -> None:
    """Without padding HF drops the mask (causal / GQA inside SDPA); the fast path follows it."""
    lm = MODELS["qwen2-untied"]()
    _assert_parity(_int8(lm) if int8 else lm, padding=padding)


@pytest.mark.parametrize("name", ["llama-tied", "qwen2-untied"])
def test_bf16_matches_transformers(name: str) -> None:
    """bf16 weights: RMSNorm falls back to the reference formula (the fused kernel rounds differently)."""
    _assert_parity(MODELS[name]().to(torch.bfloat16), tolerance=BF16_TOLERANCE)


def test_restart_gives_the_same_logits() -> None:
    """A second start() (same shape: the buffer is reused) starts from a clean cache and mask."""
    lm = MODELS["qwen2-untied"]()
    decoder = FastDecoder(lm)
    embeds, mask, positions = _batch(lm)
    _, tokens = _reference(lm, embeds, mask, positions, 3)
    first = _fast(decoder, embeds, mask, positions, tokens)
    unpadded = _batch(lm, padding=(0, 0, 0))
    _fast(decoder, *unpadded, tokens)  # same shape, different mask
    again = _fast(decoder, embeds, mask, positions, tokens)
    for a, b in zip(first, again, strict=True):
        assert torch.equal(a, b)


def test_decoder_shares_the_lm_weights() -> None:
    lm = MODELS["llama-tied"]()
    before = {id(p): p.data_ptr() for p in lm.parameters()}
    decoder = FastDecoder(lm)
    assert decoder.lm_head is lm.lm_head and decoder.embed is lm.model.embed_tokens
    assert {id(p): p.data_ptr() for p in lm.parameters()} == before


def test_capacity_overflow_raises() -> None:
    lm = MODELS["llama-tied"]()
    embeds, mask, positions = _batch(lm)
    decoder = FastDecoder(lm)
    decoder.start(3, LENGTH + 2)
    decoder.prefill(embeds, mask, positions)
    token = torch.zeros(3, 1, dtype=torch.long)
    for step in range(2):
        decoder.decode(token, positions[:, -1:] + 1 + step)
    with pytest.raises(CacheCapacityError, match="capacity 11 exceeded"):
        decoder.decode(token, positions[:, -1:] + 3)
    decoder.start(3, LENGTH - 1)
    with pytest.raises(CacheCapacityError):
        decoder.prefill(embeds, mask, positions)


def test_misuse_raises() -> None:
    lm = MODELS["llama-tied"]()
    embeds, mask, positions = _batch(lm)
    decoder = FastDecoder(lm)
    with pytest.raises(RuntimeError, match="start"):
        decoder.prefill(embeds, mask, positions)
    decoder.start(2, 32)
    with pytest.raises(ValueError, match="batch of 3"):
        decoder.prefill(embeds, mask, positions)


UNSUPPORTED = {
    "sliding window": lambda: Qwen2ForCausalLM(
        Qwen2Config(**SIZES, use_sliding_window=True, sliding_window=4, max_window_layers=1)
    ),
    "dynamic rope": lambda: LlamaForCausalLM(
        LlamaConfig(**SIZES, rope_parameters={"rope_type": "dynamic", "factor": 2.0, "rope_theta": 10000.0})
    ),
    "gelu MLP": lambda: LlamaForCausalLM(LlamaConfig(**SIZES, hidden_act="gelu")),
    "other model type": lambda: build_decoder({"model_type": "gpt2", "n_embd": 32, "n_layer": 1, "n_head": 2}),
}


@pytest.mark.parametrize("name", sorted(UNSUPPORTED))
def test_unsupported_models_are_refused(name: str) -> None:
    lm = UNSUPPORTED[name]()
    assert not FastDecoder.supports(lm)
    assert unsupported_reason(lm)
    with pytest.raises(ValueError, match="cannot run"):
        FastDecoder(lm)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_presets_are_supported(preset: str) -> None:
    with torch.device("meta"):  # structure only: no memory for the big ones
        lm = build_decoder(PRESETS[preset].text_config)
    assert unsupported_reason(lm) is None
