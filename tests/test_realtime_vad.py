"""Server VAD (Silero, through onnxruntime): the tracker on synthetic speech, and turn detection over the wire.

Speech is espeak-ng's (the synthetic suite's `speak`), surrounded by digital silence, so where it starts
and stops is known from the samples themselves.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import soxr
from realtime_support import b64, client, next_event, pcm16, until
from serve_support import ServerProcess

from audio_r1.data.synth import speak
from audio_r1.realtime.config import TurnDetection
from audio_r1.realtime.vad import VadTracker

pytest.importorskip("onnxruntime")
pytest.importorskip("silero_vad")
SR = 16000
LEAD_S, TAIL_S = 1.0, 1.5


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return speak("What is the capital of France? Tell me quickly.", "en-us")


@pytest.fixture(scope="module")
def model():
    from audio_r1.realtime.vad import SileroModel

    return SileroModel()


def padded(speech: np.ndarray, lead: float = LEAD_S, tail: float = TAIL_S) -> np.ndarray:
    return np.concatenate([np.zeros(int(lead * SR), np.float32), speech, np.zeros(int(tail * SR), np.float32)])


def feed(tracker: VadTracker, audio: np.ndarray, chunk: int = 1600) -> list:
    events = []
    for i in range(0, len(audio), chunk):
        events += tracker.feed(audio[i:i + chunk])
    return events


def test_tracker_finds_the_speech_between_silences(model, speech) -> None:
    settings = TurnDetection(prefix_padding_ms=300, silence_duration_ms=500)
    events = feed(VadTracker(model, settings), padded(speech))
    assert [e.kind for e in events] == ["start", "stop"]
    speech_ms = len(speech) * 1000 / SR
    start, stop = events[0].ms, events[1].ms
    # the start is reported with the prefix padding in front of it; the stop after the silence duration
    assert LEAD_S * 1000 - 300 - 150 <= start <= LEAD_S * 1000 - 300 + 150
    assert LEAD_S * 1000 + speech_ms + 500 - 200 <= stop <= LEAD_S * 1000 + speech_ms + 500 + 300


def test_silence_and_a_pure_tone_are_not_speech(model) -> None:
    tracker = VadTracker(model, TurnDetection())
    assert feed(tracker, np.zeros(3 * SR, np.float32)) == []
    t = np.arange(2 * SR) / SR
    assert feed(tracker, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)) == []


def test_silence_duration_decides_when_speech_stops(model, speech) -> None:
    short = feed(VadTracker(model, TurnDetection(silence_duration_ms=300)), padded(speech, tail=0.8))
    long = feed(VadTracker(model, TurnDetection(silence_duration_ms=1200)), padded(speech, tail=0.8))
    # 300 ms also splits at the pause between the two sentences; each start is followed by its stop
    assert [e.kind for e in short] == ["start", "stop"] * (len(short) // 2) and short
    assert [e.kind for e in long] == ["start"]  # 0.8 s of silence is not yet 1.2 s


def test_a_high_threshold_hears_less(model, speech) -> None:
    quiet = padded(speech * 0.02)
    normal = feed(VadTracker(model, TurnDetection(threshold=0.5)), quiet)
    strict = feed(VadTracker(model, TurnDetection(threshold=0.95)), quiet)
    assert len(strict) <= len(normal)


def test_chunking_does_not_change_the_result(model, speech) -> None:
    audio = padded(speech)
    a = feed(VadTracker(model, TurnDetection()), audio, chunk=160)
    b = feed(VadTracker(model, TurnDetection()), audio, chunk=7777)
    assert [(e.kind, e.ms) for e in a] == [(e.kind, e.ms) for e in b]


# ------------------------------------------------------------------------------------ over the wire


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    pytest.importorskip("openai")
    pytest.importorskip("websockets")
    proc = ServerProcess("--log-level", "warning", log_dir=tmp_path_factory.mktemp("logs"))
    yield proc
    assert proc.stop() == 0


def wire_pcm(audio16k: np.ndarray) -> bytes:
    return pcm16(soxr.resample(audio16k, SR, 24000))


async def stream(conn, pcm: bytes, chunk_ms: int = 100) -> None:
    step = 24000 * 2 * chunk_ms // 1000
    for i in range(0, len(pcm), step):
        await conn.input_audio_buffer.append(audio=b64(pcm[i:i + step]))


def test_server_vad_commits_the_turn_and_answers(server, speech) -> None:
    async def go():
        async with client(server.url).realtime.connect(model="tiny") as conn:
            created = await next_event(conn)
            assert created.session.audio.input.turn_detection.type == "server_vad"
            await conn.session.update(session={"type": "realtime", "max_output_tokens": 24,
                                               "audio": {"input": {"turn_detection": {
                                                   "type": "server_vad", "silence_duration_ms": 400,
                                                   "prefix_padding_ms": 200, "threshold": 0.5}}},
                                               "audio_r1": {"thinking_token_budget": 2}})
            updated, _ = await until(conn, "session.updated")
            td = updated.session.audio.input.turn_detection
            assert (td.silence_duration_ms, td.prefix_padding_ms, td.threshold) == (400, 200, 0.5)
            await stream(conn, wire_pcm(padded(speech)))
            started, _ = await until(conn, "input_audio_buffer.speech_started")
            stopped, _ = await until(conn, "input_audio_buffer.speech_stopped")
            committed, _ = await until(conn, "input_audio_buffer.committed")
            assert started.item_id == stopped.item_id == committed.item_id
            assert abs(started.audio_start_ms - (LEAD_S * 1000 - 200)) <= 150
            speech_end = LEAD_S * 1000 + len(speech) * 1000 / SR
            assert speech_end + 400 - 200 <= stopped.audio_end_ms <= speech_end + 400 + 300
            done, events = await until(conn, "response.done")  # create_response defaults to true
            assert done.response.status in ("completed", "incomplete")
            assert done.response.usage.input_tokens > 30  # the turn's audio is in the prompt

    asyncio.run(asyncio.wait_for(go(), 180))


def test_manual_mode_never_commits_by_itself(server, speech) -> None:
    async def go():
        async with client(server.url).realtime.connect(model="tiny") as conn:
            await next_event(conn)
            await conn.session.update(session={"type": "realtime", "audio": {"input": {"turn_detection": None}}})
            await until(conn, "session.updated")
            await stream(conn, wire_pcm(padded(speech)))
            await conn.session.update(session={"type": "realtime"})  # a marker: everything before it is handled
            _, seen = await until(conn, "session.updated")
            assert not [e.type for e in seen if e.type.startswith("input_audio_buffer.")]
            await conn.input_audio_buffer.commit()
            committed, _ = await until(conn, "input_audio_buffer.committed")
            assert committed.item_id

    asyncio.run(asyncio.wait_for(go(), 180))


def test_speech_interrupts_a_running_response(server, speech) -> None:
    async def go():
        async with client(server.url).realtime.connect(model="tiny") as conn:
            await next_event(conn)
            await conn.session.update(session={"type": "realtime", "max_output_tokens": 4000,
                                               "audio": {"input": {"turn_detection": {"type": "server_vad",
                                                                                      "create_response": False}}}})
            await until(conn, "session.updated")
            await conn.conversation.item.create(item={
                "type": "message", "role": "user", "content": [{"type": "input_text", "text": "Talk."}]})
            await until(conn, "conversation.item.done")
            # the speech follows at once: the server handles events in order, so the response has only
            # just been created when the speech starts (0.3 s of audio in), long before it can end
            await conn.response.create()
            await stream(conn, wire_pcm(padded(speech, lead=0.3, tail=0.0)))
            done, seen = await until(conn, "response.done")
            kinds = [e.type for e in seen]
            assert done.response.status == "cancelled"
            assert done.response.status_details.reason == "turn_detected"
            assert kinds.index("input_audio_buffer.speech_started") < kinds.index("response.done")

    asyncio.run(asyncio.wait_for(go(), 180))
