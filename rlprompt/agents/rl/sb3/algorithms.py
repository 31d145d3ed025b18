"""The SB3 agents: one row of :data:`ALGORITHMS` each (name, SB3 algorithm, config, prompt kind).

:class:`DiscreteSB3Agent` writes token prompts on :class:`~rlprompt.envs.DiscretePromptEnv`
with the LM-aware policy; :class:`SoftSB3Agent` writes soft prompts on
:class:`~rlprompt.envs.SoftPromptEnv`. Each concrete class (``PPOAgent``, ...) is that base
with its algorithm and config filled in; the loop is :class:`~rlprompt.agents.rl.sb3.agent.SB3Agent`.
"""

from __future__ import annotations

from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch

from rlprompt.agents.core.config import AgentConfig
from rlprompt.agents.core.kinds import DiscreteAgent, SoftAgent
from rlprompt.agents.rl.sb3.agent import SB3Agent
from rlprompt.agents.rl.sb3.config import (
    A2CConfig,
    DiscreteRLConfig,
    MaskablePPOConfig,
    PPOConfig,
    SACConfig,
    SoftPPOConfig,
    SoftRLConfig,
    TD3Config,
)
from rlprompt.agents.search.config import SoftStart

__all__ = ["ALGORITHMS", "A2CAgent", "DiscreteSB3Agent", "MaskablePPOAgent", "PPOAgent", "SACAgent", "SoftPPOAgent",
           "SoftSB3Agent", "TD3Agent"]


class DiscreteSB3Agent(SB3Agent, DiscreteAgent):
    """An SB3 agent on :class:`~rlprompt.envs.DiscretePromptEnv`."""

    space: ClassVar[str] = "discrete"
    supports_generation: ClassVar[bool] = True
    config: DiscreteRLConfig
    policy_class: ClassVar[str] = "actor-critic"

    def _make_env(self) -> Any:
        from rlprompt.envs import DiscretePromptEnv

        cfg = self.config
        return DiscretePromptEnv(
            self.task, engine=self.engine, prompt_length=cfg.prompt_length, vocab=cfg.vocab,
            max_vocab=cfg.max_vocab, reward=None if self.generation else cfg.reward,  # (a task's text reward)
            reward_mode=cfg.reward_mode,  # type: ignore[arg-type]
            examples_per_episode=self._examples(), split="train", obs=cfg.obs,  # type: ignore[arg-type]
        )

    def _examples(self) -> int | None:
        n = self.config.examples_per_episode
        return None if n is None or n >= len(self.task.texts("train")) else n

    def _policy(self) -> tuple[Any, dict[str, Any]]:
        from rlprompt.agents.rl.sb3.policies import LMActorCriticPolicy, LMMaskableActorCriticPolicy

        kwargs = self._extractor_kwargs(self.env.vocab)
        kwargs.update(tie_head=self.config.tie_head, output_embeddings=self.engine.model.get_output_embeddings().weight,
                      vocab=self.env.vocab, prior=self._prior() if self.config.prior else None,
                      prior_kl=self.config.prior_kl)
        cls = LMMaskableActorCriticPolicy if self.policy_class == "maskable" else LMActorCriticPolicy
        return cls, kwargs

    def _prior(self) -> Any:
        """The :class:`~rlprompt.agents.rl.sb3.prior.PromptPrior` of ``prior=True``, its cost on the budget."""
        from rlprompt.agents.rl.sb3.prior import PromptPrior
        from rlprompt.agents.search.lm_prior import default_description, sampling_context
        from rlprompt.errors import ConfigError

        cfg = self.config
        if self.engine.masked:
            raise ConfigError(f"prior=True needs a causal LM; {self.engine.lm.name!r} is a masked LM")
        train = self.task.texts("train")
        rng = np.random.default_rng(cfg.seed)
        first = int(rng.integers(len(train)))  # one example: the same draw as before prior_examples existed
        others = [int(i) for i in rng.permutation(len(train)) if i != first][: cfg.prior_examples - 1]
        context = sampling_context(self.task, cfg.prior_context, type(cfg)().prior_context)
        description = cfg.description or default_description(self.task)
        texts = [context.format(description=description, example=train[i]) for i in [first, *others]]

        def charge(**cost: int) -> None:
            if self.budget is not None:
                self.budget.charge(**cost)

        return PromptPrior(self.engine.lm, texts, self.env.vocab, charge=charge, uniform=cfg.prior_uniform)

    def _prompt_from_obs(self, obs: dict[str, np.ndarray]) -> tuple[Any, Any]:
        tokens = tuple(int(t) for t in self.env.vocab[np.asarray(obs["prompt"], dtype=np.int64)])
        return list(tokens), tokens


