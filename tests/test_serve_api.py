"""`audio-r1 serve` as a real process on 127.0.0.1, driven by the official `openai` client.

The `tiny` preset has random weights, so these tests check the protocol (shapes, streaming, limits,
errors, shutdown), not the words.
"""

from __future__ import annotations

import threading

import httpx
import pytest
from serve_support import ServerProcess, audio_message, b64, encode, tone

openai = pytest.importorskip("openai")

KEY = "test-key"
GRACEFUL = (0,)  # a clean shutdown on SIGTERM exits 0


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    clips = tmp_path_factory.mktemp("clips")
    (clips / "tone.wav").write_bytes(encode(tone(1.0), "wav"))
    proc = ServerProcess("--api-key", KEY, "--max-body-mb", "1", "--max-audio-seconds", "20",
                         "--max-tokens-limit", "2048", "--allowed-local-dir", str(clips), "--log-level", "warning",
                         log_dir=tmp_path_factory.mktemp("logs"))
    proc.clips = clips
    yield proc
    assert proc.stop() in GRACEFUL


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0, timeout=60)


def ask(client, messages, **kw):
    kw.setdefault("max_tokens", 24)
    kw.setdefault("temperature", 0)
    return client.chat.completions.create(model="tiny", messages=messages, **kw)


def collect(stream) -> tuple[str, str, str | None, object]:
    reasoning, content, finish, usage = [], [], None, None
    for event in stream:
        if event.usage is not None:
            usage = event.usage
        for choice in event.choices:
            delta = choice.delta.model_dump()
            reasoning.append(delta.get("reasoning_content") or "")
            content.append(delta.get("content") or "")
            finish = choice.finish_reason or finish
    return "".join(reasoning), "".join(content), finish, usage


def test_models_and_health(server, client) -> None:
    assert [m.id for m in client.models.list().data] == ["tiny"]
    health = httpx.get(server.url + "/health").json()
    assert health["status"] == "ok" and health["model"] == "tiny"


@pytest.mark.parametrize("fmt", ["wav", "mp3", "flac", "ogg"])
def test_input_audio_formats(client, fmt) -> None:
    reply = ask(client, audio_message(encode(tone(1.5), fmt), "What do you hear?", fmt),
                extra_body={"thinking_token_budget": 4})
    choice = reply.choices[0]
    assert choice.finish_reason in ("stop", "length")
    assert reply.usage.completion_tokens_details.reasoning_tokens == 4
    assert reply.usage.prompt_tokens > 20  # the audio span is in the prompt
    assert choice.message.model_dump()["reasoning_content"] is not None


def test_stream_matches_non_stream_and_splits_reasoning(client) -> None:
    messages = audio_message(encode(tone(1.0), "wav"), "Is it high or low?")
    settings = dict(max_tokens=30, temperature=0, extra_body={"thinking_token_budget": 6})
    whole = ask(client, messages, **settings)
    reasoning, content, finish, usage = collect(
        ask(client, messages, stream=True, stream_options={"include_usage": True}, **settings))
    message = whole.choices[0].message.model_dump()
    assert (reasoning, content) == (message["reasoning_content"], message["content"])
    assert reasoning and content  # the budget closed the think block and the answer followed
    assert finish == whole.choices[0].finish_reason
    assert usage.completion_tokens == whole.usage.completion_tokens


def test_reasoning_comes_under_both_names(client) -> None:
    """vLLM's current name is `reasoning`; `reasoning_content` is the one it used to return."""
    settings = dict(max_tokens=20, temperature=0, extra_body={"thinking_token_budget": 5})
    messages = [{"role": "user", "content": "Think, then answer."}]
    message = ask(client, messages, **settings).choices[0].message
    assert message.reasoning and message.reasoning == message.reasoning_content  # attribute access
    assert message.model_extra["reasoning"] == message.model_extra["reasoning_content"]
    new, old = [], []
    for event in ask(client, messages, stream=True, **settings):
        for choice in event.choices:
            delta = choice.delta
            assert getattr(delta, "reasoning", None) == getattr(delta, "reasoning_content", None)
            new.append(getattr(delta, "reasoning", None) or "")
            old.append((delta.model_extra or {}).get("reasoning_content") or "")
    assert "".join(new) == "".join(old) == message.reasoning


def test_earlier_assistant_turns_may_carry_reasoning_under_either_name(client) -> None:
    history = [{"role": "user", "content": "first"}]
    for field in ("reasoning", "reasoning_content"):
        turn = {"role": "assistant", "content": "an answer", field: "earlier thoughts"}
        reply = ask(client, [*history, turn, {"role": "user", "content": "second"}], max_tokens=3)
        assert reply.choices[0].finish_reason in ("stop", "length")
        with pytest.raises(openai.BadRequestError) as info:  # a reasoning that is not text is refused
            ask(client, [*history, {**turn, field: 5}, {"role": "user", "content": "second"}], max_tokens=3)
        assert info.value.body["param"] == f"messages[1].{field}"


