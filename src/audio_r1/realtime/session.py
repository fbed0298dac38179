"""One realtime session: its settings, input buffer, conversation, turn detection and responses.

A `RealtimeSession` is driven by `run(connection)`: it sends `session.created`, then handles client
events one by one until the client leaves, the session is idle for too long, or the server stops.
Anything wrong with an event is answered with an `error` event and the session goes on.

A response runs as its own task: the conversation becomes a prompt (off the event loop), the
server's batcher decodes it together with every other request, reasoning deltas go out as
`audio_r1.reasoning.delta`, answer deltas as `response.output_audio_transcript.delta` and, clause by
clause, into the TTS engine, whose audio goes out as `response.output_audio.delta` while the model is
still writing. `response.cancel`, a new turn under server VAD, or the client leaving stops the
decoding, the speech and the task.

Listening while thinking (on unless turned off): while a user turn accumulates, each whole piece of it
goes to the session's `Listener` (`listen.py`), which prefills the turn heard so far into the session's
own KV cache in its own thread; a response after such a turn decodes from that cache instead of the
batcher, so only the end of the turn is prefilled after the end of speech.

The session knows nothing of WebSockets or HTTP: the server hands it a `Backend` (the model, a
`submit` into its batcher, thread pools, limits) and a `Connection` (receive, send, close).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from ..api import AudioR1
from ..audio import SAMPLE_RATE
from ..engine import GenerationConfig, Prompt, SequenceDone, StreamDelta
from ..errors import AudioR1Error, ConfigError, PromptError
from ..processing import MIN_AUDIO_MS, AudioClip, Turn
from . import protocol as wire
from .config import WIRE_RATE, RealtimeOptions, TurnDetection
from .listen import Listener, ListenStats
from .pcm import InputBuffer, StreamResampler, decode_audio, encode_audio, from_pcm16
from .tts import ClauseSplitter, TTSEngine
from .vad import SileroModel, VadTracker

log = logging.getLogger("audio_r1.realtime")

MIN_COMMIT_MS = 100  # OpenAI refuses to commit less than 100 ms of audio
MAX_ITEMS = 256  # conversation items kept per session (oldest dropped first)


class Cancellable(Protocol):
    def cancel(self) -> None: ...


class SubmitRefused(AudioR1Error, RuntimeError):
    """The server took no new generation (its queue is full, or it is shutting down); `code` says which."""

    def __init__(self, message: str, code: str):
        self.code = code
        super().__init__(message)


@dataclass
class Backend:
    """What a session uses of the server: the model, its batcher, its pools and its limits."""

    model: AudioR1
    model_name: str
    submit: Callable[[Prompt, GenerationConfig, Callable[[Any], None]], Cancellable]
    prepare_pool: Executor
    tts_pool: Executor
    tts: TTSEngine
    vad: Callable[[], SileroModel] | None  # loads (once) the shared VAD model; None: no server VAD
    options: RealtimeOptions
    context: int = 0
    default_max_tokens: int = 1024
    max_tokens_limit: int = 4096
    temperature: float = 0.7
    listen: ListenStats | None = None  # None: the model cannot listen while thinking (no FastDecoder shape)


class Connection(Protocol):
    """A client's socket as the session sees it: `receive` returns None once the client is gone."""

    async def receive(self) -> str | bytes | None: ...

    async def send(self, text: str) -> None: ...

    async def close(self, code: int, reason: str) -> None: ...


class SessionRegistry:
    """Counts open sessions against `max_sessions`; what `/health` reports."""

    def __init__(self, max_sessions: int):
        self.max_sessions = max_sessions
        self.active: set[str] = set()
        self.opened = 0
        self.refused = 0
        self.closed = 0

    def acquire(self, session_id: str) -> bool:
        if len(self.active) >= self.max_sessions:
            self.refused += 1
            return False
        self.active.add(session_id)
        self.opened += 1
        return True

    def release(self, session_id: str) -> None:
        if session_id in self.active:
            self.active.discard(session_id)
            self.closed += 1

    def stats(self) -> dict[str, int]:
        return {"sessions": len(self.active), "max_sessions": self.max_sessions, "opened": self.opened,
                "refused": self.refused, "closed": self.closed}


