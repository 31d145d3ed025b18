"""DiscretePromptEnv: write a prompt for a frozen LM one token at a time."""

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
from rlprompt.envs.vocab import VocabSpec, candidate_vocab
from rlprompt.rewards import Reward, RewardFn

if TYPE_CHECKING:
    from rlprompt.lm import FrozenLM, PromptState, ScoringEngine
    from rlprompt.tasks import Task


class DiscretePromptEnv(gym.Env[dict[str, np.ndarray], np.int64]):
    """Prompt search as an MDP: each action appends one token of the LM's vocabulary.

    ## Description

    An episode writes a prompt of ``prompt_length`` tokens for a frozen language model.
    The prompt is placed in the task's template (``"{sentence} {prompt}"`` by default)
    after every example of a batch of training examples, and the LM's log-probabilities
    of the class verbalizers (``" terrible"`` / ``" great"``) score it. The reward is
    the task reward of those scores (accuracy by default), as in RLPrompt (Deng et
    al., 2022). Scoring goes through one :class:`~rlprompt.lm.ScoringEngine`, which
    caches each example and grows the prompt one token at a time.

    ## Action Space

    ``Discrete(K)``: index into the candidate vocabulary :attr:`vocab` (token ids).
    By default the K most frequent whole-word tokens of the tokenizer (a leading space
    and two or more letters, at most ``max_vocab``); ``vocab="full"`` allows every
    non-special token; a list gives the words or token ids. :meth:`action_masks`
    returns the valid actions for sb3-contrib's ``MaskablePPO`` (tokens already in the
    prompt are masked); the mask is advice, a repeated token is still accepted.

    ## Observation Space

    A ``Dict``:

    | Key      | Space                                     | Meaning                                  |
    |----------|-------------------------------------------|------------------------------------------|
    | prompt   | ``Box(-1, K-1, (prompt_length,), int64)`` | candidate index per position; -1 = empty |
    | step     | ``Box(0, prompt_length, (1,), int64)``    | tokens written so far                    |
    | hidden   | ``Box(-inf, inf, (H,), float32)``         | only with ``obs="hidden"`` (below)       |

    ``hidden`` is the LM's last hidden state after the prompt (what it reads the class
    from), averaged over the episode's examples; zeros before the first token.

    Token indices are an integer ``Box``, not ``MultiDiscrete``, which SB3 would one-hot
    encode into ``prompt_length * K`` inputs.

    ## Rewards

    With ``reward_mode="final"``, 0 at every step but the last, then the reward of the
    whole prompt. With ``reward_mode="dense"``, the change in the prompt's reward at
    each step (the first step against the empty prompt), so the rewards of an episode
    sum to the final prompt's reward minus the empty prompt's. Each dense step costs
    one LM token per example. ``reward`` is any spec of
    :func:`~rlprompt.rewards.get_reward`: a name (``"accuracy"``, ``"log-likelihood"``,
    ``"gap"``, ...), ``"package.module:function"`` or a callable
    ``fn(logprobs [P, E, C], labels [E]) -> rewards [P]``.

    ## Starting State

    The empty prompt. The episode's examples are the whole ``split``, or
    ``examples_per_episode`` of them drawn without replacement from ``self.np_random``.

    ## Episode End

    Terminated after ``prompt_length`` tokens (the prompt is complete); never truncated.
    Stepping again before :meth:`reset` raises :class:`~rlprompt.envs.ResetNeededError`.

    ## Info

    ``step``; ``prompt`` (the text); ``cost``: the engine counters' increase over this
    step (LM forward tokens and calls, prompt and example evaluations; no wall time, so
    that equal steps give equal infos; the running totals are ``env.engine.counters``);
    whenever the prompt was scored at this step (every step when dense, the last when
    final): ``score`` (its reward), ``accuracy`` and ``diagnostics`` (every per-prompt
    number the reward reports).

    ## Arguments

    :param task: a :class:`~rlprompt.tasks.Task`, a task name for
        :func:`~rlprompt.tasks.load_task` (with ``task_kwargs``), or ``None`` for ``"demo"``.
    :param model: a model name for :func:`~rlprompt.lm.load_lm` (loaded once per process
        and shared) or a loaded :class:`~rlprompt.lm.FrozenLM`. Ignored with ``engine``.
    :param prompt_length: tokens per prompt (steps per episode), at least 1.
    :param vocab: ``"words"``, ``"full"``, or a list of single-token words / token ids.
    :param max_vocab: cap on ``"words"`` (most frequent first); ``None`` keeps all.
    :param reward: the reward spec (see Rewards; default ``"accuracy"``); on a generation task a
        text reward (default: the task's), the LM writing after the finished prompt.
    :param reward_mode: ``"final"`` or ``"dense"``.
    :param examples_per_episode: examples per episode, or ``None`` for the whole split.
    :param split: the task split prompts are scored on (``"train"``; ``"dev"`` to evaluate).
    :param obs: ``"tokens"`` or ``"hidden"`` (adds the LM's hidden state; needs a causal
        LM and a template with the prompt after the input).
    :param render_mode: ``None`` or ``"ansi"`` (a line with the prompt and its score).
    :param engine: a :class:`~rlprompt.lm.ScoringEngine` to share between environments
        (its input caches and counters); built from ``model`` and the task when ``None``.
    :param device: device for ``load_lm`` when ``model`` is a name.
    :param task_kwargs: keyword arguments for ``load_task`` when ``task`` is a name
        (e.g. ``{"data_dir": "data/fsc16", "seed": 42}``).
    :raises ConfigError: any argument that cannot work (the message says which and why).
    """

    metadata: dict[str, Any] = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(
        self,
        task: Task | str | None = None,
        model: str | FrozenLM = "smollm2-135m",
        *,
        prompt_length: int = 5,
        vocab: VocabSpec = "words",
        max_vocab: int | None = 4096,
        reward: str | RewardFn | Reward | None = None,
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
        self.render_mode = render_mode
        self.task = resolve_task(task, task_kwargs)
        self.engine = resolve_engine(engine, model, self.task, device)
        lm = self.engine.lm
        self.vocab = candidate_vocab(lm.tokenizer, lm.input_embeddings().num_embeddings, vocab, max_vocab)
        self.episodes = DiscreteEpisodes(
            self.engine, self.task, reward, vocab=self.vocab, prompt_length=prompt_length,
            reward_mode=reward_mode, examples_per_episode=examples_per_episode, split=split,
            want_hidden=obs == "hidden",
        )
        k, t = len(self.vocab), self.episodes.prompt_length
        self.prompt_length = t
        self.action_space = spaces.Discrete(k)
        obs_spaces: dict[str, spaces.Space] = {
            "prompt": spaces.Box(-1, k - 1, shape=(t,), dtype=np.int64),
            "step": spaces.Box(0, t, shape=(1,), dtype=np.int64),
        }
        if obs == "hidden":
            obs_spaces["hidden"] = spaces.Box(-np.inf, np.inf, shape=(self.episodes.hidden_size,), dtype=np.float32)
        self.observation_space = spaces.Dict(obs_spaces)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Start an episode with the empty prompt.

        :param seed: seeds ``self.np_random`` (the example draws) when given.
        :param options: unused.
        :returns: the observation and info of the empty prompt.
        """
        super().reset(seed=seed)
        self.episodes.begin(self.np_random)
        return self._obs(), self.episodes.infos()[0]

    def step(self, action: Any) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        """Append the token ``vocab[action]`` to the prompt.

        :param action: an index in ``[0, K)``.
        :returns: observation, reward, terminated, truncated (always False), info.
        :raises InvalidActionError: the action is outside ``Discrete(K)``.
        :raises ResetNeededError: no episode is running (call :meth:`reset`).
        """
        self.episodes.check_running()
        step_input = self.episodes.check_actions([action])
        reward = float(self.episodes.advance(step_input)[0])
        return self._obs(), reward, self.episodes.done, False, self.episodes.infos()[0]

    def action_masks(self) -> np.ndarray:
        """Valid actions now, for ``MaskablePPO``: bool [K], False for tokens already written."""
        return self.episodes.action_masks()[0]

    def render(self) -> str | None:
        """With ``render_mode="ansi"``: the step, the prompt and (when scored) its score."""
        if self.render_mode != "ansi":
            return None
        return self.episodes.render_line(0)

    @property
    def prompt_tokens(self) -> list[int]:
        """The token ids of the prompt written so far."""
        return self.episodes.prompt_tokens(0)

    @property
    def prompt(self) -> str:
        """The text of the prompt written so far."""
        return self.episodes.prompt_text(0)

    def _obs(self) -> dict[str, np.ndarray]:
        return {key: value[0] for key, value in self.episodes.observation().items()}


class DiscreteEpisodes(PromptEpisodes):
    """N token prompts written side by side (see :class:`PromptEpisodes`).

    :param vocab: candidate token ids [K]; action ``a`` writes token ``vocab[a]``.
    """

    def __init__(self, engine: ScoringEngine, task: Task, reward: str | RewardFn | Reward, *,
                 vocab: np.ndarray, **kwargs: Any) -> None:
        self.vocab = vocab
        super().__init__(engine, task, reward, **kwargs)

    def _clear(self) -> None:
        self.actions = np.full((self.n, self.prompt_length), -1, dtype=np.int64)

    def check_actions(self, actions: Any) -> np.ndarray:
        k = len(self.vocab)
        arr = np.asarray(actions)
        ok = arr.shape == (self.n,) and arr.dtype.kind in "iu"
        if ok:
            arr = arr.astype(np.int64)
            ok = bool(np.all((arr >= 0) & (arr < k)))
        if not ok:
            single = self.n == 1 and isinstance(actions, list) and len(actions) == 1
            shown = actions[0] if single else actions
            raise InvalidActionError(
                f"action {shown!r} is outside the action space Discrete({k}); give "
                + ("an integer" if self.n == 1 else f"{self.n} integers") + f" in 0..{k - 1} (an index into env.vocab)"
            )
        return arr

    def _record(self, step_input: np.ndarray) -> None:
        self.actions[:, self.t] = step_input

    def _extend(self, state: PromptState, step_input: np.ndarray) -> torch.Tensor:
        return state.extend(self.vocab[step_input].tolist(), want_hidden=self.want_hidden)

    supports_generation = True

    def _score_prompts(self, texts: list[str]) -> torch.Tensor:
        return self.engine.score([self.prompt_tokens(p) for p in range(self.n)], texts)

    def _generation_prompts(self) -> list[Any]:
        return [self.prompt_tokens(p) for p in range(self.n)]

    def prompt_tokens(self, p: int) -> list[int]:
        return self.vocab[self.actions[p, : self.t]].tolist()

    def prompt_text(self, p: int) -> str:
        return self.engine.decode(self.prompt_tokens(p))

    def observation(self) -> dict[str, np.ndarray]:
        obs = {"prompt": self.actions.copy(), "step": self.step_obs()}
        if self.want_hidden:
            obs["hidden"] = self.hidden_mean()
        return obs

    def action_masks(self) -> np.ndarray:
        """bool [N, K]: False for tokens already in each prompt."""
        masks = np.ones((self.n, len(self.vocab)), dtype=bool)
        for p in range(self.n):
            used = self.actions[p, : self.t]
            masks[p, used[used >= 0]] = False
        return masks
