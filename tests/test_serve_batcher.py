"""In-process pieces of serving on `tiny`: per-sequence generation configs, the batcher, chat prompts."""

from __future__ import annotations

import queue
import threading
import time

import numpy as np
import pytest
from serve_support import b64, encode, tone

from audio_r1.api import AudioR1
from audio_r1.engine import GenerationConfig, SamplingError, SequenceDone, StreamDelta
from audio_r1.serve.batcher import Batcher, QueueFullError, ShuttingDownError
from audio_r1.serve.options import AudioPolicy
from audio_r1.serve.prompts import build_prompt
from audio_r1.serve.protocol import ApiError, ChatCompletionRequest


@pytest.fixture(scope="module")
def tiny() -> AudioR1:
    return AudioR1.from_pretrained("tiny")


def prompts(model: AudioR1, *questions: str):
    return [model.build_prompt(None, q) for q in questions]


# ------------------------------------------------------------------------------- engine, per sequence


def test_one_config_per_prompt_keeps_greedy_output(tiny) -> None:
    batch = prompts(tiny, "a", "a longer question here", "mid")
    shared = tiny.engine.generate(batch, GenerationConfig(max_new_tokens=12))
    each = tiny.engine.generate(batch, [GenerationConfig(max_new_tokens=12)] * 3)
    assert [r.token_ids for r in each] == [r.token_ids for r in shared]


def test_seeded_request_is_the_same_alone_or_batched_with_others(tiny) -> None:
    target = prompts(tiny, "what do you hear?")[0]
    seeded = GenerationConfig(max_new_tokens=16, temperature=1.0, top_p=0.9, seed=5)
    alone = tiny.engine.generate([target], [seeded])[0]
    others = [GenerationConfig(max_new_tokens=4), GenerationConfig(max_new_tokens=20, temperature=0.7, seed=1)]
    batch = [prompts(tiny, "x")[0], target, prompts(tiny, "another one")[0]]
    mixed = tiny.engine.generate(batch, [others[0], seeded, others[1]])
    assert mixed[1].token_ids == alone.token_ids


def test_lengths_and_budgets_apply_per_sequence(tiny) -> None:
    batch = prompts(tiny, "one", "two")
    configs = [GenerationConfig(max_new_tokens=5), GenerationConfig(max_new_tokens=30, max_think_tokens=4)]
    short, long = tiny.engine.generate(batch, configs)
    assert len(short.token_ids) == 5 and short.finish_reason == "length"
    assert long.usage.reasoning_tokens <= 4 and len(long.token_ids) > 5


def test_events_end_each_sequence_when_it_finishes(tiny) -> None:
    batch = prompts(tiny, "one", "two")
    configs = [GenerationConfig(max_new_tokens=3), GenerationConfig(max_new_tokens=25, max_think_tokens=5)]
    events = list(tiny.engine.events(batch, configs))
    done_at = {e.index: i for i, e in enumerate(events) if isinstance(e, SequenceDone)}
    assert done_at[0] < done_at[1]
    assert not any(isinstance(e, StreamDelta) and e.index == 0 for e in events[done_at[0]:])
    whole = tiny.engine.generate(batch, configs)
    for index, result in enumerate(whole):
        text = "".join(e.text for e in events if isinstance(e, StreamDelta) and e.index == index)
        assert text.replace("\n", "") in (result.reasoning + result.answer).replace("\n", "")
        assert events[done_at[index]].result.token_ids == result.token_ids


def test_wrong_number_of_configs_is_refused(tiny) -> None:
    with pytest.raises(ValueError, match="one per prompt"):
        tiny.engine.generate(prompts(tiny, "a", "b"), [GenerationConfig()])


# ------------------------------------------------------------------------------------------- batcher


def submit_all(batcher: Batcher, items) -> list[queue.Queue]:
    queues = []
    for prompt, config in items:
        q: queue.Queue = queue.Queue()
        batcher.submit(prompt, config, q.put)
        queues.append(q)
    return queues


def drain(q: queue.Queue) -> SequenceDone:
    while True:
        item = q.get(timeout=60)
        if isinstance(item, SequenceDone):
            return item
        assert isinstance(item, StreamDelta), item


def test_batcher_decodes_waiting_requests_together(tiny) -> None:
    batcher = Batcher(tiny.engine, max_batch=8, batch_wait_s=0.5)
    batch = prompts(tiny, *[f"question {i}" for i in range(6)])
    config = GenerationConfig(max_new_tokens=10)
    queues = submit_all(batcher, [(p, config) for p in batch])  # all waiting before the worker starts
    batcher.start()
    results = [drain(q).result for q in queues]
    batcher.stop(30)
    assert batcher.stats.batches == 1 and batcher.stats.max_batch_seen == 6
    assert [r.token_ids for r in results] == [r.token_ids for r in tiny.engine.generate(batch, config)]


