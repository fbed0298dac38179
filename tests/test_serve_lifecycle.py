"""A request's life outside the happy path, against a real `audio-r1 serve` process (tiny preset).

- a non-streamed request whose client disconnects is cancelled, as a streamed one is;
- requests whose body is being read or prepared count against `--max-queue` and show in `/health`;
- SIGTERM: idle, the process exits 0; with work longer than `--shutdown-timeout`, an open stream
  gets an error event and `[DONE]`, a waiting request a 503, and the process still exits 0 cleanly.

Nothing here asserts on elapsed time: waits poll `/health` a bounded number of times.
"""

from __future__ import annotations

import json
import socket
import threading
import time

import httpx
import pytest
from serve_support import ServerProcess, status_of

openai = pytest.importorskip("openai")

CHAT = "/v1/chat/completions"
LONG = {"model": "tiny", "messages": [{"role": "user", "content": "go"}], "max_tokens": 3800, "temperature": 0,
        "thinking_token_budget": 8}


def health(server: ServerProcess) -> dict:
    return httpx.get(server.url + "/health", timeout=30).json()


def wait_for(server: ServerProcess, condition, polls: int = 1200) -> dict:
    """Poll /health until `condition(health)` holds (a bounded count of polls)."""
    for _ in range(polls):
        state = health(server)
        if condition(state):
            return state
        time.sleep(0.05)
    pytest.fail(f"/health never reached the expected state; last: {health(server)}")


def post_head(port: int, length: int) -> bytes:
    return (f"POST {CHAT} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {length}\r\n\r\n").encode()


def no_tracebacks(server: ServerProcess) -> None:
    log = server.log.read_text()
    assert "Traceback" not in log and "Exception in ASGI" not in log, log[-3000:]


@pytest.fixture
def long_server(tmp_path):
    proc = ServerProcess("--max-tokens-limit", "4000", "--batch-wait-ms", "0", "--log-level", "warning",
                         log_dir=tmp_path)
    yield proc
    proc.stop()


def test_abandoned_non_streaming_requests_are_cancelled(long_server) -> None:
    n = 4
    before = health(long_server)["batching"]
    body = json.dumps(LONG).encode()
    conns = []
    for _ in range(n):
        conn = socket.create_connection(("127.0.0.1", long_server.port), timeout=60)
        conn.sendall(post_head(long_server.port, len(body)) + body)
        conns.append(conn)
    wait_for(long_server, lambda h: h["batching"]["requests"] - before["requests"] == n and h["running"] > 0)
    for conn in conns:  # the clients give up
        conn.close()
    after = wait_for(long_server, lambda h: h["running"] == 0 and h["queued"] == 0
                     and h["batching"]["cancelled"] - before.get("cancelled", 0) == n)["batching"]
    assert after["completed"] == before["completed"]  # none of them was decoded to its end
    reply = httpx.post(long_server.url + CHAT, json={**LONG, "max_tokens": 2}, timeout=60)
    assert reply.status_code == 200 and reply.json()["usage"]["completion_tokens"] == 2


def test_requests_being_read_or_prepared_count_against_the_queue(tmp_path) -> None:
    server = ServerProcess("--max-queue", "2", "--prepare-workers", "1", "--log-level", "warning", log_dir=tmp_path)
    try:
        body = json.dumps({"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2,
                           "user": "x" * 20000}).encode()  # padding that is accepted and ignored
        slow = []
        for _ in range(2):  # two uploads that stop half way: taken, not yet prepared
            conn = socket.create_connection(("127.0.0.1", server.port), timeout=60)
            conn.sendall(post_head(server.port, len(body)) + body[: len(body) // 2])
            slow.append(conn)
        state = wait_for(server, lambda h: h["preparing"] == 2)
        assert state["queued"] == 0
        refused = httpx.post(server.url + CHAT, content=body, headers={"content-type": "application/json"},
                             timeout=60)
        assert refused.status_code == 429 and refused.json()["error"]["code"] == "queue_full"
        assert int(refused.headers["retry-after"]) >= 1
        with pytest.raises(openai.RateLimitError):
            openai.OpenAI(base_url=server.url + "/v1", api_key="none", max_retries=0).chat.completions.create(
                model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=2)
        for conn in slow:  # the uploads finish: both are answered
            conn.sendall(body[len(body) // 2:])
        for conn in slow:
            assert status_of(conn)[0] == 200
            conn.close()
        assert wait_for(server, lambda h: h["preparing"] == 0)["batching"]["completed"] == 2
    finally:
        assert server.stop() == 0
    no_tracebacks(server)


def test_idle_sigterm_exits_0(tmp_path) -> None:
    server = ServerProcess("--log-level", "info", log_dir=tmp_path)
    server.terminate()
    assert server.proc.wait(60) == 0
    server.stop()
    no_tracebacks(server)


def test_work_longer_than_the_shutdown_timeout_ends_cleanly(tmp_path) -> None:
    server = ServerProcess("--max-batch", "1", "--max-tokens-limit", "4000", "--batch-wait-ms", "0",
                           "--shutdown-timeout", "0.5", "--log-level", "info", log_dir=tmp_path)
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="none", max_retries=0, timeout=120)
    waiting_error: list[BaseException] = []

    def waiting() -> None:
        try:
            client.chat.completions.create(**{k: v for k, v in LONG.items() if k != "thinking_token_budget"})
        except openai.APIStatusError as error:
            waiting_error.append(error)

    try:
        with httpx.stream("POST", server.url + CHAT, json={**LONG, "stream": True}, timeout=120) as stream:
            lines = stream.iter_lines()
            assert next(lines).startswith("data: ")  # the role chunk: it is being decoded
            thread = threading.Thread(target=waiting)
            thread.start()
            wait_for(server, lambda h: h["queued"] == 1)  # the non-streamed one waits behind it
            server.terminate()
            events = [line.removeprefix("data: ") for line in lines if line]
        thread.join(120)
        assert events[-1] == "[DONE]"
        last = json.loads(events[-2])
        assert last["error"]["code"] == "shutting_down" and last["error"]["type"] == "server_error"
        finishes = [c["finish_reason"] for e in events[:-2] for c in json.loads(e).get("choices", [])]
        assert not any(finishes)  # cut off, not finished
        (error,) = waiting_error
        assert error.status_code == 503 and error.body["code"] == "shutting_down"
        assert server.proc.wait(60) == 0
    finally:
        server.stop()
    no_tracebacks(server)
