"""Self-cognition correction: DPO away from "I cannot hear audio" replies.

    audio-r1 train dpo --data runs/suite/train.jsonl --model runs/rl/final --out runs/dpo

Step-Audio-R1 sometimes answers an audio question with "I can only read text and cannot hear audio".
The release fixes it with DPO on preference pairs whose chosen reply uses the audio. The stages here:

1. **probes**: audio questions from suite items, asked openly ("What do you hear in this recording?
   ..."), split into a train probe and a disjoint held-out probe;
2. **pairs**: for each train probe, ``samples`` replies sampled from the model. Chosen: the first reply
   the MGRD verifier accepts (correct, grounded, coherent, no self-denial), else the cold-start trace
   (``data.traces.make_trace``). Rejected: a sampled self-denial when the model produced one, else a
   templated denial. Each pair records which (``chosen_source``: model | trace, ``rejected_source``:
   model | template);
3. **train**: DPO against the frozen starting model, ``loss = -log sigmoid(beta * ((pi_c - ref_c) -
   (pi_r - ref_r)))`` with sequence log-probs summed over assistant tokens only. The reference
   log-probs are computed once before the first step (the reference never changes) and saved with the
   run. LoRA (or full) training through ``options.prepare_model``; atomic checkpoints; ``resume``;
4. **report**: the self-cognition error rate (share of held-out replies the detector flags) and suite
   accuracy on held-out items, before and after, in ``out/report.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..api import AudioR1
from ..chat import parse_reasoning
from ..data.manifest import Item, read_manifest
from ..data.traces import make_trace
from ..engine import GenerationConfig
from ..errors import ConfigError
from ..files import write_text_atomic
from ..processing import item_question
from ..scoring.answers import is_correct
from ..scoring.verifier import verify
from .checkpointing import latest_checkpoint, load_checkpoint, remove_stale_staging, save_checkpoint
from .collate import IGNORE, Batch, TrainingExample, build_example, collate
from .options import (
    ModelOptions,
    OptimiserOptions,
    RunOptions,
    add_config_flags,
    check_options,
    check_resume,
    config_from_flags,
    make_optimizer,
    make_scheduler,
    prepare_model,
    require_positive,
    run_stage,
    trainable_state,
)
from .select import sample_seed
from .sft import export_model, global_batch_indices

# ------------------------------------------------------------------------------------------ the detector

_OBJECT = (r"(?:audio|sounds?|music|speech|voices?|recordings?|audio (?:clips?|files?|recordings?|input)|"
           r"(?:the|this|that|your|any) (?:audio|sound|recording|clip|file|track|music|speech|voice)s?)")
DENIAL_PATTERNS: tuple[re.Pattern[str], ...] = tuple(re.compile(p, re.IGNORECASE) for p in (
    # "I can't hear audio", "I am unable to listen to the recording", "I do not process sound"
    r"\bI(?: am|'m)? (?:can ?not|can't|unable to|not able to|do not|don't|am not capable of|have no (?:way|ability) to)"
    r"\s+(?:actually\s+|directly\s+|really\s+)?(?:hear|listen(?:\s+to)?|process|perceive|play|access|analy[sz]e)\s+"
    + _OBJECT + r"(?!\s+(?:clearly|well|properly))\b",
    # "I cannot hear." / "I can't listen, sorry"
    r"\bI (?:can ?not|can't) (?:actually )?(?:hear|listen)(?=\s*[.,;!]|\s*$)",
    r"\bI (?:can|am able to) only (?:read|process|understand|see|handle|work with) (?:text|written|words|typed)",
    r"\bas (?:a|an) (?:text[- ](?:based|only) |(?:large )?language |AI language )(?:model|AI|assistant)\b",
    r"\bI(?:'m| am) (?:just |only )?(?:a |an )?text[- ](?:based|only) (?:model|AI|assistant|system)\b",
    r"\bI (?:do not|don't) have (?:ears|(?:the )?(?:ability|capability|means) to (?:hear|listen|process (?:audio|sound))|"
    r"access to (?:the |any )?(?:audio|sound|recording)|audio (?:input|capabilities|capability|processing))",
    r"\b(?:unable|not able) to (?:hear|listen to|process|access|play) (?:the |this |any |your )?"
    r"(?:audio|sound|recording|clip|file)s?\b",
    r"\bno audio (?:was|has been|is) (?:provided|attached|shared|included)\b",
    r"\bI (?:do not|don't) see (?:any|an) (?:audio|sound|recording|attachment)",
))


def is_self_denial(text: str) -> bool:
    """Whether a reply claims the model cannot hear or process audio (any part: reasoning or answer)."""
    text = text.replace("\u2019", "'")
    return any(pattern.search(text) for pattern in DENIAL_PATTERNS)


DENIAL_TEMPLATES: tuple[tuple[str, str], ...] = (
    ("The user is asking about an audio clip, but I am a text-based model and cannot listen to audio.",
     "I'm sorry, but I can't hear audio. I can only read text, so I cannot tell what is in the recording."),
    ("I cannot process sound; I only see the words of the question.",
     "As a text-based AI, I am unable to listen to the clip. Could you describe it in words?"),
    ("There is no way for me to know what the recording contains.",
     "I don't have the ability to hear audio files, so I can't answer that."),
    ("", "Sorry, I can only read text and cannot hear audio."),
    ("As a language model I cannot perceive sounds.",
     "I'm unable to process the audio you shared. Please provide a transcript or a description instead."),
)

OPENERS = ("What do you hear in this recording?", "Describe this sound, then answer.", "Listen to the clip.",
           "Can you listen to this audio and tell me?", "Here is a recording.")


# ------------------------------------------------------------------------------------------ probes and pairs


@dataclass
class Probe:
    """One open audio question: a suite item asked with an opener that invites a description."""

    id: str
    item: Item
    prompt: str
    audio: str  # absolute path of the wav


def build_probes(items: Sequence[Item], n_train: int, n_heldout: int, *, root: str | Path, seed: int = 0
                 ) -> tuple[list[Probe], list[Probe]]:
    """Disjoint train and held-out probes from the audio items of a suite (shuffled by ``seed``)."""
    audio_items = [item for item in items if item.audio is not None]
    if len(audio_items) < n_train + n_heldout:
        raise ConfigError(f"{len(audio_items)} audio items cannot make {n_train} train + {n_heldout} held-out probes")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(audio_items))
    probes = []
    for rank, index in enumerate(order[: n_train + n_heldout]):
        item = audio_items[int(index)]
        opener = OPENERS[int(rng.integers(len(OPENERS)))]
        probes.append(Probe(f"probe-{rank:05d}-{item.id}", item, f"{opener}\n{item_question(item)}",
                            str(item.audio_path(root).resolve())))
    return probes[:n_train], probes[n_train:]


def build_pairs(model, probes: Sequence[Probe], *, samples: int = 4, temperature: float = 1.0,
                max_new_tokens: int = 192, seed: int = 0, batch_size: int = 16) -> list[dict[str, Any]]:
    """One preference pair per probe: a verified (or cold-start) answer over a self-denial."""
    pairs = []
    per_call = max(1, batch_size // max(1, samples))
    for start in range(0, len(probes), per_call):
        chunk = probes[start : start + per_call]
        prompts, configs = [], []
        for probe in chunk:
            prompt = model.build_prompt(probe.audio, probe.prompt)
            for j in range(samples):
                prompts.append(prompt)
                configs.append(GenerationConfig(max_new_tokens=max_new_tokens, temperature=temperature,
                                                seed=sample_seed(seed, probe.id, j)))
        results = model.engine.generate(prompts, configs) if prompts and samples else []
        for n, probe in enumerate(chunk):
            texts = [r.text for r in results[n * samples : (n + 1) * samples]]
            pairs.append(choose_pair(probe, texts, seed=seed))
    return pairs


def choose_pair(probe: Probe, texts: Sequence[str], *, seed: int = 0) -> dict[str, Any]:
    """The preference pair of one probe from its sampled replies (see the module docstring for the rules)."""
    chosen = next((t for t in texts if not is_self_denial(t) and verify(probe.item, t).accepted), None)
    rng = np.random.default_rng([seed, probe.item.seed % 2**32])
    if chosen is not None:
        reasoning, answer = parse_reasoning(chosen)
        chosen_side, chosen_source = {"reasoning": reasoning, "answer_text": answer.strip()}, "model"
    else:
        chosen_side = {"reasoning": make_trace(probe.item, rng), "answer_text": probe.item.answer}
        chosen_source = "trace"
    denial = next((t for t in texts if is_self_denial(t)), None)
    if denial is not None:
        reasoning, answer = parse_reasoning(denial)
        rejected_side, rejected_source = {"reasoning": reasoning, "answer_text": answer.strip()}, "model"
    else:
        reasoning, answer = DENIAL_TEMPLATES[int(rng.integers(len(DENIAL_TEMPLATES)))]
        rejected_side, rejected_source = {"reasoning": reasoning, "answer_text": answer}, "template"
    return {"id": probe.id, "item": probe.item.id, "audio": probe.audio, "prompt": probe.prompt,
            "chosen": chosen_side, "rejected": rejected_side, "chosen_source": chosen_source,
            "rejected_source": rejected_source}


# ------------------------------------------------------------------------------------------ measurements


def self_cognition_rate(model, probes: Sequence[Probe], *, max_new_tokens: int = 192, temperature: float = 0.0,
                        seed: int = 0, batch_size: int = 8) -> tuple[float, list[str]]:
    """Share of replies to ``probes`` that the detector flags as self-denials, and the replies."""
    texts: list[str] = []
    for start in range(0, len(probes), batch_size):
        chunk = probes[start : start + batch_size]
        prompts = [model.build_prompt(p.audio, p.prompt) for p in chunk]
        configs = [GenerationConfig(max_new_tokens=max_new_tokens, temperature=temperature, seed=seed) for _ in chunk]
        texts += [r.text for r in model.engine.generate(prompts, configs)]
    flagged = sum(is_self_denial(text) for text in texts)
    return (flagged / len(texts) if texts else 0.0), texts


def suite_accuracy(model, probes: Sequence[Probe], *, max_new_tokens: int = 192, batch_size: int = 8) -> float:
    """Greedy accuracy on the probes' items asked the standard way (``item_question``)."""
    right = 0
    for start in range(0, len(probes), batch_size):
        chunk = probes[start : start + batch_size]
        replies = model.ask_batch([(p.audio, item_question(p.item)) for p in chunk], max_new_tokens=max_new_tokens)
        right += sum(is_correct(p.item, r.answer.strip()) for p, r in zip(chunk, replies, strict=True))
    return right / len(probes) if probes else 0.0


