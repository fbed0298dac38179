"""Helpers for the serving tests: a real `audio-r1 serve` process on a free loopback port, and clips."""

from __future__ import annotations

import base64
import io
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import soundfile as sf

SR = 16000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """`python -m audio_r1.cli serve --model tiny ...` in a subprocess; `url` once /health answers."""

    def __init__(self, *flags: str, log_dir: Path, command: str = "serve", ready_path: str = "/health"):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log_dir / f"{command}-{self.port}.log"
        args = [sys.executable, "-m", "audio_r1.cli", command, "--model", "tiny", "--port", str(self.port), *flags]
        env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "OMP_NUM_THREADS": "1"}
        self._log_file = open(self.log, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(args, stdout=self._log_file, stderr=subprocess.STDOUT, env=env)
        self._wait_ready(ready_path)

    def _wait_ready(self, path: str, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                if httpx.get(self.url + path, timeout=2.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"server not ready after {timeout} s:\n{self.log.read_text()}")

    def terminate(self) -> None:
        """SIGTERM: the graceful shutdown path."""
        self.proc.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 60.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log_file.close()
        return self.proc.returncode

    def rss_bytes(self) -> int:
        import psutil

        return psutil.Process(self.proc.pid).memory_info().rss


def tone(seconds: float = 1.0, freq: float = 440.0, rate: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def encode(audio: np.ndarray, fmt: str, rate: int = SR) -> bytes:
    """wav, flac, ogg (vorbis) or mp3 bytes of `audio`."""
    kinds = {"wav": ("WAV", "PCM_16"), "flac": ("FLAC", "PCM_16"), "ogg": ("OGG", "VORBIS"),
             "mp3": ("MP3", "MPEG_LAYER_III")}
    container, subtype = kinds[fmt]
    buffer = io.BytesIO()
    sf.write(buffer, audio, rate, format=container, subtype=subtype)
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def audio_message(data: bytes, question: str, fmt: str = "wav") -> list[dict]:
    return [{"role": "user", "content": [
        {"type": "input_audio", "input_audio": {"data": b64(data), "format": fmt}},
        {"type": "text", "text": question},
    ]}]


def status_of(conn: socket.socket) -> tuple[int, bytes]:
    """The status code and the head of the reply read from `conn`."""
    reply = b""
    while b"\r\n\r\n" not in reply:
        piece = conn.recv(65536)
        if not piece:
            break
        reply += piece
    return int(reply.split(b" ", 2)[1]), reply
