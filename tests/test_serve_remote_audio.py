"""Remote audio (`--allow-remote-audio`) is no way into the server's network.

Against real HTTP servers on 127.0.0.1 (threads in this process): loopback and private addresses are
refused after resolution, however they are spelled, unless the private flag is on; with it on (so
the local servers can be reached) redirects never change scheme, one deadline bounds a fetch that
drips a byte at a time, and no error tells what answered: no fetched byte, no status code, no
difference between an open port and a closed one. Nothing asserts on elapsed time.
"""

from __future__ import annotations

import http.server
import ipaddress
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest
from serve_support import ServerProcess, encode, free_port, tone

from audio_r1.api import AudioR1
from audio_r1.cli import build_parser
from audio_r1.serve.options import AudioPolicy, serve_config_from_args
from audio_r1.serve.prompts import build_prompt
from audio_r1.serve.protocol import ApiError, ChatCompletionRequest
from audio_r1.serve.remote import address_allowed

WAV = encode(tone(1.0), "wav")
SECRET = b"<html>internal-secret-7f3a</html>"
DRIP_BYTES = 300  # a drip sends this many bytes, one each DRIP_PAUSE_S, unless its client leaves first
DRIP_PAUSE_S = 0.02


class _Origin(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.hits: Counter[str] = Counter()
        self.dripped: dict[str, int] = {}  # path -> bytes sent before the client left (or the drip ended)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Origin

    def log_message(self, *args) -> None:  # quiet
        pass

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        self.server.hits[self.path] += 1
        routes = {
            "/tone.wav": lambda: self._reply(200, WAV),
            "/html": lambda: self._reply(200, SECRET),
            "/missing": lambda: self._reply(404, SECRET),
            "/error": lambda: self._reply(500, SECRET),
            "/hop": lambda: self._redirect("/tone.wav"),
            "/loop": lambda: self._redirect("/loop"),
            "/to-ftp": lambda: self._redirect("ftp://127.0.0.1/tone.wav"),
            "/to-https": lambda: self._redirect(f"https://127.0.0.1:{self.server.server_address[1]}/tone.wav"),
            "/drip-body": self._drip_body,
            "/drip-head": self._drip_head,
        }
        routes.get(self.path, lambda: self._reply(404, SECRET))()

    def _reply(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _drip_body(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(10 * DRIP_BYTES))
        self.end_headers()
        self.wfile.flush()
        self._drip(SECRET * (DRIP_BYTES // len(SECRET) + 1))

    def _drip_head(self) -> None:
        self._drip(b"HTTP/1.0 200 OK\r\nX-Padding: " + b"x" * DRIP_BYTES)

    def _drip(self, data: bytes) -> None:
        sent = 0
        try:
            for byte in data[:DRIP_BYTES]:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                sent += 1
                time.sleep(DRIP_PAUSE_S)
        except OSError:  # the client has gone
            pass
        self.server.dripped[self.path] = sent


@pytest.fixture(scope="module")
def origin() -> Iterator[_Origin]:
    server = _Origin()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def tiny() -> AudioR1:
    return AudioR1.from_pretrained("tiny")


PRIVATE_OK = AudioPolicy(allow_remote=True, allow_private_remote=True, remote_timeout_s=5.0)
PUBLIC_ONLY = AudioPolicy(allow_remote=True, remote_timeout_s=5.0)


def ask(model: AudioR1, url: str, policy: AudioPolicy):
    content = [{"type": "audio_url", "audio_url": {"url": url}}, {"type": "text", "text": "?"}]
    request = ChatCompletionRequest.model_validate({"messages": [{"role": "user", "content": content}]})
    return build_prompt(model, request, policy)


def refusal(model: AudioR1, url: str, policy: AudioPolicy) -> ApiError:
    with pytest.raises(ApiError) as info:
        ask(model, url, policy)
    assert info.value.status == 400 and info.value.param.startswith("messages[0].content[0]")
    return info.value


# ------------------------------------------------------------------------------- addresses (flag off)


def loopback_spellings(port: int) -> list[str]:
    return [f"http://127.0.0.1:{port}/tone.wav", f"http://2130706433:{port}/tone.wav",
            f"http://0x7f.1:{port}/tone.wav", f"http://0177.0.0.1:{port}/tone.wav",
            f"http://localhost:{port}/tone.wav", f"http://[::1]:{port}/tone.wav",
            f"http://[::ffff:127.0.0.1]:{port}/tone.wav", f"http://0.0.0.0:{port}/tone.wav",
            f"HTTP://user:pw@127.0.0.1:{port}/tone.wav"]


def test_loopback_in_any_spelling_is_refused_before_connecting(tiny, origin) -> None:
    before = sum(origin.hits.values())
    for url in loopback_spellings(origin.server_address[1]):
        assert refusal(tiny, url, PUBLIC_ONLY).code == "audio_url_not_allowed", url
    for url in ("http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/a.wav", "http://192.168.1.1/a.wav",
                "http://[fe80::1]/a.wav", "http://100.64.0.1/a.wav"):
        assert refusal(tiny, url, PUBLIC_ONLY).code == "audio_url_not_allowed", url
    assert sum(origin.hits.values()) == before  # none of them reached the server
    assert ask(tiny, f"{origin.base}/tone.wav", PRIVATE_OK).audio_seconds == pytest.approx(1.0)  # flag on: fetched


def test_other_schemes_are_refused(tiny) -> None:
    for url in ("ftp://example.com/a.wav", "gopher://127.0.0.1:70/_x", "file:///etc/passwd"):
        assert refusal(tiny, url, PRIVATE_OK).code == "audio_url_not_allowed", url


@pytest.mark.parametrize(("address", "allowed"), [
    ("8.8.8.8", True), ("2001:4860:4860::8888", True),
    ("127.0.0.1", False), ("10.1.2.3", False), ("172.16.0.1", False), ("192.168.0.1", False),
    ("169.254.169.254", False), ("100.64.0.1", False), ("0.0.0.0", False), ("224.0.0.1", False),
    ("::1", False), ("fe80::1", False), ("fc00::1", False), ("::ffff:10.0.0.1", False),
    ("64:ff9b::7f00:1", False), ("2002:7f00:1::", False),  # NAT64 and 6to4 of 127.0.0.1
])
def test_address_allowed(address: str, allowed: bool) -> None:
    assert address_allowed(ipaddress.ip_address(address)) is allowed


def test_the_private_flag_needs_remote_audio_and_reaches_the_policy() -> None:
    parser = build_parser()
    config = serve_config_from_args(parser.parse_args(["serve", "--allow-remote-audio",
                                                       "--allow-private-remote-audio"]))
    assert config.audio.allow_remote and config.audio.allow_private_remote
    assert not serve_config_from_args(parser.parse_args(["serve", "--allow-remote-audio"])).audio.allow_private_remote
    with pytest.raises(ValueError, match="--allow-remote-audio"):
        serve_config_from_args(parser.parse_args(["serve", "--allow-private-remote-audio"]))


def test_a_real_server_refuses_loopback_audio(tmp_path, origin) -> None:
    server = ServerProcess("--allow-remote-audio", "--log-level", "warning", log_dir=tmp_path)
    before = sum(origin.hits.values())
    try:
        content = [{"type": "audio_url", "audio_url": {"url": f"http://2130706433:{origin.server_address[1]}/tone.wav"}}]
        reply = httpx.post(server.url + "/v1/chat/completions", timeout=60,
                           json={"messages": [{"role": "user", "content": content}], "max_tokens": 2})
        assert reply.status_code == 400 and reply.json()["error"]["code"] == "audio_url_not_allowed"
    finally:
        server.stop()
    assert sum(origin.hits.values()) == before


# ------------------------------------------------------------- redirects, bodies, deadline (flag on)


def test_redirects_stay_on_their_scheme(tiny, origin) -> None:
    assert ask(tiny, f"{origin.base}/hop", PRIVATE_OK).audio_seconds == pytest.approx(1.0)
    for path in ("/to-ftp", "/to-https"):
        assert refusal(tiny, origin.base + path, PRIVATE_OK).code == "audio_url_not_allowed", path
    assert refusal(tiny, origin.base + "/loop", PRIVATE_OK).code == "invalid_audio"


def test_a_non_audio_body_is_refused_without_echoing_it(tiny, origin) -> None:
    error = refusal(tiny, origin.base + "/html", PRIVATE_OK)
    assert error.code == "invalid_audio"
    assert "secret" not in error.message and SECRET[:4].hex(" ") not in error.message
    small = AudioPolicy(allow_remote=True, allow_private_remote=True, max_remote_bytes=100)
    assert refusal(tiny, origin.base + "/tone.wav", small).code == "audio_too_long"


def test_failures_read_the_same_whatever_answered(tiny, origin) -> None:
    closed = free_port()  # nothing listens there
    silent = socket.socket()  # accepts connections (the kernel does) and never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    quick = AudioPolicy(allow_remote=True, allow_private_remote=True, remote_timeout_s=0.3)
    try:
        urls = [f"http://127.0.0.1:{closed}/a.wav", origin.base + "/missing", origin.base + "/error",
                f"http://127.0.0.1:{silent.getsockname()[1]}/a.wav", origin.base + "/loop"]
        errors = [refusal(tiny, url, quick) for url in urls]
    finally:
        silent.close()
    assert {(e.code, e.message) for e in errors} == {(errors[0].code, errors[0].message)}
    for word in ("404", "500", "secret", "refused", "Errno", "Not Found"):
        assert word not in errors[0].message


@pytest.mark.parametrize("path", ["/drip-body", "/drip-head"])
def test_one_deadline_ends_a_drip(tiny, origin, path) -> None:
    """Each byte comes sooner than any per-read timeout, so only a deadline for the whole fetch ends it."""
    policy = AudioPolicy(allow_remote=True, allow_private_remote=True, remote_timeout_s=0.3)
    assert refusal(tiny, origin.base + path, policy).code == "invalid_audio"
    for _ in range(600):  # the drip notices its client has gone on its next writes
        if path in origin.dripped:
            break
        time.sleep(0.05)
    assert origin.dripped.pop(path) < DRIP_BYTES  # the fetch gave up before the drip was over
