"""Client for an OpenAI-compatible endpoint serving the model, in the official server's request format.

Step-Audio-R1's release serves a forked vLLM and calls it like this (`stepaudior1vllm.py`):
- audio is cut into chunks of at most 25 s, each sent as a base64 WAV content part
  `{"type": "input_audio", "input_audio": {"data": ..., "format": "wav"}}`, text parts in between in
  the benchmark's order;
- the assistant turn is pre-filled with "<think>\\n" and continued (`continue_final_message: true`,
  `add_generation_prompt: false`), with `skip_special_tokens: false` and `stop_token_ids: [151665]`
  (<|EOT|>), so the reply is the reasoning, "</think>", then the answer.

The user turn uses the standard role "user" (the official client writes "human"; its chat template
renders both the same way). A thinking budget of 0 pre-fills an empty think block
("<think>\\n\\n</think>\\n"); any other budget is sent as the request fields `thinking_token_budget`
(vLLM's name) and `max_think_tokens` (same value; `audio-r1 serve` honours both), which servers
without a thinking budget ignore.
"""

from __future__ import annotations

import base64
import io
import time
from dataclasses import dataclass
from typing import Any

import httpx
import soundfile as sf

from .errors import EndpointError
from .records import AudioRef

CHUNK_SECONDS = 25.0
STOP_TOKEN_IDS = (151665,)
BUDGET_FIELDS = ("thinking_token_budget", "max_think_tokens")  # vLLM's name, and ours
THINK_PREFILL = "<think>\n"
EMPTY_THINK_PREFILL = "<think>\n\n</think>\n"


def load_ref(ref: AudioRef):
    """A 16 kHz mono float32 waveform from a path, encoded bytes or a (samples, rate) pair."""
    from ..audio import load_clip  # the audio stack (torch) loads only when a clip is read

    return load_clip(ref)


def wav_chunks_base64(ref: AudioRef, chunk_seconds: float = CHUNK_SECONDS) -> list[str]:
    """The audio as base64 16-bit WAV chunks of at most `chunk_seconds` (16 kHz mono)."""
    from ..audio import SAMPLE_RATE, split_audio  # the audio stack (torch) loads only when a clip is read

    chunks = []
    for chunk in split_audio(load_ref(ref), chunk_seconds):
        buffer = io.BytesIO()
        sf.write(buffer, chunk, SAMPLE_RATE, format="WAV", subtype="PCM_16")
        chunks.append(base64.b64encode(buffer.getvalue()).decode("ascii"))
    return chunks


def build_request(parts: list[tuple[str, Any]], *, model: str, system: str | None, budget: int | None,
                  max_new_tokens: int, temperature: float, top_p: float = 1.0, seed: int | None = None) -> dict:
    """The JSON body of one chat-completions request (see the module docstring)."""
    content: list[dict[str, Any]] = []
    for kind, value in parts:
        if kind == "text":
            content.append({"type": "text", "text": value})
        else:
            content.extend({"type": "input_audio", "input_audio": {"data": data, "format": "wav"}}
                           for data in wav_chunks_base64(value))
    messages: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": content})
    messages.append({"role": "assistant", "content": EMPTY_THINK_PREFILL if budget == 0 else THINK_PREFILL})
    body: dict[str, Any] = {
        "model": model,
        "messages": messages,
        "max_tokens": max_new_tokens,
        "temperature": temperature,
        "top_p": top_p,
        "repetition_penalty": 1.0,
        "stream": False,
        "continue_final_message": True,
        "add_generation_prompt": False,
        "skip_special_tokens": False,
        "stop_token_ids": list(STOP_TOKEN_IDS),
    }
    if seed is not None:
        body["seed"] = seed
    if budget:
        body.update(dict.fromkeys(BUDGET_FIELDS, budget))
    return body


def chat_url(url: str) -> str:
    """Accept a base URL ("http://host:9999", ".../v1") or the full chat-completions URL."""
    url = url.rstrip("/")
    if url.endswith("/chat/completions"):
        return url
    return url + ("/chat/completions" if url.endswith("/v1") else "/v1/chat/completions")


@dataclass
class Completion:
    text: str  # the continuation after the pre-filled prefix
    finish_reason: str
    completion_tokens: int
    reasoning_tokens: int | None  # as reported by the server, when it reports it


class EndpointClient:
    """POSTs chat-completions requests with retries (connection errors, 429 and 5xx)."""

    def __init__(self, url: str, api_key: str | None = None, timeout_s: float = 600.0, retries: int = 3):
        self.url = chat_url(url)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.Client(timeout=timeout_s, headers=headers)
        self.retries = retries

    def complete(self, body: dict[str, Any]) -> Completion:
        last = ""
        for attempt in range(self.retries + 1):
            try:
                response = self.client.post(self.url, json=body)
            except httpx.HTTPError as error:
                last = f"{type(error).__name__}: {error}"
            else:
                if response.status_code == 200:
                    return _parse(response.json(), self.url)
                last = f"HTTP {response.status_code}: {response.text[:300]}"
                if response.status_code != 429 and response.status_code < 500:
                    break
            if attempt < self.retries:
                time.sleep(min(2.0 ** attempt, 10.0))
        raise EndpointError(f"{self.url}: {last}")

    def close(self) -> None:
        self.client.close()


def _parse(data: Any, url: str) -> Completion:
    try:
        choice = data["choices"][0]
        message = choice["message"]
        content = message.get("content") or ""
    except (KeyError, IndexError, TypeError):
        raise EndpointError(f"{url}: not a chat-completions response: {str(data)[:300]}") from None
    reasoning = message.get("reasoning") or message.get("reasoning_content")
    if reasoning and "</think>" not in content:  # a server-side reasoning parser split the reply for us
        content = f"{reasoning}\n</think>\n{content}"
    content = content.removesuffix("<|EOT|>")
    usage = data.get("usage") or {}
    details = usage.get("completion_tokens_details") or {}
    return Completion(content, str(choice.get("finish_reason") or "stop"), int(usage.get("completion_tokens") or 0),
                      details.get("reasoning_tokens"))
