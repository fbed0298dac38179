"""RL with verified rewards (RLVR): PPO with a value head, or group-normalised advantages (GRPO).

    audio-r1 train rl --model runs/mgrd/final --data runs/suite-v1/train.jsonl --out runs/rl \\
        --steps 200 --prompts-per-step 8 --group-size 16 --max-new-tokens 1024

One step of the loop, as Step-Audio-R1's report describes its RL stage:
1. take `prompts_per_step` questions of the manifest in a fixed order from `seed`;
2. sample `group_size` responses to each from the current policy (temperature 1) through a rollout
   backend (`rollout.py`: our engine by default);
3. score every response (`scoring/rewards.py`): audio prompts 0.8 * correct + 0.2 * reasoning-present, text
   prompts correct; the reward sits on the response's final token;
4. recompute the response tokens' log-probabilities and values without gradients (the "old" policy);
   advantages by GAE (gamma = lambda = 1 by default, so A_t = R - V(s_t)), or with `grpo` the group's
   normalised reward (R - mean) / std on every token and no value head;
5. `ppo_epochs` passes over `minibatches` minibatches: clipped surrogate (0.2), clipped value loss,
   optional entropy bonus and KL penalty against the frozen initial policy (coefficient 0 by default);
   every loss is a mean over the minibatch's response tokens.

The policy is `AudioR1ForCausalLM` with LoRA on the decoder (or the whole decoder), the audio encoder
frozen and the adaptor frozen unless `train_adaptor`. The value head is one `nn.Linear(hidden, 1)` on
the decoder's last hidden state, sharing the trunk with the policy. Logs go to `metrics.jsonl`,
TensorBoard (`out/rl`) and the progress bar; a few responses per step go to `samples.jsonl`.
Checkpoints are atomic (`checkpointing.py`); with `resume` a run continues from the newest one and,
since the data order and every random draw derive from (seed, step), ends where a straight run ends
(bit for bit on CPU). One process (CPU or one GPU).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..audio import pad_mels
from ..data.manifest import Item, read_manifest
from ..errors import ConfigError
from ..files import write_text_atomic
from ..modeling import AudioBatch
from ..processing import item_question
from ..scoring.rewards import RewardBreakdown, RewardWeights, score_response
from .checkpointing import latest_checkpoint, load_checkpoint, remove_stale_staging, save_checkpoint
from .options import (
    ModelOptions,
    OptimiserOptions,
    RunOptions,
    add_config_flags,
    check_options,
    check_resume,
    config_from_flags,
    effective_mixed_precision,
    make_optimizer,
    make_scheduler,
    prepare_model,
    require_positive,
    run_stage,
    trainable_state,
)
from .rollout import BACKENDS, Rollout, RolloutBackend, RolloutConfig, make_backend
from .sft import export_model, global_batch_indices

MAX_RESPONSE_TOKENS = 10_240  # the report's cap on RL response length
VALUE_PREFIX = "value_head."

# A reward function scores one rollout of one item (tests and custom tasks pass their own).
RewardFn = Callable[[Item, Rollout], RewardBreakdown]


def verified_reward(weights: RewardWeights | None = None) -> RewardFn:
    """The default reward function of `train_rl`: `score_response` on each rollout's text."""
    weights = weights or RewardWeights()

    def reward(item: Item, rollout: Rollout) -> RewardBreakdown:
        return score_response(item, rollout.text, weights, prefilled_open=rollout.prompt.thinking)

    return reward


