"""The prompt-writing MDP every environment shares, for N prompts written side by side.

:class:`PromptEpisodes` holds what an episode needs (the task's examples, the scoring
engine, the reward) and writes N prompts in lockstep: :meth:`PromptEpisodes.advance`
appends one step's input to all N prompts with at most ONE engine call. A single
environment is N = 1 and the batched vector env is N = ``num_envs``, so both compute
the same numbers the same way.

What a step costs. With a causal LM and the prompt after the input (the default
``"{sentence} {prompt}"``), the engine keeps every (prompt, example) key/value cache
and :meth:`~rlprompt.lm.PromptState.extend` grows it by one token, so a dense reward
costs one token per example per step. A final reward needs no score before the last
step; the prompt is then scored once with :meth:`~rlprompt.lm.ScoringEngine.score`
(measured cheaper than extending step by step: one forward of T tokens instead of T
forwards of one; see ``benchmarks/bench_envs.py``). ``obs="hidden"`` needs the LM's
state after every step, so it always extends. Masked LMs and templates that put the
prompt before the input cannot extend: they score the prompt so far from scratch
whenever a score is needed.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from rlprompt.envs.errors import ResetNeededError
from rlprompt.errors import ConfigError
from rlprompt.lm import EngineCounters
from rlprompt.rewards import Reward, RewardFn, get_reward

if TYPE_CHECKING:
    from rlprompt.lm import PromptState, ScoringEngine
    from rlprompt.tasks import Task

RewardMode = Literal["final", "dense"]
ObsMode = Literal["tokens", "hidden"]
REWARD_MODES: tuple[str, ...] = ("final", "dense")

SCORE_FINAL_ONCE = True
"""Final reward mode scores the finished prompt with one ``engine.score`` call rather than
extending it token by token (cheaper: one forward of T tokens instead of T of one)."""


class PromptEpisodes(ABC):
    """N prompts written side by side on one task; the MDP's dynamics and rewards.

    Subclasses say what one step's input is (a token, a soft embedding) and how to
    observe the prompt; this class owns the example batch, the engine calls and the
    rewards. Arguments are documented on the environments that build it.

    :param engine: the scoring engine.
    :param task: the task (examples and labels).
    :param reward: a reward spec for :func:`~rlprompt.rewards.get_reward`.
    :param prompt_length: T, prompt positions written per episode.
    :param reward_mode: ``"final"`` or ``"dense"``.
    :param examples_per_episode: examples scored per episode (``None``: the whole split).
    :param split: the task split the prompt is scored on.
    :param want_hidden: keep the LM's last hidden state after each step (observation).
    :param num_prompts: N, prompts written side by side.
    :param steps: steps per episode (default ``prompt_length``).

    :attr incremental: whether prompts grow on the engine's per-row caches
        (``engine.start`` / ``extend``) or are scored from scratch when a score is needed;
        chosen in the constructor (see the module docstring); set before :meth:`begin`.
    """

    def __init__(
        self,
        engine: ScoringEngine,
        task: Task,
        reward: str | RewardFn | Reward,
        *,
        prompt_length: int,
        reward_mode: RewardMode,
        examples_per_episode: int | None,
        split: str,
        want_hidden: bool,
        num_prompts: int = 1,
        steps: int | None = None,
    ) -> None:
        if reward_mode not in REWARD_MODES:
            raise ConfigError(f"reward_mode {reward_mode!r} is not known; use 'final' or 'dense'")
        if isinstance(prompt_length, bool) or not isinstance(prompt_length, (int, np.integer)) or prompt_length < 1:
            raise ConfigError(f"prompt_length must be a positive number of tokens, got {prompt_length!r}")
        self.engine = engine
        self.task = task
        self.generation = getattr(task, "kind", "") == "generation"
        self.objective: Any = None
        if self.generation:
            self._check_generation(reward_mode, want_hidden)
            from rlprompt.rewards.evaluate_text import TextObjective

            self.objective = TextObjective(engine, task, reward)  # type: ignore[arg-type]
            self.reward = self.objective.reward
            self.all_labels = None
        else:
            self.reward = get_reward("accuracy" if reward is None else reward)
            self.all_labels = task.label_tensor(split)  # type: ignore[arg-type]
        self.prompt_length = int(prompt_length)
        self.reward_mode = reward_mode
        self.split = split
        self.all_texts = task.texts(split)  # type: ignore[arg-type]
        if examples_per_episode is not None and not 1 <= examples_per_episode <= len(self.all_texts):
            raise ConfigError(
                f"examples_per_episode must lie in 1..{len(self.all_texts)} (the {split} split of "
                f"{task.name!r}), or be None for all of it; got {examples_per_episode}"
            )
        self.examples_per_episode = examples_per_episode
        self.want_hidden = want_hidden
        self.n = num_prompts
        self.steps = steps or self.prompt_length
        self._check_context()
        self.incremental = not self.generation and self._can_extend() and (
            reward_mode == "dense" or want_hidden or not SCORE_FINAL_ONCE
        )
        if want_hidden and not self.incremental:
            raise ConfigError(
                "obs='hidden' needs prompts grown one position per step: a causal LM, a template with "
                f"{{prompt}} after {{sentence}} (got {engine.template.text!r} on a {engine.lm.kind} LM), "
                "and for soft prompts placement='suffix' without one_step"
            )
        self.hidden_size = int(engine.lm.input_embeddings().embedding_dim)
        self._clear_episode()

    supports_generation = False
    """True for episodes whose prompts the generation engine can write after (token prompts)."""

    def _check_generation(self, reward_mode: str, want_hidden: bool) -> None:
        if not self.supports_generation:
            raise ConfigError("the engine does not generate after soft prompts; on a generation task use "
                              "discrete prompts (DiscretePromptEnv)")
        if reward_mode == "dense" or want_hidden:
            raise ConfigError("on a generation task the finished prompt is rewarded once (a dense reward or "
                              "obs='hidden' would make the LM write at every step); use reward_mode='final' "
                              "and obs='tokens'")

    def _generation_prompts(self) -> list[Any]:
        """The N prompts written so far, as the generation engine takes them."""
        raise NotImplementedError

    # -- hooks --------------------------------------------------------------------------

    def _can_extend(self) -> bool:
        """True when one step can be added on top of the engine's per-row caches."""
        return self.engine.cacheable

    def _uses_input_cache(self) -> bool:
        """True when scoring reuses the engine's per-example input caches."""
        return self.engine.cacheable and not self.generation

    @abstractmethod
    def _clear(self) -> None:
        """Forget the prompts written so far (called at the start of every episode)."""

    @abstractmethod
    def _record(self, step_input: np.ndarray) -> None:
        """Remember the checked inputs [N, ...] of step ``self.t``."""

    @abstractmethod
    def _extend(self, state: PromptState, step_input: np.ndarray) -> torch.Tensor:
        """Append step ``self.t`` to every prompt in ``state``; class log-probs [N, E, C]."""

    @abstractmethod
    def _score_prompts(self, texts: list[str]) -> torch.Tensor:
        """Score the N prompts written so far from scratch; class log-probs [N, E, C]."""

    @abstractmethod
    def check_actions(self, actions: Any) -> np.ndarray:
        """Check a batch of N actions and return them as an array [N, ...].

        :raises InvalidActionError: an action is outside the single action space.
        """

    @abstractmethod
    def observation(self) -> dict[str, np.ndarray]:
        """The observation of every prompt, each entry batched as [N, ...]."""

    @abstractmethod
    def prompt_text(self, p: int) -> str:
        """A readable form of prompt ``p`` so far."""

    # -- episode dynamics -------------------------------------------------------------

    @property
    def done(self) -> bool:
        """The current episode has ended (or none has begun)."""
        return self.t >= self.steps

    @property
    def started(self) -> bool:
        return self._texts is not None

    @property
    def texts(self) -> list[str]:
        """The current episode's examples (empty before the first reset)."""
        return list(self._texts or [])

    def check_running(self) -> None:
        """Refuse a step when no episode is running.

        :raises ResetNeededError: before the first reset, or after the episode ended.
        """
        if not self.started:
            raise ResetNeededError("call reset() before step(): no episode has started")
        if self.done:
            raise ResetNeededError(
                f"the episode ended after {self.steps} step(s); call reset() before stepping again"
            )

    def widen(self, num_prompts: int) -> PromptEpisodes:
        """A copy writing ``num_prompts`` prompts side by side (engine, task and reward shared)."""
        if num_prompts < 1:
            raise ConfigError(f"num_envs must be at least 1, got {num_prompts}")
        wide = copy.copy(self)
        wide.n = num_prompts
        wide._clear_episode()
        return wide

    def _clear_episode(self) -> None:
        self.t = self.steps  # no episode running until begin()
        self.state: PromptState | None = None
        self._texts: list[str] | None = None
        self._labels: torch.Tensor | None = None
        self._indices: list[int] | None = None
        self.scores: np.ndarray | None = None  # [N] reward of each prompt as last scored
        self.diagnostics: dict[str, np.ndarray] = {}
        self._scored_at = -1
        self._cost = EngineCounters()
        self._clear()

    def sample_examples(self, rng: np.random.Generator) -> tuple[list[str], torch.Tensor | None]:
        """The episode's examples: the whole split, or ``examples_per_episode`` drawn with ``rng``
        (their labels; None on a generation task). Their indices are kept in ``_indices``."""
        if self.examples_per_episode is None:
            self._indices = None
            return self.all_texts, self.all_labels
        idx = np.sort(rng.choice(len(self.all_texts), size=self.examples_per_episode, replace=False))
        self._indices = idx.tolist()
        labels = None if self.all_labels is None else self.all_labels[torch.from_numpy(idx)]
        return [self.all_texts[i] for i in idx], labels

    def begin(self, rng: np.random.Generator) -> None:
        """Start an episode: empty prompts, a fresh example batch (drawn with ``rng``)."""
        self.state = None
        self._clear_episode()
        before = self.engine.counters.copy()
        self._texts, self._labels = self.sample_examples(rng)
        self.t = 0
        if self.incremental:
            self.state = self.engine.start(self.n, self._texts)
        if self.reward_mode == "dense":
            if self.state is not None:
                logprobs = self.state.logprobs
            else:
                logprobs = self.engine.score([[]], self._texts).expand(self.n, -1, -1)
            self._read(logprobs)
        elif self.state is None and self._uses_input_cache():
            # Build the inputs' caches now, so that what each step costs does not depend
            # on whether an earlier episode already built them.
            self.engine.prepare(self._texts)
        self._cost = self.engine.counters - before

    def advance(self, step_input: np.ndarray) -> np.ndarray:
        """Append one step to every prompt.

        :param step_input: the checked actions [N, ...] (from :meth:`check_actions`).
        :returns: float64 rewards [N]: the prompt's reward at the last step (``"final"``;
            0 before), or its change this step (``"dense"``).
        """
        assert self._texts is not None and not self.done
        before = self.engine.counters.copy()
        try:
            return self._advance(step_input)
        finally:
            self._cost = self.engine.counters - before

    def _advance(self, step_input: np.ndarray) -> np.ndarray:
        self._record(step_input)
        logprobs = self._extend(self.state, step_input) if self.state is not None else None
        self.t += 1
        if self.reward_mode == "final" and not self.done:
            return np.zeros(self.n)
        if self.generation:  # the LM writes after each finished prompt; the text reward scores it
            scores = self.objective.score(self._generation_prompts(), self.split, self._indices, with_metrics=False)
            self.scores = np.asarray(scores.rewards, dtype=np.float64)
            self.diagnostics = {"reward": self.scores.copy()}
            self._scored_at = self.t
            return self.scores.copy()
        if logprobs is None:
            logprobs = self._score_prompts(self._texts)
        before = self.scores
        after = self._read(logprobs)
        if self.reward_mode == "final":
            return after.copy()
        assert before is not None
        return after - before

    def _read(self, logprobs: torch.Tensor) -> np.ndarray:
        """Reward every prompt from its class log-probs [N, E, C]; keeps scores and diagnostics."""
        assert self._labels is not None
        out = self.reward(logprobs, self._labels)
        self.scores = out.rewards.detach().double().cpu().numpy()
        self.diagnostics = {k: v.detach().double().cpu().numpy() for k, v in out.diagnostics.items()}
        self._scored_at = self.t
        return self.scores

    # -- what the agent sees ----------------------------------------------------------

    def hidden_mean(self) -> np.ndarray:
        """The LM's last hidden state after each prompt, averaged over examples [N, H] (zeros when empty)."""
        if self.state is None or self.state.hidden is None or self.t == 0:
            return np.zeros((self.n, self.hidden_size), dtype=np.float32)
        return self.state.hidden.mean(1).float().cpu().numpy()

    def step_obs(self) -> np.ndarray:
        return np.full((self.n, 1), self.t, dtype=np.int64)

    def infos(self) -> list[dict[str, Any]]:
        """One info dict per prompt: ``step``, ``prompt``, ``cost``; ``score``, ``accuracy``
        and ``diagnostics`` whenever the prompt was scored at this step.

        ``cost`` is the engine work of the last reset or step, for all N prompts together
        (the engine's counters without wall time, which would make equal steps differ);
        the running totals are ``engine.counters``.
        """
        cost = {k: v for k, v in self._cost.as_dict().items() if k != "seconds"}
        out = []
        for p in range(self.n):
            info: dict[str, Any] = {"step": self.t, "prompt": self.prompt_text(p), "cost": dict(cost)}
            if self._scored_at == self.t and self.scores is not None:
                info["score"] = float(self.scores[p])
                if "accuracy" in self.diagnostics:
                    info["accuracy"] = float(self.diagnostics["accuracy"][p])
                info["diagnostics"] = {k: float(v[p]) for k, v in self.diagnostics.items()}
            out.append(info)
        return out

    def render_line(self, p: int) -> str:
        """One line for ``render_mode="ansi"``: step, prompt, score and accuracy."""
        line = f"step {self.t}/{self.steps}  prompt {self.prompt_text(p)!r}"
        if self.scores is not None and self._scored_at == self.t:
            line += f"  score {self.scores[p]:.4f}"
            if "accuracy" in self.diagnostics:
                line += f"  accuracy {self.diagnostics['accuracy'][p]:.1%}"
        return line + "\n"

    # -- checks -------------------------------------------------------------------------

    def _check_context(self) -> None:
        """Fail early when the longest example plus the prompt overflows the LM's context."""
        lm = self.engine.lm
        limit = lm.max_length
        if self.prompt_length >= limit:
            raise ConfigError(
                f"prompt_length {self.prompt_length} is beyond the {limit}-token context of {lm.name!r}"
            )
        template = self.engine.template
        rendered = [template.render(t, "") for t in self.all_texts]
        longest = max(len(ids) for ids in lm.tokenizer(rendered).input_ids)
        if longest + self.prompt_length > limit:
            raise ConfigError(
                f"prompt_length {self.prompt_length} plus the longest {self.split} example ({longest} tokens) "
                f"is beyond the {limit}-token context of {lm.name!r}; shorten the prompt or the inputs"
            )
