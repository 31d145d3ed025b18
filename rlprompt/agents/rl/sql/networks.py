"""The trainable part of soft Q-learning and its memory: :class:`QNetwork` (an MLP read out
through the frozen LM's own output embeddings) and :class:`Replay` (every scored prompt)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn


class QNetwork(nn.Module):
    """The trainable part: ``Q(s, .) = MLP(h_s) @ W.T`` over the LM's vocabulary.

    The output embeddings ``W`` [V, H] are the frozen LM's own (held by reference, not a
    parameter: never copied, never saved). The last layer starts at zero, so Q = 0.

    :param head_weight: the LM's output embedding matrix [V, H] (frozen).
    :param hidden: hidden width of the MLP.
    """

    def __init__(self, head_weight: torch.Tensor, hidden: int = 256) -> None:
        super().__init__()
        size = int(head_weight.shape[1])
        self.mlp = nn.Sequential(nn.Linear(size, hidden), nn.GELU(), nn.Linear(hidden, size))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)
        self._head = [head_weight]  # a list keeps it out of parameters() and state_dict()

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """Q-values [B, V] of LM hidden states [B, H]."""
        w = self._head[0]
        return (self.mlp(h.float()).to(w.dtype) @ w.T).float()  # float32 MLP, the head in the LM dtype


@dataclass
class Replay:
    """Scored prompts: the LM's hidden state at each step, the actions and the raw reward.

    :param capacity: the most prompts kept (oldest dropped first).
    """

    capacity: int
    hidden: list[torch.Tensor] = field(default_factory=list)  # each [T, H]
    actions: list[torch.Tensor] = field(default_factory=list)  # each [T]
    rewards: list[float] = field(default_factory=list)

    def add(self, hidden: torch.Tensor, actions: torch.Tensor, rewards: list[float]) -> None:
        for i in range(hidden.shape[0]):
            self.hidden.append(hidden[i])
            self.actions.append(actions[i])
            self.rewards.append(float(rewards[i]))
        extra = len(self.rewards) - self.capacity
        if extra > 0:
            del self.hidden[:extra], self.actions[:extra], self.rewards[:extra]

    def sample(self, n: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        idx = rng.integers(len(self.rewards), size=n)
        return (torch.stack([self.hidden[i] for i in idx]), torch.stack([self.actions[i] for i in idx]),
                torch.tensor([self.rewards[i] for i in idx]))

    def __len__(self) -> int:
        return len(self.rewards)


def reference_logprobs(h: torch.Tensor, head_weight: torch.Tensor, banned: torch.Tensor, *,
                       prior: bool) -> torch.Tensor:
    """``log ref(a | s)`` [B, V] at LM hidden states h [B, H], banned tokens at -inf: the LM's own
    next-token distribution (``prior``) or uniform over the allowed tokens."""
    if prior:
        logits = (h.to(head_weight.dtype) @ head_weight.T).float().masked_fill(banned, float("-inf"))
        return torch.log_softmax(logits, -1)
    ref = torch.full((h.shape[0], banned.numel()), -math.log(int((~banned).sum())), device=h.device)
    return ref.masked_fill(banned, float("-inf"))
