"""The frozen task LM: loading and the scoring engine (the one hot path)."""

from rlprompt.lm.counters import EngineCounters
from rlprompt.lm.engine import NonFiniteScoresError, Prompt, PromptState, ScoringEngine
from rlprompt.lm.loading import DEFAULT_MODEL, FrozenLM, load_lm
from rlprompt.lm.template import CAUSAL_TEMPLATE, MASKED_TEMPLATE, Template

__all__ = [
    "CAUSAL_TEMPLATE",
    "DEFAULT_MODEL",
    "EngineCounters",
    "FrozenLM",
    "MASKED_TEMPLATE",
    "NonFiniteScoresError",
    "Prompt",
    "PromptState",
    "ScoringEngine",
    "Template",
    "load_lm",
]
