"""Tests for `audio_r1.convert.gguf`: SmolLM2 from its GGUF file, against `transformers`.
"""

from __future__ import annotations

import json

import pytest
import torch
from convert_support import source_or_skip as _source_or_skip

from audio_r1.config import get_preset
from audio_r1.convert import gguf, sources


def test_gguf_config_matches_smol_preset() -> None:
    config = gguf.gguf_llama_config(_source_or_skip(sources.SMOLLM2_SOURCE))
    preset = get_preset("smol").text_config
    assert config["vocab_size"] == 49152  # the preset adds the audio and think tokens on top
    assert {k: v for k, v in config.items() if k != "vocab_size"} == {
        k: v for k, v in preset.items() if k != "vocab_size"
    }


def _llama(config: dict, state: dict[str, torch.Tensor]) -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    model = LlamaForCausalLM(LlamaConfig(**{k: v for k, v in config.items() if k != "model_type"})).eval()
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert set(missing) <= {"lm_head.weight"} and not unexpected, (missing, unexpected)
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    return model


def test_smollm2_answers_capital_of_france(smol_cache: dict) -> None:
    """The cached, dequantised SmolLM2 in LlamaForCausalLM answers a ChatML question sensibly."""
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    base = smol_cache["base"]
    config = json.loads((base / "manifest.json").read_text())["text_config"]
    model = _llama(config, load_file(base / "decoder.safetensors"))
    tokenizer = AutoTokenizer.from_pretrained(base / "tokenizer")
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        tokenize=False,
        add_generation_prompt=True,
    )
    assert prompt.endswith("<|im_start|>assistant\n")
    inputs = tokenizer(prompt, return_tensors="pt")
    with torch.no_grad():
        output = model.generate(
            **inputs, max_new_tokens=20, do_sample=False, pad_token_id=tokenizer.eos_token_id
        )
    answer = tokenizer.decode(output[0, inputs.input_ids.shape[1] :], skip_special_tokens=True)
    assert "Paris" in answer, answer


@pytest.mark.slow
def test_smollm2_state_dict_equals_transformers_dequantisation() -> None:
    """Our gguf-package dequantisation and rotary unpermute give exactly what transformers' loader gives."""
    gguf_path = _source_or_skip(sources.SMOLLM2_SOURCE)
    try:
        from transformers import LlamaConfig, LlamaForCausalLM
        from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint
    except ImportError as error:
        pytest.skip(f"transformers' GGUF loader is not importable: {error}")
    state, tokenizer = gguf.smollm2_state_dict()
    assert len(tokenizer) == 49152 and tokenizer.eos_token == "<|im_end|>"
    assert "lm_head.weight" not in state and all(v.dtype == torch.float32 for v in state.values())
    config = gguf.gguf_llama_config(gguf_path)
    with torch.device("meta"):
        skeleton = LlamaForCausalLM(LlamaConfig(**{k: v for k, v in config.items() if k != "model_type"}))
    reference = load_gguf_checkpoint(str(gguf_path), return_tensors=True, model_to_load=skeleton)["tensors"]
    assert set(reference) == set(state)
    worst = max((state[k] - reference[k]).abs().max().item() for k in state)
    assert worst == 0.0


# --------------------------------------------------------------------------------------------
# The cache: ensure_smol_base
# --------------------------------------------------------------------------------------------


