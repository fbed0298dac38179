"""RL: GAE and PPO losses on hand-computed cases, scoring passes, rollouts, an end-to-end run that resumes
exactly, and a learning check on a trivially rewardable task."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file

from audio_r1.api import AudioR1
from audio_r1.cli import build_parser
from audio_r1.data.manifest import Item, write_manifest
from audio_r1.engine import Prompt
from audio_r1.scoring.rewards import RewardBreakdown, RewardWeights
from audio_r1.train.options import config_from_flags, prepare_model
from audio_r1.train.rl import (
    MAX_RESPONSE_TOKENS,
    RLConfig,
    ValueHead,
    clipped_policy_loss,
    clipped_value_loss,
    final_token_rewards,
    gae,
    group_advantages,
    kl_penalty,
    masked_whiten,
    response_forward,
    train_rl,
    verified_reward,
)
from audio_r1.train.rollout import (
    BackendUnavailableError,
    EngineBackend,
    Rollout,
    RolloutBackend,
    RolloutConfig,
    VLLMBackend,
    make_backend,
)

SR = 16000


def write_manifest_with_tones(directory: Path, n: int = 6) -> Path:
    """High/low tone questions (audio) plus one text-only sum."""
    (directory / "audio").mkdir(parents=True, exist_ok=True)
    items = []
    for i in range(n):
        high = i % 2 == 0
        t = np.arange(int(0.5 * SR)) / SR
        sf.write(directory / "audio" / f"{i}.wav", 0.3 * np.sin(2 * np.pi * (1400.0 if high else 200.0) * t), SR)
        items.append(Item(id=f"tone-{i}", family="voice_pitch", split="train", audio=f"audio/{i}.wav",
                          question="Is the tone high or low?", choices=["high", "low"],
                          answer="high" if high else "low", answer_type="choice", params={}, transcript=None,
                          voice=None, seed=i))
    items.append(Item(id="sum-0", family="text_math", split="train", audio=None, question="What is 2 plus 3?",
                      choices=None, answer="5", answer_type="number", params={}, transcript=None, voice=None, seed=99))
    return write_manifest(directory / "train.jsonl", items)


@pytest.fixture(scope="module")
def tiny() -> AudioR1:
    return AudioR1.from_pretrained("tiny")


# ------------------------------------------------------------------------------------------- GAE


def test_gae_with_gamma_lambda_one_is_final_reward_minus_value() -> None:
    rewards = torch.tensor([[0.0, 0.0, 1.0]])
    values = torch.tensor([[0.2, 0.5, 0.7]])
    advantages, returns = gae(rewards, values, torch.ones(1, 3, dtype=torch.bool))
    torch.testing.assert_close(advantages, torch.tensor([[0.8, 0.5, 0.3]]))
    torch.testing.assert_close(returns, torch.tensor([[1.0, 1.0, 1.0]]))


def test_gae_with_discounting_matches_the_hand_computation() -> None:
    # gamma 0.9, lambda 0.5, r = [0, 1], V = [0.5, 0.2]:
    # delta_1 = 1 - 0.2 = 0.8;  delta_0 = 0 + 0.9 * 0.2 - 0.5 = -0.32
    # A_1 = 0.8;  A_0 = -0.32 + 0.9 * 0.5 * 0.8 = 0.04;  returns = A + V = [0.54, 1.0]
    advantages, returns = gae(torch.tensor([[0.0, 1.0]]), torch.tensor([[0.5, 0.2]]),
                              torch.ones(1, 2, dtype=torch.bool), gamma=0.9, lam=0.5)
    torch.testing.assert_close(advantages, torch.tensor([[0.04, 0.8]]))
    torch.testing.assert_close(returns, torch.tensor([[0.54, 1.0]]))
    # three steps, gamma 0.5, lambda 1, reward 2 at the end, V = 0: A_t = 2 * 0.5 ** (T - 1 - t)
    advantages, _ = gae(torch.tensor([[0.0, 0.0, 2.0]]), torch.zeros(1, 3), torch.ones(1, 3, dtype=torch.bool),
                        gamma=0.5, lam=1.0)
    torch.testing.assert_close(advantages, torch.tensor([[0.5, 1.0, 2.0]]))


def test_gae_skips_padding_and_holes() -> None:
    rewards = torch.tensor([[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    values = torch.tensor([[0.5, 0.2, 9.0, 9.0], [0.5, 9.0, 9.0, 0.2]])
    mask = torch.tensor([[True, True, False, False], [True, False, False, True]])
    advantages, returns = gae(rewards, values, mask, gamma=0.9, lam=0.5)
    expected = torch.tensor([[0.04, 0.8, 0.0, 0.0], [0.04, 0.0, 0.0, 0.8]])  # both rows are the 2-step case
    torch.testing.assert_close(advantages, expected)
    torch.testing.assert_close(returns, torch.tensor([[0.54, 1.0, 0.0, 0.0], [0.54, 0.0, 0.0, 1.0]]))


def test_reward_sits_on_the_last_response_token() -> None:
    mask = torch.tensor([[True, True, True], [True, False, False]])
    rewards = final_token_rewards(torch.tensor([0.8, 1.0]), mask)
    torch.testing.assert_close(rewards, torch.tensor([[0.0, 0.0, 0.8], [1.0, 0.0, 0.0]]))


def test_group_advantages_normalise_within_each_group() -> None:
    scores = torch.tensor([1.0, 0.0, 1.0, 0.0, 0.5, 0.5, 0.5, 0.5])
    advantages = group_advantages(scores, group_size=4)
    torch.testing.assert_close(advantages, torch.tensor([1.0, -1.0, 1.0, -1.0, 0.0, 0.0, 0.0, 0.0]), atol=1e-5,
                               rtol=0)
    with pytest.raises(ValueError, match="multiple of group_size"):
        group_advantages(torch.ones(5), group_size=4)


def test_whitening_ignores_masked_positions() -> None:
    x = torch.tensor([[1.0, 3.0, 100.0]])
    mask = torch.tensor([[True, True, False]])
    torch.testing.assert_close(masked_whiten(x, mask), torch.tensor([[-1.0, 1.0, 0.0]]), atol=1e-6, rtol=0)


# ---------------------------------------------------------------------------------------- losses


def test_clipped_surrogate_on_hand_values() -> None:
    ratio = torch.tensor([1.5, 1.5, 0.5, 0.5, 1.1])
    advantages = torch.tensor([1.0, -1.0, 1.0, -1.0, 2.0])
    logp = torch.log(ratio).requires_grad_()
    loss, clipped = clipped_policy_loss(logp, torch.zeros(5), advantages, clip=0.2)
    # ratio 1.5, A > 0: clipped to 1.2 -> -1.2.   ratio 1.5, A < 0: the unclipped 1.5 is larger.
    # ratio 0.5, A > 0: the unclipped -0.5 is larger.   ratio 0.5, A < 0: clipped to 0.8 -> 0.8.
    # ratio 1.1 inside the interval: -2.2.
    torch.testing.assert_close(loss, torch.tensor([-1.2, 1.5, -0.5, 0.8, -2.2]))
    assert clipped.tolist() == [True, False, False, True, False]
    loss.sum().backward()
    # d loss / d logp = -A * ratio where unclipped, 0 where clipped
    torch.testing.assert_close(logp.grad, torch.tensor([0.0, 1.5, -0.5, 0.0, -2.2]))


def test_clipped_value_loss_on_hand_values() -> None:
    old = torch.tensor([0.0, 0.0, 0.0])
    values = torch.tensor([0.5, 0.1, -0.5])
    returns = torch.tensor([1.0, 1.0, 0.0])
    # 1: clipped value 0.2 -> max(0.25, 0.64) / 2 = 0.32;  2: inside the clip -> 0.81 / 2 = 0.405
    # 3: clipped -0.2 -> max(0.25, 0.04) / 2 = 0.125
    torch.testing.assert_close(clipped_value_loss(values, old, returns, clip=0.2), torch.tensor([0.32, 0.405, 0.125]))


def test_kl_penalty_is_zero_only_for_equal_policies() -> None:
    logp = torch.log(torch.tensor([0.5, 0.2]))
    assert torch.all(kl_penalty(logp, logp) == 0)
    assert torch.all(kl_penalty(logp, torch.log(torch.tensor([0.3, 0.4]))) > 0)


# ---------------------------------------------------------------------------------------- config


def test_config_checks_and_the_format_ablation() -> None:
    with pytest.raises(ValueError, match="max_new_tokens"):
        RLConfig(data="x", max_new_tokens=MAX_RESPONSE_TOKENS + 1)
    assert RLConfig(data="x", max_new_tokens=MAX_RESPONSE_TOKENS).max_new_tokens == 10_240
    assert RLConfig(data="x").reward_weights() == RewardWeights(0.8, 0.2, 1.0, 0.0)
    assert RLConfig(data="x", format_reward=False).reward_weights() == RewardWeights(1.0, 0.0, 1.0, 0.0)
    with pytest.raises(ValueError, match="backend"):
        RLConfig(data="x", backend="sglang")


def test_cli_flags_build_the_config() -> None:
    args = build_parser().parse_args(["train", "rl", "--model", "tiny", "--data", "m.jsonl", "--out", "o",
                                      "--steps", "3", "--prompts-per-step", "2", "--group-size", "4",
                                      "--max-new-tokens", "32", "--no-format-reward", "--grpo", "--resume"])
    config = config_from_flags(RLConfig, args)
    assert (config.steps, config.prompts_per_step, config.group_size, config.max_new_tokens) == (3, 2, 4, 32)
    assert config.grpo and not config.format_reward and args.resume
    assert config.reward_weights().audio_format == 0.0


# -------------------------------------------------------------------------------- scoring, rollout


def test_vllm_backend_says_it_is_not_installed(tiny: AudioR1) -> None:
    with pytest.raises(BackendUnavailableError, match="not installed|not implemented"):
        VLLMBackend(tiny.model, tiny.tokenizer, tiny.special)
    with pytest.raises(BackendUnavailableError):
        make_backend("vllm", tiny.model, tiny.tokenizer, tiny.special)
    with pytest.raises(ValueError, match="unknown rollout backend"):
        make_backend("nope", tiny.model, tiny.tokenizer, tiny.special)


def test_response_log_probs_match_a_plain_forward_and_ignore_padding(tmp_path: Path, tiny: AudioR1) -> None:
    write_manifest_with_tones(tmp_path, n=1)
    audio_prompt = tiny.build_prompt(tmp_path / "audio" / "0.wav", "Is the tone high or low?")
    text_prompt = tiny.build_prompt(None, "What is 2 plus 3?")
    patch = tiny.special.audio_patch  # a sampled <audio_patch> in a response is an ordinary token
    rollouts = [Rollout(0, audio_prompt, [70, patch, 72, tiny.special.end_of_turn], "", "", "", 4, "stop"),
                Rollout(1, text_prompt, [80, 81], "", "", "", 2, "length")]
    head = ValueHead(64)
    torch.nn.init.normal_(head.linear.weight)
    with torch.no_grad():
        batched = response_forward(tiny.model, rollouts, tiny.special.end_of_turn, value_head=head, with_entropy=True)
        for index, rollout in enumerate(rollouts):
            ids = torch.tensor([rollout.prompt.input_ids + rollout.token_ids])
            embeds = tiny.model.embed_inputs(ids[:, : len(rollout.prompt.input_ids)], _audio(rollout.prompt))
            embeds = torch.cat([embeds, tiny.model.language_model.get_input_embeddings()(
                torch.tensor([rollout.token_ids]))], dim=1)
            logits = tiny.model.language_model(inputs_embeds=embeds).logits[0].float()
            start = len(rollout.prompt.input_ids) - 1
            expected = logits[start : start + len(rollout.token_ids)].log_softmax(-1)
            expected = expected.gather(-1, torch.tensor(rollout.token_ids)[:, None]).squeeze(-1)
            offset = 0 if index == 0 else len(rollouts[0].token_ids)
            got = batched.logp[offset : offset + len(rollout.token_ids)]
            torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
            alone = response_forward(tiny.model, [rollout], tiny.special.end_of_turn, value_head=head)
            torch.testing.assert_close(alone.logp, got, rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(alone.values, batched.values[offset : offset + len(rollout.token_ids)],
                                       rtol=1e-4, atol=1e-5)
    assert batched.entropy.shape == batched.logp.shape and bool((batched.entropy > 0).all())


def _audio(prompt: Prompt):
    from audio_r1.audio import pad_mels
    from audio_r1.modeling import AudioBatch

    if not prompt.audio:
        return None
    mel, valid = pad_mels(prompt.audio)
    return AudioBatch(mel, valid, [len(prompt.audio)])


def test_engine_backend_groups_rollouts_and_runs_the_lora_policy(tmp_path: Path) -> None:
    config = RLConfig(data="x", model="tiny", lora=True, lora_rank=4, lora_alpha=8)
    wrapper, policy = prepare_model(config)
    with torch.no_grad():  # make the LoRA factors matter
        for name, parameter in policy.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.5)
    prompts = [wrapper.build_prompt(None, "first question"), wrapper.build_prompt(None, "second")]
    sampling = RolloutConfig(max_new_tokens=12, temperature=1.0, seed=5)
    fast = EngineBackend(policy, wrapper.tokenizer, wrapper.special, batch_size=4)
    assert isinstance(fast, RolloutBackend)
    rollouts = fast.generate(prompts, n=3, config=sampling)
    assert [r.group for r in rollouts] == [0, 0, 0, 1, 1, 1]
    assert all(r.prompt is prompts[r.group] for r in rollouts)
    assert all(r.finish_reason in ("stop", "length") and 1 <= len(r.token_ids) <= 12 for r in rollouts)
    assert all(r.think_tokens <= len(r.token_ids) for r in rollouts)
    assert fast.engine._fast_decoder is not None, "the LoRA policy should take the static-cache path"
    # same seed, same rollouts; and the same as the engine's fallback through the peft wrapper
    assert [r.token_ids for r in fast.generate(prompts, 3, sampling)] == [r.token_ids for r in rollouts]
    fallback = EngineBackend(policy, wrapper.tokenizer, wrapper.special, batch_size=4, fast=False)
    assert [r.token_ids for r in fallback.generate(prompts, 3, sampling)] == [r.token_ids for r in rollouts]


# ------------------------------------------------------------------------------------ end to end


def _shaped_reward(item: Item, rollout: Rollout) -> RewardBreakdown:
    """The verified reward plus the share of early tokens among 64 given ids, so a random model gets signal."""
    verified = verified_reward()(item, rollout)
    share = sum(token < 64 for token in rollout.token_ids[:4]) / 4
    return RewardBreakdown(verified.reward + share, verified.correct, verified.formatted)


def _run_config(data: Path, out: Path, steps: int, **overrides) -> RLConfig:
    settings = dict(data=str(data), out=str(out), model="tiny", steps=steps, prompts_per_step=2, group_size=4,
                    max_new_tokens=12, rollout_batch_size=8, micro_batch_size=4, minibatches=2, ppo_epochs=2,
                    lr=1e-2, lora_rank=4, lora_alpha=8, kl_coef=0.05, save_every=2, seed=3)
    settings.update(overrides)
    return RLConfig(**settings)


def test_rl_run_logs_checkpoints_resumes_exactly_and_exports(tmp_path: Path) -> None:
    data = write_manifest_with_tones(tmp_path / "data")
    straight = train_rl(_run_config(data, tmp_path / "straight", 4), progress=False, reward_fn=_shaped_reward)
    assert straight.final is not None

    first = _run_config(data, tmp_path / "split", 2, save_final=False)
    train_rl(first, progress=False, reward_fn=_shaped_reward)
    with pytest.raises(FileExistsError, match="resume"):
        train_rl(first, progress=False)
    with pytest.raises(ValueError, match="settings differ"):
        train_rl(_run_config(data, tmp_path / "split", 4, lr=1e-3), resume=True, progress=False)
    train_rl(_run_config(data, tmp_path / "split", 4), resume=True, progress=False, reward_fn=_shaped_reward)

    def tensors(run: str) -> dict[str, torch.Tensor]:
        return load_file(str(tmp_path / run / "checkpoints" / "step-00000004" / "trainable.safetensors"))

    a, b = tensors("straight"), tensors("split")
    assert a.keys() == b.keys() and any(k.startswith("value_head.") for k in a)
    trained = [k for k in a if "lora_B" in k or k.startswith("value_head.")]
    assert trained and all(bool(a[k].abs().sum() > 0) for k in trained), "nothing was trained"
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=0, atol=0, msg=name)

    def metrics(run: str) -> list[dict]:
        return [json.loads(line) for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]

    logged = metrics("straight")
    assert [m["step"] for m in logged] == [1, 2, 3, 4] and [m["step"] for m in metrics("split")] == [1, 2, 3, 4]
    for key in ("rl/reward", "rl/accuracy", "rl/think_tokens", "rl/entropy", "rl/clip_frac", "rl/value_loss",
                "rl/policy_loss", "rl/approx_kl", "rl/ref_kl"):
        assert all(np.isfinite(m[key]) for m in logged), key
    assert [m["rl/reward"] for m in metrics("split")] == [m["rl/reward"] for m in logged]
    assert list((tmp_path / "straight").glob("rl/events.out.tfevents*")), "TensorBoard log missing"
    assert (tmp_path / "straight" / "samples.jsonl").read_text().count("\n") == 4 * 2

    model = AudioR1.from_pretrained(straight.final)
    reply = model.ask(tmp_path / "data" / "audio" / "0.wav", "Is the tone high or low?", max_new_tokens=8)
    assert reply.finish_reason in ("stop", "length")


def test_grpo_run_needs_no_value_head(tmp_path: Path) -> None:
    data = write_manifest_with_tones(tmp_path / "data")
    result = train_rl(_run_config(data, tmp_path / "grpo", 2, grpo=True, kl_coef=0.0, format_reward=False,
                                  save_final=False), progress=False, reward_fn=_shaped_reward)
    assert result.final is None
    logged = [json.loads(line) for line in (tmp_path / "grpo" / "metrics.jsonl").read_text().splitlines()]
    assert "rl/value_loss" not in logged[-1] and np.isfinite(logged[-1]["rl/policy_loss"])
    saved = load_file(str(tmp_path / "grpo" / "checkpoints" / "step-00000002" / "trainable.safetensors"))
    assert not any(k.startswith("value_head.") for k in saved)
    assert any(bool(v.abs().sum() > 0) for k, v in saved.items() if "lora_B" in k), "nothing was trained"


def test_ppo_raises_the_reward_on_a_trivial_task(tmp_path: Path) -> None:
    """Reward = share of the first 4 response tokens among 32 given token ids (1/12 by chance)."""
    items = [Item(id=f"q{i}", family="text_math", split="train", audio=None, question=f"Say something {i}.",
                  choices=None, answer="1", answer_type="number", params={}, transcript=None, voice=None, seed=i)
             for i in range(4)]
    data = write_manifest(tmp_path / "train.jsonl", items)
    targets = set(range(32))

    def reward(item: Item, rollout: Rollout) -> RewardBreakdown:
        share = sum(token in targets for token in rollout.token_ids[:4]) / 4
        return RewardBreakdown(share, share > 0.5, False)

    # The whole decoder trains: with the tiny model's random, frozen output head LoRA alone can barely
    # move the output distribution.
    config = RLConfig(data=str(data), out=str(tmp_path / "run"), model="tiny", steps=30, prompts_per_step=4,
                      group_size=8, max_new_tokens=4, lora=False, lr=1e-3, value_lr=1e-2, micro_batch_size=32,
                      minibatches=2, ppo_epochs=2, save_every=1000, save_final=False)
    train_rl(config, progress=False, reward_fn=reward)
    rewards = [json.loads(line)["rl/reward"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    early, late = np.mean(rewards[:5]), np.mean(rewards[-5:])
    assert late > 0.3 and late > 3 * early, rewards
