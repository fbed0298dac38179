"""The inference stage: ask a local model (batched) or an endpoint (parallel workers) every item.

Each reply becomes one cache record keyed `<item id>@<budget>`: the raw continuation, its split into
reasoning and answer by `chat.parse_reasoning`, the finish reason and the thinking length. A
thinking budget is None (unlimited), 0 (an empty think block) or a token count.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..chat import parse_reasoning
from ..errors import AudioR1Error
from .base import BenchItem
from .endpoint import EndpointClient, build_request
from .errors import EndpointError
from .records import sha256_file

Emit = Callable[[dict[str, Any]], None]


@dataclass
class GenSettings:
    """Sampling settings shared by every item of a run (the budget varies per pass)."""

    max_new_tokens: int
    temperature: float
    top_p: float = 1.0
    seed: int | None = None
    system: str | None = None  # None: the default benchmark system prompt

    def describe(self) -> dict[str, Any]:
        return asdict(self)


def budget_label(budget: int | None) -> str:
    return "none" if budget is None else str(budget)


def record_key(item_id: str, budget: int | None) -> str:
    return f"{item_id}@{budget_label(budget)}"


def make_record(item: BenchItem, budget: int | None, *, text: str | None, thinking: bool, finish_reason: str,
                completion_tokens: int, think_tokens: int | None, error: str | None = None,
                seconds: float = 0.0) -> dict[str, Any]:
    """One inference cache record; the think block is split off here with `parse_reasoning`."""
    reasoning, answer, estimated = "", None, False
    if text is not None:
        reasoning, answer = parse_reasoning(text, prefilled_open=thinking)
        if think_tokens is None:  # the server did not say: share the tokens out by characters
            estimated = True
            think_tokens = round(completion_tokens * len(reasoning) / max(len(text), 1)) if thinking else 0
    return {"key": record_key(item.id, budget), "id": item.id, "budget": budget, "text": text, "thinking": thinking,
            "reasoning": reasoning, "answer": answer, "finish_reason": finish_reason,
            "completion_tokens": completion_tokens, "think_tokens": think_tokens or 0,
            "think_tokens_estimated": estimated, "error": error, "seconds": round(seconds, 3)}


# ------------------------------------------------------------------------------------------ local model


def build_local_prompt(model, parts: Sequence[tuple[str, Any]], system: str | None, think: bool):
    """The engine prompt of one item, its parts in the benchmark's order (text before audio where it says so)."""
    from ..processing import AudioClip, Turn  # the model stack (torch) loads only for local inference
    from .endpoint import load_ref  # the model stack (torch) loads only for local inference

    content = [value if kind == "text" else AudioClip(load_ref(value), f"parts[{i}]")
               for i, (kind, value) in enumerate(parts)]
    turns = [Turn("system", system), Turn("user", content)] if system is not None else [Turn("user", content)]
    return model.processor.prompt(turns, think=think)


class LocalBackend:
    """An `AudioR1` model in this process; items go through the engine in batches."""

    kind = "local"

    def __init__(self, model, name: str, batch_size: int = 8):
        self.model = model
        self.name = name
        self.batch_size = max(1, batch_size)

    def fingerprint(self) -> dict[str, Any]:
        return {"kind": self.kind, "model": self.name, "weights": model_fingerprint(self.name)}

    def run(self, items: Sequence[BenchItem], budget: int | None, settings: GenSettings, emit: Emit,
            advance: Callable[[int], None]) -> None:
        from ..engine import GenerationConfig  # the model stack (torch) loads only for local inference

        think = budget != 0
        config = GenerationConfig(max_new_tokens=settings.max_new_tokens, temperature=settings.temperature,
                                  top_p=settings.top_p, seed=settings.seed,
                                  max_think_tokens=budget if budget else None)
        for start in range(0, len(items), self.batch_size):
            batch = items[start:start + self.batch_size]
            began = time.perf_counter()
            prompts, ready, failed = [], [], []
            for item in batch:
                try:
                    prompts.append(build_local_prompt(self.model, item.parts, settings.system, think))
                    ready.append(item)
                except AudioR1Error as error:  # unreadable or too short audio: record it, keep going
                    failed.append((item, str(error)))
            results = self.model.engine.generate(prompts, config) if prompts else []
            seconds = (time.perf_counter() - began) / max(len(batch), 1)
            for item, result in zip(ready, results, strict=True):
                emit(make_record(item, budget, text=result.text, thinking=think, finish_reason=result.finish_reason,
                                 completion_tokens=result.usage.completion_tokens,
                                 think_tokens=result.usage.reasoning_tokens, seconds=seconds))
            for item, error in failed:
                emit(make_record(item, budget, text=None, thinking=think, finish_reason="error", completion_tokens=0,
                                 think_tokens=0, error=error))
            advance(len(batch))


