"""Register the environments with gymnasium (done on ``import rlprompt.envs``).

::

    import gymnasium as gym
    import rlprompt.envs  # noqa: F401 (registers the ids)

    env = gym.make("rlprompt/DiscretePrompt-v0", task="demo", reward_mode="dense")
    envs = gym.make_vec("rlprompt/DiscretePrompt-v0", num_envs=8)  # one engine call per step

Keyword arguments of ``gym.make`` / ``gym.make_vec`` go to the environment's constructor.
"""

from __future__ import annotations

DISCRETE_ID = "rlprompt/DiscretePrompt-v0"
SOFT_ID = "rlprompt/SoftPrompt-v0"


def register_envs() -> None:
    """Register ``rlprompt/DiscretePrompt-v0`` and ``rlprompt/SoftPrompt-v0`` (idempotent)."""
    import gymnasium as gym

    for env_id, entry, vector_entry in (
        (DISCRETE_ID, "rlprompt.envs.discrete:DiscretePromptEnv", "rlprompt.envs.vector:make_discrete_vector_env"),
        (SOFT_ID, "rlprompt.envs.soft:SoftPromptEnv", "rlprompt.envs.vector:make_soft_vector_env"),
    ):
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=entry, vector_entry_point=vector_entry)