@dataclass(kw_only=True)
class RLConfig(ModelOptions, OptimiserOptions, RunOptions):
    """Everything an RL run needs; saved in every checkpoint so a resumed run can check it matches."""

    data: str  # a suite manifest (JSONL of `data.manifest.Item`)
    out: str = "runs/rl"
    train_adaptor: bool = False
    lr: float = 5e-5
    adaptor_lr: float = 1e-4
    steps: int = 100
    prompts_per_step: int = 8
    group_size: int = 16  # responses per prompt
    max_new_tokens: int = 1024  # response cap, at most MAX_RESPONSE_TOKENS
    temperature: float = 1.0
    backend: str = "engine"
    rollout_batch_size: int = 64  # sequences per generate call
    ppo_epochs: int = 1
    minibatches: int = 1  # optimizer steps per epoch over the step's rollouts
    micro_batch_size: int = 8  # sequences per forward pass (gradient accumulation)
    value_lr: float = 1e-3
    clip_ratio: float = 0.2
    value_clip: float = 0.2
    vf_coef: float = 0.1
    entropy_coef: float = 0.0
    kl_coef: float = 0.0  # penalty against the frozen initial policy (k3 estimator, in the loss)
    gamma: float = 1.0
    lam: float = 1.0
    grpo: bool = False  # group-normalised advantages, no value head
    normalize_advantages: bool = True  # whiten GAE advantages over the step's response tokens
    correct_weight: float = 0.8  # audio prompts
    format_weight: float = 0.2  # audio prompts: reasoning present
    text_correct_weight: float = 1.0  # text prompts
    format_reward: bool = True  # False: the ablation (audio weights become 1 / 0)
    grounding_reward: float = 0.0  # audio prompts: + this when the chain is grounded (`scoring.grounding`)
    device: str = "auto"  # "auto" (cuda when available), "cpu", "cuda", "cuda:1", ...
    save_every: int = 10
    samples_per_step: int = 2  # responses per step written to samples.jsonl

    def __post_init__(self) -> None:
        check_options(self)
        require_positive(self, ("steps", "prompts_per_step", "group_size", "rollout_batch_size", "ppo_epochs",
                                "minibatches", "micro_batch_size"))
        if not 1 <= self.max_new_tokens <= MAX_RESPONSE_TOKENS:
            raise ConfigError(f"max_new_tokens must be in [1, {MAX_RESPONSE_TOKENS}], got {self.max_new_tokens}")
        if self.minibatches > self.prompts_per_step * self.group_size:
            raise ConfigError(f"minibatches ({self.minibatches}) exceeds the rollouts per step "
                              f"({self.prompts_per_step * self.group_size})")
        if self.temperature <= 0 or self.value_lr <= 0:
            raise ConfigError("temperature and learning rates must be > 0")
        if not (0 < self.clip_ratio < 1 and self.value_clip > 0):
            raise ConfigError("clip_ratio must be in (0, 1) and value_clip > 0")
        if not (0 <= self.gamma <= 1 and 0 <= self.lam <= 1):
            raise ConfigError("gamma and lam must be in [0, 1]")
        if min(self.kl_coef, self.entropy_coef, self.vf_coef, self.warmup_steps, self.samples_per_step,
               self.grounding_reward) < 0:
            raise ConfigError("kl_coef, entropy_coef, vf_coef, warmup_steps, samples_per_step and grounding_reward "
                              "must be >= 0")
        if self.backend not in BACKENDS:
            raise ConfigError(f"backend must be one of {BACKENDS}, got {self.backend!r}")

    def reward_weights(self) -> RewardWeights:
        """The reward weights, with the `--no-format-reward` ablation applied."""
        if not self.format_reward:
            weights = RewardWeights.without_format(text_correct=self.text_correct_weight)
        else:
            weights = RewardWeights(audio_correct=self.correct_weight, audio_format=self.format_weight,
                                    text_correct=self.text_correct_weight)
        return weights.with_grounding(self.grounding_reward)


@dataclass
class RLResult:
    steps: int
    reward: float  # mean reward of the last step's rollouts
    accuracy: float
    out: Path
    final: Path | None  # the exported (merged) model directory
    seconds: float


# ------------------------------------------------------------------------------------ advantages