# -------------------------------------------------------------------------------------------- endpoint


class EndpointBackend:
    """A served model behind an OpenAI-compatible URL; `workers` requests in flight at once."""

    kind = "endpoint"
    max_failures_before_any_success = 5

    def __init__(self, url: str, model: str, api_key: str | None = None, workers: int = 8, timeout_s: float = 600.0,
                 retries: int = 3):
        self.url = url
        self.name = model
        self.client = EndpointClient(url, api_key=api_key, timeout_s=timeout_s, retries=retries)
        self.workers = max(1, workers)

    def fingerprint(self) -> dict[str, Any]:
        return {"kind": self.kind, "url": self.client.url, "model": self.name}

    def _one(self, item: BenchItem, budget: int | None, settings: GenSettings) -> dict[str, Any]:
        began = time.perf_counter()
        try:
            body = build_request(item.parts, model=self.name, system=settings.system, budget=budget,
                                 max_new_tokens=settings.max_new_tokens, temperature=settings.temperature,
                                 top_p=settings.top_p, seed=settings.seed)
            completion = self.client.complete(body)
        except (EndpointError, ValueError) as error:
            return make_record(item, budget, text=None, thinking=budget != 0, finish_reason="error",
                               completion_tokens=0, think_tokens=0, error=str(error),
                               seconds=time.perf_counter() - began)
        think_tokens = 0 if budget == 0 else completion.reasoning_tokens
        return make_record(item, budget, text=completion.text, thinking=budget != 0,
                           finish_reason=completion.finish_reason, completion_tokens=completion.completion_tokens,
                           think_tokens=think_tokens, seconds=time.perf_counter() - began)

    def run(self, items: Sequence[BenchItem], budget: int | None, settings: GenSettings, emit: Emit,
            advance: Callable[[int], None]) -> None:
        successes = failures = 0
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            futures = [pool.submit(self._one, item, budget, settings) for item in items]
            try:
                for future in as_completed(futures):
                    record = future.result()
                    emit(record)
                    advance(1)
                    if record["error"] is None:
                        successes += 1
                    elif not successes:
                        failures += 1
                        if failures >= min(self.max_failures_before_any_success, len(items)):
                            raise EndpointError(f"the endpoint failed {failures} requests in a row and answered "
                                                f"none; last error: {record['error']}")
            except BaseException:
                for future in futures:
                    future.cancel()
                raise


# --------------------------------------------------------------------------------------- fingerprints


def model_fingerprint(name: str) -> str:
    """Cheap identity of local weights, so a run directory never mixes replies of two models."""
    from ..pretrained import bundled_delta  # the model stack (torch) loads only for local inference

    digest = hashlib.sha256(name.encode())
    if name == "smol":
        delta = bundled_delta()
        if delta is not None:
            digest.update(sha256_file(delta).encode())
    elif Path(name).is_dir():
        for path in sorted(p for p in Path(name).rglob("*") if p.is_file()):
            stat = path.stat()
            digest.update(f"{path.relative_to(name)}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]
