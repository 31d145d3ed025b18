"""Where a soft-prompt search starts: the anchor ``p0`` that CMA-ES and the soft-prompt RL
agents add their moves to (black-box tuning's ``p(z) = p0 + A z``).

``init="lm-prior"`` anchors the search at a good discrete prompt, found the way LM-prior
sampling finds one: ``init_samples`` prompts sampled from the frozen task LM after the task
description, each scored on the whole train split (charged to the budget like any other
candidate), the best on train taken as ``p0`` and checked on dev. A search around it starts
where LM-prior sampling is, and selection can always fall back on it.

``init="best"`` draws half of ``init_samples`` from the LM and half uniformly from random
search's whole-word vocabulary and keeps the best on train, so the search starts at whichever
sampler suits the task: on SST-2 LM-prior prompts lead, on AG News random ones do
(docs/benchmarks.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from rlprompt.agents.search.config import LMPriorConfig, SoftStart, SoftStartOptions
from rlprompt.errors import ConfigError
from rlprompt.lm.embeddings import sample_vocab_embeddings, text_embeddings

if TYPE_CHECKING:
    from rlprompt.agents.core.kinds import SoftAgent


def start_prompt(agent: SoftAgent, init: SoftStart, options: SoftStartOptions, reward_spec: str,
                 generator: torch.Generator) -> torch.Tensor:
    """The anchor [prompt_length, H] (float32, CPU) for ``init``.

    :param agent: the soft agent (its engine, task and budget; with ``"lm-prior"`` its budget
        is charged and the anchor is offered for dev selection).
    :param init: which anchor.
    :param options: ``init_text`` and ``init_samples``.
    :param reward_spec: the train reward that ranks LM-prior samples.
    :param generator: the seeded CPU generator (vocabulary draws and LM samples).
    :raises ConfigError: the budget cannot pay for the LM-prior samples and one dev check.
    """
    n_tokens = int(agent.config.prompt_length)  # type: ignore[attr-defined]
    table = agent.engine.lm.input_embeddings().weight.detach()
    real = agent._real_ids
    if init is SoftStart.MEAN:
        mean = table[real.to(table.device)].float().mean(0)
        return mean.expand(n_tokens, -1).cpu().clone()
    if init is SoftStart.VOCAB:
        return sample_vocab_embeddings(table, n_tokens, real, generator).cpu()
    if init is SoftStart.TEXT:
        return text_embeddings(agent.engine, options.init_text or "", n_tokens).cpu()
    share = 0.5 if init is SoftStart.BEST else 1.0
    return _best_sampled_prompt(agent, init, n_tokens, options.init_samples, share, reward_spec, generator)


def _best_sampled_prompt(agent: SoftAgent, init: SoftStart, n_tokens: int, samples: int, lm_share: float,
                         reward_spec: str, generator: torch.Generator) -> torch.Tensor:
    """The best on train of ``samples`` discrete prompts, ``lm_share`` of them LM-prior samples and
    the rest uniform vocabulary draws, as embeddings [T, H]; charged to the budget, checked on dev."""
    from rlprompt.agents.search.lm_prior import default_description, sample_prompts, sampling_context
    from rlprompt.envs.vocab import candidate_vocab
    from rlprompt.rewards import get_reward

    budget, engine, task = agent.budget, agent.engine, agent.task
    assert budget is not None
    n = min(samples, int(budget.remaining - budget.cost(1, agent.selection_examples) + 1e-9))
    if n < 1:
        raise ConfigError(
            f"init='{init.value}' needs a budget for at least one sampled prompt and a dev check; "
            f"{budget.remaining:.1f} prompt evaluations are left (raise the budget or use init='vocab')"
        )
    prior = LMPriorConfig()
    train = task.texts("train")
    n_lm = max(1, round(n * lm_share))
    picks = torch.randint(len(train), (n_lm,), generator=generator).tolist()
    context = sampling_context(task, prior.context, prior.context)
    tokens, cost = sample_prompts(engine, context, default_description(task), [train[i] for i in picks], n_tokens,
                                  generator, prior)
    budget.charge(**cost)
    if n > n_lm:  # the vocabulary's share: random search's prompts (its default whole-word list)
        words = torch.as_tensor(candidate_vocab(engine.lm.tokenizer, engine.lm.input_embeddings().num_embeddings))
        drawn = words[torch.randint(len(words), (n - n_lm, n_tokens), generator=generator)]
        tokens = torch.cat([tokens.cpu(), drawn])
    table = engine.lm.input_embeddings().weight.detach()
    prompts = table[tokens.to(table.device)].float()  # [n, T, H]: a discrete prompt, read as embeddings
    labels = task.label_tensor("train").to(engine.device)
    scores = get_reward(reward_spec)(agent.score(prompts, train), labels).rewards
    best = int(torch.as_tensor(scores).argmax())
    agent.evaluate_dev(prompts[best: best + 1], train_scores=[float(scores[best])])
    return prompts[best].cpu().clone()
