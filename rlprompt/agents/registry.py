"""The agent registry: one name -> agent mapping for every way of finding a prompt.

Each entry names its agent class and its config class as ``"module:Class"`` strings,
imported on first use, so the CLI can list the agents and build their options
without loading torch. ``command`` says which CLI runs it: ``rlprompt train`` (the RL
agents) or ``rlprompt tune`` (gradient tuning and black-box baselines); ``rlprompt
compare`` runs them all.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rlprompt.errors import ConfigError

if TYPE_CHECKING:
    from rlprompt.agents.core.base import BaseAgent
    from rlprompt.agents.core.config import AgentConfig


@dataclass(frozen=True)
class AgentSpec:
    """A registered agent.

    :param agent: ``"package.module:Class"`` of the agent (a :class:`~rlprompt.agents.core.base.BaseAgent`).
    :param config: ``"package.module:Class"`` of its config dataclass (keep it free of torch).
    :param help: one line for ``--help``.
    :param command: ``"train"`` (RL agents) or ``"tune"`` (gradient and black-box baselines).
    :param kind: ``"discrete"`` or ``"soft"``: the kind of prompt it writes.
    """

    agent: str
    config: str
    help: str = ""
    command: str = "tune"
    kind: str = "discrete"


_SEARCH = "rlprompt.agents.search.config"
_GRADIENT = "rlprompt.agents.gradient.config"
_SB3 = "rlprompt.agents.rl.sb3.config"
_SB3_AGENTS = "rlprompt.agents.rl.sb3.algorithms"
_SQL = "rlprompt.agents.rl.sql.config"
_GRPO = "rlprompt.agents.rl.grpo.config"

AGENTS: dict[str, AgentSpec] = {
    "soft-prompt": AgentSpec("rlprompt.agents.gradient.soft_prompt:SoftPromptTuning", f"{_GRADIENT}:SoftPromptConfig",
                             "gradient soft prompt tuning (Lester et al. 2021)", kind="soft"),
    "cma": AgentSpec("rlprompt.agents.search.cma_es:CMAES", f"{_SEARCH}:CMAESConfig",
                     "CMA-ES over a random projection of a soft prompt (Sun et al. 2022)", kind="soft"),
    "random": AgentSpec("rlprompt.agents.search.random_search:RandomSearch", f"{_SEARCH}:RandomSearchConfig",
                        "uniform random prompts from the discrete env's candidate vocabulary"),
    "lm-prior": AgentSpec("rlprompt.agents.search.lm_prior:LMPriorSampling", f"{_SEARCH}:LMPriorConfig",
                          "prompts sampled from the task LM itself, best on dev"),
    # RL agents (rlprompt train)
    "ppo": AgentSpec(f"{_SB3_AGENTS}:PPOAgent", f"{_SB3}:PPOConfig", "PPO (SB3) writing discrete prompts",
                     command="train"),
    "a2c": AgentSpec(f"{_SB3_AGENTS}:A2CAgent", f"{_SB3}:A2CConfig", "A2C (SB3) writing discrete prompts",
                     command="train"),
    "maskable-ppo": AgentSpec(f"{_SB3_AGENTS}:MaskablePPOAgent", f"{_SB3}:MaskablePPOConfig",
                              "MaskablePPO (sb3-contrib): discrete prompts without repeated tokens", command="train"),
    "sql": AgentSpec("rlprompt.agents.rl.sql.agent:SoftQLearning", f"{_SQL}:SQLConfig",
                     "RLPrompt's soft Q-learning: frozen LM + MLP, starting from the LM's own distribution",
                     command="train"),
    "ppo-soft": AgentSpec(f"{_SB3_AGENTS}:SoftPPOAgent", f"{_SB3}:SoftPPOConfig", "PPO (SB3) writing soft prompts",
                          command="train", kind="soft"),
    "sac": AgentSpec(f"{_SB3_AGENTS}:SACAgent", f"{_SB3}:SACConfig", "SAC (SB3) writing soft prompts",
                     command="train", kind="soft"),
    "pgpe": AgentSpec("rlprompt.agents.rl.pgpe.agent:PGPE", "rlprompt.agents.rl.pgpe.config:PGPEConfig",
                      "PGPE: a Gaussian policy over soft prompts around an LM-prior prompt (policy gradient)",
                      command="train", kind="soft"),
    "td3": AgentSpec(f"{_SB3_AGENTS}:TD3Agent", f"{_SB3}:TD3Config", "TD3 (SB3) writing soft prompts",
                     command="train", kind="soft"),
    "grpo": AgentSpec("rlprompt.agents.rl.grpo.agent:GRPOAgent", f"{_GRPO}:GRPOAgentConfig",
                      "a policy LM that writes prompts, trained with TRL's GRPO", command="train"),
    "rloo": AgentSpec("rlprompt.agents.rl.grpo.agent:RLOOAgent", f"{_GRPO}:RLOOAgentConfig",
                      "a policy LM that writes prompts, trained with TRL's RLOO", command="train"),
}


def register_agent(name: str, spec: AgentSpec, *, overwrite: bool = False) -> None:
    """Add an agent under ``name``.

    :param name: the registry name (``--method NAME``).
    :param spec: where its agent and config classes live.
    :param overwrite: replace an existing entry.
    :raises ConfigError: the name is taken and ``overwrite`` is false.
    """
    if name in AGENTS and not overwrite:
        raise ConfigError(f"agent {name!r} is already registered; pass overwrite=True to replace it")
    AGENTS[name] = spec


def get_spec(name: str) -> AgentSpec:
    """The registry entry of ``name``.

    :raises ConfigError: unknown name (the message suggests the closest and lists all).
    """
    spec = AGENTS.get(name)
    if spec is None:
        close = difflib.get_close_matches(name, AGENTS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ";"
        raise ConfigError(f"unknown method {name!r}{hint} known methods: {', '.join(sorted(AGENTS))}")
    return spec


def _import(target: str) -> type:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def get_agent_class(name: str) -> type[BaseAgent]:
    """The agent class registered as ``name`` (imports it).

    :raises ConfigError: unknown name.
    """
    return _import(get_spec(name).agent)


def get_config_class(name: str) -> type[AgentConfig]:
    """The config class of the agent registered as ``name`` (cheap: no torch).

    :raises ConfigError: unknown name.
    """
    return _import(get_spec(name).config)


def list_agents(command: str | None = None) -> list[str]:
    """Registered agent names, sorted.

    :param command: only those of ``"train"`` or ``"tune"``; None for all.
    """
    return sorted(n for n, s in AGENTS.items() if command is None or s.command == command)


def generation_agents() -> list[str]:
    """Registered agents that also run on generation tasks (imports them)."""
    return sorted(n for n in AGENTS if getattr(get_agent_class(n), "supports_generation", False))
