"""Small generated copies of each benchmark, in its official layout, so the whole path runs offline.

    from audio_r1.eval.fixtures import make_fixture
    data = make_fixture("mmau", tmp_path / "mmau", n=6)     # -> the path to pass as --data

Speech comes from espeak-ng (`data.synth.speak`); without espeak-ng a tone sequence stands in, so the
layouts can still be tested. Questions have true answers (counts of beeps, arithmetic, Big Bench style
logic), but the point is the format, not difficulty. Everything is deterministic in `seed`.
"""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf

from ..data.synth import SAMPLE_RATE, beep, concat, silence, speak, tone, white_noise
from ..data.voices import VoicePool
from .spoken_mqa import SPLITS

BENCHES = ("mmau", "mmsu", "bigbench-audio", "spoken-mqa", "wildspeech", "suite")
NUMBER_WORDS = "zero one two three four five six seven eight nine ten".split()


def _speech(text: str, rng: np.random.Generator) -> np.ndarray:
    """espeak-ng speech of `text`, or (without espeak-ng) one short tone per word."""
    if shutil.which("espeak-ng"):
        return speak(text, VoicePool.for_split("test").pick(rng))
    words = max(1, len(text.split()))
    return concat(*[concat(tone(300.0 + 20 * (i % 7), 0.12), silence(0.05)) for i in range(min(words, 40))])


def _beeps(count: int, freq: float = 880.0) -> np.ndarray:
    return concat(silence(0.2), *[concat(beep(freq, 0.15), silence(0.2)) for _ in range(count)])


def _write_wav(path: Path, audio: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, audio.astype(np.float32), SAMPLE_RATE, subtype="PCM_16")


def _write_mp3(path: Path, audio: np.ndarray) -> None:
    """MP3 through PyAV's bundled LAME encoder (Big Bench Audio ships mp3)."""
    import av  # PyAV: only the m4a fixture needs it

    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp3") as container:
        stream = container.add_stream("libmp3lame", rate=SAMPLE_RATE)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(audio.astype(np.float32)[None, :], format="flt", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue())


def _jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")


# ------------------------------------------------------------------------------------------------- MMAU


def make_mmau(root: Path, n: int = 6, seed: int = 0) -> Path:
    """`mmau-test-mini.json` + `test-mini-audios/<id>.wav`; options 4, 2 or 5 as in the release."""
    rng = np.random.default_rng(seed)
    tasks = ("sound", "music", "speech")
    rows = []
    for i in range(n):
        task = tasks[i % 3]
        item_id = f"{seed:04x}{i:04x}-0000-4000-8000-{i:012x}"
        if task == "sound":
            count = int(rng.integers(1, 5))
            audio = _beeps(count)
            choices = [f"{NUMBER_WORDS[k].capitalize()} beeps" for k in range(1, 6)] if i % 2 else \
                [f"{NUMBER_WORDS[k].capitalize()} beeps" for k in range(1, 5)]
            question, answer, sub = "How many beeps are in the audio?", choices[count - 1], "Event Counting"
        elif task == "music":
            low, high = sorted(rng.choice([262.0, 330.0, 392.0, 523.0], size=2, replace=False))
            rising = bool(rng.integers(2))
            audio = concat(tone(low if rising else high, 0.5), silence(0.1), tone(high if rising else low, 0.5))
            choices = ["The second note is higher", "The second note is lower"]
            question, answer, sub = "How does the second note compare with the first?", choices[0 if rising else 1], \
                "Pitch Comparison"
        else:
            word = ["apple", "river", "window", "garden"][int(rng.integers(4))]
            audio = _speech(f"The word is {word}.", rng)
            choices = ["A word about a fruit", "A word about water", "A word about a house", "A word about plants"]
            answer = choices[["apple", "river", "window", "garden"].index(word)]
            question, sub = "What does the spoken word refer to?", "Content Understanding"
        _write_wav(root / "test-mini-audios" / f"{item_id}.wav", audio)
        rows.append({"id": item_id, "audio_id": f"./test-mini-audios/{item_id}.wav", "question": question,
                     "choices": choices, "answer": answer, "dataset": "audio-r1 fixture", "task": task,
                     "split": "test-mini", "category": "Reasoning" if i % 2 else "Perception",
                     "sub-category": sub, "difficulty": ("easy", "medium", "hard")[i % 3]})
    root.mkdir(parents=True, exist_ok=True)
    (root / "mmau-test-mini.json").write_text(json.dumps(rows, indent=1), encoding="utf-8")
    return root


