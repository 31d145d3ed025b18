"""Uniform random search over discrete prompts from the discrete env's candidate vocabulary.

Every prompt is ``prompt_length`` tokens drawn uniformly (with replacement) from
:func:`rlprompt.envs.vocab.candidate_vocab` with the same options as
:class:`~rlprompt.envs.DiscretePromptEnv` (``vocab="words"``, ``max_vocab=4096``), so
it searches exactly the space the discrete RL agents act in. See
:mod:`rlprompt.agents.search.discrete` for the loop and its budget.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from rlprompt.agents.core.config import AgentConfig
from rlprompt.agents.search.config import RandomSearchConfig
from rlprompt.agents.search.discrete import DiscreteSearch

if TYPE_CHECKING:
    from rlprompt.lm import ScoringEngine
    from rlprompt.tasks import Task


class RandomSearch(DiscreteSearch):
    """Uniform random prompts from the candidate vocabulary, best on dev.

    :param engine: the scoring engine.
    :param task: the task.
    :param config: a :class:`RandomSearchConfig`.
    :param out_dir: where to write the curve, the best prompt and the summary.
    """

    name: ClassVar[str] = "random"
    config_class: ClassVar[type[AgentConfig]] = RandomSearchConfig
    config: RandomSearchConfig

    def __init__(self, engine: ScoringEngine, task: Task, config: AgentConfig | None = None, *,
                 out_dir: str | Path | None = None) -> None:
        super().__init__(engine, task, config, out_dir=out_dir)
        from rlprompt.envs.vocab import candidate_vocab

        lm = self.engine.lm
        self.vocab = candidate_vocab(lm.tokenizer, lm.input_embeddings().num_embeddings, self.config.vocab,
                                     self.config.max_vocab)

    def propose(self, n: int, rng: np.random.Generator) -> list[list[int]]:
        picks = rng.integers(len(self.vocab), size=(n, self.config.prompt_length))
        return self.vocab[picks].tolist()