class SoftSB3Agent(SB3Agent, SoftAgent):
    """An SB3 agent on :class:`~rlprompt.envs.SoftPromptEnv` (one soft token per step)."""

    space: ClassVar[str] = "soft"
    config: SoftRLConfig

    def _make_env(self) -> Any:
        from rlprompt.envs import SoftPromptEnv

        cfg = self.config
        n = cfg.examples_per_episode
        return SoftPromptEnv(
            self.task, engine=self.engine, prompt_length=cfg.prompt_length, intrinsic_dim=cfg.intrinsic_dim,
            action_scale=cfg.action_scale, projection_seed=cfg.projection_seed,
            placement=cfg.placement.value, reward=cfg.reward, reward_mode=cfg.reward_mode,  # type: ignore[arg-type]
            examples_per_episode=None if n is None or n >= len(self.task.texts("train")) else n,
            split="train", obs=cfg.obs,  # type: ignore[arg-type]
        )

    def _policy(self) -> tuple[Any, dict[str, Any]]:
        return "MultiInputPolicy", self._extractor_kwargs(None)

    def _learn(self) -> None:
        cfg = self.config
        if not self.resuming and cfg.init is not SoftStart.MEAN:  # mean: the action map's own default
            from rlprompt.agents.search.anchor import start_prompt

            generator = torch.Generator().manual_seed(cfg.seed)
            self.env.action_map.anchor = start_prompt(self, cfg.init, cfg, cfg.reward, generator)
        super()._learn()

    def checkpoint_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors, meta = super().checkpoint_state()
        if self.env.action_map.anchor is not None:
            tensors["sb3/anchor"] = self.env.action_map.anchor.detach().cpu()
        return tensors, meta

    def restore_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        super().restore_state(tensors, meta)
        self.env.action_map.anchor = tensors.get("sb3/anchor")

    def _prompt_from_obs(self, obs: dict[str, np.ndarray]) -> tuple[Any, Any]:
        actions = np.asarray(obs["prompt"], dtype=np.float32).reshape(self.config.prompt_length, -1)
        embeds = self.env.action_map(actions).detach().float().cpu()  # [T, H]
        return embeds, actions.tobytes()

    def _stack(self, prompts: list[Any]) -> Any:
        return torch.stack(prompts)

    def _algo_kwargs(self) -> dict[str, Any]:
        kwargs = super()._algo_kwargs()
        noise = getattr(self.config, "action_noise", None)  # TD3: Gaussian exploration noise on the actions
        if noise:
            from stable_baselines3.common.noise import NormalActionNoise

            dim = int(np.prod(self.env.action_space.shape))
            kwargs["action_noise"] = NormalActionNoise(np.zeros(dim), np.full(dim, noise))
        return kwargs


class Algorithm(NamedTuple):
    """One SB3 agent: its class name, SB3 algorithm (``"module:Class"``), config and prompt kind."""

    class_name: str
    algorithm: str
    config: type[AgentConfig]
    base: type[SB3Agent]
    summary: str
    policy_class: str = "actor-critic"


ALGORITHMS: dict[str, Algorithm] = {
    "ppo": Algorithm("PPOAgent", "stable_baselines3:PPO", PPOConfig, DiscreteSB3Agent,
                     "PPO (stable-baselines3) writing discrete prompts, with the LM-aware policy."),
    "a2c": Algorithm("A2CAgent", "stable_baselines3:A2C", A2CConfig, DiscreteSB3Agent,
                     "A2C (stable-baselines3) writing discrete prompts."),
    "maskable-ppo": Algorithm("MaskablePPOAgent", "sb3_contrib:MaskablePPO", MaskablePPOConfig, DiscreteSB3Agent,
                              "MaskablePPO (sb3-contrib) writing discrete prompts; a token is not written twice.",
                              policy_class="maskable"),
    "ppo-soft": Algorithm("SoftPPOAgent", "stable_baselines3:PPO", SoftPPOConfig, SoftSB3Agent,
                          "PPO (stable-baselines3) writing soft prompts."),
    "sac": Algorithm("SACAgent", "stable_baselines3:SAC", SACConfig, SoftSB3Agent,
                     "SAC (stable-baselines3) writing soft prompts."),
    "td3": Algorithm("TD3Agent", "stable_baselines3:TD3", TD3Config, SoftSB3Agent,
                     "TD3 (stable-baselines3) writing soft prompts, with Gaussian action noise."),
}


def _agent_class(name: str, row: Algorithm) -> type[SB3Agent]:
    doc = (f"{row.summary}\n\n    :param engine: the scoring engine.\n    :param task: the task.\n"
           f"    :param config: a :class:`{row.config.__name__}`.\n    :param out_dir: where to write outputs.\n    ")
    return type(row.class_name, (row.base,), {
        "__doc__": doc, "__module__": __name__, "name": name, "algo_name": row.algorithm.rpartition(":")[2].lower()
        if name != "maskable-ppo" else name, "algorithm": row.algorithm, "config_class": row.config,
        "policy_class": row.policy_class,
    })


_CLASSES = {name: _agent_class(name, row) for name, row in ALGORITHMS.items()}
PPOAgent = _CLASSES["ppo"]
A2CAgent = _CLASSES["a2c"]
MaskablePPOAgent = _CLASSES["maskable-ppo"]
SoftPPOAgent = _CLASSES["ppo-soft"]
SACAgent = _CLASSES["sac"]
TD3Agent = _CLASSES["td3"]
