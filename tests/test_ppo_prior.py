"""The LM prior of the discrete SB3 policies (``prior=True``): PPO starts at LM-prior sampling.

Checks against values computed here with the tiny LM directly: the first policy equals the
LM's next-token distribution over the candidate vocabulary after the context (and after
each prompt prefix), the residual head starts at zero, prefixes are computed once and
their LM cost reaches the budget.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_agents_rl import TEST_RL, VOCAB, sb3_first_step_probs

from rlprompt.agents.rl.sb3 import algorithms as sb3
from rlprompt.agents.rl.sb3.prior import PromptPrior
from rlprompt.errors import ConfigError

pytestmark = pytest.mark.usefixtures("one_thread")


def lm_logprobs(lm, context: str, tokens: list[int], vocab: np.ndarray) -> torch.Tensor:
    """log p(vocab | context + tokens) [K], by a plain forward of the model."""
    ids = torch.tensor([lm.tokenizer(context).input_ids + tokens], device=lm.device)
    with torch.no_grad():
        logits = lm.model(input_ids=ids).logits[0, -1].float().cpu()
    return torch.log_softmax(logits[torch.as_tensor(vocab)], -1)


def test_prompt_prior_matches_a_plain_forward_and_caches_prefixes(tiny_lm):
    vocab = np.arange(10, 74)
    spent: list[int] = []
    prior = PromptPrior(tiny_lm, "Is it good?\n\nA fine film.", vocab,
                        charge=lambda **c: spent.append(c["forward_tokens"]))
    prompt = torch.tensor([[-1, -1, -1], [5, -1, -1], [5, 7, -1], [5, -1, -1]])
    out = prior(prompt)
    assert out.shape == (4, 64)
    for row, prefix in zip(out, [[], [5], [5, 7], [5]], strict=True):
        expected = lm_logprobs(tiny_lm, "Is it good?\n\nA fine film.", vocab[prefix].tolist(), vocab)
        assert torch.allclose(row, expected, atol=1e-4)
    # the context once, then the two non-empty prefixes only (left-padded to 2 tokens each)
    context_tokens = len(tiny_lm.tokenizer("Is it good?\n\nA fine film.").input_ids)
    assert spent == [context_tokens, 4]
    prior(prompt[:2])
    assert len(spent) == 2  # all cached: no LM call


def test_prompt_prior_of_several_contexts_is_their_mixture(tiny_lm):
    vocab = np.arange(10, 74)
    contexts = ["Is it good?\n\nA fine film.", "Is it good?\n\nA dull plot and worse acting."]
    mixed = PromptPrior(tiny_lm, contexts, vocab)(torch.tensor([[-1, -1], [3, -1], [3, 9]]))
    for row, prefix in zip(mixed, [[], [3], [3, 9]], strict=True):
        each = torch.stack([lm_logprobs(tiny_lm, c, vocab[prefix].tolist(), vocab) for c in contexts])
        expected = torch.log(each.exp().mean(0))
        assert torch.allclose(row, expected, atol=1e-4)
        assert torch.allclose(row.exp().sum(), torch.tensor(1.0), atol=1e-4)
    with pytest.raises(ValueError, match="at least one context"):
        PromptPrior(tiny_lm, [], vocab)


def test_prompt_prior_mixes_in_the_uniform_share(tiny_lm):
    vocab, prompt = np.arange(10, 74), torch.tensor([[-1, -1], [3, -1]])
    plain = PromptPrior(tiny_lm, "ctx", vocab)(prompt).exp()
    half = PromptPrior(tiny_lm, "ctx", vocab, uniform=0.5)(prompt).exp()
    assert torch.allclose(half, 0.5 * plain + 0.5 / 64, atol=1e-5)
    flat = PromptPrior(tiny_lm, "ctx", vocab, uniform=1.0)(prompt).exp()
    assert torch.allclose(flat, torch.full_like(flat, 1 / 64))
    with pytest.raises(ValueError, match="uniform"):
        PromptPrior(tiny_lm, "ctx", vocab, uniform=1.5)


def test_prompt_prior_cache_is_bounded(tiny_lm):
    prior = PromptPrior(tiny_lm, "ctx", np.arange(10, 20), cache_size=2, chunk=2)
    prompt = torch.tensor([[1, -1], [2, -1], [3, -1], [1, 2]])
    out = prior(prompt)
    assert len(prior._cache) <= 2
    assert torch.allclose(out[0], prior(prompt[:1])[0])


def test_ppo_with_prior_starts_at_the_lm_distribution(great_engine, great_task):
    cfg = sb3.PPOConfig(seed=0, n_envs=2, prompt_length=3, prior=True, **VOCAB)
    agent = sb3.PPOAgent(great_engine, great_task, cfg)
    probs = sb3_first_step_probs(agent)
    expected = torch.exp(lm_logprobs(great_engine.lm, prior_text(agent), [], agent.env.vocab)).numpy()
    assert probs.shape == expected.shape
    assert np.allclose(probs, expected, atol=1e-5)
    assert all(float(p.detach().abs().sum()) == 0 for p in agent.model.policy.action_net.parameters())
    # without the prior the first policy is (close to) uniform, not the LM's
    plain = sb3.PPOAgent(great_engine, great_task, sb3.PPOConfig(seed=0, n_envs=2, prompt_length=3, **VOCAB))
    assert not np.allclose(sb3_first_step_probs(plain), expected, atol=1e-3)


def test_ppo_prior_over_several_training_inputs(great_engine, great_task):
    one = sb3.PPOAgent(great_engine, great_task, sb3.PPOConfig(seed=3, n_envs=2, prompt_length=3, prior=True, **VOCAB))
    three = sb3.PPOAgent(great_engine, great_task, sb3.PPOConfig(seed=3, n_envs=2, prompt_length=3, prior=True,
                                                                 prior_examples=3, **VOCAB))
    decode = great_engine.lm.tokenizer.decode
    contexts = [decode(ids) for ids in three.model.policy._prior.contexts_ids]
    assert len(set(contexts)) == 3  # three distinct training inputs
    assert contexts[0] == prior_text(one)  # the first is the one-input prior's: old runs keep their prior
    expected = torch.stack([lm_logprobs(great_engine.lm, c, [], three.env.vocab) for c in contexts]).exp().mean(0)
    assert np.allclose(sb3_first_step_probs(three), expected.numpy(), atol=1e-5)


def test_prior_kl_hands_ppo_minus_the_kl_to_the_prior_as_its_entropy(great_engine, great_task):
    cfg = sb3.PPOConfig(seed=0, n_envs=2, prompt_length=3, prior=True, prior_kl=True, **VOCAB)
    agent = sb3.PPOAgent(great_engine, great_task, cfg)
    policy = agent.model.policy
    obs_t, _ = policy.obs_to_tensor(agent.venv.reset())
    actions = torch.zeros(2, dtype=torch.long, device=policy.device)
    _, _, entropy = policy.evaluate_actions(obs_t, actions)
    # the first policy is the prior: KL 0
    assert torch.allclose(entropy, torch.zeros(2, device=policy.device), atol=1e-5)
    with torch.no_grad():  # tilt the residual: the "entropy" is now -KL(policy || prior), by hand
        policy.action_net.bias.normal_()
    _, _, entropy = policy.evaluate_actions(obs_t, actions)
    prior = policy._prior(obs_t["prompt"])
    logp = torch.log_softmax(prior + policy.action_net.bias, -1)
    expected = -(logp.exp() * (logp - prior)).sum(-1)
    assert torch.allclose(entropy, expected.detach(), atol=1e-5) and bool((entropy < 0).all())


def prior_text(agent) -> str:
    """The prior's context text, decoded from its token ids."""
    return agent.engine.lm.tokenizer.decode(agent.model.policy._prior.context_ids)


