"""Write the example clips bundled with the package (deterministic; run from the repo root).

    python scripts/make_examples.py [SUITE_DIR]

`two_tones.wav` is synthesised here. The other clips are held-out test items of the acoustic suite
(`audio-r1 data suite --out SUITE_DIR --seed 0 --train 2000 --dev 200 --test 400`), copied with their
manifest entries into `examples.json`; the shipped model never saw them in training.
"""

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

SAMPLE_RATE = 16000
OUT = Path("src/audio_r1/assets/examples")
SUITE_ITEMS = [
    "test-000000-pitch_compare", "test-000040-count_events", "test-000001-surrogate_trap", "test-000019-tempo",
    "test-000027-noise_type", "test-000006-chord_quality", "test-000033-voice_pitch",
]


def tone(freq: float, seconds: float, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    ramp = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.02)  # 20 ms fades: no clicks
    return (amplitude * ramp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def copy_suite_items(suite: Path) -> None:
    from audio_r1.data.manifest import read_manifest

    items = {item.id: item for item in read_manifest(suite / "test.jsonl")}
    entries = []
    for item_id in SUITE_ITEMS:
        item = items[item_id]
        name = f"{item.family}.wav"
        shutil.copy(suite / item.audio, OUT / name)
        entries.append({**item.to_dict(), "audio": name})
    (OUT / "examples.json").write_text(json.dumps(entries, indent=1) + "\n")


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    gap = np.zeros(int(0.3 * SAMPLE_RATE), dtype=np.float32)
    clip = np.concatenate([tone(440.0, 1.0), gap, tone(660.0, 1.0)])
    sf.write(OUT / "two_tones.wav", clip, SAMPLE_RATE, subtype="PCM_16")
    if len(sys.argv) > 1:
        copy_suite_items(Path(sys.argv[1]))


if __name__ == "__main__":
    main()
