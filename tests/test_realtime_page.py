"""The talk page (`GET /realtime`) end to end: Debian's Chromium with a fake microphone talks to a real server.

Chromium's fake capture device plays a WAV file made here (espeak-ng speech between silences, on a loop)
as the microphone. The page streams it as PCM16 at 24 kHz over `/v1/realtime`, the server's VAD ends the
turn, and the test reads the page's counters (`window.audioR1`) and panes: reasoning text appeared and
answer audio came back and was played. The `tiny` preset has random weights, so the words mean nothing.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from serve_support import ServerProcess

from audio_r1.data.synth import speak

CHROMIUM = Path("/usr/bin/chromium")  # Debian's, never a downloaded browser (as in test_serve_ui.py)
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
RUNS = Path(__file__).resolve().parent.parent / "runs"

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed "
                                "(/usr/bin/chromium; `apt-get install chromium`)")
SR = 16000
KEY = "page-key"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    pytest.importorskip("silero_vad")
    proc = ServerProcess("--api-key", KEY, "--log-level", "warning", log_dir=tmp_path_factory.mktemp("page"))
    yield proc
    assert proc.stop() == 0
    assert "Traceback" not in proc.log.read_text(), proc.log.read_text()


@pytest.fixture(scope="module")
def microphone(tmp_path_factory):
    """A WAV for the fake microphone: 1 s of silence, a spoken question, 3 s of silence (then it loops)."""
    speech = speak("What is the capital of France? Tell me quickly.", "en-us")
    audio = np.concatenate([np.zeros(SR, np.float32), 0.8 * speech, np.zeros(3 * SR, np.float32)])
    path = tmp_path_factory.mktemp("mic") / "question.wav"
    sf.write(path, audio, SR, subtype="PCM_16")
    return path


def test_the_page_is_served(server) -> None:
    import httpx

    reply = httpx.get(server.url + "/realtime", timeout=10)
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/html")
    for needle in ("/v1/realtime", "input_audio_buffer.append", "audio_r1.reasoning.delta",
                   "response.output_audio.delta", "audioWorklet", "getUserMedia"):
        assert needle in reply.text, needle


def test_a_browser_sends_its_key_as_a_subprotocol(server) -> None:
    """A browser's WebSocket cannot set headers: the key comes as `openai-insecure-api-key.KEY`."""
    import asyncio
    import json

    websockets = pytest.importorskip("websockets")
    url = server.url.replace("http://", "ws://") + "/v1/realtime"

    async def first(key: str) -> tuple[str | None, dict]:
        async with websockets.connect(url, subprotocols=["realtime", f"openai-insecure-api-key.{key}"]) as ws:
            return ws.subprotocol, json.loads(await asyncio.wait_for(ws.recv(), 30))

    protocol, event = asyncio.run(first(KEY))
    assert protocol == "realtime" and event["type"] == "session.created"
    _, refused = asyncio.run(first("wrong"))
    assert refused["type"] == "error" and refused["error"]["code"] == "invalid_api_key"


def test_talk_from_a_fake_microphone_and_hear_the_answer(server, microphone, tmp_path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    args = [*CHROMIUM_ARGS, "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={microphone}", "--autoplay-policy=no-user-gesture-required"]
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=args, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(server.url + "/realtime", wait_until="load")
            page.fill("#budget", "6")
            page.fill("#max-tokens", "48")
            page.fill("#temperature", "0")
            page.fill("#silence", "400")
            page.fill("#api-key", KEY)
            page.click("#start")
            page.wait_for_function("window.audioR1.connected", timeout=30_000)
            page.wait_for_function("window.audioR1.playedChunks > 0 && window.audioR1.reasoningChars > 0",
                                   timeout=150_000, polling=250)
            stats = page.evaluate("window.audioR1")
            reasoning = page.inner_text("#reasoning")
            answer = page.inner_text("#answer")
            shot = tmp_path / "realtime-page.png"
            page.screenshot(path=str(shot), full_page=True)
            page.click("#stop")
        finally:
            browser.close()
    print(stats)
    assert stats["sentBytes"] > 2 * 24000, "the microphone's audio went out as PCM16 at 24 kHz"
    assert stats["speechStarted"] >= 1 and stats["speechStopped"] >= 1, "server VAD found the spoken turn"
    assert stats["reasoningChars"] > 0 and stats["answerChars"] > 0
    assert stats["receivedBytes"] > 0 and stats["receivedBytes"] % 2 == 0
    assert stats["playedChunks"] >= 1 and stats["audioDeltas"] >= stats["playedChunks"]
    assert reasoning.strip() or answer.strip()
    assert not [e for e in stats["errors"] if e != "session_idle_timeout"], stats["errors"]
    RUNS.mkdir(exist_ok=True)
    shutil.copy(shot, RUNS / "realtime-page.png")