@pytest.mark.parametrize("cls, kl", [(sb3.PPOAgent, False), (sb3.MaskablePPOAgent, False), (sb3.PPOAgent, True)],
                         ids=["ppo", "maskable-ppo", "ppo-prior-kl"])
def test_ppo_with_prior_learns_the_right_token_and_meters_the_prior(great_engine, great_id, great_task, cls, kl):
    extra = {"n_steps": 2, "batch_size": 32, "learning_rate": 3e-3, "prior_kl": kl}
    agent = cls(great_engine, great_task, cls.config_class(seed=0, prior=True, **TEST_RL, **VOCAB, **extra))
    k = len(agent.env.vocab)
    agent.learn(400, progress=False)
    great = int(np.flatnonzero(agent.env.vocab == great_id)[0])
    assert sb3_first_step_probs(agent)[great] > 5 / k
    assert agent.predict() == [great_id]
    assert agent.budget.used <= 400
    assert agent.budget.extra.forward_tokens > 0  # the prior's LM forwards are on the budget's books


def test_prior_config_errors(great_engine, great_task):
    with pytest.raises(ConfigError, match="prior_context"):
        sb3.PPOConfig(prior=True, prior_context="{nope}")
    with pytest.raises(ConfigError, match="prior_kl=True needs prior=True"):
        sb3.PPOConfig(prior_kl=True)
    with pytest.raises(ConfigError, match="prior_examples"):
        sb3.PPOConfig(prior=True, prior_examples=0)
    with pytest.raises(ConfigError, match="prior_uniform"):
        sb3.PPOConfig(prior=True, prior_uniform=-0.1)
