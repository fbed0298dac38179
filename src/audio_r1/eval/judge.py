"""LLM judges through any OpenAI-compatible endpoint, with pinned prompts and settings.

Configure with flags or the environment: `AUDIO_R1_JUDGE_BASE_URL` (e.g. https://api.openai.com/v1),
`AUDIO_R1_JUDGE_MODEL`, and `AUDIO_R1_JUDGE_API_KEY` or `OPENAI_API_KEY`. Every reply is kept;
replies the benchmark cannot parse are counted as invalid, never guessed. A judgement is repeated
`runs` times (Big Bench Audio's published scores average 3 runs) and the runs are averaged.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from typing import Any

from .errors import JudgeError

ENV_BASE_URL, ENV_MODEL, ENV_KEY = "AUDIO_R1_JUDGE_BASE_URL", "AUDIO_R1_JUDGE_MODEL", "AUDIO_R1_JUDGE_API_KEY"


def prompt_sha256(template: str) -> str:
    """Hash of a pinned prompt template, recorded with every judged result."""
    return hashlib.sha256(template.encode("utf-8")).hexdigest()


@dataclass
class JudgeConfig:
    """Where the judge is and how it samples. `model` None means no judge is configured."""

    model: str | None = None
    base_url: str | None = None
    api_key: str | None = None
    runs: int | None = None  # None: the benchmark's published default
    workers: int = 8
    timeout_s: float = 120.0
    retries: int = 3
    sampling: dict[str, Any] = field(default_factory=dict)  # overrides of the benchmark's pinned settings

    @classmethod
    def from_env(cls, model: str | None = None, base_url: str | None = None, api_key: str | None = None,
                 **kwargs: Any) -> JudgeConfig:
        """Flags first, then the environment."""
        return cls(
            model=model or os.environ.get(ENV_MODEL) or None,
            base_url=base_url or os.environ.get(ENV_BASE_URL) or None,
            api_key=api_key or os.environ.get(ENV_KEY) or os.environ.get("OPENAI_API_KEY") or None,
            **kwargs,
        )

    @property
    def configured(self) -> bool:
        return bool(self.model)

    def describe(self) -> dict[str, Any]:
        """What results record about the judge (never the key)."""
        return {"model": self.model, "base_url": self.base_url, "runs": self.runs, "sampling": self.sampling}


class Judge:
    """One OpenAI-compatible chat model asked single-turn prompts."""

    def __init__(self, config: JudgeConfig):
        if not config.configured:
            raise JudgeError(f"no judge model: pass --judge-model or set {ENV_MODEL} (and {ENV_BASE_URL})")
        from openai import OpenAI  # openai: optional, only the judge needs it

        self.config = config
        self.client = OpenAI(base_url=config.base_url, api_key=config.api_key or "EMPTY", timeout=config.timeout_s,
                             max_retries=config.retries)

    def ask(self, prompt: str, **sampling: Any) -> str:
        """The judge's reply text to `prompt` (raises `JudgeError` when the call fails)."""
        try:
            response = self.client.chat.completions.create(
                model=self.config.model, messages=[{"role": "user", "content": prompt}], **sampling)
        except Exception as error:  # noqa: BLE001 - any client failure is reported the same way
            raise JudgeError(f"judge call to {self.config.base_url or 'the default OpenAI URL'} failed: {error}") from None
        content = response.choices[0].message.content if response.choices else None
        return content or ""