def gae(rewards: Tensor, values: Tensor, mask: Tensor, gamma: float = 1.0, lam: float = 1.0) -> tuple[Tensor, Tensor]:
    """Generalised advantage estimation over (B, T) rows of response tokens -> (advantages, returns).

    delta_t = r_t + gamma * V(s_{t+1}) - V(s_t),  A_t = delta_t + gamma * lam * A_{t+1}.
    Positions where `mask` is False are skipped (advantage and return 0; the recursion passes over
    them) and the state after a row's last real token is terminal (value 0). Returns are A_t + V(s_t).
    """
    if not rewards.shape == values.shape == mask.shape or rewards.dim() != 2:
        raise ValueError(f"rewards, values and mask must be equal (B, T) shapes, got "
                         f"{tuple(rewards.shape)}, {tuple(values.shape)}, {tuple(mask.shape)}")
    mask = mask.bool()
    rewards, values = rewards.float(), values.float()
    advantages = torch.zeros_like(rewards)
    next_value = torch.zeros_like(rewards[:, 0])
    next_advantage = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):
        real = mask[:, t]
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        advantage = delta + gamma * lam * next_advantage
        advantages[:, t] = torch.where(real, advantage, 0.0)
        next_value = torch.where(real, values[:, t], next_value)
        next_advantage = torch.where(real, advantage, next_advantage)
    returns = torch.where(mask, advantages + values, 0.0)
    return advantages, returns


def final_token_rewards(scores: Tensor, mask: Tensor) -> Tensor:
    """(B, T) per-token rewards: each row's score on its last real token, zeros elsewhere."""
    mask = mask.bool()
    if not bool(mask.any(dim=1).all()):
        raise ValueError("every row needs at least one response token")
    last = mask.shape[1] - 1 - mask.flip(1).int().argmax(dim=1)
    rewards = torch.zeros(mask.shape, dtype=torch.float32, device=mask.device)
    rewards[torch.arange(mask.shape[0], device=mask.device), last] = scores.float().to(mask.device)
    return rewards


def group_advantages(scores: Tensor, group_size: int, eps: float = 1e-6) -> Tensor:
    """GRPO: each score minus its group's mean, over the group's (population) std; groups are consecutive."""
    if scores.dim() != 1 or scores.numel() % group_size:
        raise ValueError(f"scores must be 1-D with a multiple of group_size={group_size} entries")
    groups = scores.float().view(-1, group_size)
    normalised = (groups - groups.mean(dim=1, keepdim=True)) / (groups.std(dim=1, unbiased=False, keepdim=True) + eps)
    return normalised.view(-1)


def masked_whiten(x: Tensor, mask: Tensor, eps: float = 1e-8) -> Tensor:
    """(x - mean) / std over the positions where `mask` is True; zeros elsewhere."""
    mask = mask.bool()
    chosen = x[mask].float()
    if chosen.numel() < 2:
        return torch.where(mask, x - chosen.mean() if chosen.numel() else x, 0.0)
    whitened = (x - chosen.mean()) / (chosen.std(unbiased=False) + eps)
    return torch.where(mask, whitened, 0.0)


# ---------------------------------------------------------------------------------------- losses


def clipped_policy_loss(logp: Tensor, old_logp: Tensor, advantages: Tensor, clip: float = 0.2) -> tuple[Tensor, Tensor]:
    """PPO's clipped surrogate per token -> (loss, clipped).

    loss = max(-A * ratio, -A * clip(ratio, 1 - clip, 1 + clip)) with ratio = exp(logp - old_logp);
    `clipped` marks tokens where the clipped term is the larger one (no gradient flows there).
    """
    ratio = torch.exp(logp - old_logp)
    unclipped = -advantages * ratio
    clipped_term = -advantages * ratio.clamp(1.0 - clip, 1.0 + clip)
    return torch.maximum(unclipped, clipped_term), clipped_term > unclipped


def clipped_value_loss(values: Tensor, old_values: Tensor, returns: Tensor, clip: float = 0.2) -> Tensor:
    """0.5 * max((V - R)^2, (V_clipped - R)^2) per token, V_clipped = old + clamp(V - old, -clip, clip)."""
    clipped = old_values + (values - old_values).clamp(-clip, clip)
    return 0.5 * torch.maximum((values - returns) ** 2, (clipped - returns) ** 2)


