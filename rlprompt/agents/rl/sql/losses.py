"""Soft Q-learning's objectives, as pure functions of tensors (so they can be checked by hand).

## The loss (Guo et al. 2021, "Efficient (soft) Q-learning for text generation")

An episode writes T tokens; the reward R (the task reward of the finished prompt on the
training examples, z-scored) comes at the last step. With A_theta = Q_theta - V_theta
and a Polyak-averaged target network (bar):

- single-step path consistency: ``A_theta(s_t, a_t) = r_t + Vbar(s_{t+1}) - Vbar(s_t)``
- multi-step path consistency:  ``sum_{l >= t} A_theta(s_l, a_l) = R - Vbar(s_t)``

both as squared errors (``loss="mixed"``, RLPrompt's default, or either one alone),
on the freshly sampled prompts (on-policy) plus a batch from a replay buffer of every
prompt scored so far (off-policy). The frozen LM's hidden states of every step are kept
in the buffer, so an update runs only the MLP and one product with the output embeddings.
"""

from __future__ import annotations

import torch

from rlprompt.agents.rl.sql.config import SQLLoss


def path_consistency_loss(adv: torch.Tensor, v_bar: torch.Tensor, rewards: torch.Tensor,
                          kind: SQLLoss | str = SQLLoss.MIXED) -> torch.Tensor:
    """Squared path-consistency errors of a batch of finished episodes.

    :param adv: ``A_theta(s_t, a_t) = Q_theta(s_t, a_t) - V_theta(s_t)`` [B, T] (online network).
    :param v_bar: ``Vbar(s_t)`` [B, T] (target network, no gradient); ``Vbar(s_T) = 0``.
    :param rewards: the terminal reward R of each episode [B] (it comes at the last step).
    :param kind: ``mixed`` (single + multi), ``single`` or ``multi``.
    :returns: the scalar loss (each term ``0.5 * mean(error ** 2)``).

    >>> adv, v_bar = torch.tensor([[0.5, 1.0]]), torch.tensor([[0.2, 0.1]])
    >>> round(float(path_consistency_loss(adv, v_bar, torch.tensor([1.0]), "single")), 4)  # errors 0.6, 0.1
    0.0925
    """
    kind = SQLLoss(kind)
    b, t = adv.shape
    v_next = torch.cat([v_bar[:, 1:], v_bar.new_zeros(b, 1)], 1)  # Vbar(s_{t+1}), 0 after the end
    step_r = torch.zeros_like(adv)
    step_r[:, -1] = rewards
    losses = []
    if kind in (SQLLoss.MIXED, SQLLoss.SINGLE):
        target = step_r + v_next - v_bar  # single-step path consistency
        losses.append(0.5 * (adv - target).pow(2).mean())
    if kind in (SQLLoss.MIXED, SQLLoss.MULTI):
        to_go = adv.flip(1).cumsum(1).flip(1)  # sum_{l >= t} A(s_l, a_l)
        target = rewards.unsqueeze(1) - v_bar  # multi-step path consistency
        losses.append(0.5 * (to_go - target).pow(2).mean())
    return torch.stack(losses).sum()
