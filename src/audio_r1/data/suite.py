"""Deterministic generator of the synthetic audio-question suite.

``generate_suite(out_dir, seed, sizes)`` writes ``out_dir/{split}.jsonl`` manifests and
``out_dir/audio/{split}/{id}.wav`` clips (16 kHz mono 16-bit PCM). Every random choice of item ``i`` of a
split is drawn from a generator seeded by ``(seed, split, i)`` alone, so the output is byte-identical for the
same seed whatever the number of workers, splits never share an item seed, and speech in each split uses its
own held-out espeak-ng voices (see :mod:`audio_r1.data.voices`).

    python -m audio_r1.data.suite --out data/suite --seed 0 --train 2000 --dev 200 --test 400 --workers 2
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from audio_r1.data.families import FAMILIES, Sample
from audio_r1.data.manifest import SPLITS, Item, write_manifest
from audio_r1.data.synth import SAMPLE_RATE, espeak_path
from audio_r1.data.voices import VoicePool

from ..errors import ConfigError

DEFAULT_SIZES = {"train": 2000, "dev": 200, "test": 400}
SILENT_FAMILIES = frozenset({"pitch_compare", "count_events", "duration_compare", "tempo", "rhythm",
                             "chord_quality", "text_math"})  # these never call espeak-ng
_SPLIT_CODES = {"train": 0, "dev": 1, "test": 2}


@dataclass(frozen=True)
class Job:
    """Everything needed to build one item: it is sent to a worker process as is."""

    out_dir: str
    seed: int
    split: str
    index: int
    family: str


def item_seed(seed: int, split: str, index: int) -> int:
    """The 63-bit seed of item ``index`` of ``split``: a hash of (seed, split, index), distinct per split."""
    state = np.random.SeedSequence([seed, _SPLIT_CODES[split], index]).generate_state(1, dtype=np.uint64)
    return int(state[0]) >> 1


def family_schedule(seed: int, split: str, n: int, families: Sequence[str]) -> list[str]:
    """Which family each of the ``n`` items gets: balanced, in a seeded shuffled order per block."""
    rng = np.random.default_rng([seed, _SPLIT_CODES[split]])
    order: list[str] = []
    for _ in range(math.ceil(n / len(families))):
        order.extend(families[i] for i in rng.permutation(len(families)))
    return order[:n]


def make_sample(family: str, split: str, seed: int) -> Sample:
    """Regenerate an item's content from its family, split and item seed (as stored in the manifest)."""
    return FAMILIES[family](np.random.default_rng(seed), VoicePool.for_split(split))


def write_wav(path: Path, audio: np.ndarray) -> None:
    """Write mono 16 kHz 16-bit PCM with explicit rounding (the bytes depend on the samples only)."""
    pcm = np.clip(np.round(np.asarray(audio, dtype=np.float64) * 32767.0), -32768, 32767).astype(np.int16)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, pcm, SAMPLE_RATE, subtype="PCM_16", format="WAV")


def build_item(job: Job) -> Item:
    """Generate one item, write its wav (if any) and return its manifest entry."""
    seed = item_seed(job.seed, job.split, job.index)
    sample = make_sample(job.family, job.split, seed)
    item_id = f"{job.split}-{job.index:06d}-{job.family}"
    audio = None
    if sample.audio is not None:
        audio = f"audio/{job.split}/{item_id}.wav"
        write_wav(Path(job.out_dir) / audio, sample.audio)
    return Item(id=item_id, family=job.family, split=job.split, audio=audio, question=sample.question,
                choices=sample.choices, answer=sample.answer, answer_type=sample.answer_type,
                params=sample.params, transcript=sample.transcript, voice=sample.voice, seed=seed)


def _run(jobs: list[Job], workers: int) -> Iterator[Item]:
    """Build the jobs in order, in this process or in a pool of ``workers`` processes."""
    if workers <= 1:
        yield from map(build_item, jobs)
        return
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        yield from pool.imap(build_item, jobs, chunksize=4)


