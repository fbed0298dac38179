"""The `/v1/realtime` WebSocket route: the thin glue between Starlette and `realtime.session`.

It checks the API key, the model and the session limit, then runs one `RealtimeSession` per socket
with a single writer task (events leave in the order the session made them). A client that drops
ends its session, which cancels its response, its decoding and its speech.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi import WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

from ..errors import AudioR1Error
from ..fast_decoder import unsupported_reason
from ..realtime import protocol as wire
from ..realtime.listen import ListenStats
from ..realtime.session import Backend, RealtimeSession, SessionRegistry, SubmitRefused
from ..realtime.tts import TTSEngine, make_tts
from ..realtime.vad import SileroModel, VadError, silero_model_path
from .batcher import QueueFullError, ShuttingDownError

log = logging.getLogger("audio_r1.serve.realtime")

CLOSE_NORMAL = 1000
CLOSE_POLICY = 1008  # a wrong key or model
CLOSE_TRY_AGAIN = 1013  # the session limit is reached
SUBPROTOCOL = "realtime"  # what browsers offer (a browser's WebSocket cannot set an Authorization header)
KEY_SUBPROTOCOL = "openai-insecure-api-key."  # OpenAI's way for a browser to send its key: a subprotocol


class _Socket:
    """A Starlette WebSocket as the session's `Connection`, with one writer task for outgoing events."""

    def __init__(self, websocket: WebSocket):
        self.websocket = websocket
        self.outbox: asyncio.Queue = asyncio.Queue()
        self.writer = asyncio.get_running_loop().create_task(self._write())
        self.closed = False

    def post(self, payload: dict[str, Any] | None) -> None:
        if not self.closed or payload is None:
            self.outbox.put_nowait(payload)

    async def _write(self) -> None:
        while (payload := await self.outbox.get()) is not None:
            try:
                await self.websocket.send_text(wire.dumps(payload))
            except (WebSocketDisconnect, RuntimeError, OSError):
                self.closed = True
                return
            except Exception:  # the transport failed in some other way: stop writing to it
                log.debug("realtime send failed", exc_info=True)
                self.closed = True
                return

    async def receive(self) -> str | bytes | None:
        try:
            message = await self.websocket.receive()
        except (WebSocketDisconnect, RuntimeError):
            return None
        if message["type"] == "websocket.disconnect":
            self.closed = True
            return None
        return message["text"] if message.get("text") is not None else message.get("bytes") or b""

    async def send(self, text: str) -> None:
        await self.websocket.send_text(text)

    async def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        """Send what is queued, then close the socket."""
        self.post(None)
        await asyncio.wait({self.writer}, timeout=10)
        self.closed = True
        if self.websocket.application_state == WebSocketState.CONNECTED:
            try:
                await self.websocket.close(code, reason)
            except (WebSocketDisconnect, RuntimeError, OSError):  # the client has gone already
                pass


class RealtimeRoute:
    """What the realtime route shares between sessions: the backend pieces and the session registry."""

    def __init__(self, state: Any):
        config = state.config
        options = config.realtime
        self.state = state
        self.registry = SessionRegistry(options.max_sessions)
        self.tts_pool = ThreadPoolExecutor(options.tts_workers, thread_name_prefix="audio-r1-tts")
        self.tts: TTSEngine | None = None
        self.tts_error: str | None = None
        try:
            self.tts = make_tts(options.tts, options.voice)
        except AudioR1Error as error:  # HTTP serving goes on; realtime sessions are told why they cannot open
            self.tts_error = str(error)
            log.warning("realtime speech is unavailable: %s", error)
        try:
            silero_model_path()
            self.vad = functools.cache(SileroModel)
        except VadError as error:
            self.vad = None
            log.warning("%s; realtime sessions commit by hand", error)
        self.listen: ListenStats | None = None  # listen-while-thinking needs a FastDecoder-shaped decoder
        reason = unsupported_reason(state.model.model.language_model)
        if reason is None:
            self.listen = ListenStats()
        elif options.listen:
            log.warning("realtime sessions answer each turn from a whole prefill (no listen-while-thinking): %s",
                        reason)

    def backend(self) -> Backend:
        state, config = self.state, self.state.config
        assert self.tts is not None
        return Backend(model=state.model, model_name=config.name, submit=self._submit,
                       prepare_pool=state.prepare_pool, tts_pool=self.tts_pool, tts=self.tts, vad=self.vad,
                       options=config.realtime, context=state.context, default_max_tokens=config.default_max_tokens,
                       max_tokens_limit=config.max_tokens_limit, temperature=config.temperature,
                       listen=self.listen)

    def _submit(self, prompt, config, emit):
        try:
            return self.state.batcher.submit(prompt, config, emit)
        except QueueFullError as error:
            raise SubmitRefused(str(error), "queue_full") from None
        except ShuttingDownError as error:
            raise SubmitRefused(str(error), "shutting_down") from None

    def stats(self) -> dict[str, Any]:
        """What `/health` reports: the sessions and, where the model can, their listening."""
        return {**self.registry.stats(), "listen": self.listen.stats() if self.listen is not None else None}

    def shutdown(self) -> None:
        self.tts_pool.shutdown(wait=False, cancel_futures=True)

    async def serve(self, websocket: WebSocket) -> None:
        """One client's session, from the handshake to its end."""
        offered = websocket.scope.get("subprotocols") or []
        await websocket.accept(subprotocol=SUBPROTOCOL if SUBPROTOCOL in offered else None)
        socket = _Socket(websocket)
        refusal = self._refusal(websocket)
        if refusal is not None:
            code, close_code, message = refusal
            socket.post(wire.error_event(message, code=code))
            await socket.close(close_code, code)
            return
        session = RealtimeSession(self.backend(), socket.post)
        if not self.registry.acquire(session.id):
            socket.post(wire.error_event(f"this server holds {self.registry.max_sessions} realtime sessions "
                                         "already (--realtime-max-sessions); retry later",
                                         type="server_error", code="session_limit_reached"))
            await socket.close(CLOSE_TRY_AGAIN, "session limit reached")
            return
        try:
            await session.run(socket)
        finally:
            self.registry.release(session.id)
            await socket.close()

    def _refusal(self, websocket: WebSocket) -> tuple[str, int, str] | None:
        config = self.state.config
        if config.api_key is not None and not _authorized(websocket, config.api_key):
            return "invalid_api_key", CLOSE_POLICY, ("missing or wrong API key; send 'Authorization: Bearer <key>' "
                                                   "(from a browser: the subprotocol openai-insecure-api-key.<key>)")
        model = websocket.query_params.get("model")
        if model is not None and model != config.name:
            return ("model_not_found", CLOSE_POLICY,
                    f"the model {model!r} does not exist; this server serves {config.name!r}")
        if self.tts is None:
            return "tts_unavailable", CLOSE_TRY_AGAIN, f"realtime speech is unavailable here: {self.tts_error}"
        return None


def _authorized(websocket: WebSocket, api_key: str) -> bool:
    """The key came as `Authorization: Bearer KEY` or, from a browser, as the subprotocol
    `openai-insecure-api-key.KEY` (as OpenAI's realtime API takes it)."""
    scheme, _, token = websocket.headers.get("authorization", "").partition(" ")
    tokens = [token.strip()] if scheme.lower() == "bearer" else []
    tokens += [p[len(KEY_SUBPROTOCOL):] for p in websocket.scope.get("subprotocols") or []
               if p.startswith(KEY_SUBPROTOCOL)]
    return any(hmac.compare_digest(t.encode(), api_key.encode()) for t in tokens)