# ------------------------------------------------------------------------------------------------- MMSU


def make_mmsu(root: Path, n: int = 6, seed: int = 0) -> Path:
    """`mmsu.jsonl` + `audio/*.wav` with choice_a..choice_d and answer_gt as option text."""
    rng = np.random.default_rng(seed)
    words = ["apple", "orange", "table", "chair", "music", "river"]
    rows = []
    for i in range(n):
        word = words[int(rng.integers(len(words)))]
        options = [word, *rng.choice([w for w in words if w != word], size=3, replace=False).tolist()]
        rng.shuffle(options)
        path = f"audio/mmsu_{i:04d}.wav"
        _write_wav(root / path, _speech(word, rng))
        category = "perception" if i % 2 == 0 else "reasoning"
        rows.append({"id": f"mmsu_{i:04d}", "audio_path": path, "question": "Which word does the speaker say?",
                     "choice_a": options[0], "choice_b": options[1], "choice_c": options[2], "choice_d": options[3],
                     "answer_gt": word, "task_name": "word_recognition", "category": category,
                     "sub-category": ("semantics", "phonology", "paralinguistics")[i % 3],
                     "sub-sub-category": "lexical", "linguistics_sub_discipline": "phonetics"})
    _jsonl(root / "mmsu.jsonl", rows)
    return root


# ------------------------------------------------------------------------------------------ Big Bench Audio


def _bba_question(category: str, rng: np.random.Generator) -> tuple[str, str]:
    if category == "navigate":
        steps = int(rng.integers(1, 9))
        back = steps if rng.integers(2) else steps + int(rng.integers(1, 4))
        return (f"If you follow these instructions, do you return to the starting point? Take {steps} steps. "
                f"Turn around. Take {back} steps. Options: Yes or No.", "Yes" if back == steps else "No")
    if category == "web_of_lies":
        truthful = bool(rng.integers(2))
        claims_true = bool(rng.integers(2))
        answer = "Yes" if claims_true == truthful else "No"
        return (f"Question: Alice {'tells the truth' if truthful else 'lies'}. Bob says Alice "
                f"{'tells the truth' if claims_true else 'lies'}. Does Bob tell the truth?", answer)
    if category == "object_counting":
        counts = rng.integers(1, 4, size=3)
        items = ["apples", "bananas", "pears"]
        listed = ", ".join(f"{NUMBER_WORDS[c]} {name}" for c, name in zip(counts, items, strict=True))
        return f"I have {listed}. How many fruits do I have?", str(int(counts.sum()))
    valid = bool(rng.integers(2))
    argument = ("Every sailor is brave. Sam is a sailor. Therefore, Sam is brave." if valid else
                "Every sailor is brave. Sam is brave. Therefore, Sam is a sailor.")
    return f'"{argument}" Is the argument, given the explicitly stated premises, deductively valid or invalid?', \
        "valid" if valid else "invalid"


def make_bigbench_audio(root: Path, n: int = 8, seed: int = 0) -> Path:
    """`metadata.jsonl` rows {category, official_answer, file_name, id} + `data/question_<id>.mp3`."""
    rng = np.random.default_rng(seed)
    categories = ("formal_fallacies", "navigate", "object_counting", "web_of_lies")
    rows = []
    for i in range(n):
        category = categories[i % 4]
        text, answer = _bba_question(category, rng)
        _write_mp3(root / "data" / f"question_{i}.mp3", _speech(text, rng))
        rows.append({"category": category, "official_answer": answer, "file_name": f"data/question_{i}.mp3", "id": i})
    _jsonl(root / "metadata.jsonl", rows)
    return root


# ----------------------------------------------------------------------------------------------- Spoken-MQA


