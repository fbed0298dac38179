"""Dimensions of the audio-r1 model and the named presets.

One dataclass per part, one for the whole model. Every size used anywhere in the code comes from
here, like the `ModelDimensions` of openai-whisper. The decoder is any `transformers` causal LM; its
configuration is kept as the plain dict that `transformers.AutoConfig.for_model` takes, so
presets stay readable and official `config.json` files map onto it without loss.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError

# Token strings of the Step-Audio format. Their ids are never hard-coded: they are read from the
# checkpoint's tokenizer (see `tokenizer.py`).
AUDIO_START = "<audio_start>"
AUDIO_PATCH = "<audio_patch>"
AUDIO_END = "<audio_end>"
THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
LETTERS = "ABCDEFGHIJ"  # the letters of multiple-choice options, in order (prompts and answer parsing)


@dataclass
class AudioEncoderConfig:
    """Whisper-shaped audio encoder (`AudioEncoder`)."""

    n_mels: int = 128
    n_ctx: int = 1500  # encoder positions after conv2 (50 Hz): 30 s of audio
    d_model: int = 1280
    n_heads: int = 20
    n_layers: int = 32
    pool_stride: int = 2  # AvgPool1d after the blocks: 50 Hz -> 25 Hz


@dataclass
class AdaptorConfig:
    """Strided conv + two-layer MLP from encoder width to decoder width (`Adaptor`)."""

    d_input: int = 1280
    d_hidden: int = 2048  # not in official config.json; read from `adapter.linear1.weight`
    d_output: int = 5120
    kernel_size: int = 3
    stride: int = 2  # 25 Hz -> 12.5 Hz


@dataclass
class AudioR1Config:
    """The whole model: encoder, adaptor, decoder (as a transformers config dict) and prompt format."""

    encoder: AudioEncoderConfig = field(default_factory=AudioEncoderConfig)
    adaptor: AdaptorConfig = field(default_factory=AdaptorConfig)
    text_config: dict[str, Any] = field(default_factory=dict)
    chat_format: str = "step"  # "step" (<|BOT|>…<|EOT|>) or "chatml" (<|im_start|>…<|im_end|>)
    chunk_seconds: float = 25.0  # audio is cut into chunks of at most this length, one span each

    def __post_init__(self) -> None:
        if isinstance(self.encoder, dict):
            self.encoder = AudioEncoderConfig(**self.encoder)
        if isinstance(self.adaptor, dict):
            self.adaptor = AdaptorConfig(**self.adaptor)
        if self.chat_format not in ("step", "chatml"):
            raise ConfigError(f"chat_format must be 'step' or 'chatml', got {self.chat_format!r}")
        if "model_type" not in self.text_config:
            raise ConfigError("text_config needs a 'model_type' (e.g. 'qwen2', 'llama')")
        if self.adaptor.d_input != self.encoder.d_model:
            raise ConfigError(
                f"adaptor input width {self.adaptor.d_input} != encoder width {self.encoder.d_model}"
            )
        hidden = self.text_config.get("hidden_size")
        if hidden is not None and hidden != self.adaptor.d_output:
            raise ConfigError(f"adaptor output width {self.adaptor.d_output} != decoder hidden size {hidden}")

    @property
    def hidden_size(self) -> int:
        return int(self.text_config["hidden_size"])

    @property
    def vocab_size(self) -> int:
        return int(self.text_config["vocab_size"])

    def num_audio_patches(self, valid_frames: int) -> int:
        """Adaptor outputs that carry audio for a chunk of `valid_frames` mel frames (100 Hz).

        Follows the strides: conv2 (k3, s2, p1) -> average pool -> adaptor conv (k3, s2, p1).
        For the released model this is ((V+1)//2//2 - 1)//2 + 1: 3 s -> 38, 25 s -> 313.
        """
        if valid_frames <= 0:
            raise ValueError(f"a chunk needs at least one mel frame, got {valid_frames}")
        after_conv2 = (valid_frames - 1) // 2 + 1
        after_pool = after_conv2 // self.encoder.pool_stride
        pad = self.adaptor.kernel_size // 2
        return (after_pool + 2 * pad - self.adaptor.kernel_size) // self.adaptor.stride + 1

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AudioR1Config:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown AudioR1Config fields: {sorted(unknown)}")
        return cls(**copy.deepcopy(data))


def _qwen2_text_config(**sizes: Any) -> dict[str, Any]:
    base = {
        "model_type": "qwen2",
        "hidden_act": "silu",
        "attention_dropout": 0.0,
        "tie_word_embeddings": False,
        "use_sliding_window": False,
    }
    base.update(sizes)
    return base


PRESETS: dict[str, AudioR1Config] = {
    # The released 33B model: Whisper-large-v3-shaped encoder + Qwen2.5-32B-shaped decoder.
    "step-audio-r1": AudioR1Config(
        encoder=AudioEncoderConfig(n_mels=128, d_model=1280, n_heads=20, n_layers=32),
        adaptor=AdaptorConfig(d_input=1280, d_hidden=2048, d_output=5120),
        text_config=_qwen2_text_config(
            hidden_size=5120,
            intermediate_size=27648,
            num_hidden_layers=64,
            num_attention_heads=40,
            num_key_value_heads=8,
            vocab_size=158720,
            rope_theta=1_000_000.0,
            rms_norm_eps=1e-5,
            max_position_embeddings=65536,
        ),
        chat_format="step",
    ),
    # Step-Audio 2 mini: same encoder, Qwen2.5-7B-shaped decoder.
    "step-audio-2-mini": AudioR1Config(
        encoder=AudioEncoderConfig(n_mels=128, d_model=1280, n_heads=20, n_layers=32),
        adaptor=AdaptorConfig(d_input=1280, d_hidden=2048, d_output=3584),
        text_config=_qwen2_text_config(
            hidden_size=3584,
            intermediate_size=18944,
            num_hidden_layers=28,
            num_attention_heads=28,
            num_key_value_heads=4,
            vocab_size=158720,
            rope_theta=1_000_000.0,
            rms_norm_eps=1e-6,
            max_position_embeddings=65536,
        ),
        chat_format="step",
    ),
    # The embedded default: Whisper tiny.en encoder + SmolLM2-135M-Instruct (Llama) decoder.
    # vocab_size is SmolLM2's 49152 plus the audio and think tokens added by `tokenizer.py`.
    "smol": AudioR1Config(
        encoder=AudioEncoderConfig(n_mels=80, d_model=384, n_heads=6, n_layers=4),
        adaptor=AdaptorConfig(d_input=384, d_hidden=2048, d_output=576),
        text_config={
            "model_type": "llama",
            "hidden_size": 576,
            "intermediate_size": 1536,
            "num_hidden_layers": 30,
            "num_attention_heads": 9,
            "num_key_value_heads": 3,
            "vocab_size": 49157,
            "rope_theta": 100000.0,
            "rms_norm_eps": 1e-5,
            "max_position_embeddings": 8192,
            "tie_word_embeddings": True,
            "hidden_act": "silu",
            "attention_bias": False,
            "mlp_bias": False,
            "bos_token_id": 1,
            "eos_token_id": 2,
        },
        chat_format="chatml",
    ),
    # Random weights, seconds to build: for tests. Step format with a byte-level tokenizer.
    "tiny": AudioR1Config(
        encoder=AudioEncoderConfig(n_mels=80, d_model=64, n_heads=2, n_layers=2),
        adaptor=AdaptorConfig(d_input=64, d_hidden=128, d_output=64),
        text_config=_qwen2_text_config(
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            vocab_size=384,
            rope_theta=10000.0,
            rms_norm_eps=1e-6,
            max_position_embeddings=4096,
        ),
        chat_format="step",
    ),
}


def get_preset(name: str) -> AudioR1Config:
    """A fresh copy of a named preset (callers may modify it)."""
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return copy.deepcopy(PRESETS[name])
