"""Helpers for the realtime tests: the official `openai` client's realtime connection, PCM16 clips, event reading."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import numpy as np

WIRE_RATE = 24000


def pcm16(audio: np.ndarray) -> bytes:
    return (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()


def tone_pcm(seconds: float = 1.0, freq: float = 440.0, rate: int = WIRE_RATE) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    return pcm16(0.3 * np.sin(2 * np.pi * freq * t))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def pcm_seconds(events: list[Any]) -> float:
    """Seconds of PCM16 at 24 kHz in the audio deltas among `events`."""
    data = b"".join(base64.b64decode(e.delta) for e in events if e.type == "response.output_audio.delta")
    assert len(data) % 2 == 0, "audio deltas must hold whole PCM16 samples"
    return len(data) / 2 / WIRE_RATE


def client(url: str, key: str = "unused"):
    import openai  # the tests skip without it (see importorskip in each module)

    return openai.AsyncOpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=60)


async def next_event(conn, timeout: float = 60.0):
    return await asyncio.wait_for(conn.recv(), timeout)


async def until(conn, kind: str, timeout: float = 120.0) -> tuple[Any, list[Any]]:
    """Read events until one of type `kind`; (that event, every event read including it)."""
    seen = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        event = await asyncio.wait_for(conn.recv(), max(deadline - loop.time(), 0.01))
        seen.append(event)
        if event.type == kind:
            return event, seen


async def manual_session(conn, **session: Any) -> Any:
    """Read `session.created`, switch to manual commits (plus `session`), return `session.updated`."""
    created = await next_event(conn)
    assert created.type == "session.created"
    settings = {"type": "realtime", "audio": {"input": {"turn_detection": None}},
                "audio_r1": {"thinking_token_budget": 4}, "max_output_tokens": 48, **session}
    await conn.session.update(session=settings)
    updated, _ = await until(conn, "session.updated")
    return updated


async def ask_audio(conn, pcm: bytes, chunk_bytes: int = 9600) -> list[Any]:
    """Append `pcm` in chunks, commit, ask for a response; every event up to `response.done`."""
    for start in range(0, len(pcm), chunk_bytes):
        await conn.input_audio_buffer.append(audio=b64(pcm[start:start + chunk_bytes]))
    await conn.input_audio_buffer.commit()
    await conn.response.create()
    _, events = await until(conn, "response.done")
    return events
