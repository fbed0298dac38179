"""Is each generalisation cue in the frozen encoder's features? Linear probes on generalisation-set audio.

Issue 12 asks to probe before retraining: if a cue cannot be read linearly off the frozen Whisper
tiny.en encoder output (25 Hz frames, what the adaptor sees), no adaptor or LoRA will hear it. Four
probes, each fitted on one generated set and scored on another (same generator, other seed):

- pitch: ridge regression of log2 f0 from each tone's mean frame (segments from the item's params);
  scored as pairwise order accuracy, i.e. how often two tones of one clip are ranked the right way;
- level: the same for each tone's RMS level in dB;
- onsets: a logistic probe per frame, "is this frame inside a tone"; a clip's count is the number of
  runs of positive frames, scored as exact count accuracy on the count family;
- digits: a 10-way logistic probe on the mean frame of a spoken digit (flite voices).

The same probes on the log-mel input (pooled to 25 Hz) show what the encoder adds or loses.

    audio-r1 data generalisation --out runs/gen-probe --n 1000 --seed 7
    audio-r1 data generalisation --out runs/gen --n 200 --seed 0
    .venv/bin/python scripts/probe_generalisation.py --fit runs/gen-probe --score runs/gen
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from probe_encoder import fit_probe  # the sibling script: one logistic probe for both

from audio_r1.audio import load_audio, prepare_audio
from audio_r1.data.manifest import read_manifest

FRAME_S = 0.04  # one pooled encoder frame


def frames(model, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(encoder frames (T, d), log-mel pooled to the same 25 Hz grid (T, n_mels)) of one short clip."""
    chunk = prepare_audio(load_audio(path), model.config.encoder.n_mels)[0]
    mel = torch.as_tensor(chunk.mel)
    with torch.no_grad():
        enc = model.encoder(mel[None], torch.tensor([chunk.valid_frames]))[0]
    n = chunk.valid_frames // 4
    pooled_mel = mel[:, : n * 4].T.reshape(n, 4, -1).mean(1)
    return enc[:n].numpy(), pooled_mel.numpy()


def span(segment: list[float], n: int) -> slice:
    """The frames of a [start, end] segment in seconds (at least one)."""
    a = min(int(segment[0] / FRAME_S), n - 1)
    return slice(a, max(a + 1, min(int(np.ceil(segment[1] / FRAME_S)), n)))


def collect(model, root: Path) -> dict[str, list]:
    """Per-family probe inputs of one generated set, for both feature kinds."""
    rows: dict[str, list] = {"pitch": [], "level": [], "frames": [], "count": [], "digit": []}
    for item in read_manifest(root / "generalisation.jsonl"):
        enc, mel = frames(model, root / item.audio)
        p, n = item.params, len(enc)
        feats = {"encoder": enc, "mel": mel}
        if item.family in ("gen_pitch_order", "gen_loudness_order", "gen_two_sines"):
            key, values = ("pitch", np.log2(p["f0_hz"])) if "f0_hz" in p else ("level", np.array(p["rms_db"]))
            means = {k: np.stack([f[span(s, n)].mean(0) for s in p["segments_s"]]) for k, f in feats.items()}
            rows[key].append((means, values))
        if "segments_s" in p:
            inside = np.zeros(n, dtype=int)
            for s in p["segments_s"]:
                inside[span(s, n)] = 1
            rows["frames"].append((feats, inside))
        if item.family == "gen_count":
            rows["count"].append((feats, p["count"]))
        if item.family == "gen_spoken_digit":
            rows["digit"].append(({k: f.mean(0, keepdims=True) for k, f in feats.items()}, p["digit"]))
    return rows


def standardiser(x: np.ndarray):
    mean, std = x.mean(0), x.std(0) + 1e-6
    return lambda z: (z - mean) / std


def ridge(x: np.ndarray, y: np.ndarray, l2: float = 10.0):
    """Closed-form ridge regression on standardised inputs; returns a predictor."""
    scale = standardiser(x)
    xs = np.hstack([scale(x), np.ones((len(x), 1))])
    w = np.linalg.solve(xs.T @ xs + l2 * np.eye(xs.shape[1]), xs.T @ (y - y.mean()))
    return lambda z: np.hstack([scale(z), np.ones((len(z), 1))]) @ w + y.mean()


