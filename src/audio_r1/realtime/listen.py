"""Listen while thinking: one session's KV cache, fed with the user's turn piece by piece as it arrives.

While a user turn accumulates, the session cuts it into pieces (`RealtimeOptions.listen_piece_s`, one
encoder chunk each) and hands the prompt heard so far (the conversation, then the open turn's pieces) to
its `Listener`, which prefills it into a `PrefixCache` up to the end of the last piece: only the new
piece is encoded and prefilled, earlier audio never again. When the turn is committed the response
decodes from that cache (`PrefixCache.events`), so only the turn's last piece and closing tokens are left
to prefill after the end of speech.

Each listener runs its work (prefills, then the response's decoding) in its own worker thread, one job
at a time and in order, so a long prefill holds up neither the event loop, nor other sessions, nor the
server's batcher. A prefill asked for while one runs replaces any not started yet (the newer prompt
holds the older one). `close` frees the cache once the job in flight has stopped.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..api import AudioR1
from ..engine import GenerationConfig, PrefixCache, Prompt, SequenceDone, SequenceFailed
from ..processing import Turn

log = logging.getLogger("audio_r1.realtime")

CAPACITY = 512  # the cache's first size in tokens; it grows as the conversation does


class ListenStats:
    """Counters of every session's listening (what `/health` reports as `realtime.listen`)."""

    FIELDS = ("caches", "freed", "prefills", "encoded_chunks", "prefilled_tokens", "responses")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts = dict.fromkeys(self.FIELDS, 0)

    def add(self, **counts: int) -> None:
        """Add to the named counters (thread-safe)."""
        with self._lock:
            for name, value in counts.items():
                self.counts[name] += value

    def stats(self) -> dict[str, int]:
        """`caches` alive now, `freed` so far, `prefills` run while listening, the audio chunks the
        listeners encoded and the tokens they prefilled (each once), and the responses completed from a cache."""
        with self._lock:
            return dict(self.counts)


class _Job:
    """A response decoding from a listener's cache, as the session's `Cancellable`."""

    def __init__(self) -> None:
        self.cancelled = threading.Event()

    def cancel(self) -> None:
        self.cancelled.set()


class Listener:
    """One session's `PrefixCache` and the worker thread that feeds it and decodes from it."""

    def __init__(self, model: AudioR1, stats: ListenStats):
        self.model = model
        self.stats = stats
        self.cache: PrefixCache | None = None
        self.heard = False  # whether a prefill was ever asked for (the cache then holds the conversation)
        self.closed = False
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="audio-r1-listen")
        self._lock = threading.Lock()
        self._wanted: Sequence[Turn] | None = None
        self._busy = False

    def hear(self, turns: Sequence[Turn]) -> None:
        """Prefill the prompt of `turns` up to the end of its last audio, in the worker (call from the loop)."""
        with self._lock:
            if self.closed:
                return
            self.heard = True
            self._wanted = turns
            if self._busy:
                return
            self._busy = True
        self._executor.submit(self._drain)

    def submit(self, prompt: Prompt, config: GenerationConfig, emit: Callable[[Any], None]) -> _Job:
        """Decode `prompt` from the cache after the prefills asked for so far; events go to `emit` (in the
        worker) as the batcher sends them: deltas, then the `SequenceDone`, or an exception."""
        job = _Job()
        self._executor.submit(self._decode, prompt, config, emit, job)
        return job

    def close(self) -> None:
        """Stop listening and free the cache once the job in flight has stopped (call after cancelling it)."""
        with self._lock:
            if self.closed:
                return
            self.closed, self._wanted = True, None
        self._executor.submit(self._release)
        self._executor.shutdown(wait=False)

    # ----------------------------------------------------------------------------- in the worker

    def _cache(self) -> PrefixCache:
        if self.cache is None:
            self.cache = self.model.engine.prefix_cache(CAPACITY)  # PrefixCacheError: checked by the server
            self.stats.add(caches=1)
        return self.cache

    def _drain(self) -> None:
        while True:
            with self._lock:
                turns, self._wanted = self._wanted, None
                if turns is None or self.closed:
                    self._busy = False
                    return
            try:
                cache = self._cache()
                chunks, tokens = cache.encoded_chunks, cache.prefilled_tokens
                cache.listen(self.model.processor.prompt(turns))
                self.stats.add(prefills=1, encoded_chunks=cache.encoded_chunks - chunks,
                               prefilled_tokens=cache.prefilled_tokens - tokens)
            except Exception:  # the response prefills what is missing; listening goes on with the next piece
                log.exception("listen-while-thinking prefill failed")

    def _decode(self, prompt: Prompt, config: GenerationConfig, emit: Callable[[Any], None], job: _Job) -> None:
        if job.cancelled.is_set() or self.closed:
            return
        try:
            cache = self._cache()
            chunks, tokens = cache.encoded_chunks, cache.prefilled_tokens
            events = cache.events(prompt, config, should_stop=lambda: job.cancelled.is_set() or self.closed)
            counted = False
            try:
                for event in events:
                    if not counted:  # the prompt's prefill is done by its first event
                        self.stats.add(encoded_chunks=cache.encoded_chunks - chunks,
                                       prefilled_tokens=cache.prefilled_tokens - tokens)
                        counted = True
                    if isinstance(event, SequenceFailed):
                        emit(event.error)
                        break
                    if isinstance(event, SequenceDone):  # counted before the session hears of it
                        self.stats.add(responses=1)
                    emit(event)
                    if isinstance(event, SequenceDone):
                        break
            finally:
                events.close()  # the cache holds the prompt again (the answer's tokens dropped)
        except Exception as error:  # the response fails with it; the session goes on
            emit(error)

    def _release(self) -> None:
        if self.cache is not None:
            self.cache.release()
            self.cache = None
            self.stats.add(caches=-1, freed=1)
