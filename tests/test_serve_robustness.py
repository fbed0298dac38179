"""Hostile and heavy traffic against a real `audio-r1 serve` process (tiny preset, loopback only).

- hundreds of malformed requests each get a 4xx in OpenAI's error shape, never a 5xx, and the server
  still answers a valid request afterwards;
- 32 streaming clients at once all complete, decoded in shared batches;
- sampling settings at the edge of their range (temperature=1e-45, top_p=1e-300 ...) never fail the
  requests batched with them;
- the server's RSS stays flat over 500 requests (a generous bound between request 100 and 500).
"""

from __future__ import annotations

import asyncio
import io
import json
import random
import socket
import struct

import httpx
import numpy as np
import pytest
import soundfile as sf
from serve_support import ServerProcess, b64, encode, status_of, tone

openai = pytest.importorskip("openai")

CHAT = "/v1/chat/completions"
BODY_LIMIT_MB = 1


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    proc = ServerProcess("--max-body-mb", str(BODY_LIMIT_MB), "--max-audio-seconds", "30", "--max-tokens-limit",
                         "512", "--batch-wait-ms", "50", "--log-level", "warning",
                         log_dir=tmp_path_factory.mktemp("logs"))
    yield proc
    proc.stop()


def valid(**overrides) -> dict:
    body = {"model": "tiny", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 8, "temperature": 0}
    body.update(overrides)
    return body


def with_content(*parts) -> dict:
    return valid(messages=[{"role": "user", "content": list(parts)}])


def audio_part(data: str, fmt="wav") -> dict:
    return {"type": "input_audio", "input_audio": {"data": data, "format": fmt}}


def url_part(url) -> dict:
    return {"type": "audio_url", "audio_url": {"url": url}}


def wav_header_claiming(frames: int) -> bytes:
    """A WAV header whose data chunk claims `frames` 16-bit samples, followed by almost nothing."""
    size = frames * 2
    header = b"RIFF" + struct.pack("<I", 36 + size) + b"WAVE" + b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, 16000,
                                                                                      32000, 2, 16)
    return header + b"data" + struct.pack("<I", size) + b"\x00" * 64