def test_batcher_refuses_when_full_or_stopping_and_skips_cancelled(tiny) -> None:
    batcher = Batcher(tiny.engine, max_batch=2, max_queue=2)
    prompt = prompts(tiny, "q")[0]
    config = GenerationConfig(max_new_tokens=4)
    first = batcher.submit(prompt, config, lambda item: None)
    kept: queue.Queue = queue.Queue()
    batcher.submit(prompt, config, kept.put)
    with pytest.raises(QueueFullError):
        batcher.submit(prompt, config, lambda item: None)
    first.cancel()
    batcher.start()
    assert drain(kept).result.usage.completion_tokens == 4
    batcher.stop(30)
    assert batcher.stats.completed == 1  # the cancelled one never ran
    with pytest.raises(ShuttingDownError):
        batcher.submit(prompt, config, lambda item: None)


def test_a_failing_batch_fails_its_requests_not_the_worker(tiny, monkeypatch) -> None:
    batcher = Batcher(tiny.engine, batch_wait_s=0).start()
    calls = threading.Event()

    def boom(*args, **kwargs):
        calls.set()
        raise RuntimeError("engine exploded")
        yield

    with monkeypatch.context() as patch:
        patch.setattr(tiny.engine, "events", boom)
        (q,) = submit_all(batcher, [(prompts(tiny, "q")[0], GenerationConfig(max_new_tokens=2))])
        assert isinstance(q.get(timeout=30), RuntimeError)
    (q,) = submit_all(batcher, [(prompts(tiny, "q")[0], GenerationConfig(max_new_tokens=2))])
    assert drain(q).result.usage.completion_tokens == 2
    batcher.stop(30)


def wait_until(condition, polls: int = 600) -> None:
    """Poll `condition` (bounded by a count of polls, not by a time assertion)."""
    for _ in range(polls):
        if condition():
            return
        time.sleep(0.05)
    pytest.fail("the condition never held")


def test_a_request_whose_sampling_fails_fails_alone(tiny) -> None:
    batcher = Batcher(tiny.engine, max_batch=2, batch_wait_s=0.5)
    good, bad = prompts(tiny, "good", "broken")
    config = GenerationConfig(max_new_tokens=6)
    queues = submit_all(batcher, [(good, config), (bad, config)])  # one batch, `bad` is row 1

    def nan_row_one(module, args, logits):
        if logits.shape[0] > 1:
            logits = logits.clone()
            logits[1] = float("nan")
        return logits

    handle = tiny.model.language_model.get_output_embeddings().register_forward_hook(nan_row_one)
    try:
        batcher.start()
        done = drain(queues[0])
        failure = queues[1].get(timeout=60)
        while isinstance(failure, StreamDelta):
            failure = queues[1].get(timeout=60)
    finally:
        handle.remove()
        batcher.stop(30)
    assert done.result.token_ids == tiny.engine.generate([good], [config])[0].token_ids
    assert isinstance(failure, SamplingError)
    assert (batcher.stats.completed, batcher.stats.failed, batcher.stats.batches) == (1, 1, 1)


def test_cancelling_a_running_request_stops_its_batch(tiny) -> None:
    batcher = Batcher(tiny.engine, batch_wait_s=0).start()
    events: queue.Queue = queue.Queue()
    job = batcher.submit(prompts(tiny, "go")[0], GenerationConfig(max_new_tokens=3000, ignore_eos=True), events.put)
    assert isinstance(events.get(timeout=60), StreamDelta)  # it is decoding
    job.cancel()
    wait_until(lambda: batcher.running == 0)
    (q,) = submit_all(batcher, [(prompts(tiny, "next")[0], GenerationConfig(max_new_tokens=2))])
    assert drain(q).result.usage.completion_tokens == 2
    batcher.stop(30)
    assert (batcher.stats.cancelled, batcher.stats.completed) == (1, 1)


def test_drain_aborts_running_and_waiting_requests_at_its_deadline(tiny) -> None:
    batcher = Batcher(tiny.engine, max_batch=1, batch_wait_s=0).start()
    long = GenerationConfig(max_new_tokens=3000, ignore_eos=True)
    running, waiting = submit_all(batcher, [(prompts(tiny, "go")[0], long), (prompts(tiny, "later")[0], long)])
    assert isinstance(running.get(timeout=60), StreamDelta)
    assert batcher.queued == 1
    batcher.drain(0)
    for q in (running, waiting):
        item = q.get(timeout=60)
        while isinstance(item, StreamDelta):
            item = q.get(timeout=60)
        assert isinstance(item, ShuttingDownError)
    with pytest.raises(ShuttingDownError):
        batcher.submit(prompts(tiny, "q")[0], long, lambda item: None)
    batcher.stop(30)
    assert (batcher.stats.aborted, batcher.stats.completed) == (2, 0)


# ------------------------------------------------------------------------------------------- prompts


def request(messages, **kw) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate({"messages": messages, **kw})


def test_prompt_matches_the_python_api(tiny) -> None:
    wav = encode(tone(1.0), "wav")
    content = [{"type": "input_audio", "input_audio": {"data": b64(wav), "format": "wav"}},
               {"type": "text", "text": "How many tones?"}]
    built = build_prompt(tiny, request([{"role": "user", "content": content}]), AudioPolicy())
    reference = tiny.build_prompt(wav, "How many tones?")
    assert built.prompt.input_ids == reference.input_ids
    assert built.prompt.thinking and abs(built.audio_seconds - 1.0) < 1e-6
    np.testing.assert_array_equal(built.prompt.audio[0].mel.numpy(), reference.audio[0].mel.numpy())