def logistic(x: np.ndarray, y: np.ndarray, n_classes: int):
    """A class predictor from `probe_encoder.fit_probe` (multinomial logistic regression on standardised inputs)."""
    scale = standardiser(x)
    probe = fit_probe(scale(x), y, n_classes, steps=200)
    return lambda z: probe(torch.as_tensor(scale(z), dtype=torch.float32)).argmax(1).detach().numpy()


def pairwise_order(fit_rows, score_rows, kind: str) -> float:
    """Share of within-clip pairs of tones that the fitted regression ranks the right way."""
    predict = ridge(np.vstack([m[kind] for m, _ in fit_rows]), np.concatenate([v for _, v in fit_rows]))
    right = total = 0
    for means, values in score_rows:
        guess = predict(means[kind])
        for i in range(len(values)):
            for j in range(i + 1, len(values)):
                right += (guess[i] > guess[j]) == (values[i] > values[j])
                total += 1
    return right / max(total, 1)


def runs(mask: np.ndarray) -> int:
    """Number of runs of True in a 1-D mask."""
    return int(np.sum(mask[1:] & ~mask[:-1]) + mask[0]) if len(mask) else 0


def count_accuracy(fit_rows, score_rows, kind: str) -> tuple[float, float]:
    """(frame accuracy, exact count accuracy) of a per-frame "inside a tone" probe."""
    x = np.vstack([f[kind] for f, _ in fit_rows])
    y = np.concatenate([m for _, m in fit_rows])
    predict = logistic(x, y, 2)
    frame_right = frame_total = 0
    for feats, inside in score_rows[0]:
        guess = predict(feats[kind])
        frame_right += int(np.sum(guess == inside))
        frame_total += len(inside)
    exact = [runs(predict(feats[kind]).astype(bool)) == n for feats, n in score_rows[1]]
    return frame_right / max(frame_total, 1), float(np.mean(exact)) if exact else float("nan")


def digit_accuracy(fit_rows, score_rows, kind: str) -> float:
    predict = logistic(np.vstack([f[kind] for f, _ in fit_rows]), np.array([d for _, d in fit_rows]), 10)
    return float(np.mean([predict(f[kind])[0] == d for f, d in score_rows]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fit", default="runs/gen-probe", help="generated set the probes are fitted on")
    parser.add_argument("--score", default="runs/gen", help="generated set they are scored on")
    parser.add_argument("--out", default=None, help="write the table as JSON")
    args = parser.parse_args()
    from audio_r1.pretrained import build_smol

    model, _ = build_smol(trained=False)
    fit, score = collect(model, Path(args.fit)), collect(model, Path(args.score))
    table = []
    for kind in ("mel", "encoder"):
        frame_acc, count_acc = count_accuracy(fit["frames"], (score["frames"], score["count"]), kind)
        table.append({
            "features": kind,
            "pitch_pairs": pairwise_order(fit["pitch"], score["pitch"], kind),
            "level_pairs": pairwise_order(fit["level"], score["level"], kind),
            "inside_frames": frame_acc,
            "count_exact": count_acc,
            "digit": digit_accuracy(fit["digit"], score["digit"], kind),
        })
    sizes = {k: (len(fit[k]), len(score[k])) for k in fit}
    print(f"fitted / scored items: {sizes}")
    print("| features | pitch order (pairs) | level order (pairs) | inside-a-tone frames | count exact | digit |")
    print("|---|---|---|---|---|---|")
    for row in table:
        print(f"| {row['features']} | {row['pitch_pairs']:.1%} | {row['level_pairs']:.1%} | "
              f"{row['inside_frames']:.1%} | {row['count_exact']:.1%} | {row['digit']:.1%} |")
    if args.out:
        Path(args.out).write_text(json.dumps({"sizes": sizes, "table": table}, indent=2) + "\n")


if __name__ == "__main__":
    main()