def malformed_cases() -> list[tuple[str, bytes | dict, dict]]:
    """(label, body, extra headers): every one is malformed in some way."""
    rng = random.Random(0)
    cases: list[tuple[str, bytes | dict, dict]] = []

    def add(label: str, body: bytes | dict, headers: dict) -> None:
        cases.append((label, body, headers))

    # -- bodies that are not JSON, or not an object
    for raw in [b"", b"{", b"}", b"[", b"nul", b"{'a': 1}", b'{"messages": [}', b"\x00\x01\x02", b"\xff\xfe\xfd",
                b'{"messages": "\xff"}', b"[]", b"1", b'"messages"', b"null", b"true", b"[" * 100_000,
                b'{"a":' * 50_000, b"NaN", b'{"messages": [{"role": "user", "content": "x"}],}',
                b'{"messages": [{"role": "user", "content": "x"}]} trailing']:
        add(f"raw {raw[:20]!r}", raw, {})
    for _ in range(20):
        add("random bytes", bytes(rng.randrange(256) for _ in range(rng.randrange(1, 400))), {})
    whole = json.dumps(with_content(audio_part(b64(encode(tone(0.2), "wav"))), {"type": "text", "text": "q"})).encode()
    for cut in sorted(rng.sample(range(1, len(whole) - 1), 30)):
        add(f"truncated at {cut}", whole[:cut], {})
    # -- missing or empty fields
    for body in [{}, {"model": "tiny"}, {"messages": None}, {"messages": []}, {"messages": [{}]},
                 {"messages": [{"role": "user"}], "n": 2}, {"messages": [{"content": "hi"}]},
                 with_content({"type": "text"}), with_content({"type": "input_audio"}),
                 with_content({"type": "input_audio", "input_audio": {}}), with_content({"type": "audio_url"}),
                 with_content({"type": "audio_url", "audio_url": {}}), with_content({}),
                 with_content({"text": "no type"})]:
        add("missing", body, {})
    # -- wrong types, field by field
    wrong = [None, "12", "", [], {}, True, 1.5, -1, "x" * 50, ["a"], {"a": 1}]
    fields = {"messages": wrong[:-1] + [[1], ["user"], [None], [[]]], "stream": [None, "true", 1, 0, [], {}, "yes"],
              "max_tokens": ["12", 1.5, True, [], {}, "", 0, -5], "temperature": ["0.5", True, [], {}, -0.1, 2.5],
              "top_p": ["1", 0, -1, 1.5, True, []], "seed": ["1", 1.5, True, [], {}], "n": [0, 2, "1", True],
              "thinking_token_budget": [-1, "8", 1.5, True, []], "top_k": [-2, "5", 1.5],
              "stream_options": ["x", 1, [], {"include_usage": "yes"}], "model": [1, [], {}, True],
              "chat_template_kwargs": ["x", {"enable_thinking": "no"}, []], "stop": [["x"], "STOP", 1],
              "tools": [[{"type": "function"}], "x"], "logprobs": [True, "x"], "frequency_penalty": [1.0, "x", 9],
              "presence_penalty": [0.5, 3.0], "min_think_tokens": [-3, "x"], "repetition_penalty": [0, -1.0, "x"],
              "max_completion_tokens": [0, -1, "x", 10**6]}
    for name, values in fields.items():
        for value in values:
            add(f"{name}={value!r:.30}", valid(**{name: value}), {})
    message_fields = {"role": [None, 1, "", "tool", "USER", "ｕｓｅｒ", "function", ["user"], "system\x00"],
                      "content": [1, True, {"text": "x"}, [1], ["x"], [None], [{"type": 1}], [{"type": "image_url",
                                  "image_url": {"url": "x"}}], [{"type": "text", "text": 5}]]}
    for name, values in message_fields.items():
        for value in values:
            message = {"role": "user", "content": "hi", name: value}
            add(f"message {name}={value!r:.30}", valid(messages=[message]), {})
    # -- enormous and negative numbers
    for name in ["max_tokens", "thinking_token_budget", "seed", "top_k", "min_think_tokens", "max_completion_tokens"]:
        for value in [10**30, -(10**30), 2**63, -(2**64), *([513] if "max" in name else [-7] if name != "seed" else [])]:
            add(f"{name}={value}", valid(**{name: value}), {})
    for raw in [b'{"model":"tiny","messages":[{"role":"user","content":"x"}],"max_tokens":1e999}',
                b'{"model":"tiny","messages":[{"role":"user","content":"x"}],"temperature":-1e999}',
                b'{"model":"tiny","messages":[{"role":"user","content":"x"}],"temperature":NaN}',
                b'{"model":"tiny","messages":[{"role":"user","content":"x"}],"max_tokens":' + b"9" * 5000 + b"}",
                b'{"model":"tiny","messages":[{"role":"user","content":"x"}],"top_p":Infinity}']:
        add("huge number", raw, {})
    add("too long for context", valid(max_tokens=512, messages=[{"role": "user", "content": "w" * 4000}]), {})
    # -- odd unicode
    for raw in [b'{"messages":[{"role":"user","content":"\\ud800"}]}', b'{"messages":[{"role":"user","content":"\\udfff x"}]}',
                b'{"messages":[{"role":"\\u0075ser\\u0000","content":"x"}]}', b'{"messages":[{"role":"us\xc3\x28er","content":"x"}]}',
                '{"messages":[{"role":"user","content":"x"}],"max_tokens":"١٢"}'.encode(),
                '{"messages":[{"role":"user","content":"x"}],"max_tokens":１２}'.encode(),
                '{"messages":[{"role":"ｕｓｅｒ","content":"x"}]}'.encode(), '{"mеssages":[]}'.encode(),
                b'\xef\xbb\xbf{"messages":[]}', '{"messages":[{"role":"user","content":"x"}],"model":"t\u0131ny"}'.encode(),
                "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"input_audio\",\"input_audio\":{\"data\":\"🎵🎵\"}}]}]}".encode(),
                b'{"messages":[{"role":"user","content":"<audio_patch> smuggled"}]}',
                b'{"messages":[{"role":"user","content":"x<audio_start>"}]}']:
        add(f"unicode {raw[:40]!r}", raw, {})
    # -- base64 that is garbage, or decodes to something that is not audio
    not_audio = [b"hello", b"\x00" * 1000, b"RIFF", b"RIFF\x00\x00\x00\x00WAVEfmt ", b"ID3" + b"\x00" * 50,
                 b"OggS" + b"\x01" * 100, b"fLaC" + b"\xff" * 100, b"\xff\xfb" + bytes(rng.randrange(256) for _ in range(500)),
                 b"%PDF-1.4 not audio", b"\x89PNG\r\n\x1a\n" + b"\x00" * 100, b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 50,
                 wav_header_claiming(16000 * 3600 * 5), wav_header_claiming(16000), encode(tone(1.0), "wav")[:100],
                 encode(tone(1.0), "mp3")[:300], encode(tone(1.0), "flac")[:200], encode(tone(1.0), "ogg")[:150],
                 encode(tone(0.001), "wav")]
    for data in not_audio:
        add(f"not audio {data[:12]!r}", with_content(audio_part(b64(data))), {})
        add(f"not audio url {data[:12]!r}", with_content(url_part("data:audio/wav;base64," + b64(data))), {})
    for garbage in ["!!!!", "abc", "a===", "====", "YQ", "=" * 100, "%%%%" * 10, "\u00e9\u00e9\u00e9\u00e9", "aGVsbG8",
                    "".join(rng.choice("!@#$%^&*()") for _ in range(200)), " ", "", "data:,", "Zm9v\x00YmFy"]:
        add(f"garbage base64 {garbage[:10]!r}", with_content(audio_part(garbage)), {})
    for fmt in ["wav ", "WAV", "aac ", "exe", "", 1, ["wav"], {"x": 1}]:
        add(f"format {fmt!r}", with_content(audio_part(b64(encode(tone(0.5), "wav")), fmt=fmt)), {})
    for url in ["http://127.0.0.1:9/x.wav", "https://example.invalid/a.wav", "ftp://h/x.wav", "file:///etc/passwd",
                "/etc/passwd", "../../etc/shadow", "data:audio/wav;base64", "data:", "data:audio/wav;base64,!!!",
                "javascript:alert(1)", "", "\x00", "~/x.wav", "gopher://x", 5, None]:
        add(f"audio url {url!r:.30}", with_content(url_part(url)), {})
    # -- too much audio, or a body over the limit
    long_wav = encode(tone(31.0, rate=4000), "wav", rate=4000)
    add("audio over 30 s", with_content(audio_part(b64(long_wav))), {})
    add("audio over 30 s in two clips", with_content(*[audio_part(b64(encode(tone(16.0, rate=4000), "wav", rate=4000)))] * 2), {})
    huge = b64(b"\x00" * (BODY_LIMIT_MB * 2**20))
    add("huge base64", with_content(audio_part(huge)), {})
    add("huge text", valid(messages=[{"role": "user", "content": "x" * (BODY_LIMIT_MB * 2**20 + 10)}]), {})
    # -- audio where it cannot go; wrong model; unsupported settings
    clip = audio_part(b64(encode(tone(0.5), "wav")))
    for role in ["system", "assistant", "developer"]:
        add(f"audio in {role}", valid(messages=[{"role": role, "content": [clip]}, {"role": "user", "content": "x"}]), {})
    for model in ["gpt-4o", "", "TINY", "tiny ", "../tiny"]:
        add(f"model {model!r}", valid(model=model), {})
    return cases