def _check_args(seed: int, sizes: Mapping[str, int], families: Sequence[str]) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed must be a non-negative int, got {seed!r}")
    for split, n in sizes.items():
        if split not in SPLITS:
            raise ConfigError(f"unknown split {split!r}; expected some of {', '.join(SPLITS)}")
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ConfigError(f"size of split {split!r} must be a non-negative int, got {n!r}")
    unknown = [f for f in families if f not in FAMILIES]
    if unknown or not families:
        raise ConfigError(f"unknown families {unknown or '(none given)'}; known: {', '.join(FAMILIES)}")
    if any(f not in SILENT_FAMILIES for f in families):
        espeak_path()  # fail before any work when speech is needed and espeak-ng is missing


def _family_names(families: Iterable[str] | None) -> list[str]:
    """The requested families in canonical order (so the order they are given in does not matter)."""
    if families is None:
        return list(FAMILIES)
    requested = [families] if isinstance(families, str) else list(dict.fromkeys(families))
    return [f for f in FAMILIES if f in requested] + [f for f in requested if f not in FAMILIES]


def generate_suite(out_dir: str | Path, seed: int = 0, sizes: Mapping[str, int] | None = None,
                   families: Iterable[str] | None = None, workers: int = 1,
                   progress: bool = False) -> dict[str, Path]:
    """Generate the suite into ``out_dir``; returns ``{split: manifest path}``.

    ``sizes`` maps split -> item count (default 2000/200/400); ``families`` restricts to some families
    (default all, in the order of :data:`FAMILIES`); ``workers`` > 1 builds items in that many processes
    (same bytes as one); ``progress`` shows a tqdm bar. Existing files of the same names are overwritten.
    """
    sizes = dict(DEFAULT_SIZES if sizes is None else sizes)
    names = _family_names(families)
    _check_args(seed, sizes, names)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    jobs = {split: [Job(str(out), seed, split, i, fam)
                    for i, fam in enumerate(family_schedule(seed, split, n, names))]
            for split, n in sizes.items()}
    bar = None
    if progress:
        bar = tqdm(total=sum(sizes.values()), unit="item", desc="generating")
    manifests = {}
    try:
        for split, split_jobs in jobs.items():
            items = []
            for item in _run(split_jobs, workers):
                items.append(item)
                if bar is not None:
                    bar.update(1)
            manifests[split] = write_manifest(out / f"{split}.jsonl", items)
    finally:
        if bar is not None:
            bar.close()
    return manifests


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The generator's flags (shared by ``audio-r1 data suite`` and ``python -m audio_r1.data.suite``)."""
    parser.add_argument("--out", required=True, help="output folder (manifests + audio/)")
    parser.add_argument("--seed", type=int, default=0)
    for split, n in DEFAULT_SIZES.items():
        parser.add_argument(f"--{split}", type=int, default=n, help=f"items in {split} (default {n})")
    parser.add_argument("--families", default=None,
                        help=f"comma-separated subset of: {', '.join(FAMILIES)}")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (output is identical)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Generate the suite the parsed flags describe; print where each split went."""
    families = None if args.families is None else [f.strip() for f in args.families.split(",") if f.strip()]
    sizes = {split: getattr(args, split) for split in DEFAULT_SIZES}
    start = time.perf_counter()
    try:
        manifests = generate_suite(args.out, args.seed, sizes, families, args.workers, progress=not args.quiet)
    except (ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    elapsed = time.perf_counter() - start
    for split, path in manifests.items():
        print(f"{split}: {sizes[split]} items -> {path}")
    print(f"done in {elapsed:.1f} s")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m audio_r1.data.suite --out DIR [--seed 0] [--train N --dev M --test K]``."""
    parser = argparse.ArgumentParser(prog="python -m audio_r1.data.suite",
                                     description="Generate the synthetic audio-question suite.")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
