"""Policies that know language, for stable-baselines3 agents on the prompt environments.

:class:`LMFeaturesExtractor` reads an environment observation (the prompt so far, the
step, optionally the LM's hidden state) and embeds the prompt with the frozen task LM's
own input-embedding table (held by reference: shared with the LM, never copied, never
trained, never saved), followed by a small trainable MLP, in the spirit of RLPrompt's
frozen-LM-plus-MLP policy.

:class:`VocabHead` is an action head over the candidate vocabulary tied to the LM's
output embeddings: ``logits = (W_vocab @ proj(latent)) / sqrt(H) + b``, so actions that
the LM embeds alike start alike. :class:`LMActorCriticPolicy` (PPO, A2C) and
:class:`LMMaskableActorCriticPolicy` (MaskablePPO) use it when ``tie_head=True``, and
add the LM's own next-token log-probabilities to the logits when given a ``prior``
(:mod:`rlprompt.agents.rl.sb3.prior`).

Shapes: B batch, T prompt positions, H the LM's hidden size, K candidate tokens.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from sb3_contrib.common.maskable.policies import MaskableMultiInputActorCriticPolicy
from stable_baselines3.common.policies import MultiInputActorCriticPolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from rlprompt.agents.rl.sb3.prior import PromptPrior
from rlprompt.errors import ConfigError


class LMFeaturesExtractor(BaseFeaturesExtractor):
    """Features of a prompt-environment observation, from the frozen LM's embeddings.

    Discrete prompts (``vocab`` given): each position's candidate index becomes its token
    id, then the LM's input embedding (zeros where empty), projected to ``token_dim`` by a
    trainable linear layer. Soft prompts (``vocab=None``): the action vector of each
    position, projected the same way. The projected positions, a one-hot of the step and
    (when observed) a projection of the LM's hidden state go through a trainable MLP.

    :param observation_space: the env's ``Dict`` space (``prompt``, ``step``, optional ``hidden``).
    :param embedding: the LM's input embedding table [V, H] (an ``nn.Embedding`` or its
        weight); used frozen, by reference.
    :param vocab: candidate token ids [K] of a discrete env, or None for a soft env.
    :param features_dim: size of the output features.
    :param token_dim: size each prompt position is projected to.
    :raises ConfigError: an observation space without ``prompt``/``step`` entries.
    """

    def __init__(self, observation_space: spaces.Dict, embedding: nn.Embedding | torch.Tensor,
                 vocab: np.ndarray | None = None, features_dim: int = 128, token_dim: int = 32) -> None:
        super().__init__(observation_space, features_dim)
        if not isinstance(observation_space, spaces.Dict) or "step" not in observation_space.spaces:
            raise ConfigError("LMFeaturesExtractor needs a prompt environment's Dict observation space")
        weight = embedding.weight if isinstance(embedding, nn.Embedding) else embedding
        self._table = [weight]  # by reference: not a parameter, not in state_dict, never copied
        size = int(weight.shape[1])
        self.max_step = int(observation_space["step"].high.max())
        self.discrete = vocab is not None
        prompt_space = observation_space.spaces.get("prompt")
        if self.discrete:
            if prompt_space is None:
                raise ConfigError("a discrete prompt observation needs a 'prompt' entry")
            self.register_buffer("vocab", torch.as_tensor(np.asarray(vocab), dtype=torch.long), persistent=False)
            self.positions = int(prompt_space.shape[0])
            self.token_proj = nn.Linear(size, token_dim)
            prompt_out = self.positions * token_dim
        else:
            width = int(prompt_space.shape[0]) if prompt_space is not None else 0
            self.token_proj = nn.Linear(width, token_dim * 4) if width else None
            prompt_out = token_dim * 4 if width else 0
        self.hidden_proj = nn.Linear(size, token_dim * 2) if "hidden" in observation_space.spaces else None
        hidden_out = token_dim * 2 if self.hidden_proj is not None else 0
        self.mlp = nn.Sequential(
            nn.Linear(prompt_out + self.max_step + 1 + hidden_out, features_dim), nn.Tanh(),
            nn.Linear(features_dim, features_dim), nn.Tanh(),
        )

    def embed_prompt(self, prompt: torch.Tensor) -> torch.Tensor:
        """LM input embeddings [B, T, H] of candidate indices [B, T] (-1 = empty -> zeros)."""
        idx = prompt.long()
        valid = (idx >= 0).unsqueeze(-1)
        table = self._table[0]
        tokens = self.vocab[idx.clamp(min=0)].to(table.device)
        with torch.no_grad():
            emb = nn.functional.embedding(tokens, table).to(prompt.device).float()
        return emb * valid

    def forward(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        parts = []
        if self.discrete:
            parts.append(self.token_proj(self.embed_prompt(observations["prompt"])).flatten(1))
        elif self.token_proj is not None:
            parts.append(self.token_proj(observations["prompt"].float()))
        step = observations["step"].long().view(-1).clamp(0, self.max_step)
        parts.append(nn.functional.one_hot(step, self.max_step + 1).float())
        if self.hidden_proj is not None:
            parts.append(self.hidden_proj(observations["hidden"].float()))
        return self.mlp(torch.cat(parts, -1))


class VocabHead(nn.Module):
    """Action logits over the candidate vocabulary, tied to the LM's output embeddings.

    ``logits[k] = <W[vocab[k]], proj(latent)> / sqrt(H) + bias[k]``; ``W`` is used frozen,
    by reference (a [K, H] gather per call, never stored).

    :param latent_dim: size of the policy's latent vector.
    :param output_embeddings: the LM's output embedding matrix [V, H].
    :param vocab: candidate token ids [K].
    """

    def __init__(self, latent_dim: int, output_embeddings: torch.Tensor, vocab: np.ndarray) -> None:
        super().__init__()
        size = int(output_embeddings.shape[1])
        self._table = [output_embeddings]
        self.register_buffer("vocab", torch.as_tensor(np.asarray(vocab), dtype=torch.long), persistent=False)
        self.proj = nn.Linear(latent_dim, size)
        nn.init.orthogonal_(self.proj.weight, gain=0.01)
        nn.init.zeros_(self.proj.bias)
        self.bias = nn.Parameter(torch.zeros(len(vocab)))
        self.scale = 1.0 / math.sqrt(size)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        table = self._table[0]
        with torch.no_grad():
            w = table[self.vocab.to(table.device)].to(latent.device).float()  # [K, H]
        return self.proj(latent) @ w.T * self.scale + self.bias


def _tie_action_head(policy: Any, tie_head: bool, output_embeddings: torch.Tensor | None,
                     vocab: np.ndarray | None, lr_schedule: Any) -> None:
    """Swap the policy's linear action head for a :class:`VocabHead` and rebuild its optimizer."""
    if not tie_head:
        return
    if output_embeddings is None or vocab is None:
        raise ConfigError("tie_head=True needs output_embeddings and vocab")
    policy.action_net = VocabHead(policy.mlp_extractor.latent_dim_pi, output_embeddings, vocab)
    policy.optimizer = policy.optimizer_class(policy.parameters(), lr=lr_schedule(1), **policy.optimizer_kwargs)