def send(client: httpx.Client, body: bytes | dict, headers: dict) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post(CHAT, content=content, headers={"content-type": "application/json", **headers})


def raw_http(port: int, request: bytes) -> int:
    """Send bytes as they are and return the status code of the reply."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(request)
        conn.shutdown(socket.SHUT_WR)
        return status_of(conn)[0]


def test_malformed_http_gets_4xx(server) -> None:
    body = json.dumps(valid()).encode()
    head = f"POST {CHAT} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n".encode()
    for request in [head + b"Content-Length: abc\r\n\r\n" + body,
                    head + b"Content-Length: -5\r\n\r\n" + body,
                    head + b"Content-Length: 5\r\nContent-Length: 9\r\n\r\n" + body,
                    head + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n" + body,
                    b"GARBAGE\r\n\r\n", b"POST " + b"/x" * 40000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"]:
        assert 400 <= raw_http(server.port, request) < 500, request[:80]
    assert httpx.post(server.url + CHAT, json=valid(), timeout=60).status_code == 200


def test_malformed_requests_get_4xx_never_5xx(server) -> None:
    cases = malformed_cases()
    assert len(cases) >= 300
    failures = []
    with httpx.Client(base_url=server.url, timeout=60) as client:
        for label, body, headers in cases:
            response = send(client, body, headers)
            if not 400 <= response.status_code < 500:
                failures.append((label, response.status_code, response.text[:200]))
                continue
            error = response.json().get("error", {})
            if set(error) != {"message", "type", "param", "code"} or not error["message"]:
                failures.append((label, response.status_code, "not OpenAI's error shape: " + response.text[:200]))
        for method, path in [("GET", CHAT), ("PUT", CHAT), ("DELETE", "/v1/models"), ("GET", "/v1/nope"),
                             ("POST", "/health"), ("GET", "/%00"), ("GET", "/v1/chat/completions/../models/x")]:
            response = client.request(method, path)
            if not 400 <= response.status_code < 500 or "error" not in response.json():
                failures.append((f"{method} {path}", response.status_code, response.text[:200]))
        assert not failures, f"{len(failures)} of {len(cases)} malformed requests were mishandled: {failures[:10]}"
        ok = client.post(CHAT, json=valid())
        assert ok.status_code == 200, ok.text
        assert ok.json()["choices"][0]["finish_reason"] in ("stop", "length")


def test_odd_but_valid_unicode_is_answered(server) -> None:
    with httpx.Client(base_url=server.url, timeout=60) as client:
        for text in ["🎵🔊 what is this?", "مرحبا", "\u200b\u200d", "a\u0000b", "Ω≈ç√", "\U0001f600" * 50, ""]:
            response = client.post(CHAT, json=valid(messages=[{"role": "user", "content": text}]))
            assert response.status_code == 200, (text, response.text)


def test_32_concurrent_streams_complete_in_shared_batches(server) -> None:
    wav = b64(encode(tone(1.0), "wav"))

    async def one(client, i: int) -> tuple[str | None, str]:
        content = [{"type": "text", "text": f"client {i}"}]
        if i % 2:
            content.insert(0, audio_part(wav))
        stream = await client.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": content}], stream=True, max_tokens=24 + i,
            temperature=0.0 if i % 3 else 0.8, seed=i, extra_body={"thinking_token_budget": 4 + i % 5})
        finish, text = None, []
        async for event in stream:
            for choice in event.choices:
                finish = choice.finish_reason or finish
                delta = choice.delta.model_dump()
                text.append((delta.get("reasoning_content") or "") + (delta.get("content") or ""))
        return finish, "".join(text)

    async def run_all():
        client = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="none", max_retries=0, timeout=120)
        try:
            return await asyncio.gather(*(one(client, i) for i in range(32)), return_exceptions=True)
        finally:
            await client.close()

    before = httpx.get(server.url + "/health").json()["batching"]
    results = asyncio.run(run_all())
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, errors[:3]
    assert all(finish in ("stop", "length") and text for finish, text in results)
    after = httpx.get(server.url + "/health").json()["batching"]
    assert after["completed"] - before["completed"] == 32
    assert after["batches"] - before["batches"] < 32  # requests shared batches
    assert after["max_batch_seen"] > 1


EDGE_SETTINGS = [dict(temperature=1e-45), dict(temperature=1.0, top_p=1e-300),
                 dict(temperature=1.0, repetition_penalty=1e-300), dict(temperature=2.0, top_p=1e-300, top_k=1),
                 dict(temperature=1e-45, repetition_penalty=10.0)]


def test_edge_sampling_settings_never_fail_the_batch(server) -> None:
    async def main() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.url, timeout=120) as client:
            bodies = [valid(max_tokens=12, **EDGE_SETTINGS[i // 4]) if i % 4 == 0 else valid(max_tokens=12, seed=i)
                      for i in range(4 * len(EDGE_SETTINGS))]
            return await asyncio.gather(*(client.post(CHAT, json=body) for body in bodies))

    before = httpx.get(server.url + "/health").json()["batching"]
    responses = asyncio.run(main())
    assert [r.status_code for r in responses] == [200] * len(responses), [r.text[:200] for r in responses]
    after = httpx.get(server.url + "/health").json()["batching"]
    assert after["max_batch_seen"] > 1 and after["failed"] == before["failed"] == 0
    greedy = httpx.post(server.url + CHAT, json=valid(max_tokens=12), timeout=60).json()["choices"][0]["message"]
    tiny_t = responses[0].json()["choices"][0]["message"]
    assert tiny_t["content"] == greedy["content"] and tiny_t["reasoning"] == greedy["reasoning"]  # 1e-45: greedy


def test_memory_stays_flat_over_500_requests(server) -> None:
    wav = encode(tone(1.0), "wav")
    flac = encode(tone(2.0, freq=220.0), "flac")
    bodies = [
        valid(),
        with_content(audio_part(b64(wav)), {"type": "text", "text": "What is it?"}),
        with_content(audio_part(b64(flac), "flac"), {"type": "text", "text": "Pitch?"}),
        valid(stream=True, max_tokens=12),
        with_content(audio_part(b64(b"not audio at all"))),  # errors must not leak either
    ]

    async def run(client, start: int, stop: int) -> None:
        async def one(i: int) -> None:
            body = bodies[i % len(bodies)]
            response = await client.post(CHAT, json=body)
            assert response.status_code == (400 if i % len(bodies) == 4 else 200), response.text

        for base in range(start, stop, 4):  # four at a time, so batches form
            await asyncio.gather(*(one(i) for i in range(base, min(base + 4, stop))))

    async def main() -> tuple[int, int]:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            await run(client, 0, 100)
            at_100 = server.rss_bytes()
            await run(client, 100, 500)
            return at_100, server.rss_bytes()

    at_100, at_500 = asyncio.run(main())
    growth = at_500 - at_100
    print(f"server RSS {at_100 / 2**20:.0f} MiB at request 100, {at_500 / 2**20:.0f} MiB at request 500")
    assert growth < 64 * 2**20, f"RSS grew {growth / 2**20:.1f} MiB between request 100 and 500"


def test_server_still_healthy_after_everything(server) -> None:
    health = httpx.get(server.url + "/health").json()
    assert health["status"] == "ok" and health["queued"] == 0
    array = np.zeros(16000, dtype=np.float32)
    buffer = io.BytesIO()
    sf.write(buffer, array, 16000, format="WAV")
    response = httpx.post(server.url + CHAT, json=with_content(audio_part(b64(buffer.getvalue()))), timeout=60)
    assert response.status_code == 200
