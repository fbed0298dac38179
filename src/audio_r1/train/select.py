"""Difficulty selection by pass@k: keep the prompts the model solves sometimes, not always or never.

    audio-r1 select --data runs/suite/train.jsonl --model runs/sft/final --out runs/select -k 8 --band 3 6

Step-Audio-R1 samples 8 answers per RL prompt and keeps prompts with 3 to 6 correct: prompts solved
every time teach nothing, and training only on prompts never solved collapses. For every item this
samples ``k`` answers at temperature ~1 (batched, each sample with its own seed, so results do not
depend on batching), counts the correct ones (``data.answers.is_correct``), prints the pass-count
histogram, and writes into ``out``:

- ``selected.jsonl``: the kept items (a manifest; their wavs are linked under ``out/audio/...``);
- ``pass_counts.json``: the pass count of every item, the band and the histogram;
- ``samples.jsonl``: the per-item cache, appended after every batch. A killed run started again skips
  the cached items (same settings only) and ends with the same result as an uninterrupted run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..api import AudioR1
from ..chat import parse_reasoning
from ..data.manifest import Item, read_manifest, write_manifest
from ..engine import GenerationConfig
from ..errors import ConfigError
from ..files import write_text_atomic
from ..processing import item_question
from ..scoring.answers import is_correct
from .options import add_config_flags, config_from_flags, run_stage

CACHE = "samples.jsonl"
COUNTS = "pass_counts.json"
SELECTED = "selected.jsonl"


@dataclass(kw_only=True)
class SelectConfig:
    """One selection run; every field but the paths, `limit` and `batch_size` enters the cache key."""

    data: str  # a suite manifest (JSONL)
    out: str = "runs/select"
    model: str = "smol"
    k: int = 8
    low: int = 3  # keep items with low <= passes <= high
    high: int = 6
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 256
    max_think_tokens: int | None = None
    batch_size: int = 16  # sequences per generate call (whole items: at least k)
    seed: int = 0
    limit: int | None = None  # only the first N items (smoke runs)
    families: list[str] | None = None

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ConfigError(f"k must be >= 1, got {self.k}")
        if not 0 <= self.low <= self.high <= self.k:
            raise ConfigError(f"the band must satisfy 0 <= low <= high <= k, got {self.low}..{self.high} of {self.k}")
        if self.temperature <= 0:
            raise ConfigError("pass@k needs sampling: temperature must be > 0")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")

    def fingerprint(self) -> str:
        """The settings that change the samples (a cached item made with others is sampled again)."""
        keys = ("data", "model", "k", "temperature", "top_p", "max_new_tokens", "max_think_tokens", "seed")
        payload = json.dumps({key: getattr(self, key) for key in keys}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


@dataclass
class SelectResult:
    counts: dict[str, int]  # item id -> number of correct samples out of k
    kept: list[str]
    manifest: Path
    counts_path: Path
    histogram: str
    sampled: int = 0  # items sampled in this call (the rest came from the cache)
    settings: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------ pure parts


def select_band(counts: Mapping[str, int], low: int = 3, high: int = 6) -> list[str]:
    """Ids whose pass count lies in ``[low, high]``, in the order of ``counts``."""
    return [item_id for item_id, passes in counts.items() if low <= passes <= high]


def pass_histogram(counts: Mapping[str, int], k: int, *, low: int | None = None, high: int | None = None,
                   width: int = 40) -> str:
    """A text histogram of pass counts 0..k: one bar per count, scaled to ``width``; kept rows marked."""
    tally = Counter(counts.values())
    peak = max(tally.values(), default=0)
    total = len(counts)
    lines = [f"pass@{k} over {total} items"]
    for passes in range(k + 1):
        n = tally.get(passes, 0)
        bar = "#" * (round(width * n / peak) if peak else 0)
        if n and not bar:
            bar = "."
        share = f"{n / total:6.1%}" if total else "   n/a"
        kept = "  kept" if low is not None and high is not None and low <= passes <= high else ""
        lines.append(f"{passes:>3}/{k} | {bar:<{width}} {n:>5} {share}{kept}")
    return "\n".join(lines)


def sample_seed(seed: int, item_id: str, index: int) -> int:
    """The seed of sample ``index`` of an item: fixed by the run seed and the item id, not by batching."""
    digest = hashlib.sha256(f"{seed}:{item_id}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def count_passes(item: Item, texts: Sequence[str]) -> tuple[int, list[str]]:
    """(number correct, final answers) of generated texts for ``item``."""
    answers = [parse_reasoning(text)[1].strip() for text in texts]
    return sum(is_correct(item, answer) for answer in answers), answers


# ------------------------------------------------------------------------------------------ cache


def read_cache(path: Path, fingerprint: str) -> dict[str, dict[str, Any]]:
    """Cached results made with the same settings, by item id; a torn last line is cut off the file."""
    if not path.exists():
        return {}
    raw = path.read_bytes()
    if raw and not raw.endswith(b"\n"):  # killed mid-write: drop the partial line so appends stay valid
        raw = raw[: raw.rfind(b"\n") + 1]
        with path.open("r+b") as handle:
            handle.truncate(len(raw))
    found: dict[str, dict[str, Any]] = {}
    for line in raw.decode("utf-8").splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(entry, dict) and entry.get("fingerprint") == fingerprint and "id" in entry:
            found[entry["id"]] = entry
    return found


def append_jsonl(path: Path, entries: list[dict[str, Any]]) -> None:
    """Append JSON lines and fsync, so a killed run loses at most the batch in flight."""
    with path.open("a", encoding="utf-8") as handle:
        for entry in entries:
            handle.write(json.dumps(entry, ensure_ascii=False) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


# ------------------------------------------------------------------------------------------ sampling


def sample_groups(model, items: Sequence[Item], root: Path, k: int, seed: int, batch_size: int, **settings: Any
                  ) -> Iterator[tuple[list[Item], list[list[str]]]]:
    """k sampled texts per item, a few items per generate call: yields (items, texts per item).

    Sample j of an item uses the seed `sample_seed(seed, item.id, j)`, so results do not depend on
    batching. `settings` are `GenerationConfig` fields (temperature, max_new_tokens, ...).
    """
    per_call = max(1, batch_size // k)
    for start in range(0, len(items), per_call):
        chunk = list(items[start : start + per_call])
        prompts, configs = [], []
        for item in chunk:
            prompt = model.build_prompt(item.audio_path(root), item_question(item))
            prompts += [prompt] * k
            configs += [GenerationConfig(seed=sample_seed(seed, item.id, j), **settings) for j in range(k)]
        texts = [r.text for r in model.engine.generate(prompts, configs)]
        yield chunk, [texts[n * k : (n + 1) * k] for n in range(len(chunk))]


def run_select(config: SelectConfig, *, model=None, progress: bool = True) -> SelectResult:
    """Sample, count, select and write the outputs (see the module docstring). ``model``: an ``AudioR1``."""
    manifest = Path(config.data)
    items = [i for i in read_manifest(manifest) if not config.families or i.family in config.families]
    items = items[: config.limit]
    if not items:
        raise ConfigError(f"no items to select from in {manifest}")
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    cache_path = out / CACHE
    fingerprint = config.fingerprint()
    cached = read_cache(cache_path, fingerprint)
    todo = [item for item in items if item.id not in cached]
    if todo and model is None:
        model = AudioR1.from_pretrained(config.model, progress=False)
    settings = dict(max_new_tokens=config.max_new_tokens, temperature=config.temperature, top_p=config.top_p,
                    max_think_tokens=config.max_think_tokens)
    bar = tqdm(total=len(items), initial=len(items) - len(todo), desc=f"pass@{config.k}", disable=not progress)
    for chunk, groups in sample_groups(model, todo, manifest.parent, config.k, config.seed, config.batch_size,
                                       **settings):
        entries = []
        for item, texts in zip(chunk, groups, strict=True):
            passes, answers = count_passes(item, texts)
            entries.append({"id": item.id, "fingerprint": fingerprint, "k": config.k, "passes": passes,
                            "answers": [a[:200] for a in answers]})
        append_jsonl(cache_path, entries)
        cached.update({e["id"]: e for e in entries})
        bar.update(len(chunk))
    bar.close()
    counts = {item.id: int(cached[item.id]["passes"]) for item in items}
    return write_selection(config, items, counts, manifest.parent, sampled=len(todo))


def write_selection(config: SelectConfig, items: Sequence[Item], counts: Mapping[str, int], audio_root: Path,
                    sampled: int = 0) -> SelectResult:
    """Write the kept manifest (audio linked into ``out``) and the pass counts; return what was written."""
    out = Path(config.out)
    kept_ids = set(select_band(counts, config.low, config.high))
    kept = [item for item in items if item.id in kept_ids]
    for item in kept:
        _link_audio(item, audio_root, out)
    manifest = write_manifest(out / SELECTED, kept)
    histogram = pass_histogram(counts, config.k, low=config.low, high=config.high)
    settings = asdict(config)
    report = {"settings": settings, "k": config.k, "band": [config.low, config.high], "items": len(items),
              "kept": len(kept), "histogram": dict(sorted(Counter(counts.values()).items())), "counts": dict(counts)}
    counts_path = write_text_atomic(out / COUNTS, json.dumps(report, indent=1) + "\n")
    return SelectResult(dict(counts), [item.id for item in kept], manifest, counts_path, histogram, sampled, settings)


def _link_audio(item: Item, root: Path, out: Path) -> None:
    """Make ``out/<item.audio>`` point at the item's wav, so the kept manifest in ``out`` resolves it."""
    if item.audio is None:
        return
    source = (root / item.audio).resolve()
    target = out / item.audio
    if target.resolve() == source:
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_symlink():
        target.unlink()
    elif target.exists():
        raise FileExistsError(f"{target} exists and is not a link to {source}; choose another --out")
    target.symlink_to(source)