@dataclass
class _Item:
    """A conversation item: its id and role, its content for the prompt, and its wire form."""

    id: str
    role: str
    content: list[str | AudioClip]
    wire_content: list[dict[str, Any]]


@dataclass(eq=False)
class _Response:
    """One response in flight."""

    id: str
    item_id: str
    modalities: list[str]
    max_output_tokens: int | str
    voice: str
    speed: float
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    stop: threading.Event = field(default_factory=threading.Event)
    job: Cancellable | None = None
    task: asyncio.Task | None = None
    cancelled: str | None = None  # the reason, once cancelled
    finished: bool = False
    answer: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    audio_samples: int = 0
    created_at: float = field(default_factory=time.perf_counter)
    first_audio_at: float | None = None

    def cancel(self, reason: str) -> None:
        if self.cancelled is None and not self.finished:
            self.cancelled = reason
            self.stop.set()
            if self.job is not None:
                self.job.cancel()
            self.queue.put_nowait(_CANCELLED)

    def wire(self, status: str, **extra: Any) -> dict[str, Any]:
        return wire.response_object(self.id, status, modalities=self.modalities,
                                    max_output_tokens=self.max_output_tokens, voice=self.voice, **extra)


_CANCELLED = object()


class RealtimeSession:
    """The state and the event handlers of one client's realtime session."""

    def __init__(self, backend: Backend, send: Callable[[dict[str, Any]], None]):
        self.backend = backend
        self.options = backend.options
        self.id = wire.new_id("sess")
        self._send = send
        self.instructions: str | None = None
        self.modalities = ["audio"]
        self.max_output_tokens: int | str = "inf"
        self.voice = backend.tts.voice
        self.speed = 1.0
        self.thinking_budget: int | None = None
        self.temperature: float | None = None
        self.seed: int | None = None
        self.listen_while_thinking: bool | None = None  # None: the server's default
        self.turn_detection: TurnDetection | None = (
            TurnDetection(**vars(self.options.turn_detection)) if self.options.server_vad and backend.vad else None)
        self.buffer = InputBuffer()
        self.items: list[_Item] = []
        self.response: _Response | None = None
        self._vad: VadTracker | None = None
        self._speech_item: str | None = None  # the item id announced by speech_started
        self._listener: Listener | None = None  # made at the first piece heard
        self._pieces: list[AudioClip] = []  # the open turn's pieces cut so far (listening)
        self._cut = 0  # buffer samples cut into those pieces
        self.last_activity = time.monotonic()
        self.idle_closed = False
        self._reset_vad()

    # ---------------------------------------------------------------------------------- wire forms

    def session_object(self) -> dict[str, Any]:
        """The GA session object sent in `session.created` / `session.updated`."""
        fmt = {"type": "audio/pcm", "rate": WIRE_RATE}
        return {
            "type": "realtime", "object": "realtime.session", "id": self.id, "model": self.backend.model_name,
            "instructions": self.instructions, "output_modalities": self.modalities,
            "max_output_tokens": self.max_output_tokens, "tools": [], "tool_choice": "auto",
            "audio": {
                "input": {"format": fmt, "noise_reduction": None, "transcription": None,
                          "turn_detection": self.turn_detection.to_wire() if self.turn_detection else None},
                "output": {"format": fmt, "voice": self.voice, "speed": self.speed},
            },
            "audio_r1": {"thinking_token_budget": self.thinking_budget, "temperature": self.temperature,
                         "seed": self.seed, "tts": self.backend.tts.name,
                         "listen_while_thinking": self.listening},
        }

    # --------------------------------------------------------------------------------------- loop

    async def run(self, connection: Connection) -> None:
        """Send `session.created`, then handle events until the client leaves or goes idle."""
        self._send(wire.event("session.created", session=self.session_object()))
        watchdog = asyncio.get_running_loop().create_task(self._watch_idle(connection))
        try:
            while True:
                frame = await connection.receive()
                self.last_activity = time.monotonic()
                if frame is None:
                    return
                if isinstance(frame, bytes):
                    self._send(wire.error_event("binary frames are not supported: send JSON text events",
                                                code="invalid_json"))
                    continue
                await self.handle(frame)
        finally:
            watchdog.cancel()
            self.close()

    async def _watch_idle(self, connection: Connection) -> None:
        """Close the session once no client event came for `idle_timeout_s` while no response ran."""
        idle = self.options.idle_timeout_s
        while True:
            left = self.last_activity + idle - time.monotonic()
            if left > 0 or self.response is not None:  # a running response is not idleness
                await asyncio.sleep(left if left > 0 else min(1.0, idle))
                continue
            self.idle_closed = True
            self._send(wire.error_event(f"the session was idle for {idle:g} s and is closed",
                                        code="session_idle_timeout"))
            await connection.close(1000, "idle timeout")
            return

    def close(self) -> None:
        """The client is gone: stop the response (its decoding and speech), drop the buffers, free the cache."""
        if self.response is not None:
            self.response.cancel("client_cancelled")
            if self.response.task is not None:
                self.response.task.cancel()
        if self._listener is not None:
            self._listener.close()
        self.buffer.clear()
        self._reset_pieces()
        self.items.clear()

    async def handle(self, frame: str) -> None:
        """Handle one client text frame; every refusal becomes an `error` event."""
        event_id = None
        try:
            event = wire.parse_client_event(frame)
            event_id = event.event_id
            handler = getattr(self, "_on_" + event.type.replace(".", "_"))
            handler(event)
        except wire.ProtocolError as error:
            self._send(wire.protocol_error_event(error))
        except Exception:  # a bug must not end the session: say so, keep going
            log.exception("realtime event failed")
            self._send(wire.error_event("the server failed to handle this event", type="server_error",
                                        event_id=event_id))

    # ----------------------------------------------------------------------------------- session

    def _on_session_update(self, event: wire.SessionUpdate) -> None:
        patch = event.session
        bad = self._check_session_patch(patch, event.event_id)
        if bad is not None:
            raise bad
        if patch.instructions is not None:
            self.instructions = patch.instructions or None
        if patch.output_modalities is not None:
            self.modalities = list(patch.output_modalities)
        if patch.max_output_tokens is not None:
            self.max_output_tokens = patch.max_output_tokens
        audio = patch.audio
        if audio is not None and audio.output is not None:
            if audio.output.voice is not None:
                self.voice = audio.output.voice
            if audio.output.speed is not None:
                self.speed = audio.output.speed
        if audio is not None and audio.input is not None and "turn_detection" in audio.input.model_fields_set:
            self.turn_detection = self._turn_detection(audio.input.turn_detection)
            self._reset_vad()
        if patch.audio_r1 is not None:
            ext = patch.audio_r1
            for name in ext.model_fields_set:
                setattr(self, {"thinking_token_budget": "thinking_budget"}.get(name, name), getattr(ext, name))
        self._send(wire.event("session.updated", session=self.session_object()))

    def _check_session_patch(self, patch: wire.SessionPatch, event_id: str | None) -> wire.ProtocolError | None:
        """Everything that can be wrong with a `session.update`, checked before any of it applies."""
        if patch.model is not None and patch.model != self.backend.model_name:
            return wire.ProtocolError(f"this server serves {self.backend.model_name!r}, not {patch.model!r}",
                                      code="model_not_found", param="session.model", event_id=event_id)
        if isinstance(patch.max_output_tokens, int) and not 1 <= patch.max_output_tokens <= self.backend.max_tokens_limit:
            return wire.ProtocolError(f"max_output_tokens must be in [1, {self.backend.max_tokens_limit}]",
                                      code="invalid_value", param="session.max_output_tokens", event_id=event_id)
        audio = patch.audio
        if audio is not None and audio.output is not None and audio.output.voice is not None:
            try:
                self.backend.tts.check_voice(audio.output.voice)
            except ConfigError as error:
                return wire.ProtocolError(str(error), code="invalid_value", param="session.audio.output.voice",
                                          event_id=event_id)
        if patch.audio_r1 is not None and patch.audio_r1.listen_while_thinking and self.backend.listen is None:
            return wire.ProtocolError("this model cannot listen while thinking (its decoder is not Llama/Qwen2-"
                                      "shaped)", code="unsupported_value",
                                      param="session.audio_r1.listen_while_thinking", event_id=event_id)
        if audio is not None and audio.input is not None and audio.input.turn_detection is not None:
            if self.backend.vad is None:
                return wire.ProtocolError("server VAD is not available on this server; set turn_detection to "
                                          "null and commit the buffer yourself", code="unsupported_value",
                                          param="session.audio.input.turn_detection", event_id=event_id)
            try:
                self._turn_detection(audio.input.turn_detection)
            except ConfigError as error:
                return wire.ProtocolError(str(error), code="invalid_value",
                                          param="session.audio.input.turn_detection", event_id=event_id)
        return None

    def _turn_detection(self, patch: wire.TurnDetectionPatch | None) -> TurnDetection | None:
        if patch is None:
            return None
        base = vars(self.turn_detection or self.options.turn_detection)
        given = {k: getattr(patch, k) for k in patch.model_fields_set if k != "type" and getattr(patch, k) is not None}
        return TurnDetection(**{**base, **given})

    # ------------------------------------------------------------------------------ input buffer

    def _on_input_audio_buffer_append(self, event: wire.InputAudioBufferAppend) -> None:
        data = decode_audio(event.audio, "audio", event.event_id)
        seconds = len(data) / 2 / WIRE_RATE
        limit = self.options.max_buffer_s
        if self.buffer.seconds + seconds > limit:
            raise wire.ProtocolError(f"the input audio buffer would hold over {limit:g} s; commit or clear it "
                                     "first", code="input_audio_buffer_full", param="audio", event_id=event.event_id)
        samples = self.buffer.append(data)
        if self._vad is not None and self.turn_detection is not None:
            self._detect(samples)
        self._listen()

    def _on_input_audio_buffer_commit(self, event: wire.InputAudioBufferCommit) -> None:
        self._commit(event.event_id)

    def _on_input_audio_buffer_clear(self, event: wire.InputAudioBufferClear) -> None:
        self.buffer.clear()
        self._reset_pieces()
        self._reset_vad()
        self._send(wire.event("input_audio_buffer.cleared"))

    def _commit(self, event_id: str | None, item_id: str | None = None) -> str | None:
        """Turn the buffer into a user audio item; None (and an error event) when it is too short."""
        ms = self.buffer.seconds * 1000
        if ms < MIN_COMMIT_MS:
            self._send(wire.error_event(f"the input audio buffer holds {ms:.0f} ms; at least {MIN_COMMIT_MS} ms "
                                        "are needed to commit", code="input_audio_buffer_commit_empty",
                                        event_id=event_id))
            return None
        waveform = self.buffer.take()
        item_id = item_id or wire.new_id("item")
        previous = self.items[-1].id if self.items else None
        content = [{"type": "input_audio", "transcript": None}]
        clips = self._turn_pieces(waveform, item_id) if self.listening else [AudioClip(waveform, item_id)]
        self._reset_pieces()
        self._add_item(_Item(item_id, "user", clips, content))
        self._send(wire.event("input_audio_buffer.committed", item_id=item_id, previous_item_id=previous))
        self._announce_item(item_id, "user", content, previous)
        return item_id

    def _add_item(self, item: _Item) -> None:
        self.items.append(item)
        del self.items[:-MAX_ITEMS]

    def _announce_item(self, item_id: str, role: str, content: list[dict[str, Any]], previous: str | None) -> None:
        item = wire.message_item(item_id, role, content)
        self._send(wire.event("conversation.item.added", previous_item_id=previous, item=item))
        self._send(wire.event("conversation.item.done", previous_item_id=previous, item=item))

    # ----------------------------------------------------------------------------- turn detection

    def _reset_vad(self) -> None:
        self._speech_item = None
        if self.turn_detection is None or self.backend.vad is None:
            self._vad = None
            return
        self._vad = VadTracker(self.backend.vad(), self.turn_detection)

    def _detect(self, samples: np.ndarray) -> None:
        assert self._vad is not None and self.turn_detection is not None
        for vad_event in self._vad.feed(samples):
            if vad_event.kind == "start":
                self._speech_item = wire.new_id("item")
                if self.response is not None and self.turn_detection.interrupt_response:
                    self.response.cancel("turn_detected")
                self._send(wire.event("input_audio_buffer.speech_started", audio_start_ms=vad_event.ms,
                                      item_id=self._speech_item))
            else:
                item_id = self._speech_item or wire.new_id("item")
                self._speech_item = None
                self._send(wire.event("input_audio_buffer.speech_stopped", audio_end_ms=vad_event.ms,
                                      item_id=item_id))
                committed = self._commit(None, item_id)
                busy = self.response is not None and self.response.cancelled is None
                if committed is not None and self.turn_detection.create_response and not busy:
                    self._start_response(wire.ResponseParams(), None)
        if not self._vad.speaking:  # silence before speech: keep only the prefix padding
            self._reset_pieces()
            keep = int(self.turn_detection.prefix_padding_ms * SAMPLE_RATE / 1000) + 512
            self.buffer.drop_before(keep)

    # ---------------------------------------------------------------------- listen while thinking

    @property
    def listening(self) -> bool:
        """Whether this session prefills user turns as they arrive (see `realtime/listen.py`)."""
        if self.backend.listen is None:
            return False
        return self.options.listen if self.listen_while_thinking is None else self.listen_while_thinking

    def _piece_samples(self) -> int:
        return round(self.options.listen_piece_s * SAMPLE_RATE)

    def _reset_pieces(self) -> None:
        self._pieces, self._cut = [], 0

    def _listen(self) -> None:
        """Cut the open turn's new whole pieces and have the listener prefill the turn heard so far."""
        if not self.listening or (self.turn_detection is not None and not (self._vad and self._vad.speaking)):
            return
        piece = self._piece_samples()
        if self.buffer.samples - self._cut < piece:
            return
        processor = self.backend.model.processor
        while self.buffer.samples - self._cut >= piece:
            clip = AudioClip(self.buffer.samples_between(self._cut, self._cut + piece),
                             f"input audio piece {len(self._pieces)}")
            self._pieces.append(processor.with_features(clip))  # the log-mel once (a few ms)
            self._cut += piece
        if self._listener is None:
            assert self.backend.listen is not None
            self._listener = Listener(self.backend.model, self.backend.listen)
        self._listener.hear([*self._turns(self.items, self.instructions), Turn("user", list(self._pieces))])

    def _turn_pieces(self, waveform: np.ndarray, source: str) -> list[AudioClip]:
        """A committed turn as the pieces heard, then the rest cut the same way (a last piece too short for
        one audio patch is dropped, unless it is all there is)."""
        piece = self._piece_samples()
        clips = list(self._pieces)
        for start in range(self._cut, len(waveform), piece):
            part = waveform[start:start + piece]
            if clips and len(part) * 1000 < MIN_AUDIO_MS * SAMPLE_RATE:
                break
            clips.append(AudioClip(part, f"{source} piece {len(clips)}"))
        return clips

    # ------------------------------------------------------------------------------ conversation

    def _on_conversation_item_create(self, event: wire.ConversationItemCreate) -> None:
        item = event.item
        if event.previous_item_id not in (None, "root") and (not self.items or event.previous_item_id != self.items[-1].id):
            raise wire.ProtocolError("items can only be added at the end of the conversation", code="invalid_value",
                                     param="previous_item_id", event_id=event.event_id)
        content: list[str | AudioClip] = []
        wire_content: list[dict[str, Any]] = []
        item_id = item.id or wire.new_id("item")
        for i, part in enumerate(item.content):
            where = f"item.content[{i}]"
            if part.type in ("input_text", "text", "output_text"):
                if part.text is None:
                    raise wire.ProtocolError(f"{where}.text is required", code="missing_required_parameter",
                                             param=f"{where}.text", event_id=event.event_id)
                if any(token in part.text for token in self._audio_tokens()):
                    raise wire.ProtocolError(f"{where}.text contains an audio placeholder token; send audio as "
                                             "input_audio", code="invalid_value", param=f"{where}.text",
                                             event_id=event.event_id)
                content.append(part.text)
                wire_content.append({"type": part.type, "text": part.text})
            elif part.type == "input_audio" and item.role == "user":
                if part.audio is None:
                    raise wire.ProtocolError(f"{where}.audio is required", code="missing_required_parameter",
                                             param=f"{where}.audio", event_id=event.event_id)
                content.append(AudioClip(self._item_audio(part.audio, f"{where}.audio", event.event_id), item_id))
                wire_content.append({"type": "input_audio", "transcript": None})
            else:
                raise wire.ProtocolError(f"{where}: a {item.role} item cannot hold {part.type!r}",
                                         code="invalid_value", param=f"{where}.type", event_id=event.event_id)
        previous = self.items[-1].id if self.items else None
        self._add_item(_Item(item_id, item.role, content, wire_content))
        self._announce_item(item_id, item.role, wire_content, previous)

    def _item_audio(self, data: str, param: str, event_id: str | None) -> np.ndarray:
        pcm = decode_audio(data, param, event_id)
        seconds = len(pcm) / 2 / WIRE_RATE
        if seconds * 1000 < MIN_COMMIT_MS or seconds > self.options.max_buffer_s:
            raise wire.ProtocolError(f"{param}: {seconds:.2f} s of audio; an item holds {MIN_COMMIT_MS} ms to "
                                     f"{self.options.max_buffer_s:g} s", code="invalid_value", param=param,
                                     event_id=event_id)
        resampler = StreamResampler(WIRE_RATE, SAMPLE_RATE)
        samples = from_pcm16(pcm[: len(pcm) - len(pcm) % 2])
        return np.concatenate([resampler.feed(samples), resampler.flush()])

    # --------------------------------------------------------------------------------- responses

    def _on_response_create(self, event: wire.ResponseCreate) -> None:
        if self.response is not None and self.response.cancelled is None:
            raise wire.ProtocolError(f"response {self.response.id} is still in progress; cancel it or wait for "
                                     "its response.done", code="conversation_already_has_active_response",
                                     event_id=event.event_id)
        params = event.response or wire.ResponseParams()
        if isinstance(params.max_output_tokens, int) and not 1 <= params.max_output_tokens <= self.backend.max_tokens_limit:
            raise wire.ProtocolError(f"max_output_tokens must be in [1, {self.backend.max_tokens_limit}]",
                                     code="invalid_value", param="response.max_output_tokens", event_id=event.event_id)
        self._start_response(params, event.event_id)

    def _on_response_cancel(self, event: wire.ResponseCancel) -> None:
        current = self.response
        if current is None or (event.response_id is not None and event.response_id != current.id):
            raise wire.ProtocolError("there is no response in progress to cancel", code="response_cancel_not_active",
                                     param="response_id" if event.response_id else None, event_id=event.event_id)
        current.cancel("client_cancelled")

    def _start_response(self, params: wire.ResponseParams, event_id: str | None) -> None:
        max_tokens = params.max_output_tokens if params.max_output_tokens is not None else self.max_output_tokens
        response = _Response(wire.new_id("resp"), wire.new_id("item"), list(params.output_modalities or self.modalities),
                             max_tokens, self.voice, self.speed)
        previous, self.response = self.response, response
        response.task = asyncio.get_running_loop().create_task(self._respond(response, params, previous))

    async def _respond(self, response: _Response, params: wire.ResponseParams,
                       previous: _Response | None = None) -> None:
        """Run one response from `response.created` to `response.done` (after a cancelled `previous` ends)."""
        loop = asyncio.get_running_loop()
        if previous is not None and previous.task is not None and not previous.task.done():
            await asyncio.wait({previous.task})
        self._send(wire.event("response.created", response=response.wire("in_progress")))
        status, details, usage, speaker = "completed", None, None, None
        use_conversation = params.conversation != "none"
        try:
            items = list(self.items) if use_conversation else []
            instructions = params.instructions if params.instructions is not None else self.instructions
            prompt, config, dropped = await loop.run_in_executor(
                self.backend.prepare_pool, self._prepare, items, instructions, response.max_output_tokens)
            if dropped:
                dropped_ids = {item.id for item in items[:dropped]}
                self.items = [item for item in self.items if item.id not in dropped_ids]
            listener = self._listener if self.listening and use_conversation else None
            submit = listener.submit if listener is not None and listener.heard else self.backend.submit
            if response.cancelled is None:
                response.job = submit(prompt, config, lambda e: loop.call_soon_threadsafe(
                    response.queue.put_nowait, e))
            self._open_output(response)
            speaking = "audio" in response.modalities
            clauses: asyncio.Queue = asyncio.Queue()
            if speaking:
                speaker = loop.create_task(self._speak(response, clauses))
            splitter = ClauseSplitter()
            result = None
            while response.cancelled is None:
                item = await response.queue.get()
                if item is _CANCELLED:
                    break
                if isinstance(item, StreamDelta):
                    self._delta(response, item, splitter, clauses if speaking else None)
                elif isinstance(item, SequenceDone):
                    result = item.result
                    break
                else:
                    raise item if isinstance(item, BaseException) else RuntimeError(f"unexpected event {item!r}")
            if speaking:
                for clause in splitter.flush() if response.cancelled is None else []:
                    clauses.put_nowait(clause)
                clauses.put_nowait(None)
                await speaker
            if response.first_audio_at is not None:
                log.debug("response %s: first audio %.3f s after it was created", response.id,
                          response.first_audio_at - response.created_at)
            if response.cancelled is not None:
                status, details = "cancelled", {"type": "cancelled", "reason": response.cancelled}
            elif result is not None:
                usage = wire.usage_object(result.usage.prompt_tokens, result.usage.completion_tokens,
                                          result.usage.reasoning_tokens)
                if result.finish_reason == "length":
                    status, details = "incomplete", {"type": "incomplete", "reason": "max_output_tokens"}
        except asyncio.CancelledError:  # the session is closing: nobody is listening
            response.cancel("client_cancelled")
            if speaker is not None:
                speaker.cancel()
            raise
        except Exception as error:
            status = "failed"
            details = {"type": "failed", "error": _failure(error)}
            response.cancel("failed")
            if speaker is not None:
                speaker.cancel()
        finally:
            response.finished = True
            self.last_activity = time.monotonic()
            if self.response is response:
                self.response = None
        self._close_output(response, status, details, usage, use_conversation)

    def _prepare(self, items: list[_Item], instructions: str | None, max_output_tokens: int | str
                 ) -> tuple[Prompt, GenerationConfig, int]:
        """The prompt of the conversation (oldest items dropped until it fits) and its sampling (in a worker)."""
        backend = self.backend
        asked = max_output_tokens if isinstance(max_output_tokens, int) else backend.default_max_tokens
        max_new = min(asked, backend.max_tokens_limit)
        dropped = 0
        while True:
            prompt = backend.model.processor.prompt(self._turns(items[dropped:], instructions))
            room = backend.context - len(prompt.input_ids) if backend.context else max_new
            if room >= max_new or dropped >= len(items) - 1:
                break
            dropped += 1
        if room < 1:
            raise wire.ProtocolError(f"the conversation's last item alone ({len(prompt.input_ids)} tokens) fills "
                                     f"the model's context of {backend.context} tokens", code="context_length_exceeded")
        config = GenerationConfig(
            max_new_tokens=min(max_new, room),
            temperature=backend.temperature if self.temperature is None else self.temperature,
            seed=self.seed, max_think_tokens=self.thinking_budget)
        return prompt, config, dropped

    @staticmethod
    def _turns(items: list[_Item], instructions: str | None) -> list[Turn]:
        """The conversation's turns (after the system turn of `instructions`, if any)."""
        turns = [Turn("system", instructions)] if instructions else []
        return turns + [Turn(item.role, item.content) for item in items]

    def _audio_tokens(self) -> tuple[str, ...]:
        t = self.backend.model.template
        return (t.audio_start, t.audio_patch, t.audio_end)

    def _without_audio_tokens(self, text: str) -> str:
        """An answer as the next prompt may quote it: audio placeholder tokens would desync its audio."""
        for token in self._audio_tokens():
            text = text.replace(token, "")
        return text

    def _open_output(self, response: _Response) -> None:
        item = wire.message_item(response.item_id, "assistant", [], status="in_progress")
        previous = self.items[-1].id if self.items else None
        self._send(wire.event("response.output_item.added", response_id=response.id, output_index=0, item=item))
        self._send(wire.event("conversation.item.added", previous_item_id=previous, item=item))
        part = {"type": "audio", "transcript": ""} if "audio" in response.modalities else {"type": "text", "text": ""}
        self._send(wire.event("response.content_part.added", response_id=response.id, item_id=response.item_id,
                              output_index=0, content_index=0, part=part))

    def _delta(self, response: _Response, delta: StreamDelta, splitter: ClauseSplitter,
               clauses: asyncio.Queue | None) -> None:
        where = {"response_id": response.id, "item_id": response.item_id, "output_index": 0}
        if delta.kind == "reasoning":
            response.reasoning.append(delta.text)
            self._send(wire.event(wire.REASONING_DELTA, **where, delta=delta.text))
            return
        response.answer.append(delta.text)
        kind = "response.output_audio_transcript.delta" if clauses is not None else "response.output_text.delta"
        self._send(wire.event(kind, **where, content_index=0, delta=delta.text))
        if clauses is not None:
            for clause in splitter.feed(delta.text):
                clauses.put_nowait(clause)

    async def _speak(self, response: _Response, clauses: asyncio.Queue) -> None:
        """Synthesise clauses in order as they come (each in a TTS worker), sending audio as it is made."""
        loop = asyncio.get_running_loop()
        resampler = StreamResampler(self.backend.tts.sample_rate, WIRE_RATE)
        voice = self.backend.tts.check_voice(response.voice)

        def out(samples: np.ndarray) -> None:  # on the event loop
            if response.finished or response.cancelled is not None or not len(samples):
                return
            if response.first_audio_at is None:
                response.first_audio_at = time.perf_counter()
            response.audio_samples += len(samples)
            self._send(wire.event("response.output_audio.delta", response_id=response.id, item_id=response.item_id,
                                  output_index=0, content_index=0, delta=encode_audio(samples)))

        def synthesise(clause: str) -> None:  # in a TTS worker
            for chunk in self.backend.tts.synthesize(clause, voice=voice, speed=response.speed,
                                                     stop=response.stop):
                samples = resampler.feed(chunk)
                if len(samples):
                    loop.call_soon_threadsafe(out, samples)

        while True:
            clause = await clauses.get()
            if clause is None or response.stop.is_set():
                break
            try:
                await loop.run_in_executor(self.backend.tts_pool, synthesise, clause)
            except AudioR1Error as error:
                log.warning("speech synthesis failed: %s", error)
                self._send(wire.error_event(f"speech synthesis failed: {error}", type="server_error",
                                            code="tts_failed"))
                break
        if not response.stop.is_set():
            out(resampler.flush())

    def _close_output(self, response: _Response, status: str, details: dict[str, Any] | None,
                      usage: dict[str, Any] | None, use_conversation: bool) -> None:
        """The closing events of a response and its assistant item in the conversation."""
        where = {"response_id": response.id, "item_id": response.item_id, "output_index": 0}
        answer = "".join(response.answer)
        speaking = "audio" in response.modalities
        if speaking:
            self._send(wire.event("response.output_audio.done", **where, content_index=0))
            self._send(wire.event("response.output_audio_transcript.done", **where, content_index=0, transcript=answer))
            part = {"type": "audio", "transcript": answer}
            content = [{"type": "output_audio", "transcript": answer}]
        else:
            self._send(wire.event("response.output_text.done", **where, content_index=0, text=answer))
            part = {"type": "text", "text": answer}
            content = [{"type": "output_text", "text": answer}]
        item_status = "completed" if status == "completed" else "incomplete"
        item = wire.message_item(response.item_id, "assistant", content, status=item_status)
        previous = self.items[-1].id if self.items else None
        self._send(wire.event("response.content_part.done", **where, content_index=0, part=part))
        self._send(wire.event("response.output_item.done", response_id=response.id, output_index=0, item=item))
        self._send(wire.event("conversation.item.done", previous_item_id=previous, item=item))
        kept = self._without_audio_tokens(answer)
        if use_conversation and kept.strip():
            self._add_item(_Item(response.item_id, "assistant", [kept], content))
        self._send(wire.event("response.done", response=response.wire(
            status, output=[item], status_details=details, usage=usage)))


def _failure(error: BaseException) -> dict[str, Any]:
    """The `status_details.error` of a failed response (a refusal says what it was)."""
    if isinstance(error, SubmitRefused):
        return {"type": "server_error", "code": error.code, "message": str(error)}
    if isinstance(error, wire.ProtocolError):
        return {"type": error.type, "code": error.code, "message": error.message}
    if isinstance(error, PromptError):  # the conversation cannot become a prompt
        return {"type": "invalid_request_error", "code": "invalid_value", "message": str(error)}
    if isinstance(error, AudioR1Error):  # e.g. a sampling failure, or the server shutting down
        return {"type": "server_error", "code": None, "message": f"generation failed: {error}"}
    log.error("response failed: %r", error)
    return {"type": "server_error", "code": None, "message": "generation failed"}

