"""Agents: ways to find a prompt for a frozen LM, all under one budget accounting.

- :class:`SoftPromptTuning` (``soft-prompt``): gradient soft prompt tuning (Lester et al. 2021).
- :class:`CMAES` (``cma``): black-box tuning of a soft prompt through a random projection
  (Sun et al. 2022).
- :class:`RandomSearch` (``random``): uniform random prompts from the candidate vocabulary.
- :class:`LMPriorSampling` (``lm-prior``): prompts sampled from the task LM itself.

Shared pieces: :class:`Budget` (prompt evaluations; the rules are in
:mod:`rlprompt.agents.budget`), :class:`BaseAgent` (``learn``/``predict``/``save``/``load``,
best-on-dev selection, curve, summary), :class:`DiscreteAgent` and :class:`SoftAgent`.
Names map to classes through :data:`AGENTS` (:func:`get_agent_class`).

Importing this package is cheap: the classes load on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from rlprompt.agents.registry import (
    AGENTS,
    AgentSpec,
    get_agent_class,
    get_config_class,
    list_agents,
    register_agent,
)

if TYPE_CHECKING:
    from rlprompt.agents.base import BaseAgent, RunSummary
    from rlprompt.agents.budget import Budget
    from rlprompt.agents.cma_es import CMAES
    from rlprompt.agents.configs import (
        AgentConfig,
        CMAESConfig,
        LMPriorConfig,
        Placement,
        RandomSearchConfig,
        SoftPromptConfig,
    )
    from rlprompt.agents.kinds import DiscreteAgent, SoftAgent
    from rlprompt.agents.lm_prior import LMPriorSampling
    from rlprompt.agents.peft_format import export_peft, import_peft, load_soft_prompt, save_soft_prompt
    from rlprompt.agents.random_search import RandomSearch
    from rlprompt.agents.soft_prompt import SoftPromptTuning
    from rlprompt.agents.tracking import BestTracker, Candidate, CurveLogger, CurvePoint, TopKGate

_LAZY = {
    "AgentConfig": "rlprompt.agents.configs",
    "BaseAgent": "rlprompt.agents.base",
    "RunSummary": "rlprompt.agents.base",
    "Budget": "rlprompt.agents.budget",
    "CMAES": "rlprompt.agents.cma_es",
    "CMAESConfig": "rlprompt.agents.configs",
    "DiscreteAgent": "rlprompt.agents.kinds",
    "Placement": "rlprompt.agents.configs",
    "SoftAgent": "rlprompt.agents.kinds",
    "LMPriorConfig": "rlprompt.agents.configs",
    "LMPriorSampling": "rlprompt.agents.lm_prior",
    "export_peft": "rlprompt.agents.peft_format",
    "import_peft": "rlprompt.agents.peft_format",
    "load_soft_prompt": "rlprompt.agents.peft_format",
    "save_soft_prompt": "rlprompt.agents.peft_format",
    "RandomSearch": "rlprompt.agents.random_search",
    "RandomSearchConfig": "rlprompt.agents.configs",
    "SoftPromptConfig": "rlprompt.agents.configs",
    "SoftPromptTuning": "rlprompt.agents.soft_prompt",
    "BestTracker": "rlprompt.agents.tracking",
    "Candidate": "rlprompt.agents.tracking",
    "CurveLogger": "rlprompt.agents.tracking",
    "CurvePoint": "rlprompt.agents.tracking",
    "TopKGate": "rlprompt.agents.tracking",
}

__all__ = [
    "AGENTS",
    "AgentSpec",
    "AgentConfig",
    "BaseAgent",
    "BestTracker",
    "Budget",
    "CMAES",
    "CMAESConfig",
    "Candidate",
    "CurveLogger",
    "CurvePoint",
    "DiscreteAgent",
    "LMPriorConfig",
    "LMPriorSampling",
    "Placement",
    "RandomSearch",
    "RandomSearchConfig",
    "RunSummary",
    "SoftAgent",
    "SoftPromptConfig",
    "SoftPromptTuning",
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
