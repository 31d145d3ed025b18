"""Soft Q-learning for discrete prompts (RLPrompt, Deng et al. 2022), written top to bottom.

## The policy

RLPrompt's policy is a frozen LM with a small trainable MLP: the LM reads a context and
the prompt so far; the MLP maps its last hidden state ``h`` to token logits, which soft
Q-learning treats as Q-values. Here the frozen LM is the task LM itself (shared, never
copied) and the Q-values are measured against a *reference* distribution::

    Q_theta(s, a) = MLP_theta(h_s) . W_a          (W: the LM's own output embeddings)
    pi(a | s)     ~ ref(a | s) * exp(Q_theta(s, a) / alpha)
    V_theta(s)    = alpha * log sum_a ref(a | s) * exp(Q_theta(s, a) / alpha)

With ``reference="prior"`` (default) ``ref`` is the LM's own next-token distribution after
the context, so the MLP's last layer starts at zero and the first policy IS LM-prior
sampling (:class:`~rlprompt.agents.search.lm_prior.LMPriorSampling`, with the same context: a
task description and a random training input); learning tilts it towards prompts with a
high reward. This is soft Q-learning with a KL penalty to the prior in place of the
entropy bonus. With ``reference="uniform"`` ``ref`` is uniform over the allowed tokens:
RLPrompt's entropy-regularised setting, starting from a uniform policy.

## The loss

Path consistency (Guo et al. 2021), in :mod:`rlprompt.agents.rl.sql.losses`.

## Budget

Each sampled prompt scored on the training examples costs one prompt evaluation; a prompt
sampled again reuses its reward (no cost). Prompts whose training reward enters the
running top ``dev_top_k`` are scored on dev (one more each) for best-on-dev selection.
Sampling costs no prompt evaluation; its LM tokens are charged as forward tokens.

## Logs and saving

``out_dir/curve.csv`` (dev evaluations) and ``logs/progress.csv`` (per round: ``train/loss``,
``train/reward_mean``, ``train/reward_max``, ``train/new_prompts``, ``budget/prompt_evals``).
:meth:`SoftQLearning.save` writes the kept prompts as JSON and the MLP as safetensors
(``<name>.policy.safetensors``); no pickle.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import numpy as np
import torch
from torch import nn

from rlprompt.agents.core.config import STALL_ROUNDS, AgentConfig
from rlprompt.agents.core.kinds import DiscreteAgent
from rlprompt.agents.core.logs import progress_logger
from rlprompt.agents.core.tracking import TopKGate
from rlprompt.agents.rl.sql.config import Reference, RewardNorm, SQLConfig, SQLLoss
from rlprompt.agents.rl.sql.losses import path_consistency_loss
from rlprompt.agents.rl.sql.networks import QNetwork, Replay, reference_logprobs
from rlprompt.errors import ConfigError, DataError
from rlprompt.lm.sampling import sample_tokens
from rlprompt.rewards.normalize import RunningStats, batch_zscore

__all__ = ["QNetwork", "Reference", "Replay", "RewardNorm", "SQLConfig", "SQLLoss", "SoftQLearning"]

if TYPE_CHECKING:
    from rlprompt.lm import ScoringEngine
    from rlprompt.tasks import Task

A = TypeVar("A", bound="SoftQLearning")


class SoftQLearning(DiscreteAgent):
    """RLPrompt's soft Q-learning agent; see the module docstring.

    :param engine: the scoring engine (its causal LM is also the frozen policy LM).
    :param task: the task: learns on ``train``, selects on ``dev``.
    :param config: an :class:`SQLConfig`.
    :param out_dir: where to write the curve, the best prompt, the policy and the summary.
    :raises ConfigError: a masked LM (the policy writes left to right).
    """

    name: ClassVar[str] = "sql"
    supports_resume: ClassVar[bool] = True
    supports_generation: ClassVar[bool] = True
    config_class: ClassVar[type[AgentConfig]] = SQLConfig
    config: SQLConfig
    space: ClassVar[str] = "discrete"

    def __init__(self, engine: ScoringEngine, task: Task, config: AgentConfig | None = None, *,
                 out_dir: str | Path | None = None) -> None:
        super().__init__(engine, task, config, out_dir=out_dir)
        from rlprompt.agents.search.lm_prior import banned_tokens, default_description, sampling_context

        if engine.masked:
            raise ConfigError(f"soft Q-learning writes prompts left to right with a causal LM; "
                              f"{engine.lm.name!r} is a masked LM")
        cfg = self.config
        model = engine.model
        self.head_weight = model.get_output_embeddings().weight  # [V, H], shared with the LM
        vocab_size = int(self.head_weight.shape[0])
        banned = torch.zeros(vocab_size, dtype=torch.bool)
        banned[banned_tokens(engine.tokenizer, vocab_size)] = True
        if cfg.vocab == "words":
            from rlprompt.envs.vocab import candidate_vocab

            allowed = torch.from_numpy(candidate_vocab(engine.tokenizer, vocab_size, "words", cfg.max_vocab))
            banned = torch.ones(vocab_size, dtype=torch.bool)
            banned[allowed] = False
        self.banned = banned.to(engine.device)
        self.description = cfg.description or default_description(task)
        self.context = sampling_context(task, cfg.context, SQLConfig().context)
        # -- seeding: every random draw of the agent comes from these ------------------------------
        self.rng = np.random.default_rng(cfg.seed)
        self.generator = torch.Generator().manual_seed(cfg.seed)
        # -- networks (initialised from the seed, leaving the caller's global RNG as it was) ---------
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            self.q_net = QNetwork(self.head_weight, cfg.mlp_hidden).to(engine.device)
        self.q_target = copy.deepcopy(self.q_net)
        self.q_target._head = self.q_net._head  # share the LM table, never copy it
        self.q_target.requires_grad_(False)
        self.optimizer = torch.optim.Adam(self.q_net.parameters(), lr=cfg.learning_rate)
        self.replay = Replay(cfg.replay_size)
        self.updates = 0
        self.reward_stats = RunningStats()  # of every raw training reward, for reward_norm="running"

    # -- the policy ---------------------------------------------------------------------------

    def _reference(self, h: torch.Tensor) -> torch.Tensor:
        """log ref(a | s) [B, V] (banned tokens at -inf)."""
        return reference_logprobs(h, self.head_weight, self.banned, prior=self.config.reference is Reference.PRIOR)

    @property
    def alpha(self) -> float:
        """The temperature now: ``config.alpha``, or geometric from ``alpha_start`` to it as the budget goes."""
        cfg = self.config
        if cfg.alpha_start is None or self.budget is None or not self.budget.limit:
            return cfg.alpha
        frac = min(1.0, self.budget.used / self.budget.limit)
        return cfg.alpha_start * (cfg.alpha / cfg.alpha_start) ** frac

    def policy_logits(self, h: torch.Tensor, q_net: nn.Module | None = None,
                      ref: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Unnormalised log pi [B, V] and Q-values [B, V] at LM hidden states h [B, H].

        :param h: the LM's last hidden states [B, H].
        :param q_net: the network to use (default: the online one).
        :param ref: ``log ref(. | s)`` [B, V] when already computed.
        """
        if ref is None:
            with torch.no_grad():
                ref = self._reference(h)
        q = (q_net or self.q_net)(h)
        return ref + q / self.alpha, q

    def _contexts(self, n: int) -> list[str]:
        train = self.task.texts("train")
        return [self.context.format(description=self.description, example=train[i])
                for i in self.rng.integers(len(train), size=n)]

    @torch.no_grad()
    def sample(self, n: int, greedy: bool = False) -> tuple[list[list[int]], torch.Tensor, torch.Tensor]:
        """Write ``n`` prompts with the current policy (one batched LM pass per token).

        :param n: prompts to write.
        :param greedy: take the most likely token instead of sampling.
        :returns: token ids (lists), the LM's hidden state before each token [n, T, H]
            (float32, CPU) and the token ids as a tensor [n, T].
        """
        cfg = self.config
        prior = cfg.reference is Reference.PRIOR

        def policy(lm_logits: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
            # log pi = log ref + Q / alpha; the prior reference is the LM's own (allowed) distribution.
            return self.policy_logits(h, ref=torch.log_softmax(lm_logits, -1) if prior else None)[0]

        # A collapsed policy writes only prompts it has seen: sample hotter until it writes new ones.
        heat = min(8.0, cfg.stall_heat ** getattr(self, "_stale", 0))
        out = sample_tokens(self.engine.lm, self._contexts(n), cfg.prompt_length, generator=self.generator,
                            adjust=policy, allowed=~self.banned, top_k=cfg.top_k, greedy=greedy, keep_hidden=True,
                            temperature=heat)
        if self.budget is not None:
            self.budget.charge(**out.cost)
        return out.tokens.tolist(), out.hidden, out.tokens

    # -- the loss ---------------------------------------------------------------------------

    def shape_rewards(self, raw: torch.Tensor) -> torch.Tensor:
        """Raw rewards [B] -> the rewards the Q-function learns (see :class:`RewardNorm`)."""
        cfg = self.config
        if cfg.reward_norm is RewardNorm.BATCH:
            z = batch_zscore(raw)
        elif cfg.reward_norm is RewardNorm.RUNNING:
            z = self.reward_stats.normalize(raw)
        else:
            z = raw
        return z * cfg.reward_scale

    def sql_loss(self, hidden: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor) -> torch.Tensor:
        """Path-consistency loss of a batch of finished prompts.

        :param hidden: LM hidden states before each token [B, T, H].
        :param actions: the tokens written [B, T].
        :param rewards: shaped terminal rewards [B].
        :returns: the scalar loss.
        """
        cfg = self.config
        b, t, size = hidden.shape
        dev = self.engine.device
        h = hidden.reshape(b * t, size).to(dev)
        a = actions.reshape(b * t, 1).to(dev)
        r_final = rewards.to(dev).float()
        with torch.no_grad():
            ref = self._reference(h)  # log ref(a | s), shared by both networks
        # Online network: A(s, a) = Q(s, a) - V(s), V(s) = alpha * logsumexp(log ref + Q / alpha).
        alpha = self.alpha
        logits, q = self.policy_logits(h, ref=ref)
        v = alpha * torch.logsumexp(logits, -1)
        adv = (q.gather(1, a).squeeze(1) - v).view(b, t)
        with torch.no_grad():  # the target network's Vbar(s_t)
            logits_bar, _ = self.policy_logits(h, self.q_target, ref)
            v_bar = (alpha * torch.logsumexp(logits_bar, -1)).view(b, t)
        return path_consistency_loss(adv, v_bar, r_final, cfg.sql_loss)

    def train_step(self, hidden: torch.Tensor, actions: torch.Tensor, raw: torch.Tensor) -> float:
        """One gradient step on an on-policy batch plus a replay batch; then Polyak-update the target."""
        cfg = self.config
        batches = [(hidden, actions, raw)]
        if cfg.replay_batch and len(self.replay):
            batches.append(self.replay.sample(cfg.replay_batch, self.rng))
        # Rewards are shaped per part (on-policy, replay), then both parts go through one pass.
        loss = self.sql_loss(torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches]),
                             torch.cat([self.shape_rewards(b[2]) for b in batches]))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.q_net.parameters(), cfg.max_grad_norm)
        self.optimizer.step()
        with torch.no_grad():
            for p, p_bar in zip(self.q_net.parameters(), self.q_target.parameters(), strict=True):
                p_bar.lerp_(p, cfg.target_tau)
        self.updates += 1
        return float(loss.detach())

    # -- the loop ---------------------------------------------------------------------------

    def _start_loop(self) -> None:
        """The loop's fresh state (the policy, its optimiser and the replay buffer persist)."""
        self._gate = TopKGate(self.config.dev_top_k)
        self._seen: dict[tuple[int, ...], float] = {}  # prompt -> raw training reward
        self._on_dev: set[tuple[int, ...]] = set()
        self._stale, self._last_loss = 0, math.nan

    def checkpoint_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        from rlprompt.agents.core.checkpoint import numpy_generator_state, optimizer_state

        tensors, meta = super().checkpoint_state()
        for name, net in (("q_net", self.q_net), ("q_target", self.q_target)):
            for key, value in net.state_dict().items():
                tensors[f"sql/{name}/{key}"] = value
        tensors["sql/generator"] = self.generator.get_state()
        if len(self.replay):
            tensors["sql/replay/hidden"] = torch.stack(self.replay.hidden)
            tensors["sql/replay/actions"] = torch.stack(self.replay.actions)
        meta["sql"] = {
            "rng": numpy_generator_state(self.rng), "updates": self.updates,
            "reward_stats": self.reward_stats.state_dict(),
            "optimizer": optimizer_state(self.optimizer, "sql/optimizer", tensors),
            "replay_rewards": list(self.replay.rewards), "gate": self._gate.state(),
            "seen": [[list(p), r] for p, r in self._seen.items()], "on_dev": [list(p) for p in self._on_dev],
            "stale": self._stale, "loss": self._last_loss,
        }
        return tensors, meta

    def restore_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        from rlprompt.agents.core.checkpoint import load_optimizer_state

        super().restore_state(tensors, meta)
        state, dev = meta["sql"], self.engine.device
        for name, net in (("q_net", self.q_net), ("q_target", self.q_target)):
            prefix = f"sql/{name}/"
            net.load_state_dict({k[len(prefix):]: v.to(dev) for k, v in tensors.items() if k.startswith(prefix)})
        self.generator.set_state(tensors["sql/generator"])
        self.rng.bit_generator.state = state["rng"]
        self.updates = int(state["updates"])
        self.reward_stats.load_state_dict(state["reward_stats"])
        load_optimizer_state(self.optimizer, state["optimizer"], tensors)
        self.replay = Replay(self.config.replay_size)
        if state["replay_rewards"]:
            hidden, actions = tensors["sql/replay/hidden"], tensors["sql/replay/actions"]
            self.replay.add(hidden, actions, state["replay_rewards"])
        self._start_loop()
        self._gate.restore(state["gate"])
        self._seen = {tuple(p): float(r) for p, r in state["seen"]}
        self._on_dev = {tuple(p) for p in state["on_dev"]}
        self._stale, self._last_loss = int(state["stale"]), float(state["loss"])

    def _learn(self) -> None:
        cfg, budget = self.config, self.budget
        assert budget is not None
        texts = self.task.texts("train")
        if not self.resuming:
            self._start_loop()
        gate, seen, on_dev = self._gate, self._seen, self._on_dev
        logger = progress_logger(self)
        per_prompt = min(cfg.examples_per_episode or len(texts), len(texts))  # examples each prompt is scored on
        while budget.room(per_prompt) > 0 and self._stale < STALL_ROUNDS:
            # -- 1. write a batch of prompts with the current policy -----------------------------
            prompts, hidden, actions = self.sample(cfg.batch_size)
            # -- 2. score the new ones on the training examples (per_prompt / n evaluations each) -
            new = list(dict.fromkeys(tuple(p) for p in prompts if tuple(p) not in seen))[: budget.room(per_prompt)]
            if new:
                idx = None
                if per_prompt < len(texts):
                    idx = np.sort(self.rng.choice(len(texts), size=cfg.examples_per_episode, replace=False)).tolist()
                scores = self.train_rewards([list(p) for p in new], idx)
                seen.update(zip(new, scores, strict=True))
                self.reward_stats.update(scores)
            self._stale = 0 if new else self._stale + 1
            known = [i for i, p in enumerate(prompts) if tuple(p) in seen]  # the budget may cut the last round
            if not known:
                break
            hidden, actions = hidden[known], actions[known]
            raw = torch.tensor([seen[tuple(prompts[i])] for i in known])
            # -- 3. soft Q-learning updates (on-policy batch + replay) --------------------------
            for _ in range(cfg.updates_per_round):
                self._last_loss = self.train_step(hidden, actions, raw)
            self.replay.add(hidden, actions, raw.tolist())
            # -- 4. the promising new prompts on dev, while the budget lasts --------------------
            if new:
                fresh = [p for p in new if p not in on_dev]
                chosen = gate.admit([seen[p] for p in fresh])[: budget.room(self.selection_examples)]
                if chosen:
                    picked = [fresh[i] for i in chosen]
                    on_dev.update(picked)
                    self.evaluate_dev([list(p) for p in picked], train_scores=[seen[p] for p in picked])
            self.tick(float(raw.max()))
            if logger is not None:
                for key, value in (("train/loss", self._last_loss), ("train/reward_mean", float(raw.mean())),
                                   ("train/reward_max", float(raw.max())), ("train/new_prompts", len(new)),
                                   ("budget/prompt_evals", budget.used)):
                    logger.record(key, value)
                logger.dump(self.updates)
            self.safe_point()
        if logger is not None:
            logger.close()
        self.extra.update({"candidates": len(seen), "updates": self.updates, "final_loss": self._last_loss})

    # -- saving ---------------------------------------------------------------------------

    @staticmethod
    def policy_path(path: str | Path) -> Path:
        """Where the policy of a prompt file is saved: ``x/prompt.json`` -> ``x/prompt.policy.safetensors``."""
        path = Path(path)
        return path.with_name(path.stem + ".policy.safetensors")

    def save(self, path: str | Path) -> Path:
        """Write the kept prompts (JSON, at ``path``) and the MLP (safetensors beside it).

        :param path: the prompt file, e.g. ``runs/x/prompt.json``.
        :returns: ``path``.
        """
        from safetensors.torch import save_file

        out = super().save(path)
        state = {k: v.detach().cpu().contiguous() for k, v in self.q_net.state_dict().items()}
        meta = {"format": "rlprompt-sql-policy", "model": self.engine.lm.name,
                "config": json.dumps(self.config.as_dict()), "updates": str(self.updates)}
        policy = self.policy_path(out)
        tmp = policy.with_name(policy.name + ".tmp")
        save_file(state, str(tmp), metadata=meta)
        tmp.replace(policy)
        return out

    @classmethod
    def load(cls: type[A], path: str | Path, engine: ScoringEngine, task: Task, **kwargs: Any) -> A:
        """An agent with the prompts (and, when saved, the policy) at ``path``.

        :param path: a ``prompt.json`` written by :meth:`save`.
        :param engine: the scoring engine.
        :param task: the task.
        :param kwargs: passed to the constructor (``out_dir``).
        :raises DataError: missing or malformed files, or a policy of another model.
        """
        from safetensors import SafetensorError
        from safetensors.torch import load_file, safe_open

        agent = super().load(path, engine, task, **kwargs)
        policy = cls.policy_path(path)
        if policy.exists():
            try:
                with safe_open(str(policy), framework="pt") as f:
                    meta = f.metadata() or {}
                state = load_file(str(policy), device=str(engine.device))
                agent.q_net.load_state_dict(state)
            except (SafetensorError, OSError, RuntimeError) as exc:
                raise DataError(f"cannot read the policy {str(policy)!r}: {exc}") from None
            agent.q_target.load_state_dict(agent.q_net.state_dict())
            agent.updates = int(meta.get("updates", 0))
        return agent
