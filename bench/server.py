"""Start `audio-r1 serve` in a subprocess for a benchmark and wait until `/health` answers."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx


def start_server(port: int, log: Path, *flags: str, timeout_s: float = 300) -> subprocess.Popen:
    """`audio-r1 serve --port PORT FLAGS...`, its output in `log`; raises if it exits or never gets healthy."""
    args = [sys.executable, "-m", "audio_r1.cli", "serve", "--port", str(port), *flags]
    proc = subprocess.Popen(args, stdout=log.open("w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError("server did not start")
