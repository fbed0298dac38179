"""Self-cognition DPO: the denial detector, the loss by hand, pairs and probes, and a tiny end-to-end run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from audio_r1.api import AudioR1
from audio_r1.data.manifest import read_manifest
from audio_r1.data.suite import generate_suite
from audio_r1.data.traces import make_trace
from audio_r1.processing import item_question
from audio_r1.scoring.verifier import verify
from audio_r1.train.collate import IGNORE, collate
from audio_r1.train.dpo import (
    DENIAL_TEMPLATES,
    DPOConfig,
    build_pairs,
    build_probes,
    choose_pair,
    dpo_loss,
    is_self_denial,
    run_self_cognition,
    sequence_logps,
    train_dpo,
)

pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------------------------------ detector


@pytest.mark.parametrize("text", [
    "I'm sorry, but I cannot hear audio.",
    "As a text-based model, I can't listen to the recording.",
    "I can only read text, so I don't know what the clip contains.",
    "Unfortunately I am unable to process the audio you sent.",
    "I don\u2019t have the ability to hear sounds.",
    "I'm a text-only AI and have no way to hear it.",
    "As a language model I cannot perceive sounds.",
    "I do not have access to the audio file.",
    "Sorry, I can't hear. Could you describe it?",
    "No audio was provided with your question.",
    "I don't see any audio attached.",
    *(reasoning + " " + answer for reasoning, answer in DENIAL_TEMPLATES),
])
def test_denials_are_detected(text: str) -> None:
    assert is_self_denial(text)


@pytest.mark.parametrize("text", [
    "I can hear a steady hum at about 60 Hz under the voice.",
    "I cannot hear any hiss in the pauses, so there is no background noise.",
    "The speaker says they cannot hear the music.",
    "I can only count four beeps; the fifth onset is missing.",
    "The tone is hard to hear behind the voice, but it sits near 220 Hz.",
    "I can't hear the beeps clearly, but there seem to be four onsets.",
    "Text-based reasoning about the words would be wrong here; the level is -35 dB.",
    "There is no audible hum, and no hiss either.",
])
def test_near_misses_are_not_denials(text: str) -> None:
    assert not is_self_denial(text)


# ------------------------------------------------------------------------------------------ loss


def test_dpo_loss_matches_the_hand_computed_value() -> None:
    # policy chosen/rejected -10 / -12, reference -11 / -11: margin = (1) - (-1) = 2
    loss, margin = dpo_loss(torch.tensor([-10.0]), torch.tensor([-12.0]), torch.tensor([-11.0]),
                            torch.tensor([-11.0]), beta=0.1)
    assert margin.item() == pytest.approx(2.0)
    assert loss.item() == pytest.approx(-math.log(1 / (1 + math.exp(-0.2))))  # = log(1 + e^-0.2) = 0.5981
    assert loss.item() == pytest.approx(0.598139, abs=1e-6)
    # a pair the policy gets backwards costs more; equal margins cost log 2
    worse, _ = dpo_loss(torch.tensor([-12.0]), torch.tensor([-10.0]), torch.tensor([-11.0]), torch.tensor([-11.0]),
                        beta=0.5)
    assert worse.item() == pytest.approx(math.log(1 + math.exp(1.0)))
    even, _ = dpo_loss(torch.zeros(3), torch.zeros(3), torch.zeros(3), torch.zeros(3))
    assert torch.allclose(even, torch.full((3,), math.log(2.0)))


@pytest.fixture(scope="module")
def tiny() -> AudioR1:
    return AudioR1.from_pretrained("tiny")


def test_sequence_logps_sum_the_assistant_tokens_only(tiny: AudioR1) -> None:
    records = [{"id": "a", "audio": None, "prompt": "What is 2 + 2?", "reasoning": "Four.", "answer_text": "4"},
               {"id": "b", "audio": None, "prompt": "Say hi", "reasoning": "", "answer_text": "hi there"}]
    from audio_r1.train.collate import build_example

    examples = [build_example(r, tiny.tokenizer, tiny.template, tiny.config) for r in records]
    batch = collate(examples, tiny.special.end_of_turn)
    with torch.no_grad():
        got = sequence_logps(tiny.model, batch)
        logits = tiny.model(batch.input_ids, batch.audio, attention_mask=batch.attention_mask, use_cache=False)
        logits = logits.logits if hasattr(logits, "logits") else logits
    for row in range(2):
        logp = torch.log_softmax(logits[row, :-1].float(), -1)
        targets = batch.labels[row, 1:]
        keep = targets != IGNORE
        expected = logp[keep].gather(-1, targets[keep][:, None]).sum()
        assert got[row].item() == pytest.approx(expected.item(), rel=1e-4, abs=1e-3)


# ------------------------------------------------------------------------------------------ probes and pairs


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("suite")
    return generate_suite(out, seed=6, sizes={"train": 14}, families=["pitch_compare", "count_events", "tempo",
                                                                      "text_math"])["train"]


def test_probes_are_disjoint_audio_questions(suite: Path) -> None:
    items = read_manifest(suite)
    train, heldout = build_probes(items, 5, 3, root=suite.parent, seed=1)
    assert len(train) == 5 and len(heldout) == 3
    assert not {p.item.id for p in train} & {p.item.id for p in heldout}
    assert all(p.item.audio is not None and Path(p.audio).is_file() for p in train + heldout)
    assert all(p.prompt.split("\n", 1)[1] == item_question(p.item) for p in train)  # an opener, then the question
    assert build_probes(items, 5, 3, root=suite.parent, seed=1)[0][0].id == train[0].id
    with pytest.raises(ValueError, match="cannot make"):
        build_probes(items, 50, 50, root=suite.parent)


def test_pairs_prefer_verified_model_answers_and_real_denials(suite: Path) -> None:
    items = read_manifest(suite)
    probe = build_probes(items, 1, 0, root=suite.parent)[0][0]
    item = probe.item
    good = "The reasoning would go here.\n</think>\n" + item.answer
    denial = "I cannot hear audio.\n</think>\nSorry, I can only read text."
    assert not verify(item, good).accepted  # no acoustic cue: the trace is used instead
    pair = choose_pair(probe, [good, denial])
    assert (pair["chosen_source"], pair["rejected_source"]) == ("trace", "model")
    assert pair["rejected"] == {"reasoning": "I cannot hear audio.", "answer_text": "Sorry, I can only read text."}
    assert verify(item, pair["chosen"]["reasoning"] + "\n</think>\n" + pair["chosen"]["answer_text"]).accepted
    grounded = make_trace(item, np.random.default_rng(3)) + "\n</think>\n" + item.answer
    pair = choose_pair(probe, [denial, grounded])
    assert pair["chosen_source"] == "model" and pair["chosen"]["answer_text"] == item.answer
    pair = choose_pair(probe, [])
    assert (pair["chosen_source"], pair["rejected_source"]) == ("trace", "template")
    assert is_self_denial(pair["rejected"]["reasoning"] + " " + pair["rejected"]["answer_text"])


# ------------------------------------------------------------------------------------------ training


def test_tiny_dpo_raises_the_chosen_over_rejected_margin(tmp_path: Path, suite: Path, tiny: AudioR1) -> None:
    items = read_manifest(suite)
    train, _ = build_probes(items, 4, 0, root=suite.parent)
    pairs = build_pairs(tiny, train, samples=2, max_new_tokens=6)
    assert len(pairs) == 4 and all(p["chosen_source"] in ("model", "trace") for p in pairs)
    config = DPOConfig(data=str(suite), out=str(tmp_path / "dpo"), model="tiny", steps=6, batch_size=4,
                       micro_batch_size=4, lr=3e-3, adaptor_lr=3e-3, warmup_steps=1, beta=0.1, save_every=3)
    result = train_dpo(config, pairs, progress=False)
    assert result.margin > 1.0, result  # it starts at 0: the reference is the starting policy
    metrics = [json.loads(line) for line in (tmp_path / "dpo" / "metrics.jsonl").read_text().splitlines()]
    assert metrics[0]["train/margin"] == pytest.approx(0.0, abs=1e-3)  # measured before the first update
    assert metrics[-1]["train/margin"] > metrics[0]["train/margin"]
    assert metrics[-1]["train/loss"] < metrics[0]["train/loss"] < math.log(2) + 1e-3
    assert (tmp_path / "dpo" / "final" / "config.json").exists()

    # resume from the step-3 checkpoint ends with the same weights as the uninterrupted run
    from audio_r1.train.checkpointing import list_checkpoints, load_checkpoint

    checkpoints = list_checkpoints(tmp_path / "dpo" / "checkpoints")
    assert [c.name for c in checkpoints] == ["step-00000003", "step-00000006"]
    final, *_ = load_checkpoint(checkpoints[-1])
    import shutil

    shutil.rmtree(checkpoints[-1])
    resumed = train_dpo(config, pairs, resume=True, progress=False)
    again, *_ = load_checkpoint(list_checkpoints(tmp_path / "dpo" / "checkpoints")[-1])
    assert resumed.margin == pytest.approx(result.margin, rel=1e-4)
    for name, tensor in final.items():
        torch.testing.assert_close(again[name], tensor)


def test_the_whole_stage_reports_before_and_after(tmp_path: Path, suite: Path) -> None:
    config = DPOConfig(data=str(suite), out=str(tmp_path / "run"), model="tiny", train_probes=4, heldout_probes=3,
                       samples=2, max_new_tokens=6, steps=2, batch_size=4, micro_batch_size=4, save_every=2)
    report = run_self_cognition(config, progress=False)
    assert report["pairs"] == 4 and report["heldout_probes"] == 3
    for stage in ("before", "after"):
        assert 0.0 <= report[stage]["self_cognition_error_rate"] <= 1.0
        assert 0.0 <= report[stage]["suite_accuracy"] <= 1.0
    assert json.loads((tmp_path / "run" / "report.json").read_text())["pairs"] == 4
    assert sum(report["chosen_source"].values()) == 4
    lines = (tmp_path / "run" / "pairs.jsonl").read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == [p.id for p in
                                                        build_probes(read_manifest(suite), 4, 3, root=suite.parent)[0]]
