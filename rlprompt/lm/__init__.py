"""The frozen task LM: loading, the scoring engine (the one hot path) and sampling."""

from rlprompt.lm.counters import EngineCounters
from rlprompt.lm.engine import NonFiniteScoresError, Prompt, PromptState, ScoringEngine
from rlprompt.lm.loading import DEFAULT_MODEL, FrozenLM, load_lm
from rlprompt.lm.template import CAUSAL_TEMPLATE, MASKED_TEMPLATE, Placement, Template

__all__ = [
    "CAUSAL_TEMPLATE",
    "DEFAULT_MODEL",
    "EngineCounters",
    "FrozenLM",
    "MASKED_TEMPLATE",
    "NonFiniteScoresError",
    "Placement",
    "Prompt",
    "PromptState",
    "ScoringEngine",
    "Template",
    "load_lm",
]
