"""Black-box tuning's search space for a soft prompt: ``p(z) = p0 + scale * std * (A z)``.

``p0`` [T, H] is the anchor (see :mod:`rlprompt.agents.search.anchor`), ``A`` a fixed
Gaussian matrix [T*H, d] with entries N(0, 1/d) and ``std`` the embedding table's
per-dimension standard deviation, so a ``z`` with unit coordinates moves each embedding
coordinate by about ``scale`` table standard deviations and prompts stay in the range of
real token embeddings. Shared by CMA-ES and the Gaussian policy-gradient agent (PGPE), so
the two search the same space from the same anchor.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from rlprompt.agents.search.anchor import start_prompt
from rlprompt.agents.search.config import SoftStart, SoftStartOptions, SubspaceOptions
from rlprompt.lm.embeddings import random_projection, sample_vocab_embeddings

if TYPE_CHECKING:
    from rlprompt.agents.core.kinds import SoftAgent


class PromptSubspace:
    """``z`` [N, d] -> soft prompts [N, T, H] around an anchor.

    The draws come from ``generator`` in a fixed order (vocabulary anchor first, always,
    then the projection), so records made before other anchors existed still reproduce.

    :param agent: the soft agent (engine, real token ids, hidden size).
    :param prompt_length: T.
    :param intrinsic_dim: d.
    :param scale: table standard deviations one unit of ``A z`` moves.
    :param generator: the seeded CPU generator.
    """

    def __init__(self, agent: SoftAgent, prompt_length: int, intrinsic_dim: int, scale: float,
                 generator: torch.Generator) -> None:
        device = agent.engine.device
        table = agent.engine.lm.input_embeddings().weight.detach()
        self.vocab_p0 = sample_vocab_embeddings(table, prompt_length, agent._real_ids, generator)
        self.std = table[agent._real_ids.to(table.device)].float().std(0).to(device)  # [H]
        self.proj = random_projection(prompt_length * agent.hidden_size, intrinsic_dim, generator, device)
        self.shape = (prompt_length, agent.hidden_size)
        self.scale = float(scale)
        self.device = device
        self.p0 = self.vocab_p0.to(device)

    def choose_anchor(self, agent: SoftAgent, init: SoftStart, options: SoftStartOptions, reward_spec: str,
                      generator: torch.Generator) -> torch.Tensor:
        """Pick ``p0`` for ``init`` (``vocab`` reuses the first draw; ``lm-prior`` is charged to
        the agent's budget) and return it (float32, CPU) for the agent's checkpoint."""
        p0 = self.vocab_p0 if init is SoftStart.VOCAB else start_prompt(agent, init, options, reward_spec, generator)
        self.p0 = p0.to(self.device)
        return p0.cpu()

    def keep_or_choose(self, agent: SoftAgent, options: SubspaceOptions, kept: torch.Tensor | None,
                       generator: torch.Generator) -> torch.Tensor | None:
        """The anchor for a run: on resume the checkpoint's (``kept``; None in checkpoints made
        before anchors were saved, which keeps the vocabulary draw), else a fresh choice for
        ``options.init``. Return it for the agent to keep in its checkpoint."""
        if agent.resuming:
            if kept is not None:
                self.p0 = kept.to(self.device)
            return kept
        return self.choose_anchor(agent, options.init, options, options.reward, generator)

    def prompts(self, zs: np.ndarray | torch.Tensor) -> torch.Tensor:
        """The soft prompts [N, T, H] of the points ``zs`` [N, d]."""
        z = torch.as_tensor(np.asarray(zs) if not isinstance(zs, torch.Tensor) else zs,
                            dtype=torch.float32, device=self.device)
        delta = (z @ self.proj.T).view(len(z), *self.shape)
        return self.p0 + self.scale * self.std * delta