class _LMPolicy:
    """What both LM actor-critics add to SB3's: the tied head and the LM prior.

    With a ``prior`` the action logits are ``prior(prompt so far) + action_net(latent)`` and
    ``action_net`` starts at zero, so the first policy is the LM's own distribution
    (:mod:`rlprompt.agents.rl.sb3.prior`). SB3 builds every distribution in
    ``_get_action_dist_from_latent``, which sees no observation: ``forward``,
    ``evaluate_actions`` and ``get_distribution`` keep the observed prompt for it.
    """

    action_net: nn.Module
    action_dist: Any

    def _keep_options(self, tie_head: bool, output_embeddings: torch.Tensor | None, vocab: np.ndarray | None,
                      prior: PromptPrior | None, prior_kl: bool) -> None:
        if prior_kl and prior is None:
            raise ValueError("prior_kl needs a prior")
        self._tie = (tie_head, output_embeddings, vocab)
        self._prior = prior
        self._prior_kl = prior_kl
        self._prompt_now: torch.Tensor | None = None
        self._last_dist: Any = None

    def _build(self, lr_schedule: Any) -> None:
        super()._build(lr_schedule)  # type: ignore[misc]
        _tie_action_head(self, *self._tie, lr_schedule)
        if self._prior is not None:
            with torch.no_grad():
                for param in self.action_net.parameters():
                    param.zero_()

    def _observe(self, obs: Any) -> None:
        if self._prior is not None:
            self._prompt_now = obs["prompt"]

    def forward(self, obs: Any, *args: Any, **kwargs: Any) -> Any:
        self._observe(obs)
        return super().forward(obs, *args, **kwargs)  # type: ignore[misc]

    def evaluate_actions(self, obs: Any, *args: Any, **kwargs: Any) -> Any:
        self._observe(obs)
        values, log_prob, entropy = super().evaluate_actions(obs, *args, **kwargs)  # type: ignore[misc]
        if self._prior_kl:
            # PPO's loss adds -ent_coef * entropy: handing it -KL(policy || prior) instead makes the
            # bonus a penalty on leaving the LM's distribution, not one on leaving the uniform
            dist = self._last_dist.distribution  # after masking, for the maskable policy
            prior = self._prior(self._prompt_now).to(dist.logits.dtype)
            entropy = -(dist.probs * (dist.logits - prior)).sum(-1)
        return values, log_prob, entropy

    def get_distribution(self, obs: Any, *args: Any, **kwargs: Any) -> Any:
        self._observe(obs)
        return super().get_distribution(obs, *args, **kwargs)  # type: ignore[misc]

    def _get_action_dist_from_latent(self, latent_pi: torch.Tensor) -> Any:
        logits = self.action_net(latent_pi)
        if self._prior is not None and self._prompt_now is not None:
            logits = logits + self._prior(self._prompt_now)
        self._last_dist = self.action_dist.proba_distribution(action_logits=logits)
        return self._last_dist