def test_system_and_no_thinking_match_the_python_api(tiny) -> None:
    messages = [{"role": "developer", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    built = build_prompt(tiny, request(messages, chat_template_kwargs={"enable_thinking": False}), AudioPolicy())
    reference = tiny.build_prompt(None, "hi", system="Be brief.", think=False)
    assert built.prompt.input_ids == reference.input_ids and not built.prompt.thinking


def test_assistant_prefill_is_continued(tiny) -> None:
    user = {"role": "user", "content": "hi"}
    think = build_prompt(tiny, request([user, {"role": "assistant", "content": "<think>\n"}]), AudioPolicy())
    assert think.prompt.input_ids == tiny.build_prompt(None, "hi").input_ids and think.prompt.thinking
    answer = build_prompt(tiny, request([user, {"role": "assistant", "content": "<think>\nok\n</think>\nIt is"}]),
                          AudioPolicy())
    assert not answer.prompt.thinking
    assert tiny.tokenizer.decode(answer.prompt.input_ids).endswith("</think>\nIt is")


def test_multi_turn_history_and_tail_chunks(tiny) -> None:
    history = [{"role": "user", "content": "first"}, {"role": "assistant", "content": "an answer"},
               {"role": "user", "content": "second"}]
    text = tiny.tokenizer.decode(build_prompt(tiny, request(history), AudioPolicy()).prompt.input_ids)
    assert "<think>\n\n</think>\nan answer" in text and text.index("first") < text.index("second")
    # 25.005 s: the second chunk is 5 ms, too short for any adaptor output, and is dropped (not a crash)
    clip = encode(tone(25.005), "wav")
    content = [{"type": "input_audio", "input_audio": {"data": b64(clip)}}]
    built = build_prompt(tiny, request([{"role": "user", "content": content}]), AudioPolicy())
    assert len(built.prompt.audio) == 1


def test_audio_limits_count_every_clip(tiny) -> None:
    clip = {"type": "input_audio", "input_audio": {"data": b64(encode(tone(3.0), "wav"))}}
    with pytest.raises(ApiError) as info:
        build_prompt(tiny, request([{"role": "user", "content": [clip, clip]}]), AudioPolicy(max_audio_seconds=5))
    assert info.value.code == "audio_too_long" and info.value.param == "messages[0].content[1]"


def test_text_far_beyond_the_context_is_refused_before_tokenising(tiny, monkeypatch) -> None:
    calls = []
    encode_text = tiny.tokenizer.encode
    monkeypatch.setattr(tiny.tokenizer, "encode", lambda *a, **k: calls.append(1) or encode_text(*a, **k))
    huge = "word " * 4_000_000  # 20 MB of text
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": [
        {"type": "text", "text": "a question"}, {"type": "text", "text": huge}]}]
    with pytest.raises(ApiError) as info:
        build_prompt(tiny, request(messages), AudioPolicy())
    assert info.value.code == "context_length_exceeded" and info.value.param == "messages[1].content[1].text"
    assert calls == []  # refused before the tokenizer saw it
    build_prompt(tiny, request([{"role": "user", "content": "word " * 500}]), AudioPolicy())  # within: accepted
    assert calls == [1]


def test_data_urls_in_any_case_are_inline_audio(tiny) -> None:
    wav = encode(tone(1.0), "wav")
    built = [build_prompt(tiny, request([{"role": "user", "content": [
        {"type": "audio_url", "audio_url": {"url": f"{scheme}:audio/wav;base64,{b64(wav)}"}}]}]), AudioPolicy())
             for scheme in ("data", "DATA", "Data")]
    assert built[0].prompt.input_ids == built[1].prompt.input_ids == built[2].prompt.input_ids
    assert built[1].audio_seconds == pytest.approx(1.0)


def test_errors_about_a_local_file_quote_none_of_its_bytes(tiny, tmp_path) -> None:
    (tmp_path / "notes.wav").write_bytes(b"SECRET-KEY=abcdef" * 4)
    content = [{"type": "audio_url", "audio_url": {"url": "notes.wav"}}]
    with pytest.raises(ApiError) as info:
        build_prompt(tiny, request([{"role": "user", "content": content}]), AudioPolicy(allowed_local_dir=tmp_path))
    assert info.value.code == "invalid_audio"
    assert "SECRET" not in info.value.message and b"SECRET"[:4].hex(" ") not in info.value.message
    (tmp_path / "long.wav").write_bytes(encode(tone(3.0), "wav"))
    content = [{"type": "audio_url", "audio_url": {"url": "long.wav"}}]
    with pytest.raises(ApiError) as info:  # a length is no secret: it is said
        build_prompt(tiny, request([{"role": "user", "content": content}]),
                     AudioPolicy(allowed_local_dir=tmp_path, max_audio_seconds=2))
    assert info.value.code == "audio_too_long" and "3.0 s long" in info.value.message