# ------------------------------------------------------------------------------------------ CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `audio-r1 select`: one per SelectConfig field, and `--band LOW HIGH` for both bounds."""
    add_config_flags(parser, SelectConfig, aliases={"k": "-k"}, helps={
        "data": "suite manifest to select from (JSONL)", "model": "'smol', 'tiny', a model directory or a smol delta file",
        "k": "samples per item (default 8)", "low": "keep items with at least this many passes (default 3)",
        "high": "keep items with at most this many passes (default 6)",
        "batch_size": "sequences per generate call", "families": "comma-separated families to consider"})
    parser.add_argument("--band", type=int, nargs=2, default=None, metavar=("LOW", "HIGH"),
                        help="--low and --high at once")
    parser.add_argument("--no-progress", action="store_true")


def run_from_args(args: argparse.Namespace) -> int:
    """`audio-r1 select`: prints the histogram and where the outputs went."""
    if args.band is not None:
        args.low, args.high = args.band
    result = run_select(config_from_flags(SelectConfig, args), progress=not args.no_progress)
    print(result.histogram)
    print(f"kept {len(result.kept)} of {len(result.counts)} items -> {result.manifest}")
    print(f"pass counts -> {result.counts_path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_stage("audio_r1.train.select", __doc__, add_arguments, run_from_args, argv)


if __name__ == "__main__":
    raise SystemExit(main())
