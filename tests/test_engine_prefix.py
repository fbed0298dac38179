"""`PrefixCache`: a turn prefilled piece by piece as its audio arrives answers as if prefilled at once.

The comparison is with the same prompt: the turn's audio as the same pieces (one encoder chunk each),
prefilled in one go at the end. (Encoding the whole turn as one chunk gives other features: the
encoder attends across its whole chunk, so cutting the audio changes what each frame sees.)
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from audio_r1.api import AudioR1
from audio_r1.engine import GenerationConfig, Prompt, SequenceDone
from audio_r1.processing import AudioClip, Turn

SR = 16000
GREEDY = GenerationConfig(max_new_tokens=32, max_think_tokens=12)


@pytest.fixture(scope="module")
def tiny() -> AudioR1:
    return AudioR1.from_pretrained("tiny")


@pytest.fixture(scope="module")
def pieces() -> list[np.ndarray]:
    """Six 1 s pieces of a changing sound (tones over noise), as a microphone would deliver them."""
    rng = np.random.default_rng(0)
    t = np.arange(SR) / SR
    return [(0.2 * np.sin(2 * np.pi * (200 + 90 * i) * t) + 0.02 * rng.standard_normal(SR)).astype(np.float32)
            for i in range(6)]


def turns(clips: list[np.ndarray], history: list[Turn] | None = None) -> list[Turn]:
    return [Turn("system", "Answer briefly."), *(history or []),
            Turn("user", [AudioClip(c, f"piece {i}") for i, c in enumerate(clips)])]


def heard_so_far(model: AudioR1, prompt: Prompt) -> int:
    """Where the prompt of the audio heard so far ends: after its last audio span."""
    ids = prompt.input_ids
    return len(ids) - ids[::-1].index(model.special.audio_end)


def answer(events) -> list[int]:
    done = [e for e in events if isinstance(e, SequenceDone)]
    assert len(done) == 1
    return done[0].result.token_ids


class EncoderCalls:
    """Counts the audio encoder's calls and the chunks each one encoded."""

    def __init__(self, model: AudioR1):
        self.chunks: list[int] = []
        self._hook = model.model.encoder.register_forward_hook(lambda m, args, out: self.chunks.append(args[0].shape[0]))

    def close(self) -> None:
        self._hook.remove()


def listen(model: AudioR1, cache, clips: list[np.ndarray], history: list[Turn] | None = None) -> Prompt:
    """Feed the pieces one by one as they 'arrive'; the final prompt of the turn."""
    for k in range(1, len(clips) + 1):
        cache.listen(model.processor.prompt(turns(clips[:k], history)))  # up to the end of its last audio
    return model.processor.prompt(turns(clips, history))


def test_pieces_prefilled_as_they_arrive_give_the_whole_turn_answer(tiny, pieces) -> None:
    whole_prompt = tiny.processor.prompt(turns(pieces))
    calls = EncoderCalls(tiny)
    try:
        whole = tiny.engine.generate([whole_prompt], GREEDY)[0]
        assert calls.chunks == [len(pieces)]  # the whole turn at the end: one call over every chunk
        calls.chunks.clear()
        cache = tiny.engine.prefix_cache(capacity=64)  # small on purpose: the cache grows as it must
        final = listen(tiny, cache, pieces)
        assert calls.chunks == [1] * len(pieces)  # each piece encoded once, as it arrived
        before = cache.prefilled_tokens
        chunked = answer(cache.events(final, GREEDY))
        assert calls.chunks == [1] * len(pieces)  # nothing encoded again at the end of the turn
    finally:
        calls.close()
    assert final.input_ids == whole_prompt.input_ids
    assert cache.prefilled_tokens == len(final.input_ids)  # every prompt token prefilled exactly once
    # at the end only the turn's closing tokens (after its last audio span) remained to prefill
    assert cache.prefilled_tokens - before == len(final.input_ids) - heard_so_far(tiny, final)
    assert chunked == whole.token_ids


def test_logits_after_pieces_match_one_prefill(tiny, pieces) -> None:
    prompt = tiny.processor.prompt(turns(pieces))
    cache = tiny.engine.prefix_cache()
    listen(tiny, cache, pieces)
    cache.extend(prompt)
    pieced = cache._logits.float()
    fresh = tiny.engine.prefix_cache()
    fresh.extend(prompt)
    assert torch.allclose(pieced, fresh._logits.float(), atol=1e-4, rtol=1e-4)


def test_the_next_turn_reuses_the_cache(tiny, pieces) -> None:
    cache = tiny.engine.prefix_cache()
    first = listen(tiny, cache, pieces[:3])
    reply = tiny.engine.generate([first], GREEDY)[0]
    assert answer(cache.events(first, GREEDY)) == reply.token_ids
    history = [Turn("user", [AudioClip(c) for c in pieces[:3]]), Turn("assistant", reply.answer or "ok")]
    before = cache.prefilled_tokens
    second = listen(tiny, cache, pieces[3:], history)
    reused = len(first.input_ids) - 8  # at least the first turn's audio (the assistant header may retokenise)
    assert cache.prefilled_tokens - before <= len(second.input_ids) - reused
    expected = tiny.engine.generate([second], GREEDY)[0].token_ids
    assert answer(cache.events(second, GREEDY)) == expected


def test_changed_audio_is_prefilled_again_from_where_it_differs(tiny, pieces) -> None:
    cache = tiny.engine.prefix_cache()
    listen(tiny, cache, pieces[:4])
    changed = [*pieces[:2], pieces[5], pieces[3]]
    prompt = tiny.processor.prompt(turns(changed))
    calls = EncoderCalls(tiny)
    try:
        got = answer(cache.events(prompt, GREEDY))
    finally:
        calls.close()
    assert calls.chunks == [2]  # the first two pieces were kept; the third and fourth encoded again
    assert got == tiny.engine.generate([prompt], GREEDY)[0].token_ids


def test_a_stop_inside_an_audio_span_is_refused(tiny, pieces) -> None:
    prompt = tiny.processor.prompt(turns(pieces[:1]))
    inside = prompt.input_ids.index(tiny.special.audio_start) + 3
    with pytest.raises(ValueError, match="audio span"):
        tiny.engine.prefix_cache().extend(prompt, upto=inside)


def test_a_listener_prefills_in_its_thread_and_answers_from_its_cache(tiny, pieces) -> None:
    """The realtime session's `Listener`: prefills asked for as pieces arrive run in its own thread (a newer
    one replaces one not started), the response decodes from the cache, `close` frees it."""
    from audio_r1.realtime.listen import Listener, ListenStats

    stats = ListenStats()
    listener = Listener(tiny, stats)
    final = tiny.processor.prompt(turns(pieces[:4]))
    got: list = []
    done = threading.Event()

    def emit(event) -> None:
        got.append(event)
        if isinstance(event, SequenceDone | BaseException):
            done.set()

    calls = EncoderCalls(tiny)
    try:
        for k in range(1, 4):
            listener.hear(turns(pieces[:k]))
        listener.submit(final, GREEDY, emit)
        assert done.wait(300)
    finally:
        calls.close()
    assert sum(calls.chunks) == 4  # every piece encoded once, whichever prefills ran
    counts = stats.stats()
    assert (counts["caches"], counts["responses"], counts["encoded_chunks"]) == (1, 1, 4)
    assert 1 <= counts["prefills"] <= 3
    assert answer(got) == tiny.engine.generate([final], GREEDY)[0].token_ids
    listener.close()
    deadline = time.monotonic() + 60
    while stats.stats()["freed"] < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stats.stats()["caches"] == 0 and stats.stats()["freed"] == 1 and listener.cache is None
