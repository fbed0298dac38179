"""Rollouts for RL: sample `n` responses per prompt from the current policy, through a swappable backend.

    backend = EngineBackend(model, tokenizer, special)
    rollouts = backend.generate(prompts, n=16, config=RolloutConfig(max_new_tokens=1024, seed=7))

A backend only has to implement `RolloutBackend.generate`. `EngineBackend` runs our own engine (CPU or
one GPU); `VLLMBackend` is the place for a vLLM implementation and today only says that it is missing.
Sampling is plain temperature sampling (no top-p / top-k, no thinking budget), so every generated token
comes from the policy whose log-probabilities PPO later recomputes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch

from ..engine import Engine, GenerationConfig, Prompt
from ..errors import AudioR1Error, ConfigError
from ..tokenizer import SpecialTokenIds


class BackendUnavailableError(AudioR1Error, RuntimeError):
    """A rollout backend cannot run here (its package is not installed, or it is not implemented)."""


@dataclass(frozen=True)
class RolloutConfig:
    """How responses are sampled for RL."""

    max_new_tokens: int = 1024
    temperature: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature <= 0:
            raise ConfigError(f"RL samples: temperature must be > 0, got {self.temperature}")


@dataclass
class Rollout:
    """One sampled response to `prompt` (the `group`-th prompt given to `generate`).

    `token_ids` are the generated tokens, the end-of-turn token included when the response stopped by
    itself (`finish_reason == "stop"`); `"length"` means it hit `max_new_tokens`. `text` is the decoded
    response without that final token; `think_tokens` counts the tokens inside the think block.
    """

    group: int
    prompt: Prompt
    token_ids: list[int]
    text: str
    reasoning: str
    answer: str
    think_tokens: int
    finish_reason: str


@runtime_checkable
class RolloutBackend(Protocol):
    """Anything that samples `n` responses per prompt; results are grouped by prompt, in prompt order."""

    def generate(self, prompts: Sequence[Prompt], n: int, config: RolloutConfig) -> list[Rollout]: ...


class _PolicyView:
    """What `Engine` uses of an `AudioR1ForCausalLM`, with a peft wrapper peeled off the decoder.

    `PeftModel.get_base_model()` is the HF model with the LoRA layers still injected (and active), so
    the engine's static-cache `FastDecoder` path runs the current LoRA policy instead of the slower
    fallback through the peft wrapper; nothing is merged, so the trained weights are never rounded.
    """

    def __init__(self, model: torch.nn.Module):
        self._model = model

    @property
    def language_model(self) -> torch.nn.Module:
        lm = self._model.language_model
        return lm.get_base_model() if hasattr(lm, "get_base_model") else lm

    @property
    def device(self) -> torch.device:
        return self._model.device

    def embed_inputs(self, input_ids: torch.Tensor, audio=None) -> torch.Tensor:
        return self._model.embed_inputs(input_ids, audio)


class EngineBackend:
    """Rollouts through `engine.Engine`, `batch_size` sequences per generate call.

    Prompt i's copies are consecutive (prompts x n, grouped); batch b samples with seed `config.seed + b`,
    so the same seed and weights give the same rollouts.
    """

    def __init__(self, model: torch.nn.Module, tokenizer, special: SpecialTokenIds, batch_size: int = 64,
                 fast: bool = True):
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model
        self.batch_size = batch_size
        self.engine = Engine(_PolicyView(model), tokenizer, special, fast=fast)

    def generate(self, prompts: Sequence[Prompt], n: int, config: RolloutConfig) -> list[Rollout]:
        """`n` responses for each prompt: `len(prompts) * n` rollouts, prompt by prompt."""
        if n < 1:
            raise ConfigError(f"n must be >= 1, got {n}")
        jobs = [(group, prompt) for group, prompt in enumerate(prompts) for _ in range(n)]
        rollouts: list[Rollout] = []
        was_training = self.model.training
        self.model.eval()
        try:
            for batch_index, start in enumerate(range(0, len(jobs), self.batch_size)):
                batch = jobs[start : start + self.batch_size]
                generation = GenerationConfig(max_new_tokens=config.max_new_tokens, temperature=config.temperature,
                                              seed=config.seed + batch_index)
                results = self.engine.generate([prompt for _, prompt in batch], generation)
                for (group, prompt), result in zip(batch, results, strict=True):
                    rollouts.append(Rollout(group, prompt, list(result.token_ids), result.text, result.reasoning,
                                            result.answer, result.usage.reasoning_tokens, result.finish_reason))
        finally:
            self.model.train(was_training)
        return rollouts


class VLLMBackend:
    """Rollouts on vLLM: not implemented yet. Constructing it says what is missing."""

    def __init__(self, *args, **kwargs):
        try:
            import vllm  # noqa: F401
        except ImportError:
            raise BackendUnavailableError(
                "the 'vllm' rollout backend needs the vllm package, which is not installed "
                "(pip install vllm on a CUDA machine); use the 'engine' backend meanwhile"
            ) from None
        raise BackendUnavailableError("the 'vllm' rollout backend is not implemented yet; use the 'engine' backend")

    def generate(self, prompts: Sequence[Prompt], n: int, config: RolloutConfig) -> list[Rollout]:
        raise BackendUnavailableError("the 'vllm' rollout backend is not implemented yet")


BACKENDS = ("engine", "vllm")


def make_backend(name: str, model: torch.nn.Module, tokenizer, special: SpecialTokenIds,
                 batch_size: int = 64) -> RolloutBackend:
    """A rollout backend by name: 'engine' (default) or 'vllm'."""
    if name == "engine":
        return EngineBackend(model, tokenizer, special, batch_size=batch_size)
    if name == "vllm":
        return VLLMBackend(model, tokenizer, special, batch_size=batch_size)
    raise ConfigError(f"unknown rollout backend {name!r}; choose one of {BACKENDS}")
