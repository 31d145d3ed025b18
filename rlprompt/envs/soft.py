"""SoftPromptEnv: write a soft prompt (embedding vectors) for a frozen LM."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from rlprompt.envs.core import ObsMode, PromptEpisodes, RewardMode
from rlprompt.envs.errors import InvalidActionError
from rlprompt.envs.resolve import check_env_options, resolve_engine, resolve_task
from rlprompt.errors import ConfigError
from rlprompt.lm.embeddings import nearest_tokens, random_projection, text_embeddings
from rlprompt.lm.template import Placement
from rlprompt.rewards import Reward, RewardFn

if TYPE_CHECKING:
    from rlprompt.lm import FrozenLM, PromptState, ScoringEngine
    from rlprompt.tasks import Task


class SoftActionMap:
    """Maps actions in ``[-1, 1]^d`` to soft token embeddings in the LM's input space.

    ``embedding = base + scale * std * (M @ action)``, with ``std`` the per-dimension
    standard deviation of the LM's embedding table and ``base`` its mean vector, or, with
    an ``anchor`` [T, H], the anchor's row at the token's position (black-box tuning's
    ``p0``: a search around a known prompt, such as a good discrete one). Directly in embedding space
    (``intrinsic_dim=None``), ``M`` is the identity and ``d = H``. Otherwise ``M`` is a
    fixed random ``[H, d]`` Gaussian matrix scaled by ``1/sqrt(d)``, as in black-box
    tuning (Sun et al., 2022): the agent searches a d-dimensional subspace. Either way a
    uniform random action gives embeddings whose spread per dimension is
    ``scale / sqrt(3)`` times the table's.

    :param table: the embedding table [V, H] (real token rows).
    :param intrinsic_dim: d, or ``None`` for actions directly in embedding space.
    :param scale: how many table standard deviations an action of 1 moves.
    :param seed: seed of the random projection (fixed for the environment's lifetime).
    :param anchor: embeddings [T, H] the actions move from, one row per prompt position
        (``None``: the table's mean at every position). Settable later as :attr:`anchor`.
    :raises ConfigError: ``intrinsic_dim`` below 1, or ``scale`` not positive.
    """

    def __init__(self, table: torch.Tensor, intrinsic_dim: int | None = None, scale: float = 2.0,
                 seed: int = 0, anchor: torch.Tensor | None = None) -> None:
        if intrinsic_dim is not None and (isinstance(intrinsic_dim, bool) or int(intrinsic_dim) < 1):
            raise ConfigError(f"intrinsic_dim must be a positive integer or None, got {intrinsic_dim!r}")
        if not scale > 0:
            raise ConfigError(f"action_scale must be positive, got {scale!r}")
        with torch.no_grad():
            table = table.detach().float()
            self.mean = table.mean(0)
            self.std = table.std(0)
        self.hidden_size = int(table.shape[1])
        self.scale = float(scale)
        self.projection: torch.Tensor | None = None
        self.dim = self.hidden_size
        if intrinsic_dim is not None:
            d = int(intrinsic_dim)
            gen = torch.Generator().manual_seed(int(seed))
            self.projection = random_projection(self.hidden_size, d, gen, table.device)
            self.dim = d
        self.anchor = anchor

    @property
    def anchor(self) -> torch.Tensor | None:
        """The start embeddings [T, H] (float32), or ``None`` for the table's mean."""
        return self._anchor

    @anchor.setter
    def anchor(self, value: torch.Tensor | None) -> None:
        if value is not None:
            value = torch.as_tensor(value).detach().float().to(self.mean.device)
            if value.ndim != 2 or value.shape[1] != self.hidden_size:
                raise ConfigError(f"anchor must be [prompt_length, {self.hidden_size}] embeddings, "
                                  f"got shape {list(value.shape)}")
        self._anchor = value

    def __call__(self, actions: np.ndarray | torch.Tensor, position: int | None = None) -> torch.Tensor:
        """Embeddings [..., H] (float32, on the table's device) of actions [..., d].

        :param position: the prompt position of every action (one step of an episode); with
            ``None`` the second-to-last axis of ``actions`` runs over positions 0, 1, ...
        """
        a = torch.as_tensor(np.asarray(actions), dtype=torch.float32, device=self.mean.device)
        if self.projection is not None:
            a = a @ self.projection.T
        base = self.mean
        if self._anchor is not None:
            base = self._anchor[position] if position is not None else self._anchor[: a.shape[-2]]
        return base + self.scale * self.std * a


class SoftPromptEnv(gym.Env[dict[str, np.ndarray], np.ndarray]):
    """Prompt search with soft prompts: each action becomes one soft token embedding.

    ## Description

    The continuous counterpart of :class:`~rlprompt.envs.DiscretePromptEnv`. An episode
    writes ``prompt_length`` soft tokens (vectors in the frozen LM's input-embedding
    space) that take the place of ``{prompt}`` in the task's template; the class
    verbalizers' log-probabilities score the prompt as in the discrete env. Actions are
    mapped to embeddings by a :class:`SoftActionMap`: directly (scaled to the embedding
    table's per-dimension mean and standard deviation) or through a fixed random
    projection from a low intrinsic dimension d (black-box tuning, Sun et al., 2022).
    With ``one_step=True`` one action is the whole soft prompt and an episode is one step
    (a bandit, the setting of black-box tuning and CMA-ES).

    ## Action Space

    ``Box(-1, 1, (d,), float32)`` with d the hidden size H (``intrinsic_dim=None``) or
    ``intrinsic_dim``; ``Box(-1, 1, (prompt_length * d,), float32)`` when ``one_step``
    (position-major: the first d values are the first soft token).

    ## Observation Space

    A ``Dict``:

    | Key      | Space                                   | Meaning                                    |
    |----------|-----------------------------------------|--------------------------------------------|
    | prompt   | ``Box(-1, 1, (prompt_length * d,), float32)`` | actions so far (position-major), zeros where none yet |
    | step     | ``Box(0, steps, (1,), int64)``          | steps taken                                |
    | hidden   | ``Box(-inf, inf, (H,), float32)``       | only with ``obs="hidden"``                 |

    ``steps`` is ``prompt_length``, or 1 with ``one_step`` (which has no ``prompt`` key).
    ``hidden`` is the LM's last hidden state after the prompt, averaged over the
    examples; zeros at the start.

    ## Rewards

    As in :class:`~rlprompt.envs.DiscretePromptEnv`: ``"final"`` pays the prompt's
    reward at the last step, ``"dense"`` its change every step (summing to final minus
    empty prompt). ``reward`` is any spec of :func:`~rlprompt.rewards.get_reward`.

    ## Starting State

    The empty prompt; the examples are the whole split or ``examples_per_episode`` of
    them drawn from ``self.np_random``.

    ## Episode End

    Terminated after ``prompt_length`` steps (one step when ``one_step``); never truncated.

    ## Info

    ``step``, ``prompt`` (a placeholder such as ``"<3 soft tokens>"``; see
    :meth:`nearest_tokens`), ``cost`` (as in the discrete env); and when scored: ``score``, ``accuracy``,
    ``diagnostics``.

    ## Arguments

    :param task: a :class:`~rlprompt.tasks.Task`, a task name (with ``task_kwargs``), or
        ``None`` for ``"demo"``.
    :param model: a model name for :func:`~rlprompt.lm.load_lm` or a
        :class:`~rlprompt.lm.FrozenLM`. Ignored with ``engine``.
    :param prompt_length: soft tokens per prompt, at least 1.
    :param intrinsic_dim: d for a random projection, or ``None`` to act in embedding space.
    :param action_scale: table standard deviations an action of 1 moves an embedding.
    :param projection_seed: seed of the random projection.
    :param anchor: where the actions move from: ``None`` (the embedding table's mean), a
        text prompt (its token embeddings, repeated or cut to ``prompt_length``) or
        embeddings [prompt_length, H]; an all-zero action then writes the anchor.
    :param one_step: one action is the whole prompt (one-step episodes).
    :param placement: ``"suffix"`` (at ``{prompt}``, after the cached input: grown one
        token per step) or ``"prefix"`` (before the input, as in prompt tuning; every score
        is a full forward).
    :param reward: the reward spec.
    :param reward_mode: ``"final"`` or ``"dense"``.
    :param examples_per_episode: examples per episode, or ``None`` for the whole split.
    :param split: the task split prompts are scored on.
    :param obs: ``"tokens"`` or ``"hidden"`` (needs ``placement="suffix"``, several steps).
    :param render_mode: ``None`` or ``"ansi"``.
    :param engine: a :class:`~rlprompt.lm.ScoringEngine` to share.
    :param device: device for ``load_lm`` when ``model`` is a name.
    :param task_kwargs: keyword arguments for ``load_task`` when ``task`` is a name.
    :raises ConfigError: any argument that cannot work.
    """

    metadata: dict[str, Any] = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(
        self,
        task: Task | str | None = None,
        model: str | FrozenLM = "smollm2-135m",
        *,
        prompt_length: int = 5,
        intrinsic_dim: int | None = None,
        action_scale: float = 2.0,
        projection_seed: int = 0,
        anchor: torch.Tensor | str | None = None,
        one_step: bool = False,
        placement: Placement | str = Placement.SUFFIX,
        reward: str | RewardFn | Reward = "accuracy",
        reward_mode: RewardMode = "final",
        examples_per_episode: int | None = None,
        split: str = "train",
        obs: ObsMode = "tokens",
        render_mode: str | None = None,
        engine: ScoringEngine | None = None,
        device: str = "auto",
        task_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        check_env_options(render_mode, self.metadata["render_modes"], obs)
        placement = Placement.parse(placement)
        self.render_mode = render_mode
        self.task = resolve_task(task, task_kwargs)
        self.engine = resolve_engine(engine, model, self.task, device)
        lm = self.engine.lm
        if lm.kind != "causal":
            raise ConfigError(f"soft prompts need a causal LM; {lm.name!r} is a {lm.kind} LM")
        rows = min(len(lm.tokenizer), lm.input_embeddings().num_embeddings)
        self.action_map = SoftActionMap(
            lm.input_embeddings().weight[:rows], intrinsic_dim, action_scale, projection_seed
        )
        self.episodes = SoftEpisodes(
            self.engine, self.task, reward, action_map=self.action_map, one_step=one_step,
            placement=placement, prompt_length=prompt_length, reward_mode=reward_mode,
            examples_per_episode=examples_per_episode, split=split, want_hidden=obs == "hidden",
        )
        t, d = self.episodes.prompt_length, self.action_map.dim
        if isinstance(anchor, str):
            anchor = text_embeddings(self.engine, anchor, t)
        if anchor is not None and len(anchor) != t:
            raise ConfigError(f"anchor has {len(anchor)} rows; it needs one per prompt position ({t})")
        self.action_map.anchor = anchor
        self.prompt_length = t
        self.one_step = bool(one_step)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(t * d if one_step else d,), dtype=np.float32)
        obs_spaces: dict[str, spaces.Space] = {}
        if not one_step:
            obs_spaces["prompt"] = spaces.Box(-1.0, 1.0, shape=(t * d,), dtype=np.float32)
        obs_spaces["step"] = spaces.Box(0, self.episodes.steps, shape=(1,), dtype=np.int64)
        if obs == "hidden":
            obs_spaces["hidden"] = spaces.Box(-np.inf, np.inf, shape=(self.episodes.hidden_size,), dtype=np.float32)
        self.observation_space = spaces.Dict(obs_spaces)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Start an episode with the empty prompt.

        :param seed: seeds ``self.np_random`` (the example draws) when given.
        :param options: unused.
        """
        super().reset(seed=seed)
        self.episodes.begin(self.np_random)
        return self._obs(), self.episodes.infos()[0]

    def step(self, action: Any) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        """Append the soft token of ``action`` (or, when ``one_step``, the whole prompt).

        :param action: a float vector in ``[-1, 1]`` of the action space's shape.
        :returns: observation, reward, terminated, truncated (always False), info.
        :raises InvalidActionError: wrong shape, non-finite values or values outside ``[-1, 1]``.
        :raises ResetNeededError: no episode is running (call :meth:`reset`).
        """
        self.episodes.check_running()
        step_input = self.episodes.check_actions(np.asarray(action)[None] if _is_numeric(action) else [action])
        reward = float(self.episodes.advance(step_input)[0])
        return self._obs(), reward, self.episodes.done, False, self.episodes.infos()[0]

    def render(self) -> str | None:
        """With ``render_mode="ansi"``: the step, the prompt's size and (when scored) its score."""
        if self.render_mode != "ansi":
            return None
        return self.episodes.render_line(0)

    @property
    def soft_prompt(self) -> torch.Tensor:
        """The soft prompt written so far, [t, H] embeddings (what the LM reads)."""
        return self.episodes.embeddings()[0]

    def nearest_tokens(self) -> list[str]:
        """For reading a soft prompt: the vocabulary token nearest (cosine) to each soft token."""
        soft = self.soft_prompt
        if soft.shape[0] == 0:
            return []
        ids = nearest_tokens(soft, self.engine.lm.input_embeddings().weight, "cosine")
        return [self.engine.decode([int(i)]) for i in ids]

    def _obs(self) -> dict[str, np.ndarray]:
        return {key: value[0] for key, value in self.episodes.observation().items()}


def _is_numeric(action: Any) -> bool:
    try:
        return np.asarray(action).dtype.kind in "fiu"
    except (TypeError, ValueError):
        return False


class SoftEpisodes(PromptEpisodes):
    """N soft prompts written side by side (see :class:`PromptEpisodes`).

    :param action_map: actions -> embeddings.
    :param one_step: one action per episode holds the whole prompt.
    :param placement: ``"suffix"`` or ``"prefix"``.
    """

    def __init__(self, engine: ScoringEngine, task: Task, reward: str | RewardFn | Reward, *,
                 action_map: SoftActionMap, one_step: bool, placement: Placement | str,
                 **kwargs: Any) -> None:
        self.action_map = action_map
        self.one_step = bool(one_step)
        self.placement = Placement.parse(placement)
        super().__init__(engine, task, reward, steps=1 if one_step else None, **kwargs)

    def _can_extend(self) -> bool:
        return self.engine.cacheable and self.placement is Placement.SUFFIX and not self.one_step

    def _uses_input_cache(self) -> bool:
        return self.engine.cacheable and self.placement is Placement.SUFFIX

    @property
    def action_dim(self) -> int:
        return self.action_map.dim * (self.prompt_length if self.one_step else 1)

    def _clear(self) -> None:
        self.actions = np.zeros((self.n, self.prompt_length, self.action_map.dim), dtype=np.float32)

    def _filled(self) -> int:
        return self.prompt_length if (self.one_step and self.t > 0) else min(self.t, self.prompt_length)

    def check_actions(self, actions: Any) -> np.ndarray:
        shape = (self.n, self.action_dim)
        try:
            arr = np.asarray(actions, dtype=np.float32)
        except (TypeError, ValueError):
            arr = None
        if arr is None or arr.shape != shape:
            got = "a non-numeric value" if arr is None else f"shape {list(arr.shape)}"
            raise InvalidActionError(
                f"action has {got}; the action space is Box(-1, 1, ({self.action_dim},), float32)"
                + ("" if self.n == 1 else f" per sub-env, batched as {list(shape)}")
            )
        if not np.all(np.isfinite(arr)):
            raise InvalidActionError("action holds NaN or infinite values; actions must lie in [-1, 1]")
        worst = float(np.abs(arr).max()) if arr.size else 0.0
        if worst > 1.0 + 1e-6:
            raise InvalidActionError(
                f"action value {worst:.4g} is outside [-1, 1]; clip actions to the Box bounds "
                "(SB3 does so for Box action spaces)"
            )
        return np.clip(arr, -1.0, 1.0)

    def _record(self, step_input: np.ndarray) -> None:
        if self.one_step:
            self.actions[:] = step_input.reshape(self.n, self.prompt_length, -1)
        else:
            self.actions[:, self.t] = step_input

    def _extend(self, state: PromptState, step_input: np.ndarray) -> torch.Tensor:
        return state.extend(None, embeds=self.action_map(step_input, position=self.t), want_hidden=self.want_hidden)

    def embeddings(self) -> torch.Tensor:
        """The soft prompts written so far, [N, t, H] float32."""
        return self.action_map(self.actions[:, : self._filled()])

    def _score_prompts(self, texts: list[str]) -> torch.Tensor:
        return self.engine.score_soft(self.embeddings(), texts, placement=self.placement)

    def prompt_text(self, p: int) -> str:
        return f"<{self._filled()} soft tokens>"

    def observation(self) -> dict[str, np.ndarray]:
        obs: dict[str, np.ndarray] = {}
        if not self.one_step:
            obs["prompt"] = self.actions.reshape(self.n, -1).copy()
        obs["step"] = self.step_obs()
        if self.want_hidden:
            obs["hidden"] = self.hidden_mean()
        return obs
