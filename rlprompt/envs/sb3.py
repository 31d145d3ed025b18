"""SB3VecEnv: the batched prompt vector env as a stable-baselines3 ``VecEnv``.

SB3 agents take it directly, and keep its one-engine-call-per-step batching::

    from stable_baselines3 import PPO
    from rlprompt.envs import PromptVectorEnv, SB3VecEnv

    venv = SB3VecEnv(PromptVectorEnv(8, task="demo", reward_mode="dense"))
    PPO("MultiInputPolicy", venv, n_steps=40).learn(4000)

``MaskablePPO`` (sb3-contrib) reads the action masks through ``env_method("action_masks")``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env import VecEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvObs, VecEnvStepReturn

from rlprompt.envs.vector import PromptVectorEnv
from rlprompt.errors import ConfigError


class SB3VecEnv(VecEnv):
    """A :class:`~rlprompt.envs.PromptVectorEnv` behind SB3's ``VecEnv`` interface.

    Episodes end in the step that returns ``done``; as SB3 expects, the observation
    returned then is the next episode's first one and ``infos[i]["terminal_observation"]``
    holds the last one. Seeds set with :meth:`seed` apply at the next :meth:`reset`
    (sub-envs share one example stream, so the first seed is used).

    :param venv: the vector env to expose.
    """

    def __init__(self, venv: PromptVectorEnv) -> None:
        if not isinstance(venv, PromptVectorEnv):
            raise ConfigError(f"SB3VecEnv wraps a PromptVectorEnv, got {type(venv).__name__}")
        self.venv = venv
        self._actions: np.ndarray | None = None
        super().__init__(venv.num_envs, venv.single_observation_space, venv.single_action_space)

    def reset(self) -> VecEnvObs:
        """Reset every sub-env; per-env infos go to :attr:`reset_infos`."""
        seed = self._seeds[0]
        obs, _ = self.venv.reset(seed=seed)
        self.reset_infos = self.venv.episodes.infos()
        self._reset_seeds()
        self._reset_options()
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self) -> VecEnvStepReturn:
        """Step every sub-env: observations, rewards [N] float32, dones [N], infos (list)."""
        if self._actions is None:
            raise ConfigError("step_wait() without step_async(actions)")
        obs, rewards, done, infos, final = self.venv.step_lists(self._actions)
        self._actions = None
        if final is not None:
            final_obs, final_infos = final
            self.reset_infos = infos
            infos = [
                {**info, "terminal_observation": o, "TimeLimit.truncated": False}
                for o, info in zip(final_obs, final_infos, strict=True)
            ]
        return obs, rewards.astype(np.float32), np.full(self.num_envs, done), infos

    def close(self) -> None:
        self.venv.close()

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        """An attribute of the vector env, else of the replicated env (shared by every sub-env)."""
        if attr_name == "action_masks" and not hasattr(self.venv.episodes, "action_masks"):
            raise AttributeError("soft prompt environments have no action masks")
        target = self.venv if hasattr(self.venv, attr_name) else self.venv.env
        value = getattr(target, attr_name)
        return [value for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        raise ConfigError(
            f"cannot set {attr_name!r} per sub-env: sub-envs of a PromptVectorEnv share one configuration"
        )

    def env_method(self, method_name: str, *method_args: Any, indices: VecEnvIndices = None,
                   **method_kwargs: Any) -> list[Any]:
        """``"action_masks"`` and ``"render"`` give one result per sub-env."""
        idx = list(self._get_indices(indices))
        if method_name == "action_masks":
            masks = self.venv.action_masks()
            return [masks[i] for i in idx]
        if method_name == "render":
            lines = [self.venv.episodes.render_line(i) for i in range(self.num_envs)]
            return [lines[i] for i in idx]
        raise ConfigError(
            f"env_method({method_name!r}) is not available on SB3VecEnv; sub-envs are rows of one batched "
            "env (supported: 'action_masks', 'render')"
        )

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        return [False for _ in self._get_indices(indices)]

    def get_images(self) -> Sequence[np.ndarray | None]:
        return [None for _ in range(self.num_envs)]
