"""The `audio-r1` command line, run as a real subprocess through its console script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

CLI = [sys.executable, "-m", "audio_r1.cli"]
EXAMPLE = Path(__file__).resolve().parent.parent / "src/audio_r1/assets/examples/two_tones.wav"


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, check=check, timeout=300)


def test_info_step_audio_r1_reports_33b_and_67gb_without_allocating() -> None:
    done = run("info", "--preset", "step-audio-r1", "--json")
    report = json.loads(done.stdout)
    assert 33e9 <= report["parameters"]["total"] <= 34e9
    assert 66e9 <= report["bytes_bf16"] <= 68e9
    assert report["bytes_int8"] < report["bytes_bf16"]
    text = run("info", "--preset", "step-audio-r1").stdout
    assert "encoder" in text and "adaptor" in text and "GiB" in text


def test_ask_json_on_tiny(tmp_path: Path) -> None:
    wav = tmp_path / "tone.wav"
    t = np.arange(16000) / 16000
    sf.write(wav, 0.3 * np.sin(2 * np.pi * 440 * t), 16000)
    done = run("ask", str(wav), "Is it high?", "--model", "tiny", "--max-new-tokens", "12",
               "--max-think-tokens", "4", "--json")
    reply = json.loads(done.stdout)
    assert set(reply) >= {"reasoning", "answer", "usage", "timings", "finish_reason"}
    assert reply["usage"]["reasoning_tokens"] <= 4
    assert reply["usage"]["audio_seconds"] == pytest.approx(1.0)


def test_ask_stream_prints_both_parts(tmp_path: Path) -> None:
    done = run("ask", str(EXAMPLE), "Which tone is higher?", "--model", "tiny", "--max-new-tokens", "20",
               "--max-think-tokens", "6", "--stream")
    assert "thinking:" in done.stdout


def test_bad_audio_is_a_clear_error_not_a_traceback(tmp_path: Path) -> None:
    bogus = tmp_path / "notes.wav"
    bogus.write_bytes(b"this is not audio at all" * 10)
    done = run("ask", str(bogus), "?", "--model", "tiny", check=False)
    assert done.returncode == 2
    assert "notes.wav" in done.stderr and "Traceback" not in done.stderr
    missing = run("ask", str(tmp_path / "absent.flac"), "?", "--model", "tiny", check=False)
    assert missing.returncode == 2 and "absent.flac" in missing.stderr


def test_a_fifo_is_refused_at_once_not_waited_on(tmp_path: Path) -> None:
    """Opening a FIFO blocks until a writer comes; `ask` refuses it before it would open it."""
    fifo = tmp_path / "clip.wav"
    os.mkfifo(fifo)
    done = subprocess.run([*CLI, "ask", str(fifo), "?", "--model", "tiny"], capture_output=True, text=True,
                          timeout=120)  # a hang would end here, as a failure
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "clip.wav" in done.stderr and "not a regular file" in done.stderr


def test_official_name_without_weights_explains_itself() -> None:
    done = run("ask", str(EXAMPLE), "?", "--model", "step-audio-r1", check=False)
    assert done.returncode == 2
    assert "not bundled" in done.stderr


@pytest.mark.slow
def test_ask_on_smol_end_to_end() -> None:
    done = run("ask", str(EXAMPLE), "Which of the two tones is higher?", "--max-new-tokens", "24",
               "--min-think-tokens", "8", "--max-think-tokens", "16", "--json")
    reply = json.loads(done.stdout)
    assert reply["usage"]["reasoning_tokens"] >= 8
    assert reply["reasoning"].strip()
    assert reply["usage"]["audio_seconds"] == pytest.approx(2.3)


def test_check_claims_reports_each_claim_with_the_measured_value() -> None:
    done = run("ask", str(EXAMPLE), "Which tone is higher?", "--model", "tiny", "--max-new-tokens", "12",
               "--check-claims", "--json")
    reply = json.loads(done.stdout)
    assert isinstance(reply["claims"], list) and isinstance(reply["grounded"], bool)  # tiny states no real claims
    refused = run("ask", str(EXAMPLE), "?", "--model", "tiny", "--check-claims", "--stream", check=False)
    assert refused.returncode == 2 and "--check-claims" in refused.stderr and "Traceback" not in refused.stderr


def test_demo_judges_every_chain_strictly() -> None:
    """`audio-r1 demo` reports, per bundled clip, right/wrong and the strict grounding verdict."""
    out = run("demo", "--model", "tiny", "--max-new-tokens", "6", "--max-think-tokens", "4").stdout
    examples = json.loads((EXAMPLE.parent / "examples.json").read_text())
    assert out.count("\n== ") == len(examples)
    assert out.count("grounded") >= len(examples)  # one verdict per clip, plus the summary
    assert "chains grounded (strict: no claim contradicted)" in out and f"/{len(examples)} right" in out
