"""Write the example clips bundled with the package (deterministic; run from the repo root)."""

from pathlib import Path

import numpy as np
import soundfile as sf

SAMPLE_RATE = 16000
OUT = Path("src/audio_r1/assets/examples")


def tone(freq: float, seconds: float, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    ramp = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.02)  # 20 ms fades: no clicks
    return (amplitude * ramp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    gap = np.zeros(int(0.3 * SAMPLE_RATE), dtype=np.float32)
    clip = np.concatenate([tone(440.0, 1.0), gap, tone(660.0, 1.0)])
    sf.write(OUT / "two_tones.wav", clip, SAMPLE_RATE, subtype="PCM_16")


if __name__ == "__main__":
    main()
