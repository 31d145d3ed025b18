"""PromptVectorEnv: N prompt envs advanced with ONE engine call per step.

N separate environments call the LM N times per step, each on E examples. The
vector env writes the N prompts side by side on one shared example batch, so
each step is one engine call on N x E rows (``engine.start(N, texts)``, then
``extend`` with N tokens): the LM's weights are read once per step instead of N
times. Rewards equal those of N single environments given the same actions.

Sub-environments run in lockstep (every episode has the same length), so they
reset together, in the same step that ends their episode (gymnasium's
``AutoresetMode.SAME_STEP``: ``info["final_obs"]`` and ``info["final_info"]`` hold
the finished episode's last observation and info). They share each episode's
example batch: the whole split, or ``examples_per_episode`` drawn from the vector
env's ``np_random``.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from rlprompt.envs.core import PromptEpisodes
from rlprompt.errors import ConfigError


class PromptVectorEnv(VectorEnv):
    """``num_envs`` copies of a prompt environment stepped with one engine call per step.

    :param num_envs: N, sub-environments (prompts written side by side).
    :param env: the environment to replicate: a :class:`~rlprompt.envs.DiscretePromptEnv`
        or :class:`~rlprompt.envs.SoftPromptEnv` instance, or one of those classes, which is
        then built from ``env_kwargs`` (its engine, task, vocabulary and reward are shared).
    :param env_kwargs: constructor arguments of ``env`` when it is a class.
    :raises ConfigError: ``num_envs`` below 1, or ``env`` not a prompt environment.
    """

    metadata: dict[str, Any] = {"render_modes": ["ansi"], "autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(self, num_envs: int = 8, env: gym.Env | type[gym.Env] | None = None, **env_kwargs: Any) -> None:
        if env is None:
            from rlprompt.envs.discrete import DiscretePromptEnv

            env = DiscretePromptEnv
        if isinstance(env, type):
            env = env(**env_kwargs)
        elif env_kwargs:
            raise ConfigError(f"env_kwargs {sorted(env_kwargs)} apply only when env is a class, not an instance")
        episodes = getattr(env.unwrapped, "episodes", None)
        if not isinstance(episodes, PromptEpisodes):
            raise ConfigError(f"env must be a DiscretePromptEnv or SoftPromptEnv, got {type(env.unwrapped).__name__}")
        if isinstance(num_envs, bool) or not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
            raise ConfigError(f"num_envs must be a positive integer, got {num_envs!r}")
        self.env = env.unwrapped
        self.episodes = episodes.widen(int(num_envs))
        self.num_envs = int(num_envs)
        self.render_mode = self.env.render_mode
        self.single_observation_space = self.env.observation_space
        self.single_action_space = self.env.action_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)

    @property
    def engine(self) -> Any:
        """The shared :class:`~rlprompt.lm.ScoringEngine`."""
        return self.episodes.engine

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Start an episode in every sub-env (empty prompts, a fresh example batch).

        :param seed: seeds ``self.np_random`` (the example draws) when given.
        :param options: ``reset_mask`` may be given but must be all True: sub-envs run in lockstep.
        """
        super().reset(seed=seed)
        mask = (options or {}).get("reset_mask")
        if mask is not None and not bool(np.all(mask)):
            raise ConfigError(
                "sub-envs of PromptVectorEnv run in lockstep and reset together; reset_mask must be all True"
            )
        self.episodes.begin(self.np_random)
        return self.episodes.observation(), self._merge(self.episodes.infos())

    def step(
        self, actions: Any
    ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Append one step to every sub-env's prompt, with one engine call.

        :param actions: N actions, batched as :attr:`action_space`.
        :returns: observations, rewards [N], terminations [N], truncations [N] (all False),
            infos. When the episodes end, the observations are those of the next episode's
            empty prompts and ``infos["final_obs"]`` / ``infos["final_info"]`` hold the ends.
        """
        obs, rewards, done, infos, final = self.step_lists(actions)
        merged = self._merge(infos)
        if final is not None:
            for i, (f_obs, f_info) in enumerate(zip(*final, strict=True)):
                merged = self._add_info(merged, {"final_obs": f_obs, "final_info": f_info}, i)
        flags = np.full(self.num_envs, done)
        return obs, rewards, flags, np.zeros(self.num_envs, dtype=bool), merged

    def step_lists(
        self, actions: Any
    ) -> tuple[dict[str, np.ndarray], np.ndarray, bool, list[dict[str, Any]],
               tuple[list[dict[str, np.ndarray]], list[dict[str, Any]]] | None]:
        """One step, infos as a list per sub-env (for the SB3 adapter).

        :returns: observations (of the next episode when this one ended), rewards [N],
            whether the episodes ended, per-env infos, and when they ended the per-env
            final observations and infos.
        """
        self.episodes.check_running()
        step_input = self.episodes.check_actions(actions)
        rewards = self.episodes.advance(step_input)
        if not self.episodes.done:
            return self.episodes.observation(), rewards, False, self.episodes.infos(), None
        end_obs = self.episodes.observation()
        final_obs = [{k: v[i] for k, v in end_obs.items()} for i in range(self.num_envs)]
        final_infos = self.episodes.infos()
        self.episodes.begin(self.np_random)
        return self.episodes.observation(), rewards, True, self.episodes.infos(), (final_obs, final_infos)

    def action_masks(self) -> np.ndarray:
        """Valid actions of every sub-env, bool [N, K] (discrete prompts only)."""
        masks = getattr(self.episodes, "action_masks", None)
        if masks is None:
            raise ConfigError("action masks exist only for discrete prompt environments")
        return masks()

    def render(self) -> tuple[str, ...] | None:
        """With ``render_mode="ansi"``: one line per sub-env."""
        if self.render_mode != "ansi":
            return None
        return tuple(self.episodes.render_line(i) for i in range(self.num_envs))

    def _merge(self, infos: list[dict[str, Any]]) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for i, info in enumerate(infos):
            merged = self._add_info(merged, info, i)
        return merged


def make_discrete_vector_env(num_envs: int = 8, **kwargs: Any) -> PromptVectorEnv:
    """``vector_entry_point`` of ``rlprompt/DiscretePrompt-v0``: kwargs go to DiscretePromptEnv.

    :param num_envs: sub-environments.
    """
    from rlprompt.envs.discrete import DiscretePromptEnv

    kwargs.pop("max_episode_steps", None)
    return PromptVectorEnv(num_envs, DiscretePromptEnv, **kwargs)


def make_soft_vector_env(num_envs: int = 8, **kwargs: Any) -> PromptVectorEnv:
    """``vector_entry_point`` of ``rlprompt/SoftPrompt-v0``: kwargs go to SoftPromptEnv.

    :param num_envs: sub-environments.
    """
    from rlprompt.envs.soft import SoftPromptEnv

    kwargs.pop("max_episode_steps", None)
    return PromptVectorEnv(num_envs, SoftPromptEnv, **kwargs)