# ------------------------------------------------------------------------------------------ the loss


def sequence_logps(model: torch.nn.Module, batch: Batch) -> torch.Tensor:
    """Sum of log-probabilities of each row's label tokens (assistant tokens only): shape (B,)."""
    targets = batch.labels[:, 1:]
    predicts = torch.zeros_like(batch.labels, dtype=torch.bool)
    predicts[:, :-1] = targets != IGNORE
    logits = model(batch.input_ids, batch.audio, attention_mask=batch.attention_mask, logits_mask=predicts,
                   use_cache=False)
    token_logps = torch.log_softmax(logits.float(), dim=-1).gather(-1, targets[targets != IGNORE][:, None])[:, 0]
    rows = predicts.nonzero()[:, 0]  # row of every selected position, in the same row-major order
    return torch.zeros(batch.labels.shape[0], dtype=token_logps.dtype, device=token_logps.device).index_add(
        0, rows, token_logps)


def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, reference_chosen: torch.Tensor,
             reference_rejected: torch.Tensor, beta: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pair DPO losses and margins: margin = (pi_c - ref_c) - (pi_r - ref_r); loss = -log sigmoid(beta * margin)."""
    margin = (policy_chosen - reference_chosen) - (policy_rejected - reference_rejected)
    return -F.logsigmoid(beta * margin), margin


# ------------------------------------------------------------------------------------------ training


@dataclass(kw_only=True)
class DPOConfig(ModelOptions, OptimiserOptions, RunOptions):
    """A self-cognition DPO run: probes, pair sampling, and the DPO optimisation."""

    data: str  # suite manifest the probes come from
    out: str = "runs/dpo"
    train_probes: int = 64
    heldout_probes: int = 32
    probe_seed: int = 0
    samples: int = 4  # replies sampled per train probe
    temperature: float = 1.0
    max_new_tokens: int = 192
    beta: float = 0.1
    steps: int = 50
    batch_size: int = 8  # pairs per optimizer step
    micro_batch_size: int = 4  # pairs per forward pass (chosen and rejected together)
    lr: float = 5e-5
    adaptor_lr: float = 5e-5
    warmup_steps: int = 5
    min_lr_ratio: float = 0.1
    max_length: int = 1024
    save_every: int = 25
    evaluate: bool = True  # measure the error rate and accuracy before and after

    def __post_init__(self) -> None:
        check_options(self)
        require_positive(self, ("steps", "batch_size", "micro_batch_size", "max_length"))
        if self.beta <= 0:
            raise ConfigError(f"beta must be > 0, got {self.beta}")


@dataclass
class DPOResult:
    steps: int
    final_loss: float
    margin: float  # mean chosen-vs-rejected margin (policy - reference) over all pairs; 0 before training
    out: Path
    seconds: float


def pair_examples(pairs: Sequence[dict[str, Any]], wrapper, max_length: int
                  ) -> list[tuple[TrainingExample, TrainingExample]]:
    """Tokenise both sides of every pair (labels on the assistant turn only)."""
    out = []
    for pair in pairs:
        sides = []
        for side in ("chosen", "rejected"):
            record = {"id": f"{pair['id']}:{side}", "audio": pair.get("audio"), "prompt": pair["prompt"],
                      **pair[side]}
            sides.append(build_example(record, wrapper.tokenizer, wrapper.template, wrapper.config,
                                       max_length=max_length))
        out.append((sides[0], sides[1]))
    return out


def pair_logps(model, examples: Sequence[tuple[TrainingExample, TrainingExample]], pad_id: int
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """(chosen, rejected) sequence log-probs of some pairs, in one forward pass."""
    batch = collate([c for c, _ in examples] + [r for _, r in examples], pad_id)
    logps = sequence_logps(model, batch)
    return logps[: len(examples)], logps[len(examples) :]


def all_pair_logps(model, examples, pad_id: int, micro_batch_size: int) -> torch.Tensor:
    """(N, 2) chosen/rejected log-probs of every pair, without gradients."""
    was_training = model.training
    model.eval()
    rows = []
    with torch.no_grad():
        for i in range(0, len(examples), micro_batch_size):
            chosen, rejected = pair_logps(model, examples[i : i + micro_batch_size], pad_id)
            rows.append(torch.stack([chosen, rejected], dim=1))
    model.train(was_training)
    return torch.cat(rows)


def train_dpo(config: DPOConfig, pairs: Sequence[dict[str, Any]], *, resume: bool = False,
              progress: bool = True) -> DPOResult:
    """DPO on ``pairs`` (see :func:`build_pairs`); checkpoints and the final model go to ``config.out``."""
    if not pairs:
        raise ConfigError("no preference pairs to train on")
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    wrapper, model = prepare_model(config)
    pad = wrapper.special.end_of_turn
    examples = pair_examples(pairs, wrapper, config.max_length)
    optimizer = make_optimizer(model, config)
    scheduler = make_scheduler(optimizer, config.warmup_steps, config.steps, config.min_lr_ratio)
    checkpoints = out / "checkpoints"
    reference_path = out / "reference_logps.json"
    start_step = 0
    found = None
    if resume:
        remove_stale_staging(checkpoints)
        found = latest_checkpoint(checkpoints)
    if found is not None and reference_path.exists():
        tensors, optimizer_state, scheduler_state, state = load_checkpoint(found)
        check_resume(state.get("config", {}), config)
        model.load_state_dict(tensors, strict=False)
        optimizer.load_state_dict(optimizer_state)
        scheduler.load_state_dict(scheduler_state)
        start_step = int(state["step"])
        reference = torch.tensor(json.loads(reference_path.read_text())["logps"])
    else:  # the reference is the starting model: its log-probs never change, so compute them once
        reference = all_pair_logps(model, examples, pad, config.micro_batch_size)
        write_text_atomic(reference_path, json.dumps({"ids": [p["id"] for p in pairs],
                                                      "logps": reference.tolist()}) + "\n")
    if len(reference) != len(examples):
        raise ConfigError(f"{reference_path} holds {len(reference)} pairs, the run has {len(examples)}; use a new --out")
    write_text_atomic(out / "config.json", json.dumps(dataclasses.asdict(config), indent=2) + "\n")
    model.train()
    started = time.perf_counter()
    loss_value = math.nan
    bar = tqdm(total=config.steps, initial=start_step, desc="dpo", disable=not progress)
    for step in range(start_step, config.steps):
        indices = global_batch_indices(step, config.batch_size, len(examples), config.seed)
        total_loss, margins = 0.0, []
        for i in range(0, len(indices), config.micro_batch_size):
            chunk = indices[i : i + config.micro_batch_size]
            chosen, rejected = pair_logps(model, [examples[j] for j in chunk], pad)
            ref = reference[chunk]
            losses, margin = dpo_loss(chosen, rejected, ref[:, 0], ref[:, 1], config.beta)
            (losses.sum() / len(indices)).backward()
            total_loss += float(losses.detach().sum())
            margins += margin.detach().tolist()
        grad_norm = torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad],
                                                   config.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        loss_value = total_loss / len(indices)
        done = step + 1
        metrics = {"step": done, "train/loss": loss_value, "train/margin": float(np.mean(margins)),
                   "train/pair_accuracy": float(np.mean([m > 0 for m in margins])),
                   "train/grad_norm": float(grad_norm), "train/lr": scheduler.get_last_lr()[-1]}
        with (out / "metrics.jsonl").open("a") as handle:
            handle.write(json.dumps(metrics) + "\n")
        bar.set_postfix(loss=f"{loss_value:.3f}", margin=f"{metrics['train/margin']:.2f}")
        bar.update(1)
        if done % config.save_every == 0 or done == config.steps:
            save_checkpoint(checkpoints, done, trainable_state(model), optimizer.state_dict(), scheduler.state_dict(),
                            {"config": dataclasses.asdict(config), "loss": loss_value}, keep=config.keep_checkpoints)
    bar.close()
    margin = _mean_margin(model, examples, reference, pad, config)
    export_model(model, wrapper.tokenizer, out / "final")
    return DPOResult(config.steps, loss_value, margin, out, time.perf_counter() - started)


def _mean_margin(model, examples, reference: torch.Tensor, pad: int, config: DPOConfig) -> float:
    logps = all_pair_logps(model, examples, pad, config.micro_batch_size)
    return float(((logps[:, 0] - reference[:, 0]) - (logps[:, 1] - reference[:, 1])).mean())


# ------------------------------------------------------------------------------------------ the whole stage


def run_self_cognition(config: DPOConfig, *, resume: bool = False, progress: bool = True) -> dict[str, Any]:
    """Probes, pairs, before-measurements, DPO, after-measurements; writes and returns ``out/report.json``.

    Pairs and the before-measurements are written once (``pairs.jsonl``, ``before.json``) and reused when
    the run is resumed.
    """
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    manifest = Path(config.data)
    items = read_manifest(manifest)
    train, heldout = build_probes(items, config.train_probes, config.heldout_probes, root=manifest.parent,
                                  seed=config.probe_seed)
    pairs_path, before_path = out / "pairs.jsonl", out / "before.json"
    if resume and pairs_path.exists() and (before_path.exists() or not config.evaluate):
        pairs = [json.loads(line) for line in pairs_path.read_text().splitlines() if line.strip()]
        before = json.loads(before_path.read_text()) if config.evaluate else {}
    else:
        base = AudioR1.from_pretrained(config.model, progress=False)
        pairs = build_pairs(base, train, samples=config.samples, temperature=config.temperature,
                            max_new_tokens=config.max_new_tokens, seed=config.seed)
        write_text_atomic(pairs_path, "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in pairs))
        before = _measure(base, heldout, config) if config.evaluate else {}
        write_text_atomic(before_path, json.dumps(before, indent=2) + "\n")
        del base
    result = train_dpo(config, pairs, resume=resume, progress=progress)
    after = _measure(AudioR1.from_pretrained(out / "final", progress=False), heldout, config) if config.evaluate else {}
    report = {
        "pairs": len(pairs),
        "chosen_source": _tally(p["chosen_source"] for p in pairs),
        "rejected_source": _tally(p["rejected_source"] for p in pairs),
        "train_probes": len(train), "heldout_probes": len(heldout),
        "before": before, "after": after,
        "final_loss": result.final_loss, "margin": result.margin,
        "steps": result.steps, "seconds": round(result.seconds, 1), "config": dataclasses.asdict(config),
    }
    write_text_atomic(out / "report.json", json.dumps(report, indent=2) + "\n")
    return report


def _measure(model, probes: Sequence[Probe], config: DPOConfig) -> dict[str, float]:
    rate, _ = self_cognition_rate(model, probes, max_new_tokens=config.max_new_tokens, seed=config.seed)
    return {"self_cognition_error_rate": rate,
            "suite_accuracy": suite_accuracy(model, probes, max_new_tokens=config.max_new_tokens)}


def _tally(values) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return counts


# ------------------------------------------------------------------------------------------ CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The DPO flags, one per DPOConfig field."""
    add_config_flags(parser, DPOConfig, helps={"data": "suite manifest the probes are built from"})
    parser.add_argument("--resume", action="store_true", help="reuse pairs and continue from the newest checkpoint")
    parser.add_argument("--no-progress", action="store_true")


def run_from_args(args: argparse.Namespace) -> int:
    """`audio-r1 train dpo`: run the stage from parsed flags and print the report's summary."""
    report = run_self_cognition(config_from_flags(DPOConfig, args), resume=args.resume, progress=not args.no_progress)
    summary = {k: report[k] for k in ("pairs", "chosen_source", "rejected_source", "before", "after",
                                      "margin", "final_loss")}
    print(json.dumps(summary, indent=2))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_stage("audio_r1.train.dpo", __doc__, add_arguments, run_from_args, argv)


if __name__ == "__main__":
    raise SystemExit(main())