def _mqa_item(split: str, rng: np.random.Generator) -> tuple[str, str]:
    if split == "short_digit":
        a, b = (int(x) for x in rng.integers(1, 10, size=2))
        return f"What is {a} plus {b}?", str(a + b)
    if split == "long_digit":
        a, b = (int(x) for x in rng.integers(100, 1000, size=2))
        return f"What is {a} times {b}?", str(a * b)
    if split == "single_step_reasoning":
        a, b = (int(x) for x in rng.integers(2, 20, size=2))
        return f"Tom has {a} marbles and finds {b} more. How many marbles does he have now?", str(a + b)
    a, b, c = (int(x) for x in rng.integers(2, 12, size=3))
    total = a * b - c
    return (f"A box holds {a} rows of {b} eggs. {c} eggs break. How many eggs are left?",
            f"The box holds {a} * {b} = {a * b} eggs. After {c} break, {a * b} - {c} = {total}.\n#### {total:,}")


def make_spoken_mqa(root: Path, n: int = 2, seed: int = 0) -> Path:
    """One `<split>.jsonl` per split with `context` (audio path), `instruction`/`answer` {"text": ...}."""
    rng = np.random.default_rng(seed)
    for split in SPLITS:
        rows = []
        for i in range(n):
            text, answer = _mqa_item(split, rng)
            path = f"audio/{split}_{i:03d}.wav"
            _write_wav(root / path, _speech(text, rng))
            rows.append({"id": i, "context": path, "context_transcript": text,
                         "instruction": {"text": "Please answer the math question in the audio."},
                         "answer": {"text": answer}})
        _jsonl(root / f"{split}.jsonl", rows)
    return root


# ------------------------------------------------------------------------------------------------ WildSpeech


def make_wildspeech(root: Path, n: int = 5, seed: int = 0) -> Path:
    """`wildspeech.jsonl` rows with user_query, taskType, checklist, modification_type and an audio path."""
    rng = np.random.default_rng(seed)
    queries = [("Can you suggest a name for a small bakery?", "text_creation"),
               ("What is the capital of France?", "information_inquiry"),
               ("How do I keep my basil plant alive indoors?", "solution_request"),
               ("Do you think cats or dogs make better pets?", "opinion_exchange"),
               ("I can't believe it is raining again.", "prosodical")]
    rows = []
    for i in range(n):
        query, task = queries[i % len(queries)]
        modification = ("clean", "natural_noise", "human_noise")[i % 3]
        audio = _speech(query, rng)
        if modification != "clean":
            audio = (audio + 0.02 * white_noise(rng, len(audio) / SAMPLE_RATE)[:len(audio)]).astype(np.float32)
        path = f"audio/query_{i:04d}.wav"
        _write_wav(root / path, audio)
        rows.append({"user_query": query, "taskType": task, "checklist": "- The response answers the question.",
                     "conversation_hash": f"{seed:04x}{i:028x}", "modification_type": modification,
                     "additional_info": "stuttering" if task == "prosodical" else "", "audio": path})
    _jsonl(root / "wildspeech.jsonl", rows)
    return root


def make_suite(root: Path, n: int = 14, seed: int = 1) -> Path:
    """A small acoustic suite test split; returns the manifest path."""
    from ..data.suite import generate_suite  # the suite generator (espeak-ng) only for its fixture

    return generate_suite(root, seed=seed, sizes={"train": 0, "dev": 0, "test": n})["test"]


MAKERS: dict[str, Callable[..., Path]] = {"mmau": make_mmau, "mmsu": make_mmsu, "bigbench-audio": make_bigbench_audio,
                                          "spoken-mqa": make_spoken_mqa, "wildspeech": make_wildspeech,
                                          "suite": make_suite}


def make_fixture(bench: str, root: str | Path, n: int | None = None, seed: int = 0) -> Path:
    """Generate benchmark `bench` under `root`; returns the path to pass as `--data`."""
    if bench not in MAKERS:
        raise ValueError(f"unknown benchmark {bench!r}; choose one of {', '.join(MAKERS)}")
    kwargs = {"seed": seed} if bench != "suite" else {}
    if n is not None:
        kwargs["n"] = n
    return MAKERS[bench](Path(root), **kwargs)
