"""`audio-r1 serve`: an OpenAI-compatible HTTP server (FastAPI + uvicorn) over the batching engine.

    audio-r1 serve --model smol --host 127.0.0.1 --port 8000

Endpoints: `POST /v1/chat/completions` (streamed or not; the think block comes back as
`reasoning`, and under its former vLLM name `reasoning_content` too, the answer as `content`, as
vLLM's reasoning parsers return them), the WebSocket `/v1/realtime` (the OpenAI Realtime protocol,
speech in and out: see `serve/realtime.py` and docs/realtime.md), `GET /v1/models`,
`GET /health`, and `GET /realtime`, a page to talk to the model from the browser's microphone. Concurrent requests, realtime responses included, are decoded together by one
`Batcher`.

Every refusal is a 4xx in OpenAI's error shape: a body over `--max-body-mb` (413), bad JSON or
fields, unreadable or too much audio, `max_tokens` over `--max-tokens-limit` or the context (400), a
wrong or missing `--api-key` (401), an unknown model (404), a full queue (429 with `Retry-After`).
`--max-queue` counts every request taken but not yet decoding: those whose body is being read or
whose audio waits for (or is in) a prepare worker (`preparing` in `/health`) and those waiting for
the engine (`queued`). A request whose sampling fails gets a 500 (or an error event) alone; the
requests batched with it go on. A request whose client disconnects, streamed or not, is cancelled.

On SIGINT/SIGTERM the server stops accepting connections and finishes the requests in flight for up
to `--shutdown-timeout` seconds; then every stream still open gets an error event
(`code: "shutting_down"`) and `[DONE]`, and every non-streamed request still waiting a 503. The
process then exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import json
import logging
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from ..api import AudioR1
from ..engine import GenerationConfig, SamplingError, SequenceDone, StreamDelta
from .batcher import Batcher, QueueFullError, ShuttingDownError
from .options import ServeConfig, serve_config_from_args
from .prompts import BuiltPrompt, build_prompt
from .protocol import (
    ApiError,
    ChatCompletionRequest,
    chunk,
    completion,
    completion_id,
    error_body,
    model_card,
    parse_request,
    reasoning_fields,
    usage_dict,
)
from .realtime import RealtimeRoute

log = logging.getLogger("audio_r1.serve")

RETRY_AFTER_S = 1  # the Retry-After of a 429: a batch of the tiny preset takes about that long
REALTIME_PAGE = Path(__file__).resolve().parent / "static" / "realtime.html"
SHUTDOWN_MARGIN_S = 5.0  # uvicorn's own shutdown timeout is ours plus this: time to send the final events


class _State:
    """What the request handlers share: the model, the batcher and the limits."""

    def __init__(self, model: AudioR1, config: ServeConfig):
        self.model = model
        self.config = config
        self.created = int(time.time())
        self.batcher = Batcher(model.engine, max_batch=config.max_batch, max_queue=config.max_queue,
                               batch_wait_s=config.batch_wait_ms / 1000)
        # Audio decoding and log-mels run here, off the event loop, a few at a time: a thread per request
        # would oversubscribe the cores the engine needs (each thread runs its own torch thread team).
        self.prepare_pool = ThreadPoolExecutor(config.prepare_workers, thread_name_prefix="audio-r1-prepare")
        # Requests taken but not yet submitted: their body is being read, or their audio waits for (or
        # is in) a prepare worker. Only the event loop's thread changes it.
        self.preparing = 0
        text = model.config.text_config
        self.context = int(text.get("max_position_embeddings", 0) or 0) if isinstance(text, dict) else 0


# ---------------------------------------------------------------------------------------------- app


def create_app(model: AudioR1, config: ServeConfig) -> FastAPI:
    """The FastAPI app serving `model`; the batcher starts and stops with the app's lifespan."""
    state = _State(model, config)
    realtime = RealtimeRoute(state)
    page = REALTIME_PAGE.read_text()

    @asynccontextmanager
    async def lifespan(app):
        state.batcher.start()
        yield
        # uvicorn has already waited for the requests in flight; let the worker finish and end.
        await run_in_threadpool(state.batcher.stop, config.shutdown_timeout_s)
        state.prepare_pool.shutdown(wait=False, cancel_futures=True)
        realtime.shutdown()

    app = FastAPI(title="audio-r1", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.serve = state

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, error: ApiError):
        return JSONResponse(error.body(), status_code=error.status, headers=error.headers)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, error: HTTPException):
        kind = "not_found_error" if error.status_code == 404 else "invalid_request_error"
        return JSONResponse(error_body(str(error.detail), type=kind), status_code=error.status_code,
                            headers=getattr(error, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, error: RequestValidationError):
        first = error.errors()[0] if error.errors() else {"loc": (), "msg": "invalid request"}
        param = ".".join(str(part) for part in first.get("loc", ())) or None
        return JSONResponse(error_body(f"{param}: {first.get('msg')}", param=param, code="invalid_value"),
                            status_code=400)

    @app.exception_handler(Exception)
    async def _server_error(request: Request, error: Exception):
        log.exception("unhandled error")
        return JSONResponse(error_body("internal server error", type="server_error"), status_code=500)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        s = state.batcher.stats
        return {
            "status": "shutting_down" if state.batcher.draining else "ok",
            "model": config.name,
            "preparing": state.preparing,
            "queued": state.batcher.queued,
            "running": state.batcher.running,
            "batching": {"batches": s.batches, "requests": s.submitted, "completed": s.completed,
                         "failed": s.failed, "cancelled": s.cancelled, "aborted": s.aborted,
                         "max_batch_seen": s.max_batch_seen,
                         "mean_batch": round(s.batched_requests / s.batches, 2) if s.batches else 0.0},
            "realtime": realtime.stats(),
        }

    @app.websocket("/v1/realtime")
    async def realtime_session(websocket: WebSocket) -> None:
        await realtime.serve(websocket)

    @app.get("/realtime")
    async def realtime_page() -> HTMLResponse:
        """The talk page: microphone in, reasoning and answer beside each other, speech out."""
        return HTMLResponse(page, headers={"Cache-Control": "no-cache"})

    @app.get("/v1/models")
    async def models(request: Request) -> dict[str, Any]:
        _authorize(request, config.api_key)
        return {"object": "list", "data": [model_card(config.name, state.created)]}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        _authorize(request, config.api_key)
        waiting = state.preparing + state.batcher.queued
        if waiting >= config.max_queue:
            await _discard_body(request, config.max_body_bytes)
            raise _queue_full(f"{waiting} requests are already waiting (the limit is {config.max_queue})")
        state.preparing += 1
        try:
            body = await _read_body(request, config.max_body_bytes)
            loop = asyncio.get_running_loop()
            req, built, gen = await loop.run_in_executor(state.prepare_pool, _prepare, state, body)
        finally:
            state.preparing -= 1
        events: asyncio.Queue = asyncio.Queue()

        def emit(item) -> None:  # on the batcher's thread; a non-streamed reply needs only the final event
            if req.stream or not isinstance(item, StreamDelta):
                loop.call_soon_threadsafe(events.put_nowait, item)

        try:
            job = state.batcher.submit(built.prompt, gen, emit)
        except QueueFullError as error:
            raise _queue_full(str(error)) from None
        except ShuttingDownError:
            raise ApiError(503, "the server is shutting down", type="server_error", code="shutting_down") from None
        rid = completion_id()
        if req.stream:
            include_usage = bool(req.stream_options and req.stream_options.include_usage)
            return StreamingResponse(_sse(events, job, rid, config.name, include_usage),
                                     media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        try:
            item = await _result_or_disconnect(events, request)
        finally:
            job.cancel()  # a no-op once finished; stops the work when the client left
        if item is None:  # the client has gone: nobody reads this
            return Response(status_code=499)
        if isinstance(item, ShuttingDownError):
            raise ApiError(503, "the server shut down before this request finished", type="server_error",
                           code="shutting_down")
        if isinstance(item, BaseException):
            raise ApiError(500, _failure_message(item), type="server_error") from item
        r = item.result
        usage = usage_dict(r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.reasoning_tokens)
        return completion(rid, config.name, r.reasoning, r.answer, r.finish_reason, usage)

    return app


def _queue_full(reason: str) -> ApiError:
    return ApiError(429, f"the server is busy: {reason}; retry later", type="rate_limit_error",
                    code="queue_full", headers={"Retry-After": str(RETRY_AFTER_S)})


def _failure_message(error: BaseException) -> str:
    """What a client is told about a failed generation (a sampling failure says what went wrong)."""
    return f"generation failed: {error}" if isinstance(error, SamplingError) else "generation failed"


async def _result_or_disconnect(events: asyncio.Queue, request: Request) -> SequenceDone | BaseException | None:
    """The request's final event, or None as soon as its client disconnects."""
    result = asyncio.ensure_future(events.get())
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({result, gone}, return_when=asyncio.FIRST_COMPLETED)
        return result.result() if result.done() else None
    finally:
        result.cancel()
        gone.cancel()


async def _disconnected(request: Request) -> None:
    """Return once the client has disconnected (the body has been read already)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _authorize(request: Request, api_key: str | None) -> None:
    if api_key is None:
        return
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), api_key.encode()):
        raise ApiError(401, "missing or wrong API key; send 'Authorization: Bearer <key>'",
                       code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})


async def _discard_body(request: Request, cap: int) -> None:
    """Read and drop the body (up to `cap` bytes), so a refused client can read its reply."""
    size = 0
    async for piece in request.stream():
        size += len(piece)
        if size > cap:
            break


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refusing more than `limit` bytes with 413.

    An oversized body is still read (and dropped) up to a cap, so the client gets the 413 instead of a
    connection reset in the middle of its upload.
    """
    too_big = ApiError(413, f"the request body is over this server's limit of {limit} bytes "
                            "(--max-body-mb)", code="request_too_large")
    declared = request.headers.get("content-length")
    if declared is not None and not declared.strip().isdigit():
        raise ApiError(400, "invalid Content-Length header")
    drain_cap = limit + 64 * 2**20
    if declared is not None and int(declared) > drain_cap:
        raise too_big
    over = declared is not None and int(declared) > limit
    chunks: list[bytes] = []
    size = 0
    async for piece in request.stream():
        size += len(piece)
        if over or size > limit:
            over, chunks = True, []
            if size > drain_cap:
                break
        else:
            chunks.append(piece)
    if over:
        raise too_big
    return b"".join(chunks)


def _prepare(state: _State, body: bytes) -> tuple[ChatCompletionRequest, BuiltPrompt, GenerationConfig]:
    """Parse and check a request, decode its audio and render its prompt (in a worker thread)."""
    config = state.config
    req = parse_request(body)
    if req.model is not None and req.model != config.name:
        raise ApiError(404, f"the model {req.model!r} does not exist; this server serves {config.name!r}",
                       param="model", code="model_not_found")
    refused = req.unsupported()
    if refused is not None:
        raise ApiError(400, refused[1], param=refused[0], code="unsupported_parameter")
    asked = req.max_completion_tokens or req.max_tokens
    param = "max_completion_tokens" if req.max_completion_tokens else "max_tokens"
    if asked is not None and asked > config.max_tokens_limit:
        raise ApiError(400, f"{param}={asked} is over this server's limit of {config.max_tokens_limit}",
                       param=param, code="max_tokens_too_large")
    built = build_prompt(state.model, req, config.audio)
    prompt_tokens = len(built.prompt.input_ids)
    max_new = asked or config.default_max_tokens
    if state.context:
        room = state.context - prompt_tokens
        if room < 1 or (asked is not None and asked > room):
            raise ApiError(400, f"the prompt has {prompt_tokens} tokens and {param} asks for {max_new}, over "
                           f"the model's context of {state.context} tokens", param=param,
                           code="context_length_exceeded")
        max_new = min(max_new, room)
    try:
        gen = GenerationConfig(
            max_new_tokens=max_new,
            temperature=config.temperature if req.temperature is None else req.temperature,
            top_p=1.0 if req.top_p is None else req.top_p,
            top_k=0 if req.top_k in (None, -1) else req.top_k,
            repetition_penalty=1.0 if req.repetition_penalty is None else req.repetition_penalty,
            seed=req.seed,
            max_think_tokens=req.thinking_budget,
            min_think_tokens=req.min_think_tokens or 0,
        )
    except ValueError as error:
        raise ApiError(400, str(error), code="invalid_value") from None
    return req, built, gen


def _sse_line(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


async def _sse(events: asyncio.Queue, job, rid: str, model: str, include_usage: bool) -> AsyncIterator[str]:
    """Server-sent events: a role chunk, reasoning/content deltas, the finish chunk, usage, [DONE]."""
    created = int(time.time())
    try:
        yield _sse_line(chunk(rid, model, created, {"role": "assistant", "content": ""}))
        while True:
            item = await events.get()
            if isinstance(item, StreamDelta):
                delta = reasoning_fields(item.text) if item.kind == "reasoning" else {"content": item.text}
                yield _sse_line(chunk(rid, model, created, delta))
            elif isinstance(item, SequenceDone):
                r = item.result
                yield _sse_line(chunk(rid, model, created, {}, finish_reason=r.finish_reason))
                if include_usage:
                    usage = usage_dict(r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.reasoning_tokens)
                    yield _sse_line(chunk(rid, model, created, {}, usage=usage, include_choice=False))
                break
            elif isinstance(item, ShuttingDownError):
                yield _sse_line(error_body("the server shut down before this request finished",
                                           type="server_error", code="shutting_down"))
                break
            else:
                log.error("generation failed: %r", item)
                yield _sse_line(error_body(_failure_message(item), type="server_error"))
                break
        yield "data: [DONE]\n\n"
    finally:
        job.cancel()  # a no-op once finished; stops the work when the client left early


# ---------------------------------------------------------------------------------------------- CLI


class _Server(uvicorn.Server):
    """uvicorn's server, with our shutdown: the batcher's deadline starts with it, and it exits 0.

    uvicorn waits for the connections in flight, cancels them after its own timeout (with ASGI
    tracebacks) and raises the signal again once done (exit 143 on SIGTERM). Here the batcher ends
    unfinished work at `--shutdown-timeout` so every response completes properly first, uvicorn's
    timeout is only a backstop, and the signal is not raised again.
    """

    def __init__(self, config: uvicorn.Config, on_shutdown: Callable[[], None]):
        super().__init__(config)
        self._on_shutdown = on_shutdown

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        handled = [signal.SIGINT, signal.SIGTERM]
        original = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)

    async def shutdown(self, sockets=None) -> None:
        self._on_shutdown()
        await super().shutdown(sockets)


def serve(config: ServeConfig, model: AudioR1 | None = None) -> None:
    """Load the model (unless given) and serve it until SIGINT/SIGTERM."""
    logging.basicConfig(level=config.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    if model is None:
        model = AudioR1.from_pretrained(config.model, quantize="int8" if config.int8 else None, progress=False)
    app = create_app(model, config)
    log.info("serving %s on http://%s:%d", config.name, config.host, config.port)
    settings = uvicorn.Config(app, host=config.host, port=config.port, log_level=config.log_level,
                              timeout_graceful_shutdown=config.shutdown_timeout_s + SHUTDOWN_MARGIN_S,
                              access_log=config.log_level == "debug")
    server = _Server(settings, on_shutdown=lambda: app.state.serve.batcher.drain(config.shutdown_timeout_s))
    server.run()
    if not server.started:
        raise SystemExit(3)  # uvicorn's exit status when it cannot start (e.g. the port is taken)


def main(args: argparse.Namespace) -> int:
    serve(serve_config_from_args(args))
    return 0
