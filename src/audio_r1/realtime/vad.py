"""Server voice-activity detection: Silero VAD (PyPI `silero-vad`, whose ONNX model ships in the package)
run through onnxruntime, and the turn logic that turns its speech probabilities into turns.

`SileroModel` is loaded once per server (an onnxruntime session is safe to share between threads);
each session has its own `VadTracker`, which keeps the recurrent state and the 64-sample context
between 32 ms windows and says when speech starts and when it has stopped for long enough.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..audio import SAMPLE_RATE
from ..errors import AudioR1Error
from .config import TurnDetection

WINDOW = 512  # samples per Silero window at 16 kHz (32 ms)
CONTEXT = 64  # samples of the previous window the model sees in front of each window
WINDOW_MS = WINDOW * 1000 // SAMPLE_RATE


class VadError(AudioR1Error, RuntimeError):
    """The VAD model is not installed or could not be loaded; `reason` says which."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(f"server VAD is unavailable: {reason}")


def silero_model_path() -> Path:
    """The ONNX file inside the installed `silero-vad` package."""
    try:
        from importlib.resources import files  # only to locate the packaged model

        path = Path(str(files("silero_vad.data").joinpath("silero_vad.onnx")))
    except ModuleNotFoundError:
        raise VadError("the silero-vad package is not installed (pip install silero-vad onnxruntime)") from None
    if not path.is_file():
        raise VadError(f"{path} is missing from the silero-vad package")
    return path


class SileroModel:
    """Silero VAD v5+ as an onnxruntime session: (window, state) -> (speech probability, state)."""

    def __init__(self, path: Path | None = None):
        try:
            import onnxruntime  # optional dependency: only server VAD needs it
        except ImportError:
            raise VadError("onnxruntime is not installed (pip install onnxruntime)") from None
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(str(path or silero_model_path()), sess_options=options,
                                                    providers=["CPUExecutionProvider"])
        self._sr = np.array(SAMPLE_RATE, dtype=np.int64)

    def new_state(self) -> np.ndarray:
        return np.zeros((2, 1, 128), dtype=np.float32)

    def probability(self, window: np.ndarray, state: np.ndarray) -> tuple[float, np.ndarray]:
        """Speech probability of one (CONTEXT + WINDOW)-sample input, and the next state."""
        out, state = self.session.run(None, {"input": window[None, :].astype(np.float32), "state": state,
                                             "sr": self._sr})
        return float(out[0, 0]), state


@dataclass
class VadEvent:
    """Speech started (`kind="start"`, at `ms` into the session's audio) or stopped."""

    kind: str
    ms: int


class VadTracker:
    """One session's detector: feed 16 kHz samples, get start/stop events on the session's audio clock.

    Speech starts at the first window over `threshold` (reported `prefix_padding_ms` earlier, as the
    turn keeps that much audio before it); it stops once `silence_duration_ms` of windows have
    stayed under `threshold - 0.15` (Silero's own hysteresis), reported where that silence ends
    (as OpenAI's `audio_end_ms`, which includes the silence duration).
    """

    def __init__(self, model: SileroModel, settings: TurnDetection):
        self.model = model
        self.settings = settings
        self.reset()

    def reset(self) -> None:
        self._state = self.model.new_state()
        self._context = np.zeros(CONTEXT, np.float32)
        self._pending = np.zeros(0, np.float32)
        self._windows = 0  # windows seen since the session began
        self.speaking = False
        self._silent_ms = 0
        self.last_probability = 0.0

    def feed(self, samples: np.ndarray) -> list[VadEvent]:
        """Run every complete window in `samples` (the rest waits for the next call)."""
        events: list[VadEvent] = []
        data = np.concatenate([self._pending, np.asarray(samples, np.float32)])
        n = len(data) // WINDOW
        low = max(self.settings.threshold - 0.15, 0.01)
        for i in range(n):
            window = data[i * WINDOW:(i + 1) * WINDOW]
            p, self._state = self.model.probability(np.concatenate([self._context, window]), self._state)
            self._context = window[-CONTEXT:]
            self._windows += 1
            self.last_probability = p
            end_ms = self._windows * WINDOW_MS
            if not self.speaking:
                if p >= self.settings.threshold:
                    self.speaking, self._silent_ms = True, 0
                    start = end_ms - WINDOW_MS - self.settings.prefix_padding_ms
                    events.append(VadEvent("start", max(start, 0)))
            elif p < low:
                self._silent_ms += WINDOW_MS
                if self._silent_ms >= self.settings.silence_duration_ms:
                    self.speaking = False
                    events.append(VadEvent("stop", end_ms))
                    self._silent_ms = 0
            else:
                self._silent_ms = 0
        self._pending = data[n * WINDOW:]
        return events
