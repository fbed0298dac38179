"""Load and save model directories: official Step-Audio layouts and our own Hugging Face layout.

Three `config.json` shapes are understood:
- ours: `{"model_type": "audio_r1", "encoder": {...}, "adaptor": {...}, "text_config": {...}, ...}`;
- official nested (Step-Audio-2-mini): `model_type "step_audio_2"`, `text_config{...}`,
  `audio_encoder_config{n_mels, n_audio_ctx, n_audio_state, n_audio_head, n_audio_layer, llm_dim, ...}`;
- official flat (Step-Audio-R1 32B): `model_type "step_audio_qwen2"`, decoder keys at the top level.

Weights are `model.safetensors` or shards listed in `model.safetensors.index.json`, always with the
official key names (`encoder.*`, `adapter.*`, `model.*`, `lm_head.*`). The model is built on the
meta device and the tensors are assigned in place, so loading never holds two copies of the weights.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from .config import AdaptorConfig, AudioEncoderConfig, AudioR1Config
from .errors import CheckpointError
from .modeling import AudioR1ForCausalLM
from .tokenizer import SpecialTokenIds

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
INDEX_NAME = "model.safetensors.index.json"
DECODER_PREFIX = "language_model."
# Top-level config keys that describe the file, not the decoder.
_NOT_DECODER_KEYS = {
    "architectures", "model_type", "audio_encoder_config", "auto_map", "torch_dtype", "dtype",
    "transformers_version", "text_config", "_name_or_path",
}


# ----------------------------------------------------------------------------------------- config


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path} not found; a model directory needs a {path.name}") from None
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{path}: invalid JSON at line {error.lineno}: {error.msg}") from None


def config_from_json(data: dict[str, Any], weight_shapes: dict[str, tuple[int, ...]] | None = None) -> AudioR1Config:
    """An `AudioR1Config` from any of the three config.json shapes.

    Official files do not record the adaptor's hidden width; it is read from the shape of
    `adapter.linear1.weight` when `weight_shapes` is given (2048 in the release otherwise).
    """
    model_type = data.get("model_type")
    if model_type == "audio_r1":
        fields = {k: v for k, v in data.items() if k not in ("model_type", "architectures")}
        try:
            return AudioR1Config.from_dict(fields)
        except (TypeError, ValueError) as error:
            raise CheckpointError(f"config.json: {error}") from None
    if model_type not in ("step_audio_2", "step_audio_qwen2"):
        raise CheckpointError(
            f"config.json: unknown model_type {model_type!r}; expected 'audio_r1', 'step_audio_2' or 'step_audio_qwen2'"
        )
    audio = data.get("audio_encoder_config")
    if not isinstance(audio, dict):
        raise CheckpointError("config.json: official configs need an 'audio_encoder_config' object")
    if isinstance(data.get("text_config"), dict):  # nested (Step-Audio-2-mini)
        text = dict(data["text_config"])
    else:  # flat (Step-Audio-R1): decoder keys at the top level
        text = {k: v for k, v in data.items() if k not in _NOT_DECODER_KEYS}
    text = {k: v for k, v in text.items() if k not in _NOT_DECODER_KEYS}
    text["model_type"] = "qwen2"
    try:
        d_model = int(audio["n_audio_state"])
        encoder = AudioEncoderConfig(
            n_mels=int(audio["n_mels"]),
            n_ctx=int(audio.get("n_audio_ctx", 1500)),
            d_model=d_model,
            n_heads=int(audio["n_audio_head"]),
            n_layers=int(audio["n_audio_layer"]),
        )
        d_hidden = 2048
        if weight_shapes and "adapter.linear1.weight" in weight_shapes:
            d_hidden = weight_shapes["adapter.linear1.weight"][0]
        adaptor = AdaptorConfig(
            d_input=d_model,
            d_hidden=d_hidden,
            d_output=int(audio.get("llm_dim", text.get("hidden_size"))),
            kernel_size=int(audio.get("kernel_size", 3)),
            stride=int(audio.get("adapter_stride", 2)),
        )
        return AudioR1Config(encoder=encoder, adaptor=adaptor, text_config=text, chat_format="step")
    except KeyError as error:
        raise CheckpointError(f"config.json: audio_encoder_config lacks {error.args[0]!r}") from None
    except ValueError as error:
        raise CheckpointError(f"config.json: {error}") from None


# ---------------------------------------------------------------------------------------- weights


def weight_files(directory: Path) -> list[Path]:
    """The safetensors files of a model directory (one file, or the shards of an index)."""
    index = directory / INDEX_NAME
    if index.exists():
        weight_map = _read_json(index).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise CheckpointError(f"{index}: needs a non-empty 'weight_map'")
        files = sorted({directory / name for name in weight_map.values()})
        missing = [f.name for f in files if not f.exists()]
        if missing:
            raise CheckpointError(f"{index} lists shards that are not in {directory}: {missing}")
        return files
    single = directory / WEIGHTS_NAME
    if single.exists():
        return [single]
    raise CheckpointError(f"no {WEIGHTS_NAME} or {INDEX_NAME} in {directory}")


def _weight_shapes(files: list[Path]) -> dict[str, tuple[int, ...]]:
    shapes = {}
    for file in files:
        with safe_open(str(file), framework="pt") as handle:
            for key in handle.keys():
                shapes[key] = tuple(handle.get_slice(key).get_shape())
    return shapes


def to_official_key(name: str) -> str:
    return name[len(DECODER_PREFIX):] if name.startswith(DECODER_PREFIX) else name


def from_official_key(name: str) -> str:
    return DECODER_PREFIX + name if name.startswith(("model.", "lm_head.")) else name


def expected_keys(model: AudioR1ForCausalLM) -> set[str]:
    """Official key names the model needs (the head is left out when it is tied to the embeddings)."""
    keys = {to_official_key(k) for k in model.state_dict()}
    if _ties_embeddings(model):
        keys.discard("lm_head.weight")
    return keys


def _ties_embeddings(model: AudioR1ForCausalLM) -> bool:
    return bool(getattr(model.language_model.config, "tie_word_embeddings", False))


def check_keys(found: set[str], expected: set[str], source: str) -> None:
    """Raise `CheckpointError` listing missing and unexpected keys when the two sets differ."""
    missing, unexpected = sorted(expected - found), sorted(found - expected)
    if missing or unexpected:

        def show(keys: list[str]) -> str:
            head = ", ".join(keys[:20])
            return head + (f", … ({len(keys)} in all)" if len(keys) > 20 else "") if keys else "none"

        raise CheckpointError(
            f"{source} does not match the model: missing keys: {show(missing)}; unexpected keys: {show(unexpected)}"
        )


def rebuild_meta_buffers(module: nn.Module) -> None:
    """Recompute non-persistent buffers (e.g. rotary `inv_freq`) left on the meta device."""
    for name, child in list(module.named_modules()):
        if any(b.is_meta for b in child.buffers(recurse=False)) and hasattr(child, "config"):
            rebuilt = type(child)(child.config)
            parent_name, _, attr = name.rpartition(".")
            parent = module.get_submodule(parent_name) if parent_name else module
            setattr(parent, attr, rebuilt)
    leftover = [n for n, b in module.named_buffers() if b.is_meta]
    if leftover:
        raise CheckpointError(f"could not materialise buffers {leftover}")


def read_config(directory: str | Path, files: list[Path] | None = None) -> AudioR1Config:
    """The `AudioR1Config` of a model directory (weight shapes fill what config.json leaves out)."""
    directory = Path(directory)
    if files is None:
        try:
            files = weight_files(directory)
        except CheckpointError:
            files = []  # config.json alone: the adaptor width falls back to the released 2048
    return config_from_json(_read_json(directory / CONFIG_NAME), _weight_shapes(files))


def load_weights(
    model: AudioR1ForCausalLM, files: list[Path], dtype: torch.dtype | None = None, device: str = "cpu"
) -> AudioR1ForCausalLM:
    """Fill `model` (built on any device, meta included) from safetensors files, strictly."""
    state: dict[str, torch.Tensor] = {}
    for file in files:
        with safe_open(str(file), framework="pt", device=device) as handle:
            for key in handle.keys():
                if key in state:
                    raise CheckpointError(f"{file.name}: key {key!r} appears in more than one shard")
                tensor = handle.get_tensor(key)
                state[key] = tensor.to(dtype) if dtype is not None and tensor.is_floating_point() else tensor
    check_keys(set(state), expected_keys(model), f"{files[0].parent}")
    ours = {from_official_key(k): v for k, v in state.items()}
    model.load_state_dict(ours, strict=False, assign=True)
    if _ties_embeddings(model):
        model.language_model.tie_weights()
    rebuild_meta_buffers(model)
    return model


def load_pretrained(
    directory: str | Path, dtype: torch.dtype | None = None, device: str = "cpu"
) -> tuple[AudioR1ForCausalLM, Any]:
    """Model and tokenizer from a directory in our layout or an official Step-Audio layout."""
    from transformers import AutoTokenizer  # transformers: slow to import, only this path needs it

    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"{directory} is not a directory")
    files = weight_files(directory)
    config = read_config(directory, files)
    try:
        with _quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(str(directory))
    except (OSError, ValueError) as error:
        raise CheckpointError(f"cannot load the tokenizer files in {directory}: {error}") from None
    ids = SpecialTokenIds.from_tokenizer(tokenizer, config.chat_format)
    if len(tokenizer) > config.vocab_size:
        raise CheckpointError(
            f"the tokenizer has {len(tokenizer)} tokens but the decoder only {config.vocab_size} embeddings"
        )
    with torch.device("meta"):
        model = AudioR1ForCausalLM(config, audio_patch_id=ids.audio_patch)
    load_weights(model, files, dtype=dtype, device=device)
    return model.eval(), tokenizer


class _quiet_transformers:
    """Silence transformers' notice that our config.json's model_type is not one of its own."""

    def __enter__(self) -> None:
        from transformers.utils import logging  # transformers: slow to import, only this path needs it

        self._level = logging.get_verbosity()
        logging.set_verbosity_error()

    def __exit__(self, *exc) -> None:
        from transformers.utils import logging  # transformers: slow to import, only this path needs it

        logging.set_verbosity(self._level)


# ------------------------------------------------------------------------------------------- save


def _official_state(model: AudioR1ForCausalLM) -> dict[str, torch.Tensor]:
    keep = expected_keys(model)
    state = {}
    for name, tensor in model.state_dict().items():
        key = to_official_key(name)
        if key in keep:
            state[key] = tensor.detach().contiguous()
    return state


def _shards(state: dict[str, torch.Tensor], max_bytes: int) -> list[dict[str, torch.Tensor]]:
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for key, tensor in state.items():
        nbytes = tensor.numel() * tensor.element_size()
        if shards[-1] and size + nbytes > max_bytes:
            shards.append({})
            size = 0
        shards[-1][key] = tensor
        size += nbytes
    return shards


def save_pretrained(
    model: AudioR1ForCausalLM, tokenizer: Any, directory: str | Path, max_shard_bytes: int = 2 * 1024**3
) -> Path:
    """Write config.json, safetensors (sharded above `max_shard_bytes`) and tokenizer files.

    The directory appears whole or not at all: files go to a temporary sibling that is renamed
    into place, and an existing directory is replaced only once the new one is complete.
    """
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        config = {"model_type": "audio_r1", "architectures": ["AudioR1ForCausalLM"], **model.config.to_dict()}
        (staging / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
        shards = _shards(_official_state(model), max_shard_bytes)
        if len(shards) == 1:
            save_file(shards[0], str(staging / WEIGHTS_NAME), metadata={"format": "pt"})
        else:
            weight_map = {}
            for number, shard in enumerate(shards, start=1):
                name = f"model-{number:05d}-of-{len(shards):05d}.safetensors"
                save_file(shard, str(staging / name), metadata={"format": "pt"})
                weight_map.update(dict.fromkeys(shard, name))
            total = sum(t.numel() * t.element_size() for shard in shards for t in shard.values())
            index = {"metadata": {"total_size": total}, "weight_map": weight_map}
            (staging / INDEX_NAME).write_text(json.dumps(index, indent=2) + "\n")
        tokenizer.save_pretrained(str(staging))
        _replace_directory(staging, directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return directory


def _replace_directory(staging: Path, directory: Path) -> None:
    if directory.exists():
        retired = directory.with_name(f".{directory.name}.old-{os.getpid()}")
        os.replace(directory, retired)
        os.replace(staging, directory)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        os.replace(staging, directory)
