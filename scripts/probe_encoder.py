"""Linear probes: how much of each suite family's answer can be read off the frozen audio features?

Pools the features of each clip into `--segments` equal time slices (mean and std per slice, so a
probe can compare "first" with "second"), fits a multinomial logistic regression per family on the
train split and reports held-out accuracy on the test split. Run on the log-mel input and on the
frozen Whisper tiny.en encoder output: if the encoder probe is high while the trained model sits at
chance, the information is there and the adaptor/decoder are what fail to use it.

    .venv/bin/python scripts/probe_encoder.py --data runs/suite-v1
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from audio_r1.audio import load_audio, prepare_audio
from audio_r1.data.manifest import read_manifest


def pooled(frames: torch.Tensor, segments: int) -> np.ndarray:
    """(T, D) frames → (2 * segments * D,) mean and std over equal time slices."""
    parts = torch.tensor_split(frames, segments, dim=0)
    stats = [torch.cat([p.mean(0), p.std(0, unbiased=False)]) for p in parts]
    return torch.cat(stats).numpy()


def features(model, items, root: Path, segments: int) -> tuple[np.ndarray, np.ndarray]:
    """Pooled log-mel and encoder features for every item (one chunk each: suite clips are short)."""
    mel_rows, enc_rows = [], []
    for item in items:
        chunk = prepare_audio(load_audio(root / item.audio), model.config.encoder.n_mels)[0]
        mel = torch.as_tensor(chunk.mel)
        with torch.no_grad():
            out = model.encoder(mel[None], torch.tensor([chunk.valid_frames]), pool=False)
        out = out[0, : (chunk.valid_frames + 1) // 2]
        mel_rows.append(pooled(mel[:, : chunk.valid_frames].T, segments))
        enc_rows.append(pooled(out, segments))
    return np.stack(mel_rows), np.stack(enc_rows)


def fit_probe(x: np.ndarray, y: np.ndarray, n_classes: int, steps: int = 300, l2: float = 1e-3) -> torch.nn.Linear:
    """Multinomial logistic regression with L-BFGS on standardised inputs."""
    torch.manual_seed(0)
    xt, yt = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y)
    probe = torch.nn.Linear(x.shape[1], n_classes)
    optimizer = torch.optim.LBFGS(probe.parameters(), max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(probe(xt), yt) + l2 * probe.weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return probe


def label(item) -> str:
    return item.answer if item.choices is None else str(item.choices.index(item.answer))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="runs/suite-v1")
    parser.add_argument("--segments", type=int, default=4)
    parser.add_argument("--out", default=None, help="write the table as JSON")
    args = parser.parse_args()
    from audio_r1.pretrained import build_smol

    model, _ = build_smol(trained=False)
    root = Path(args.data)
    train = [i for i in read_manifest(root / "train.jsonl") if i.audio and i.family != "spoken_arithmetic"]
    test = [i for i in read_manifest(root / "test.jsonl") if i.audio and i.family != "spoken_arithmetic"]
    train_mel, train_enc = features(model, train, root, args.segments)
    test_mel, test_enc = features(model, test, root, args.segments)
    rows = []
    print("| family | train n | test n | majority | probe on log-mel | probe on encoder |")
    print("|---|---|---|---|---|---|")
    for family in sorted({i.family for i in test}):
        tr = [k for k, i in enumerate(train) if i.family == family]
        te = [k for k, i in enumerate(test) if i.family == family]
        classes = sorted({label(train[k]) for k in tr} | {label(test[k]) for k in te})
        y_tr = np.array([classes.index(label(train[k])) for k in tr])
        y_te = np.array([classes.index(label(test[k])) for k in te])
        majority = float(np.mean(y_te == np.bincount(y_tr, minlength=len(classes)).argmax()))
        scores = []
        for x_tr, x_te in ((train_mel[tr], test_mel[te]), (train_enc[tr], test_enc[te])):
            mean, std = x_tr.mean(0), x_tr.std(0) + 1e-6
            probe = fit_probe((x_tr - mean) / std, y_tr, len(classes))
            with torch.no_grad():
                guess = probe(torch.as_tensor((x_te - mean) / std, dtype=torch.float32)).argmax(1).numpy()
            scores.append(float(np.mean(guess == y_te)))
        rows.append({"family": family, "train": len(tr), "test": len(te), "majority": majority,
                     "mel": scores[0], "encoder": scores[1]})
        print(f"| {family} | {len(tr)} | {len(te)} | {majority:.0%} | {scores[0]:.0%} | {scores[1]:.0%} |", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
