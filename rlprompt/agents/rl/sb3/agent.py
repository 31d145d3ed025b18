"""Stable-baselines3 agents on the prompt environments: PPO, A2C and MaskablePPO write
discrete prompts; PPO, SAC and TD3 write soft prompts.

Every agent trains SB3's own algorithm on :class:`~rlprompt.envs.SB3VecEnv` over a
:class:`~rlprompt.envs.PromptVectorEnv`, so ``n_envs`` prompts are written side by side
and scored with ONE engine call per step. Defaults suit this problem: episodes of
``prompt_length`` steps and an expensive reward (rollouts of tens to hundreds of steps,
not SB3's 2,048).

Budget and selection (:class:`BudgetCallback`): the engine's counters are checked after
every step; learning stops before an episode batch would overrun the budget. Each
finished prompt's training score is known from the env; those entering the running top
``dev_top_k`` are scored on dev (1 prompt evaluation each) for best-on-dev selection, and
what budget is left at the end goes to dev checks of the best-scored prompts not yet
checked. With ``rescore`` a prompt entering that top k is first re-scored on the whole train
split (1 prompt evaluation) and goes to dev only if this score enters a second top k. The
budget counts the engine's example evaluations (:mod:`rlprompt.agents.core.budget`):
a batch of ``n_envs`` final-reward episodes on k of n training examples costs n_envs * k / n;
dense rewards or ``obs="hidden"`` read each prompt at every step, and cost that many times more.

Logs: SB3's logger writes ``progress.csv`` (and TensorBoard event files when
``tensorboard`` is installed) into ``out_dir``. Saving: the prompt (JSON or safetensors,
as :class:`~rlprompt.agents.core.kinds.DiscreteAgent`/``SoftAgent``) and the policy's weights
as ``<name>.policy.safetensors`` (never pickle; the frozen LM's tables are not in it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback

from rlprompt.agents.core.base import BaseAgent
from rlprompt.agents.core.config import AgentConfig
from rlprompt.agents.core.logs import progress_logger
from rlprompt.agents.core.tracking import TopKGate
from rlprompt.agents.rl.sb3.buffers import buffer_state, restore_buffer
from rlprompt.agents.rl.sb3.config import (
    RLConfig,
    parse_layers,
)
from rlprompt.errors import ConfigError, DataError

if TYPE_CHECKING:
    from rlprompt.lm import ScoringEngine
    from rlprompt.tasks import Task

__all__ = ["BudgetCallback", "SB3Agent"]

A = TypeVar("A", bound="SB3Agent")


# -- budget, selection and logging ----------------------------------------------------------


class BudgetCallback(BaseCallback):
    """Stops SB3's loop before the budget runs out and offers finished prompts for dev selection.

    :param agent: the agent whose budget and tracker to use.
    """

    def __init__(self, agent: SB3Agent) -> None:
        super().__init__()
        self.agent = agent

    def _on_step(self) -> bool:
        dones = self.locals.get("dones")
        infos = self.locals.get("infos") or []
        if dones is None or not np.any(dones):
            return True
        finals = [(info["terminal_observation"], info.get("score")) for info in infos if "terminal_observation" in info]
        self.agent._offer_finished(finals)
        self.agent.safe_point()  # between episode batches: a checkpoint when due, or a requested stop
        return self.agent._room_for_another_batch()

    def _on_rollout_end(self) -> None:
        share = getattr(self.agent.config, "risk_seeking", None)  # PPO's option; SB3 has just computed GAE
        if share is not None:
            from rlprompt.agents.rl.sb3.risk import risk_seeking_advantages

            buffer = self.model.rollout_buffer
            buffer.advantages[:] = risk_seeking_advantages(buffer.rewards, buffer.episode_starts,
                                                           np.asarray(self.locals["dones"]), share)
        if getattr(self.agent.config, "entropy_floor", None) is not None:  # PPO's option: adapt the bonus
            from rlprompt.agents.rl.sb3.entropy import apply_entropy_floor

            apply_entropy_floor(self.model, self.agent.config.entropy_floor, self.agent.config.ent_coef)


# -- the agents -----------------------------------------------------------------------------


class SB3Agent(BaseAgent):
    """What the SB3 agents share: the env, the algorithm, the budgeted loop, saving.

    A subclass sets :attr:`algo_name`, its config class and a prompt kind (mixing in
    :class:`~rlprompt.agents.core.kinds.DiscreteAgent` or ``SoftAgent``).

    :param engine: the scoring engine (shared by the env: one cache, one set of counters).
    :param task: the task: learns on ``train``, selects on ``dev``.
    :param config: the agent's config.
    :param out_dir: where to write the curve, the logs, the best prompt, the policy and the summary.
    """

    supports_resume: ClassVar[bool] = True
    algo_name: ClassVar[str] = ""
    algorithm: ClassVar[str] = ""  # "module:Class" of the SB3 algorithm
    space: ClassVar[str] = ""
    config: RLConfig

    def __init__(self, engine: ScoringEngine, task: Task, config: AgentConfig | None = None, *,
                 out_dir: str | Path | None = None) -> None:
        super().__init__(engine, task, config, out_dir=out_dir)
        from rlprompt.envs import PromptVectorEnv, SB3VecEnv

        cfg = self.config
        self.env = self._make_env()
        self.venv = SB3VecEnv(PromptVectorEnv(cfg.n_envs, self.env))
        self.model = self._make_model()
        self.gate = TopKGate(cfg.dev_top_k)
        self.full_gate = TopKGate(cfg.dev_top_k)  # on whole-train scores, with ``rescore``
        self.full_scores: dict[Any, float] = {}  # key -> whole-train score, with ``rescore``
        self.scored: dict[Any, tuple[Any, float]] = {}  # key -> (prompt, training score), not yet on dev
        self.on_dev: set[Any] = set()
        self.episodes = 0
        self._batch_start: float | None = None  # budget used when the current episode batch began
        self._last_batch_cost: float | None = None
        self._dev_spent = 0.0

    # -- what a subclass provides -------------------------------------------------------------

    def _make_env(self) -> Any:
        raise NotImplementedError

    def _algo_class(self) -> Any:
        """The SB3 algorithm class named by :attr:`algorithm` (``"module:Class"``), imported on use."""
        import importlib

        module, _, name = self.algorithm.partition(":")
        return getattr(importlib.import_module(module), name)

    def _policy(self) -> tuple[Any, dict[str, Any]]:
        """The SB3 policy class (or alias) and its keyword arguments."""
        raise NotImplementedError

    def _prompt_from_obs(self, obs: dict[str, np.ndarray]) -> tuple[Any, Any]:
        """A finished prompt (as :meth:`score` takes it) and a hashable key, from a final observation."""
        raise NotImplementedError

    def _algo_kwargs(self) -> dict[str, Any]:
        kwargs = self.config.algo_kwargs()  # type: ignore[attr-defined]
        if "n_steps" in kwargs and "batch_size" in kwargs:  # a minibatch no larger than the rollout
            kwargs["batch_size"] = min(kwargs["batch_size"], kwargs["n_steps"] * self.config.n_envs)
        return kwargs

    # -- the pieces ----------------------------------------------------------------------------

    def _make_model(self) -> Any:
        policy, policy_kwargs = self._policy()
        kwargs = self._algo_kwargs()
        return self._algo_class()(
            policy, self.venv, learning_rate=self.config.learning_rate, policy_kwargs=policy_kwargs,
            seed=self.config.seed, device=str(self.engine.device), verbose=0, **kwargs,
        )

    def _extractor_kwargs(self, vocab: np.ndarray | None) -> dict[str, Any]:
        from rlprompt.agents.rl.sb3.policies import LMFeaturesExtractor

        return {
            "features_extractor_class": LMFeaturesExtractor,
            "features_extractor_kwargs": {"embedding": self.engine.lm.input_embeddings(), "vocab": vocab,
                                          "features_dim": self.config.features_dim},
            "net_arch": parse_layers(self.config.net_arch),
        }

    def _episode_batch_cost(self) -> float:
        """Prompt evaluations one batch of ``n_envs`` episodes costs: what the last batch cost
        (the engine's example evaluations), or before the first an estimate: each episode's
        prompt is read out once (final reward), at each of its T steps (dense), or at each step
        and for the first observation (``obs="hidden"``: T + 1), on its episode's examples."""
        if self._last_batch_cost is not None:
            return self._last_batch_cost
        cfg = self.config
        reads = cfg.prompt_length if cfg.reward_mode == "dense" else 1
        if cfg.obs == "hidden":
            reads = cfg.prompt_length + 1
        n_train = len(self.task.texts("train"))
        return cfg.n_envs * reads * min(cfg.examples_per_episode or n_train, n_train) / n_train

    def _room_for_another_batch(self) -> bool:
        assert self.budget is not None
        used = self.budget.used
        if self._batch_start is not None:
            self._last_batch_cost = used - self._batch_start - self._dev_spent
        self._batch_start, self._dev_spent = used, 0.0
        return self.budget.remaining + 1e-9 >= self._episode_batch_cost()

    def _offer_finished(self, finals: list[tuple[dict[str, np.ndarray], float | None]]) -> None:
        """Finished prompts with their training scores: check the promising ones on dev."""
        assert self.budget is not None
        self.episodes += len(finals)
        fresh: list[tuple[Any, Any, float]] = []
        for obs, score in finals:
            if score is None:
                continue
            prompt, key = self._prompt_from_obs(obs)
            if key in self.on_dev or any(key == k for k, _, _ in fresh):
                continue
            fresh.append((key, prompt, float(score)))
        chosen = self.gate.admit([s for _, _, s in fresh])
        for i, (key, prompt, score) in enumerate(fresh):
            if i not in chosen and key not in self.full_scores:  # a whole-train score ranks it already
                best = self.scored.get(key)
                if best is None or best[1] < score:
                    self.scored[key] = (prompt, score)
        picked = [(key, prompt, score) for i, (key, prompt, score) in enumerate(fresh) if i in chosen]
        self._to_dev(self._rescored(picked) if self.config.rescore else picked)
        self.tick(max((s for _, _, s in fresh), default=None))

    def _rescored(self, items: list[tuple[Any, Any, float]]) -> list[tuple[Any, Any, float]]:
        """With ``rescore``: the items whose whole-train score enters its own top k, with that score.

        A score on one episode's few examples is noisy, and the best of thousands of noisy
        scores is mostly luck; the whole-train score is what random search ranks by. Each prompt
        is re-scored once (a collapsed policy writes the same prompt again and again)."""
        assert self.budget is not None
        n_train = len(self.task.texts("train"))
        new = [it for it in items if it[0] not in self.full_scores][: self.budget.room(n_train)]
        if not new:
            return []
        before = self.budget.used
        scores = self.train_rewards(self._stack([p for _, p, _ in new]))
        self._dev_spent += self.budget.used - before  # not part of the episodes' cost
        self.full_scores.update({key: s for (key, _, _), s in zip(new, scores, strict=True)})
        chosen = self.full_gate.admit(scores)
        for i, (key, prompt, _) in enumerate(new):
            if i not in chosen:  # may still be checked with the budget left at the end
                self.scored[key] = (prompt, self.full_scores[key])
        return [(key, prompt, self.full_scores[key]) for i, (key, prompt, _) in enumerate(new) if i in chosen]

    def _to_dev(self, items: list[tuple[Any, Any, float]]) -> None:
        assert self.budget is not None
        items = items[: self.budget.room(self.selection_examples)]
        if not items:
            return
        for key, _, _ in items:
            self.on_dev.add(key)
            self.scored.pop(key, None)
        before = self.budget.used
        self.evaluate_dev(self._stack([p for _, p, _ in items]), train_scores=[s for _, _, s in items])
        self._dev_spent += self.budget.used - before  # not part of the episodes' cost

    def _stack(self, prompts: list[Any]) -> Any:
        return prompts

    def _setup_logger(self) -> None:
        from stable_baselines3.common.logger import Logger

        # Without out_dir, a logger with no outputs: SB3's own default makes an empty
        # SB3-<time> folder in the temp directory at every learn().
        self.model.set_logger(progress_logger(self) if self.out_dir is not None else Logger(None, []))

    def _learn(self) -> None:
        assert self.budget is not None
        need = self._episode_batch_cost() + self.budget.cost(1, self.selection_examples)
        if self.budget.remaining + 1e-9 < need:
            raise ConfigError(
                f"a budget of {self.budget.remaining:.1f} prompt evaluations cannot pay for one batch of "
                f"{self.config.n_envs} episodes and a dev check ({need:.1f}); raise the budget or lower n_envs"
            )
        self._setup_logger()
        self.model.learn(total_timesteps=10**12, callback=BudgetCallback(self), reset_num_timesteps=False,
                         progress_bar=False)
        # What is left goes to dev checks of the best-scored prompts not yet checked.
        rest = sorted(self.scored.items(), key=lambda kv: kv[1][1], reverse=True)
        self._to_dev([(key, prompt, score) for key, (prompt, score) in rest])
        self.extra.update({"episodes": self.episodes, "timesteps": int(self.model.num_timesteps)})

    # -- checkpoints ------------------------------------------------------------------------
    #
    # Saved: the policy's and optimisers' state_dicts (SB3's get_parameters, as safetensors;
    # SB3's own zip files hold pickles and are never used), SAC's entropy coefficient, the
    # filled part of an off-policy replay buffer, SB3's step and update counters, and the
    # dev gate and prompts waiting for dev. Not saved: a half-collected PPO/A2C rollout and
    # the env's episode in progress; a resumed run starts a new rollout from fresh episodes.

    def _key_to_json(self, key: Any) -> Any:
        return key.hex() if isinstance(key, bytes) else list(key)

    def _key_from_json(self, value: Any) -> Any:
        return bytes.fromhex(value) if isinstance(value, str) else tuple(int(t) for t in value)

    def checkpoint_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        from rlprompt.agents.core.checkpoint import flatten_state

        tensors, meta = super().checkpoint_state()
        model = self.model
        params = flatten_state(model.get_parameters(), "sb3/params", tensors)
        log_ent = getattr(model, "log_ent_coef", None)
        if isinstance(log_ent, torch.Tensor):
            tensors["sb3/log_ent_coef"] = log_ent.detach()
        scored = []
        for i, (key, (prompt, score)) in enumerate(self.scored.items()):
            item: dict[str, Any] = {"key": self._key_to_json(key), "score": score}
            if isinstance(prompt, torch.Tensor):
                tensors[f"sb3/scored/{i}"] = prompt.detach()
            else:
                item["prompt"] = list(prompt)
            scored.append(item)
        buffer = getattr(model, "replay_buffer", None)
        meta["sb3"] = {
            "params": params, "num_timesteps": int(model.num_timesteps), "n_updates": int(model._n_updates),
            "episodes": self.episodes, "gate": self.gate.state(), "scored": scored,
            "full_gate": self.full_gate.state(),
            "full_scores": [[self._key_to_json(k), s] for k, s in self.full_scores.items()],
            "on_dev": [self._key_to_json(k) for k in self.on_dev],
            "buffer": None if buffer is None else buffer_state(buffer, tensors),
        }
        if isinstance(getattr(model, "ent_coef", None), float):  # adapted by entropy_floor
            meta["sb3"]["ent_coef"] = model.ent_coef
        return tensors, meta

    def restore_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        from rlprompt.agents.core.checkpoint import unflatten_state

        super().restore_state(tensors, meta)
        state, model = meta["sb3"], self.model
        params = unflatten_state(state["params"], tensors)
        for name, value in params.items():
            if "optimizer" in name:
                value["state"] = {int(k): v for k, v in value.get("state", {}).items()}
        model.set_parameters(params, exact_match=True, device=str(self.engine.device))
        if "sb3/log_ent_coef" in tensors and isinstance(getattr(model, "log_ent_coef", None), torch.Tensor):
            with torch.no_grad():
                model.log_ent_coef.copy_(tensors["sb3/log_ent_coef"].to(model.log_ent_coef.device))
        model.num_timesteps, model._n_updates = int(state["num_timesteps"]), int(state["n_updates"])
        if "ent_coef" in state:
            model.ent_coef = float(state["ent_coef"])
        self.episodes = int(state["episodes"])
        self.gate.restore(state["gate"])
        self.full_gate.restore(state.get("full_gate", []))
        self.full_scores = {self._key_from_json(k): float(s) for k, s in state.get("full_scores", [])}
        self.scored = {}
        for i, item in enumerate(state["scored"]):
            prompt = tensors[f"sb3/scored/{i}"] if "prompt" not in item else list(item["prompt"])
            self.scored[self._key_from_json(item["key"])] = (prompt, float(item["score"]))
        self.on_dev = {self._key_from_json(k) for k in state["on_dev"]}
        if state["buffer"] is not None and getattr(model, "replay_buffer", None) is not None:
            restore_buffer(model.replay_buffer, state["buffer"], tensors)

    # -- saving -----------------------------------------------------------------------------

    @staticmethod
    def policy_path(path: str | Path) -> Path:
        """``x/prompt.json`` -> ``x/prompt.policy.safetensors``."""
        path = Path(path)
        return path.with_name(path.stem + ".policy.safetensors")

    def save(self, path: str | Path) -> Path:
        """Write the selected prompt at ``path`` and the policy's weights beside it (safetensors)."""
        from safetensors.torch import save_model

        out = super().save(path)  # type: ignore[safe-super]
        policy = self.policy_path(out)
        tmp = policy.with_name(policy.name + ".tmp")
        # save_model drops the aliases of shared tensors (SB3's pi/vf features extractors).
        save_model(self.model.policy, str(tmp), metadata={"format": f"rlprompt-sb3-{self.algo_name}",
                                                          "config": json.dumps(self.config.as_dict())})
        tmp.replace(policy)
        return out

    @classmethod
    def load(cls: type[A], path: str | Path, engine: ScoringEngine, task: Task, **kwargs: Any) -> A:
        """An agent with the prompt (and, when saved, the policy weights) at ``path``.

        :param path: the prompt file written by :meth:`save`.
        :param engine: the scoring engine.
        :param task: the task.
        :param kwargs: passed to the constructor (``out_dir``).
        :raises DataError: missing or malformed files.
        """
        from safetensors import SafetensorError
        from safetensors.torch import load_model

        agent = super().load(path, engine, task, **kwargs)  # type: ignore[misc]
        policy = cls.policy_path(path)
        if policy.exists():
            try:
                load_model(agent.model.policy, str(policy), device=str(engine.device))
            except (SafetensorError, OSError, RuntimeError) as exc:
                raise DataError(f"cannot read the policy {str(policy)!r}: {exc}") from None
        return agent


