"""Agents: ways to find a prompt for a frozen LM, all under one budget accounting.

- :class:`SoftPromptTuning` (``soft-prompt``): gradient soft prompt tuning (Lester et al. 2021).
- :class:`CMAES` (``cma``): black-box tuning of a soft prompt through a random projection
  (Sun et al. 2022).
- :class:`RandomSearch` (``random``): uniform random prompts from the candidate vocabulary.
- :class:`LMPriorSampling` (``lm-prior``): prompts sampled from the task LM itself.

Shared pieces: :class:`Budget` (prompt evaluations; the rules are in
:mod:`rlprompt.agents.core.budget`), :class:`BaseAgent` (``learn``/``predict``/``save``/``load``,
best-on-dev selection, curve, summary), :class:`DiscreteAgent` and :class:`SoftAgent`.
Names map to classes through :data:`AGENTS` (:func:`get_agent_class`).

Importing this package is cheap: the classes load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from rlprompt.agents.registry import (
    AGENTS,
    AgentSpec,
    get_agent_class,
    get_config_class,
    list_agents,
    register_agent,
)

_LAZY = {
    # core: the loop every agent shares
    "AgentConfig": "rlprompt.agents.core.config",
    "BaseAgent": "rlprompt.agents.core.base",
    "RunSummary": "rlprompt.agents.core.summary",
    "Budget": "rlprompt.agents.core.budget",
    "DiscreteAgent": "rlprompt.agents.core.kinds",
    "SoftAgent": "rlprompt.agents.core.kinds",
    "BestTracker": "rlprompt.agents.core.tracking",
    "Candidate": "rlprompt.agents.core.tracking",
    "CurveLogger": "rlprompt.agents.core.tracking",
    "CurvePoint": "rlprompt.agents.core.tracking",
    "TopKGate": "rlprompt.agents.core.tracking",
    "Placement": "rlprompt.lm.template",
    # search: random, LM-prior, CMA-ES
    "CMAES": "rlprompt.agents.search.cma_es",
    "CMAESConfig": "rlprompt.agents.search.config",
    "LMPriorConfig": "rlprompt.agents.search.config",
    "LMPriorSampling": "rlprompt.agents.search.lm_prior",
    "RandomSearch": "rlprompt.agents.search.random_search",
    "RandomSearchConfig": "rlprompt.agents.search.config",
    # gradient: soft prompt tuning and PEFT's format
    "SoftPromptConfig": "rlprompt.agents.gradient.config",
    "SoftPromptTuning": "rlprompt.agents.gradient.soft_prompt",
    "export_peft": "rlprompt.agents.gradient.peft_format",
    "import_peft": "rlprompt.agents.gradient.peft_format",
    "load_soft_prompt": "rlprompt.agents.gradient.peft_format",
    "save_soft_prompt": "rlprompt.agents.gradient.peft_format",
    # rl: soft Q-learning, SB3, TRL
    "SoftQLearning": "rlprompt.agents.rl.sql.agent",
    "SQLConfig": "rlprompt.agents.rl.sql.config",
    "PPOAgent": "rlprompt.agents.rl.sb3.algorithms",
    "PPOConfig": "rlprompt.agents.rl.sb3.config",
    "A2CConfig": "rlprompt.agents.rl.sb3.config",
    "MaskablePPOConfig": "rlprompt.agents.rl.sb3.config",
    "SoftPPOConfig": "rlprompt.agents.rl.sb3.config",
    "SACConfig": "rlprompt.agents.rl.sb3.config",
    "TD3Config": "rlprompt.agents.rl.sb3.config",
    "A2CAgent": "rlprompt.agents.rl.sb3.algorithms",
    "MaskablePPOAgent": "rlprompt.agents.rl.sb3.algorithms",
    "SoftPPOAgent": "rlprompt.agents.rl.sb3.algorithms",
    "SACAgent": "rlprompt.agents.rl.sb3.algorithms",
    "TD3Agent": "rlprompt.agents.rl.sb3.algorithms",
    "GRPOAgent": "rlprompt.agents.rl.grpo.agent",
    "RLOOAgent": "rlprompt.agents.rl.grpo.agent",
    "GRPOAgentConfig": "rlprompt.agents.rl.grpo.config",
    "RLOOAgentConfig": "rlprompt.agents.rl.grpo.config",
}

__all__ = [
    "A2CAgent",
    "A2CConfig",
    "AGENTS",
    "AgentConfig",
    "AgentSpec",
    "BaseAgent",
    "BestTracker",
    "Budget",
    "CMAES",
    "CMAESConfig",
    "Candidate",
    "CurveLogger",
    "CurvePoint",
    "DiscreteAgent",
    "GRPOAgent",
    "GRPOAgentConfig",
    "LMPriorConfig",
    "LMPriorSampling",
    "MaskablePPOAgent",
    "MaskablePPOConfig",
    "PPOAgent",
    "PPOConfig",
    "Placement",
    "RLOOAgent",
    "RLOOAgentConfig",
    "RandomSearch",
    "RandomSearchConfig",
    "RunSummary",
    "SACAgent",
    "SACConfig",
    "SQLConfig",
    "SoftAgent",
    "SoftPPOAgent",
    "SoftPPOConfig",
    "SoftPromptConfig",
    "SoftPromptTuning",
    "SoftQLearning",
    "TD3Agent",
    "TD3Config",
    "TopKGate",
    "export_peft",
    "get_agent_class",
    "get_config_class",
    "import_peft",
    "list_agents",
    "load_soft_prompt",
    "register_agent",
    "save_soft_prompt",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'rlprompt.agents' has no attribute {name!r}")