def test_audio_url_data_and_local_paths(server, client) -> None:
    wav = encode(tone(1.0), "wav")
    for url in (f"data:audio/wav;base64,{b64(wav)}", str(server.clips / "tone.wav"),
                f"file://{server.clips / 'tone.wav'}", "tone.wav"):
        reply = ask(client, [{"role": "user", "content": [{"type": "audio_url", "audio_url": {"url": url}},
                                                          {"type": "text", "text": "?"}]}])
        assert reply.choices[0].finish_reason in ("stop", "length")
    for url, code in (("http://127.0.0.1:1/a.wav", "audio_url_not_allowed"), ("/etc/passwd", "audio_url_not_allowed"),
                      ("../../../etc/passwd", "audio_url_not_allowed"), ("ftp://x/a.wav", "audio_url_not_allowed"),
                      ("missing.wav", "invalid_audio")):
        with pytest.raises(openai.BadRequestError) as info:
            ask(client, [{"role": "user", "content": [{"type": "audio_url", "audio_url": {"url": url}}]}])
        assert info.value.body["code"] == code, url


def test_seed_reproduces_sampling_and_settings_apply(client) -> None:
    messages = [{"role": "user", "content": "Describe a sound."}]
    settings = dict(max_tokens=16, temperature=1.0, top_p=0.9, seed=11)
    first = ask(client, messages, **settings).choices[0].message.model_dump()
    again = ask(client, messages, **settings).choices[0].message.model_dump()
    assert first == again
    short = ask(client, messages, max_tokens=3)
    assert short.usage.completion_tokens == 3 and short.choices[0].finish_reason == "length"


def test_no_thinking_and_assistant_prefill(client) -> None:
    plain = ask(client, [{"role": "user", "content": "hi"}], extra_body={"chat_template_kwargs": {"enable_thinking": False}})
    assert plain.usage.completion_tokens_details.reasoning_tokens == 0
    assert plain.choices[0].message.model_dump()["reasoning_content"] == ""
    # The official server's idiom: an assistant turn pre-filled with "<think>\n" is continued inside the block.
    prefilled = ask(client, [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"},
                             {"role": "assistant", "content": "<think>\n"}],
                    extra_body={"thinking_token_budget": 3})
    assert prefilled.usage.completion_tokens_details.reasoning_tokens == 3


def test_errors_have_openai_shape(server, client) -> None:
    with pytest.raises(openai.AuthenticationError) as info:
        openai.OpenAI(base_url=server.url + "/v1", api_key="wrong", max_retries=0).models.list()
    assert set(info.value.body) == {"message", "type", "param", "code"}
    with pytest.raises(openai.BadRequestError) as info:
        ask(client, [{"role": "user", "content": "x"}], max_tokens=5000)
    assert info.value.body["param"] == "max_tokens" and info.value.body["code"] == "max_tokens_too_large"
    with pytest.raises(openai.BadRequestError) as info:
        ask(client, audio_message(encode(tone(22.0, rate=4000), "wav", rate=4000), "?"))
    assert info.value.body["code"] == "audio_too_long"
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    big = {"model": "tiny", "messages": [{"role": "user", "content": "x" * (2 * 2**20)}]}
    response = httpx.post(server.url + "/v1/chat/completions", json=big, headers={"Authorization": f"Bearer {KEY}"})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


def test_text_far_beyond_the_context_is_a_400_naming_its_field(client) -> None:
    with pytest.raises(openai.BadRequestError) as info:  # 900 kB of text: within --max-body-mb, not the context
        ask(client, [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok"},
                     {"role": "user", "content": [{"type": "text", "text": "word " * 180_000}]}], max_tokens=2)
    assert info.value.body["code"] == "context_length_exceeded"
    assert info.value.body["param"] == "messages[2].content[0].text"


@pytest.fixture
def small_server(tmp_path):
    proc = ServerProcess("--max-queue", "1", "--max-batch", "1", "--max-tokens-limit", "4000",
                         "--batch-wait-ms", "0", "--log-level", "warning", log_dir=tmp_path)
    yield proc
    proc.stop()


def test_full_queue_is_429_and_shutdown_finishes_requests_in_flight(small_server) -> None:
    client = openai.OpenAI(base_url=small_server.url + "/v1", api_key="none", max_retries=0, timeout=120)
    long = dict(model="tiny", messages=[{"role": "user", "content": "go"}], max_tokens=3800, temperature=0,
                extra_body={"thinking_token_budget": 8})
    running = client.chat.completions.create(stream=True, **long)
    first = next(iter(running))  # the first request is now being decoded
    waiting = threading.Thread(target=lambda: client.chat.completions.create(max_tokens=4, **{
        k: v for k, v in long.items() if k != "max_tokens"}))
    waiting.start()
    for _ in range(2000):  # until the second request sits in the queue
        if httpx.get(small_server.url + "/health").json()["queued"] == 1:
            break
    else:
        pytest.fail("the second request never queued")
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(**long)
    assert info.value.status_code == 429 and info.value.body["code"] == "queue_full"

    small_server.terminate()  # SIGTERM while a request streams: it still finishes
    _, content, finish, _ = collect(running)
    waiting.join(60)
    assert first.choices[0].delta.role == "assistant"
    assert finish in ("stop", "length") and content
    assert small_server.proc.wait(60) in GRACEFUL
