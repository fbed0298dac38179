"""The scheduler: one worker thread owns the engine and decodes waiting requests together.

The engine is not thread-safe, so exactly one thread calls it. Requests are `submit`ted from any
thread and wait in a bounded queue (a full queue refuses at once, so the server can answer 429).
The worker takes everything waiting, up to `max_batch`, and runs it as one batch with a config per
request (`Engine.events`), routing each delta to its request's `emit` callback as it is generated. A
request is finished (and its response can close) as soon as its own sequence ends; requests that
arrive meanwhile wait for the next batch. A short `batch_wait_s` after the first arrival lets
requests sent at the same moment share a batch.

A request whose client has gone is `cancel`led: skipped if it is still waiting, and a batch stops
decoding (checked after every step) once every request in it is finished or cancelled. A request
whose sampling fails gets its `SamplingError` alone; the rest of its batch goes on. `drain(timeout)`
is the first half of a shutdown: work still goes on for `timeout` seconds, then every unfinished
request, running or waiting, gets a `ShuttingDownError` and the worker stops decoding.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from ..engine import Engine, GenerationConfig, Prompt, SequenceDone, SequenceFailed, StreamDelta
from ..errors import AudioR1Error, ConfigError

log = logging.getLogger(__name__)

Event = StreamDelta | SequenceDone | BaseException


class QueueFullError(AudioR1Error, RuntimeError):
    """The waiting queue holds `max_queue` requests already."""


class ShuttingDownError(AudioR1Error, RuntimeError):
    """The batcher is stopping and takes no new requests."""


@dataclass(eq=False)
class Job:
    """One request in flight. `emit` receives its `StreamDelta`s, then one `SequenceDone` (or an error)."""

    prompt: Prompt
    config: GenerationConfig
    emit: Callable[[Event], None]
    submitted_at: float = field(default_factory=time.perf_counter)
    started_at: float | None = None
    cancelled: bool = False
    done: bool = False

    def cancel(self) -> None:
        """The client went away: skip the job if it has not started, stop sending it events if it has."""
        self.cancelled = True


@dataclass
class BatcherStats:
    """Counters since start; every submitted job ends up in exactly one of the last four."""

    submitted: int = 0
    completed: int = 0  # results delivered
    failed: int = 0  # a generation error was delivered instead
    cancelled: int = 0  # the client left before its result: skipped, or stopped mid-batch
    aborted: int = 0  # cut by a shutdown (`drain`'s deadline) and told so
    batches: int = 0
    max_batch_seen: int = 0
    batched_requests: int = 0  # sum of batch sizes, for the mean


class Batcher:
    """Runs submitted jobs on one worker thread, in batches."""

    def __init__(self, engine: Engine, *, max_batch: int = 32, max_queue: int = 256, batch_wait_s: float = 0.01):
        if max_batch < 1 or max_queue < 1 or batch_wait_s < 0:
            raise ConfigError("max_batch and max_queue must be >= 1 and batch_wait_s >= 0")
        self.engine = engine
        self.max_batch = max_batch
        self.max_queue = max_queue
        self.batch_wait_s = batch_wait_s
        self.stats = BatcherStats()
        self._waiting: deque[Job] = deque()
        self._running: list[Job] = []
        self._cond = threading.Condition()
        self._stopping = False
        self._deadline: float | None = None  # time.monotonic() after which unfinished work is aborted
        self._thread: threading.Thread | None = None

    # -------------------------------------------------------------------------------------- control

    def start(self) -> Batcher:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="audio-r1-batcher", daemon=True)
            self._thread.start()
        return self

    def drain(self, timeout: float) -> None:
        """Shutdown has begun: keep working for `timeout` s, then abort whatever is unfinished.

        Submissions are taken until the deadline and refused after it; aborted jobs receive a
        `ShuttingDownError`. An earlier deadline already set is kept.
        """
        with self._cond:
            deadline = time.monotonic() + max(timeout, 0.0)
            self._deadline = deadline if self._deadline is None else min(self._deadline, deadline)
            self._cond.notify_all()

    def stop(self, timeout: float | None = None) -> None:
        """Finish every job already submitted, then end the worker. New submissions are refused.

        With a `timeout`, work unfinished after that many seconds is aborted (as by `drain`).
        """
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if timeout is not None:
            self.drain(timeout)
        if self._thread is not None:
            self._thread.join(None if timeout is None else timeout + 5.0)

    @property
    def draining(self) -> bool:
        """Whether a shutdown deadline is set."""
        return self._deadline is not None

    def _past_deadline(self) -> bool:
        return self._deadline is not None and time.monotonic() >= self._deadline

    @property
    def queued(self) -> int:
        return len(self._waiting)

    @property
    def running(self) -> int:
        return sum(not job.done for job in self._running)

    def submit(self, prompt: Prompt, config: GenerationConfig, emit: Callable[[Event], None]) -> Job:
        """Queue one request; raises `QueueFullError` or `ShuttingDownError` at once instead of waiting."""
        job = Job(prompt, config, emit)
        with self._cond:
            if self._stopping or self._past_deadline():
                raise ShuttingDownError("the server is shutting down")
            if len(self._waiting) >= self.max_queue:
                raise QueueFullError(f"{len(self._waiting)} requests are already waiting (the limit is {self.max_queue})")
            self._waiting.append(job)
            self.stats.submitted += 1
            self._cond.notify_all()
        return job

    # --------------------------------------------------------------------------------------- worker

    def _loop(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            if batch:
                self._run(batch)

    def _next_batch(self) -> list[Job] | None:
        """Wait for work; None once stopping with nothing left."""
        with self._cond:
            while not self._waiting and not self._stopping:
                self._cond.wait()
            if not self._waiting:
                return None
            if self._past_deadline():  # shutting down: whatever still waits is told so, not run
                for job in self._waiting:
                    self._abort(job)
                self._waiting.clear()
                return []
            deadline = time.monotonic() + self.batch_wait_s
            while len(self._waiting) < self.max_batch and not self._stopping and self._deadline is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            batch = []
            while self._waiting and len(batch) < self.max_batch:
                job = self._waiting.popleft()
                if job.cancelled:
                    job.done = True
                    self.stats.cancelled += 1
                else:
                    batch.append(job)
            self._running = batch
            return batch

    def _run(self, jobs: list[Job]) -> None:
        now = time.perf_counter()
        for job in jobs:
            job.started_at = now
        self.stats.batches += 1
        self.stats.batched_requests += len(jobs)
        self.stats.max_batch_seen = max(self.stats.max_batch_seen, len(jobs))

        def should_stop() -> bool:  # asked by the engine after every step
            return self._past_deadline() or all(j.done or j.cancelled for j in jobs)

        events = self.engine.events([job.prompt for job in jobs], [job.config for job in jobs],
                                    should_stop=should_stop)
        try:
            for event in events:
                job = jobs[event.index]
                if isinstance(event, SequenceDone | SequenceFailed):
                    job.done = True
                    if job.cancelled:
                        self.stats.cancelled += 1
                    elif isinstance(event, SequenceDone):
                        self.stats.completed += 1
                        self._send(job, event)
                    else:
                        log.warning("request failed in a batch of %d: %s", len(jobs), event.error)
                        self.stats.failed += 1
                        self._send(job, event.error)
                elif not job.cancelled:
                    self._send(job, event)
            for job in jobs:  # decoding stopped early: everyone left is gone, or the deadline passed
                if job.done:
                    continue
                if job.cancelled or self._past_deadline():
                    self._abort(job)
                else:  # not expected: the engine ended without a final event for it
                    job.done = True
                    self.stats.failed += 1
                    self._send(job, RuntimeError("generation ended without a result"))
        except Exception as error:  # a failed batch fails its requests, never the worker
            log.exception("batch of %d failed", len(jobs))
            for job in jobs:
                if not job.done:
                    job.done = True
                    self.stats.failed += 1
                    self._send(job, error)
        finally:
            events.close()
            with self._cond:
                self._running = []

    def _abort(self, job: Job) -> None:
        """End an unfinished job for the shutdown (a job whose client left is only counted)."""
        job.done = True
        if job.cancelled:
            self.stats.cancelled += 1
            return
        self.stats.aborted += 1
        self._send(job, ShuttingDownError("the server shut down before this request finished"))

    def _send(self, job: Job, event: Event) -> None:
        try:
            job.emit(event)
        except Exception:  # the receiver is gone (e.g. its event loop closed): stop sending to it
            job.cancelled = True