def kl_penalty(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """Per-token KL(policy || reference) estimate k3 = exp(ref - logp) - (ref - logp) - 1 (>= 0, unbiased)."""
    log_ratio = ref_logp - logp
    return torch.exp(log_ratio) - log_ratio - 1.0


# ------------------------------------------------------------------------------------------ model


class ValueHead(nn.Module):
    """V(s_t): one linear layer on the decoder's last hidden state (float32), zero-initialised."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.linear = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, hidden: Tensor) -> Tensor:
        """hidden (..., H) -> values (...)."""
        return self.linear(hidden.float()).squeeze(-1)


@dataclass
class ResponseScores:
    """Per response token, flattened in rollout order: log-prob, and optionally entropy and value."""

    logp: Tensor
    entropy: Tensor | None
    values: Tensor | None


def response_forward(model: nn.Module, rollouts: Sequence[Rollout], pad_id: int, *, temperature: float = 1.0,
                     value_head: ValueHead | None = None, with_entropy: bool = False) -> ResponseScores:
    """One forward pass over prompt + response sequences; scores only the response tokens.

    Sequences are right-padded; position p's logits (divided by `temperature`, as in sampling) predict
    token p + 1, so the positions from the prompt's last token to the response's second-to-last are the
    ones that go through the output head and the value head.
    """
    device = model.device
    sequences = [r.prompt.input_ids + r.token_ids for r in rollouts]
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(sequences), width), dtype=torch.long)
    predicts = torch.zeros((len(sequences), width), dtype=torch.bool)
    for row, (rollout, sequence) in enumerate(zip(rollouts, sequences, strict=True)):
        ids[row, : len(sequence)] = torch.tensor(sequence, dtype=torch.long)
        attention[row, : len(sequence)] = 1
        start = len(rollout.prompt.input_ids) - 1
        predicts[row, start : start + len(rollout.token_ids)] = True
    targets = ids[:, 1:][predicts[:, :-1]].to(device)
    chunks = [chunk for r in rollouts for chunk in r.prompt.audio]
    audio = None
    if chunks:
        mel, valid = pad_mels(chunks)
        audio = AudioBatch(mel, valid, [len(r.prompt.audio) for r in rollouts])
    ids, attention, predicts = ids.to(device), attention.to(device), predicts.to(device)
    lm = model.language_model
    # Audio goes into the prompt's patches only: a sampled `<audio_patch>` in a response is an ordinary
    # token, embedded as the engine embedded it while decoding.
    response = torch.zeros_like(predicts)
    response[:, 1:] = predicts[:, :-1]
    embeds = model.embed_inputs(ids.masked_fill(response, pad_id), audio)
    embeds = torch.where(response[..., None], lm.get_input_embeddings()(ids).to(embeds.dtype), embeds)
    hidden = lm.get_decoder()(inputs_embeds=embeds, attention_mask=attention, use_cache=False).last_hidden_state
    hidden = hidden[predicts]
    logits = lm.get_output_embeddings()(hidden).float() / temperature
    log_probs = F.log_softmax(logits, dim=-1)
    logp = log_probs.gather(-1, targets[:, None]).squeeze(-1)
    entropy = -(log_probs.exp() * log_probs).sum(-1) if with_entropy else None
    values = value_head(hidden) if value_head is not None else None
    return ResponseScores(logp, entropy, values)


def trainable_tensors(model: nn.Module, value_head: ValueHead | None) -> dict[str, Tensor]:
    """What a checkpoint holds: the policy's trainable tensors and the value head's (prefixed)."""
    tensors = trainable_state(model)
    if value_head is not None:
        tensors.update({VALUE_PREFIX + k: v.detach().clone() for k, v in value_head.state_dict().items()})
    return tensors


# ------------------------------------------------------------------------------------------- data


def load_prompts(path: str | Path):
    """The manifest's items (validated, audio present)."""
    items = read_manifest(path)
    if not items:
        raise ConfigError(f"{path}: the manifest has no items")
    return items


def build_prompt(wrapper, item, base_dir: Path):
    """The engine prompt of one item: its audio (if any), then `item_question(item)`, `<think>\\n` prefilled."""
    return wrapper.build_prompt(item.audio_path(base_dir), item_question(item))


def step_seed(seed: int, step: int, stream: int) -> int:
    """A 31-bit seed for one random stream of one step (0: rollouts, 1: minibatch order)."""
    return int(np.random.SeedSequence([seed, step, stream]).generate_state(1)[0] >> 1)


# --------------------------------------------------------------------------------------- training


def train_rl(config: RLConfig, resume: bool = False, progress: bool = True, *, reward_fn: RewardFn | None = None,
             backend: RolloutBackend | None = None) -> RLResult:
    """Run (or resume) RL; returns the last step's reward and accuracy and the exported model's path.

    `reward_fn(item, rollout)` replaces the verified reward (custom tasks, tests); `backend` replaces
    the rollout backend named by `config.backend`.
    """
    from torch.utils.tensorboard import SummaryWriter  # tensorboard: slow to import, only logging needs it

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise RuntimeError("RL runs in one process (CPU or one GPU); launch it without accelerate/torchrun")
    out = Path(config.out)
    device = _device(config.device)
    items = load_prompts(config.data)
    base_dir = Path(config.data).parent
    reward_fn = reward_fn or verified_reward(config.reward_weights())

    checkpoints = out / "checkpoints"
    if not resume and latest_checkpoint(checkpoints) is not None:
        raise FileExistsError(f"{checkpoints} holds checkpoints of an earlier run: pass resume=True (--resume) "
                              "to continue it, or choose another out directory")
    torch.manual_seed(config.seed)
    wrapper, policy = prepare_model(config)
    policy.to(device).eval()  # no dropout anywhere: old and new log-probs compare like with like
    reference = _frozen_copy(policy) if config.kl_coef > 0 else None
    value_head = None if config.grpo else ValueHead(policy.language_model.config.hidden_size).to(device)
    value_group = [{"params": list(value_head.parameters()), "lr": config.value_lr}] if value_head else []
    optimizer = make_optimizer(policy, config, value_group)
    scheduler = make_scheduler(optimizer, config.warmup_steps)
    backend = backend or make_backend(config.backend, policy, wrapper.tokenizer, wrapper.special,
                                      batch_size=config.rollout_batch_size)
    pad_id = wrapper.special.end_of_turn

    start_step = _resume(checkpoints, config, policy, value_head, optimizer, scheduler) if resume else 0
    out.mkdir(parents=True, exist_ok=True)
    _truncate_logs(out, start_step)
    write_text_atomic(out / "config.json", json.dumps(dataclasses.asdict(config), indent=2) + "\n")
    writer = SummaryWriter(str(out / "rl"))
    bar = tqdm(total=config.steps, initial=start_step, desc="rl", disable=not progress)
    started = time.perf_counter()
    metrics: dict[str, float] = {}
    try:
        for step in range(start_step, config.steps):
            metrics = _rl_step(step, config, items, base_dir, wrapper, policy, value_head, reference, optimizer,
                               scheduler, backend, reward_fn, pad_id, out)
            done = step + 1
            if done % config.log_every == 0 or done == config.steps:
                for name, value in metrics.items():
                    writer.add_scalar(name, value, done)
                writer.flush()
                with (out / "metrics.jsonl").open("a") as handle:
                    handle.write(json.dumps({"step": done, **metrics}) + "\n")
            bar.set_postfix(reward=f"{metrics['rl/reward']:.3f}", acc=f"{metrics['rl/accuracy']:.2f}",
                            think=f"{metrics['rl/think_tokens']:.0f}", kl=f"{metrics['rl/approx_kl']:.4f}")
            bar.update(1)
            if done % config.save_every == 0 or done == config.steps:
                save_checkpoint(checkpoints, done, trainable_tensors(policy, value_head), optimizer.state_dict(),
                                scheduler.state_dict(), {"config": dataclasses.asdict(config),
                                                         "reward": metrics["rl/reward"]},
                                keep=config.keep_checkpoints)
    finally:
        bar.close()
        writer.close()
    final = None
    if config.save_final:
        final = export_model(policy, wrapper.tokenizer, out / "final")
    return RLResult(config.steps, metrics.get("rl/reward", float("nan")), metrics.get("rl/accuracy", float("nan")),
                    out, final, time.perf_counter() - started)


def _rl_step(step: int, config: RLConfig, items: list, base_dir: Path, wrapper, policy: nn.Module,
             value_head: ValueHead | None, reference: nn.Module | None, optimizer: torch.optim.Optimizer,
             scheduler, backend: RolloutBackend, reward_fn: RewardFn, pad_id: int, out: Path) -> dict[str, float]:
    """Rollouts, rewards, advantages and the PPO update of one step; returns its metrics."""
    started = time.perf_counter()
    chosen = [items[i] for i in global_batch_indices(step, config.prompts_per_step, len(items), config.seed)]
    prompts = [build_prompt(wrapper, item, base_dir) for item in chosen]
    sampling = RolloutConfig(config.max_new_tokens, config.temperature, step_seed(config.seed, step, 0))
    rollouts = backend.generate(prompts, config.group_size, sampling)
    _check_rollouts(rollouts, len(prompts), config.group_size)
    scored = [reward_fn(chosen[r.group], r) for r in rollouts]
    rollout_seconds = time.perf_counter() - started

    mask = _response_mask(rollouts, policy.device)
    old = _score_rollouts(policy, value_head, reference, rollouts, mask, config, pad_id)
    scores = torch.tensor([s.reward for s in scored], dtype=torch.float32, device=mask.device)
    if config.grpo:
        advantages = torch.where(mask, group_advantages(scores, config.group_size)[:, None], 0.0)
        returns = None
    else:
        advantages, returns = gae(final_token_rewards(scores, mask), old["values"], mask, config.gamma, config.lam)
        if config.normalize_advantages:
            advantages = masked_whiten(advantages, mask)
    update_started = time.perf_counter()
    stats = _ppo_update(step, config, policy, value_head, optimizer, rollouts, mask, old, advantages, returns, pad_id)
    scheduler.step()

    tokens = mask.sum().clamp(min=1)
    groups = scores.view(-1, config.group_size)
    metrics = {
        "rl/reward": float(scores.mean()),
        "rl/reward_std": float(scores.std(unbiased=False)),
        "rl/accuracy": float(np.mean([s.correct for s in scored])),
        "rl/format": float(np.mean([s.formatted for s in scored])),
        "rl/think_tokens": float(np.mean([r.think_tokens for r in rollouts])),
        "rl/response_tokens": float(np.mean([len(r.token_ids) for r in rollouts])),
        "rl/truncated": float(np.mean([r.finish_reason == "length" for r in rollouts])),
        "rl/flat_groups": float((groups.max(dim=1).values == groups.min(dim=1).values).float().mean()),
        "rl/entropy": float((old["entropy"] * mask).sum() / tokens),
        **stats,
        "rl/lr": scheduler.get_last_lr()[0],
        "rl/rollout_s": rollout_seconds,
        "rl/update_s": time.perf_counter() - update_started,
    }
    if reference is not None:
        metrics["rl/ref_kl"] = float((kl_penalty(old["logp"], old["ref_logp"]) * mask).sum() / tokens)
    _write_samples(out / "samples.jsonl", step + 1, chosen, rollouts, scored, config.samples_per_step)
    return metrics


def _check_rollouts(rollouts: Sequence[Rollout], n_prompts: int, group_size: int) -> None:
    expected = [i for i in range(n_prompts) for _ in range(group_size)]
    if [r.group for r in rollouts] != expected:
        raise RuntimeError(f"the rollout backend must return {group_size} rollouts per prompt, grouped in prompt "
                           f"order ({n_prompts * group_size} in all); got groups {[r.group for r in rollouts][:20]}…")
    if any(not r.token_ids for r in rollouts):
        raise RuntimeError("the rollout backend returned a response without tokens")


def _response_mask(rollouts: Sequence[Rollout], device: torch.device) -> Tensor:
    """(R, T) True on each rollout's response tokens (right-padded)."""
    lengths = torch.tensor([len(r.token_ids) for r in rollouts])
    return (torch.arange(int(lengths.max()))[None, :] < lengths[:, None]).to(device)


def _micro_batches(rows: Sequence[int], rollouts: Sequence[Rollout], size: int) -> list[list[int]]:
    """`rows` sorted by sequence length (less padding), in slices of `size`."""
    ordered = sorted(rows, key=lambda i: len(rollouts[i].prompt.input_ids) + len(rollouts[i].token_ids))
    return [ordered[i : i + size] for i in range(0, len(ordered), size)]


def _autocast(config: RLConfig, device: torch.device):
    enabled = effective_mixed_precision(config.mixed_precision, device) == "bf16"
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


def _score_rollouts(policy: nn.Module, value_head: ValueHead | None, reference: nn.Module | None,
                    rollouts: Sequence[Rollout], mask: Tensor, config: RLConfig, pad_id: int) -> dict[str, Tensor]:
    """The rollout policy's log-probs, values and entropy per response token, and the reference's log-probs."""
    names = ["logp", "entropy"] + (["values"] if value_head is not None else []) + (
        ["ref_logp"] if reference is not None else [])
    found = {name: torch.zeros(mask.shape, dtype=torch.float32, device=mask.device) for name in names}
    with torch.no_grad(), _autocast(config, mask.device):
        for micro in _micro_batches(range(len(rollouts)), rollouts, config.micro_batch_size):
            rows = torch.tensor(micro, device=mask.device)
            picked = [rollouts[i] for i in micro]
            scores = response_forward(policy, picked, pad_id, temperature=config.temperature, value_head=value_head,
                                      with_entropy=True)
            pieces = {"logp": scores.logp, "entropy": scores.entropy, "values": scores.values}
            if reference is not None:
                pieces["ref_logp"] = response_forward(reference, picked, pad_id, temperature=config.temperature).logp
            for name in names:
                block = torch.zeros((len(micro), mask.shape[1]), dtype=torch.float32, device=mask.device)
                block[mask[rows]] = pieces[name].float()
                found[name][rows] = block
    return found


def _ppo_update(step: int, config: RLConfig, policy: nn.Module, value_head: ValueHead | None,
                optimizer: torch.optim.Optimizer, rollouts: Sequence[Rollout], mask: Tensor, old: dict[str, Tensor],
                advantages: Tensor, returns: Tensor | None, pad_id: int) -> dict[str, float]:
    """`ppo_epochs` x `minibatches` optimizer steps; token-weighted means of the losses and diagnostics."""
    parameters = [p for group in optimizer.param_groups for p in group["params"]]
    order_rng = np.random.default_rng(step_seed(config.seed, step, 1))
    sums = {"policy_loss": 0.0, "value_loss": 0.0, "clip_frac": 0.0, "approx_kl": 0.0}
    counted, grad_norms = 0, []
    for _ in range(config.ppo_epochs):
        for minibatch in np.array_split(order_rng.permutation(len(rollouts)), config.minibatches):
            minibatch_tokens = int(mask[torch.as_tensor(minibatch, device=mask.device)].sum())
            for micro in _micro_batches(minibatch.tolist(), rollouts, config.micro_batch_size):
                rows = torch.tensor(micro, device=mask.device)
                real = mask[rows]
                with _autocast(config, mask.device):
                    scores = response_forward(policy, [rollouts[i] for i in micro], pad_id,
                                              temperature=config.temperature, value_head=value_head,
                                              with_entropy=config.entropy_coef > 0)
                old_logp = old["logp"][rows][real]
                policy_loss, clipped = clipped_policy_loss(scores.logp, old_logp, advantages[rows][real],
                                                           config.clip_ratio)
                loss = policy_loss.sum()
                if value_head is not None:
                    value_loss = clipped_value_loss(scores.values, old["values"][rows][real], returns[rows][real],
                                                    config.value_clip)
                    loss = loss + config.vf_coef * value_loss.sum()
                    sums["value_loss"] += float(value_loss.detach().sum())
                if config.entropy_coef > 0:
                    loss = loss - config.entropy_coef * scores.entropy.sum()
                if config.kl_coef > 0:
                    loss = loss + config.kl_coef * kl_penalty(scores.logp, old["ref_logp"][rows][real]).sum()
                (loss / minibatch_tokens).backward()
                with torch.no_grad():
                    log_ratio = scores.logp.detach() - old_logp
                    sums["policy_loss"] += float(policy_loss.detach().sum())
                    sums["clip_frac"] += float(clipped.sum())
                    sums["approx_kl"] += float((torch.exp(log_ratio) - 1 - log_ratio).sum())
                counted += int(real.sum())
            grad_norms.append(float(torch.nn.utils.clip_grad_norm_(parameters, config.max_grad_norm)))
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    stats = {f"rl/{name}": value / max(1, counted) for name, value in sums.items()}
    if value_head is None:
        del stats["rl/value_loss"]
    stats["rl/grad_norm"] = float(np.mean(grad_norms))
    return stats


def _write_samples(path: Path, step: int, items: list, rollouts: Sequence[Rollout],
                   scored: Sequence[RewardBreakdown], count: int) -> None:
    """The first `count` responses of the step, for reading what the policy does."""
    if count <= 0:
        return
    with path.open("a") as handle:
        for rollout, score in list(zip(rollouts, scored, strict=True))[:count]:
            handle.write(json.dumps({"step": step, "item": items[rollout.group].id, "text": rollout.text,
                                     "reward": score.reward, "correct": score.correct, "formatted": score.formatted,
                                     "think_tokens": rollout.think_tokens,
                                     "finish_reason": rollout.finish_reason}) + "\n")


# ---------------------------------------------------------------------------------------- resuming


def _resume(checkpoints: Path, config: RLConfig, policy: nn.Module, value_head: ValueHead | None,
            optimizer: torch.optim.Optimizer, scheduler) -> int:
    """Load the newest checkpoint (if any) into the run; returns the step to continue from."""
    remove_stale_staging(checkpoints)
    found = latest_checkpoint(checkpoints)
    if found is None:
        return 0
    tensors, optimizer_state, scheduler_state, state = load_checkpoint(found)
    check_resume(state.get("config", {}), config)
    missing = set(trainable_tensors(policy, value_head)) - set(tensors)
    if missing:
        raise RuntimeError(f"checkpoint {found} lacks trainable tensors: {sorted(missing)[:5]}")
    policy.load_state_dict({k: v for k, v in tensors.items() if not k.startswith(VALUE_PREFIX)}, strict=False)
    if value_head is not None:
        value_head.load_state_dict({k[len(VALUE_PREFIX):]: v for k, v in tensors.items() if k.startswith(VALUE_PREFIX)})
    optimizer.load_state_dict(optimizer_state)
    scheduler.load_state_dict(scheduler_state)
    return int(state["step"])


def _truncate_logs(out: Path, step: int) -> None:
    """Drop log lines past `step` (a resumed run writes them again)."""
    for name in ("metrics.jsonl", "samples.jsonl"):
        path = out / name
        if path.exists():
            lines = [line for line in path.read_text().splitlines(keepends=True)
                     if line.strip() and json.loads(line).get("step", 0) <= step]
            write_text_atomic(path, "".join(lines))


def _frozen_copy(model: nn.Module) -> nn.Module:
    """The reference policy for the KL penalty: a frozen copy of the initial policy."""
    reference = copy.deepcopy(model).eval()
    for parameter in reference.parameters():
        parameter.requires_grad_(False)
    return reference


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


# -------------------------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The RL flags, one per RLConfig field (shared by `audio-r1 train rl` and this module)."""
    helps = {
        "data": "suite manifest of RL prompts (JSONL)",
        "grpo": "group-normalised advantages (GRPO) instead of GAE with a value head",
        "format_reward": "--no-format-reward: the ablation, audio reward = correct only",
        "kl_coef": "KL penalty against the frozen initial policy (0 = none, as in the report)",
        "grounding_reward": "add W to an audio response's reward when its chain is grounded (0 = off, as in "
                            "the paper)",
        "max_new_tokens": f"response cap (at most {MAX_RESPONSE_TOKENS})",
    }
    add_config_flags(parser, RLConfig, helps=helps)
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    parser.add_argument("--no-progress", action="store_true")


def run_from_args(args: argparse.Namespace) -> int:
    """`audio-r1 train rl`: train, then print a one-line JSON summary."""
    result = train_rl(config_from_flags(RLConfig, args), resume=args.resume, progress=not args.no_progress)
    print(json.dumps({"steps": result.steps, "reward": result.reward, "accuracy": result.accuracy,
                      "out": str(result.out), "final": str(result.final) if result.final else None,
                      "seconds": round(result.seconds, 1)}))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_stage("audio_r1.train.rl", __doc__, add_arguments, run_from_args, argv)


if __name__ == "__main__":
    raise SystemExit(main())