class LMActorCriticPolicy(_LMPolicy, MultiInputActorCriticPolicy):
    """SB3's multi-input actor-critic (PPO, A2C) with an optional LM-tied action head and LM prior.

    :param tie_head: use :class:`VocabHead` as the action head.
    :param output_embeddings: the LM's output embeddings [V, H] (for ``tie_head``).
    :param vocab: candidate token ids [K] (for ``tie_head``).
    :param prior: the LM prior the logits add (None: none; see :class:`_LMPolicy`).
    :param prior_kl: the entropy PPO's loss reads is -KL(policy || prior), so ``ent_coef``
        weighs a penalty on leaving the prior instead of a bonus for approaching uniform.
    :param args: SB3's ``MultiInputActorCriticPolicy`` arguments.
    :param kwargs: SB3's ``MultiInputActorCriticPolicy`` keyword arguments.
    """

    def __init__(self, *args: Any, tie_head: bool = False, output_embeddings: torch.Tensor | None = None,
                 vocab: np.ndarray | None = None, prior: PromptPrior | None = None, prior_kl: bool = False,
                 **kwargs: Any) -> None:
        self._keep_options(tie_head, output_embeddings, vocab, prior, prior_kl)
        super().__init__(*args, **kwargs)


class LMMaskableActorCriticPolicy(_LMPolicy, MaskableMultiInputActorCriticPolicy):
    """sb3-contrib's maskable multi-input actor-critic with an optional LM-tied head and LM prior.

    :param tie_head: use :class:`VocabHead` as the action head.
    :param output_embeddings: the LM's output embeddings [V, H] (for ``tie_head``).
    :param vocab: candidate token ids [K] (for ``tie_head``).
    :param prior: the LM prior the logits add (None: none; see :class:`_LMPolicy`).
    :param prior_kl: the entropy PPO's loss reads is -KL(policy || prior), so ``ent_coef``
        weighs a penalty on leaving the prior instead of a bonus for approaching uniform.
    :param args: sb3-contrib's ``MaskableMultiInputActorCriticPolicy`` arguments.
    :param kwargs: its keyword arguments.
    """

    def __init__(self, *args: Any, tie_head: bool = False, output_embeddings: torch.Tensor | None = None,
                 vocab: np.ndarray | None = None, prior: PromptPrior | None = None, prior_kl: bool = False,
                 **kwargs: Any) -> None:
        self._keep_options(tie_head, output_embeddings, vocab, prior, prior_kl)
        super().__init__(*args, **kwargs)
