"""A prompt-writing policy LM trained with TRL's GRPO or RLOO (in the line of PRL, 2025).

## The policy

A small causal LM (by default the task LM's own weights: SmolLM2-135M) reads a
*meta-prompt* and writes a prompt: up to ``prompt_length`` tokens, ending early at a line
break or EOS. The default meta-prompt is a task description and a random training input
(``"{description}\\n\\n{example}"``), so the policy starts as LM-prior sampling
(:class:`~rlprompt.agents.search.lm_prior.LMPriorSampling`): it continues the input where the
template ``"{sentence} {prompt}"`` puts the prompt. ``{examples}`` adds a few labelled
training examples.

With ``lora=True`` (default) the policy is the task LM's module tree with LoRA adapters
(PEFT): its base weights are *the same tensors* as the frozen task LM's (shared, never
copied, never trained), so only the adapters cost memory. With ``lora=False`` the policy
is a full trainable float32 copy. ``policy_model`` names another causal LM instead.

## The reward

TRL calls the reward function with each group of written prompts. The text of each
(its first line, stripped) becomes a discrete prompt in the task LM's tokens, with the
template's leading space (:meth:`~rlprompt.lm.ScoringEngine.prompt_tokens`), and is
scored through the scoring engine on the training examples with the task's reward
(the same registry as every agent: a user's reward plugs in unchanged).

## Budget

Each new prompt scored on the training examples costs one prompt evaluation; a prompt
written again reuses its reward (no cost). When the budget runs out mid-batch the rest of
the batch is not scored (it gets the batch's mean reward: no advantage) and training
stops at the end of the step (a ``TrainerCallback``). Prompts whose training reward
enters the running top ``dev_top_k`` are scored on dev (one more each) for best-on-dev
selection. The policy's own tokens are charged as LM tokens: its generation and its loss
forward as forward tokens, the loss backward as backward tokens.

## Logs and saving

``out_dir/curve.csv`` (dev evaluations) and ``logs/progress.csv`` (TRL's metrics per step as
``train/...`` plus ``budget/prompt_evals``). :meth:`GRPOAgent.save` writes the kept prompts as
JSON and the policy in ``<name>.policy/`` (:func:`~rlprompt.agents.rl.grpo.policy.save_policy`).
"""

from __future__ import annotations

import copy
import math
import statistics
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import numpy as np
import torch

from rlprompt.agents.core.config import STALL_ROUNDS, AgentConfig
from rlprompt.agents.core.kinds import DiscreteAgent
from rlprompt.agents.core.logs import progress_logger
from rlprompt.agents.core.tracking import TopKGate
from rlprompt.agents.rl.grpo.config import Algorithm, GRPOAgentConfig, RLOOAgentConfig
from rlprompt.agents.rl.grpo.policy import (
    budget_callback,
    check_can_generate,
    line_break_ids,
    load_policy,
    save_policy,
    shared_copy,
)
from rlprompt.tasks.generation import input_text

__all__ = ["Algorithm", "GRPOAgent", "GRPOAgentConfig", "RLOOAgent", "RLOOAgentConfig"]

if TYPE_CHECKING:
    from rlprompt.lm import FrozenLM, ScoringEngine
    from rlprompt.tasks import Task

A = TypeVar("A", bound="GRPOAgent")
"""Training stops after this many steps in a row without a new prompt (the policy has converged)."""


class GRPOAgent(DiscreteAgent):
    """A policy LM that writes prompts, trained with TRL's GRPO (or RLOO); see the module docstring.

    :param engine: the scoring engine (its LM is the frozen task LM).
    :param task: the task: learns on ``train``, selects on ``dev``.
    :param config: a :class:`GRPOAgentConfig` (or :class:`RLOOAgentConfig`).
    :param out_dir: where to write the curve, the logs, the best prompt, the policy and the summary.
    :param policy_lm: a causal LM to train as the policy (default: ``config.policy_model``, or the
        task LM's own weights).
    :raises ConfigError: a policy that cannot generate (a masked LM, no LM head, no EOS token).
    """

    name: ClassVar[str] = "grpo"
    supports_generation: ClassVar[bool] = True
    config_class: ClassVar[type[AgentConfig]] = GRPOAgentConfig
    config: GRPOAgentConfig
    space: ClassVar[str] = "discrete"

    def __init__(self, engine: ScoringEngine, task: Task, config: AgentConfig | None = None, *,
                 out_dir: str | Path | None = None, policy_lm: FrozenLM | None = None) -> None:
        super().__init__(engine, task, config, out_dir=out_dir)
        from rlprompt.agents.search.lm_prior import default_description

        cfg = self.config
        if policy_lm is None and cfg.policy_model is not None:
            from rlprompt.lm import load_lm

            policy_lm = load_lm(cfg.policy_model, device=engine.device)
        source = policy_lm if policy_lm is not None else engine.lm
        check_can_generate(source, "the task LM (the default policy)" if policy_lm is None else "policy model")
        self.policy_name = source.name
        self.description = cfg.description or default_description(task)
        self.label_names = [] if self.generation else list(task.label_names or [v.strip() for v in task.verbalizers])
        # -- seeding: the agent's own draws (meta-prompts, training batches) ---------------------
        self.rng = np.random.default_rng(cfg.seed)
        self.train_batch_size = min(cfg.examples_per_episode or 10**9, len(task.texts("train")))  # per prompt
        # -- the policy ------------------------------------------------------------------------
        tok = copy.deepcopy(source.tokenizer)  # the engine's tokenizer keeps its own settings
        tok.padding_side, tok.truncation_side = "left", "left"
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        self.policy_tokenizer = tok
        with torch.random.fork_rng(devices=[]):  # LoRA's init from the seed; the global RNG stays as it was
            torch.manual_seed(cfg.seed)
            self.policy = self._build_policy(source)
        # -- the state of learning ---------------------------------------------------------------
        self.steps = 0
        self.stale = 0
        self.seen: dict[tuple[int, ...], float] = {}
        self.history: list[dict[str, float]] = []
        self._meta_lengths: dict[str, int] = {}
        self._gate = TopKGate(cfg.dev_top_k)
        self._reward: Any = None

    # -- the policy ---------------------------------------------------------------------------

    def _build_policy(self, source: FrozenLM) -> torch.nn.Module:
        cfg, tok = self.config, self.policy_tokenizer
        base = source.model
        if cfg.lora:
            from peft import LoraConfig, get_peft_model

            model = shared_copy(base)
        else:
            model = copy.deepcopy(base).float()
            model.requires_grad_(True)
        vocab = int(model.get_output_embeddings().weight.shape[0])
        # A written prompt ends at EOS or at a line break; special tokens and ids past the
        # tokenizer are never written.
        self.stop_ids = list(dict.fromkeys([int(tok.eos_token_id), *line_break_ids(tok, vocab)]))
        stops = set(self.stop_ids)
        self.suppress_ids = sorted({int(i) for i in tok.all_special_ids if int(i) not in stops}
                                   | set(range(len(tok), vocab)))
        text_config = model.config.get_text_config()  # the copy's own config: the task LM's is untouched
        text_config.eos_token_id, text_config.pad_token_id = int(tok.eos_token_id), tok.pad_token_id
        if tok.bos_token_id is not None:
            text_config.bos_token_id = model.generation_config.bos_token_id = tok.bos_token_id
        model.generation_config.eos_token_id = self.stop_ids
        model.generation_config.pad_token_id = tok.pad_token_id
        if cfg.lora:
            lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=0.0, target_modules="all-linear",
                              task_type="CAUSAL_LM")
            with warnings.catch_warnings():  # PEFT reads a transformers attribute that v5 renamed
                warnings.filterwarnings("ignore", r".*is_gradient_checkpointing.*", FutureWarning)
                model = get_peft_model(model, lora)
        return model

    def meta_prompts(self, n: int) -> list[str]:
        """``n`` meta-prompts, each with its own random training input(s) (the agent's rng)."""
        cfg = self.config
        train = self.task.train
        out = []
        for _ in range(n):
            example = input_text(train[int(self.rng.integers(len(train)))])
            shots = [train[int(i)] for i in self.rng.choice(len(train), size=min(cfg.n_shots, len(train)),
                                                            replace=False)]
            examples = "\n".join(f"{input_text(e)} -> {self._shown_target(e)}" for e in shots)
            out.append(cfg.meta_prompt.format(description=self.description, example=example, examples=examples))
        return out

    def completion_text(self, ids: Sequence[int]) -> str:
        """The prompt text of a completion: up to the first stop token, first line, stripped."""
        ids = [int(i) for i in ids]
        stops = set(self.stop_ids)
        cut = next((k for k, t in enumerate(ids) if t in stops), len(ids))
        text = self.policy_tokenizer.decode(ids[:cut], skip_special_tokens=True)
        return text.split("\n", 1)[0].strip()

    def prompt_of(self, text: str) -> tuple[int, ...]:
        """The task LM's tokens of a written prompt (with the template's leading space)."""
        return tuple(self.engine.prompt_tokens(text)) if text else ()

    @torch.no_grad()
    def sample_prompts(self, n: int, *, greedy: bool = False, metas: Sequence[str] | None = None) -> list[str]:
        """Write ``n`` prompts with the current policy (not charged to the budget).

        :param n: prompts to write.
        :param greedy: take the most likely token instead of sampling.
        :param metas: the meta-prompts to write after (default: ``n`` fresh ones).
        :returns: the prompt texts.
        """
        cfg, tok = self.config, self.policy_tokenizer
        device = next(self.policy.parameters()).device
        metas = self.meta_prompts(n) if metas is None else list(metas)
        enc = tok(metas, return_tensors="pt", padding=True).to(device)
        was_training = self.policy.training
        self.policy.eval()
        sampling = {} if greedy else {"temperature": cfg.temperature, "top_p": cfg.top_p, "top_k": cfg.top_k or 0}
        out = self.policy.generate(**enc, max_new_tokens=cfg.prompt_length, min_new_tokens=cfg.min_prompt_length,
                                   do_sample=not greedy, eos_token_id=self.stop_ids, pad_token_id=tok.pad_token_id,
                                   suppress_tokens=self.suppress_ids or None, **sampling)
        self.policy.train(was_training)
        return [self.completion_text(row.tolist()) for row in out[:, enc.input_ids.shape[1]:]]

    # -- the reward TRL calls -----------------------------------------------------------------

    def _shown_target(self, example: Any) -> str:
        """What a shot shows after its input: the class name, or a generation task's first reference."""
        if self.generation:
            return example.references[0] if example.references else "?"
        return self.label_names[example.label]

    def _train_batch(self) -> list[int] | None:
        """The training examples a round's new prompts are scored on (None: all of them)."""
        n = len(self.task.texts("train"))
        k = self.config.examples_per_episode
        if k is not None and k < n:
            return np.sort(self.rng.choice(n, size=k, replace=False)).tolist()
        return None

    def _charge_policy(self, metas: Sequence[str], completion_ids: Sequence[Sequence[int]]) -> None:
        """Charge the policy's tokens: generation and loss forward (forward), loss backward."""
        assert self.budget is not None
        tokens = 0
        for meta, comp in zip(metas, completion_ids, strict=True):
            if meta not in self._meta_lengths:
                self._meta_lengths[meta] = len(self.policy_tokenizer(meta).input_ids)
            tokens += self._meta_lengths[meta] + len(comp)
        passes = self.config.num_iterations
        self.budget.charge(forward_tokens=tokens * (1 + passes), backward_tokens=tokens * passes,
                           forward_calls=1 + self.config.prompt_length + passes)

    def reward_completions(self, metas: Sequence[str], completion_ids: Sequence[Sequence[int]]) -> list[float]:
        """Rewards of a batch of written prompts (TRL's reward function calls this).

        New prompts are scored on the training examples (one prompt evaluation each, while
        the budget lasts); prompts written before reuse their reward; prompts the budget
        cannot pay for get the batch's mean reward. The new prompts that enter the running
        top ``dev_top_k`` are offered for best-on-dev selection.

        :param metas: the meta-prompt of each completion.
        :param completion_ids: the policy's tokens of each completion.
        :returns: one reward per completion.
        """
        budget = self.budget
        assert budget is not None
        self._charge_policy(metas, completion_ids)
        prompts = [self.prompt_of(self.completion_text(ids)) for ids in completion_ids]
        new = list(dict.fromkeys(p for p in prompts if p not in self.seen))
        idx = self._train_batch()
        paid = new[: budget.room(len(self.task.texts("train")) if idx is None else len(idx))]
        if paid:
            scores = self.train_rewards([list(p) for p in paid], idx)
            self.seen.update(zip(paid, (float(s) for s in scores), strict=True))
        self.stale = 0 if new else self.stale + 1
        known = [self.seen[p] for p in prompts if p in self.seen]
        neutral = statistics.fmean(known) if known else 0.0
        rewards = [self.seen.get(p, neutral) for p in prompts]
        # -- the promising new prompts on dev, while the budget lasts ----------------------------
        chosen = self._gate.admit([self.seen[p] for p in paid])[: budget.room(self.selection_examples)]
        if chosen:
            picked = [paid[i] for i in chosen]
            self.evaluate_dev([list(p) for p in picked], train_scores=[self.seen[p] for p in picked])
        self.history.append({"step": self.steps, "reward_mean": statistics.fmean(rewards),
                             "reward_max": max(rewards), "new_prompts": len(paid)})
        self.tick(max(rewards))
        return rewards

    # -- the loop -----------------------------------------------------------------------------

    def _trainer_args(self, folder: Path) -> Any:
        from trl import GRPOConfig, RLOOConfig

        cfg, budget = self.config, self.budget
        assert budget is not None
        on_cuda = self.engine.device.type == "cuda"
        bf16 = bool(cfg.bf16) and (not on_cuda or torch.cuda.is_bf16_supported())
        trainer_config = GRPOConfig if cfg.algorithm is Algorithm.GRPO else RLOOConfig
        generation: dict[str, Any] = {"min_new_tokens": cfg.min_prompt_length}
        if self.suppress_ids:
            generation["suppress_tokens"] = self.suppress_ids
        # Each step writes at least one new prompt or counts as stale, so the budget (or the
        # stale limit) ends training well before this bound.
        max_steps = cfg.max_steps or math.ceil(budget.limit * len(self.task.texts("train"))) * (STALL_ROUNDS + 1)
        return trainer_config(
            output_dir=str(folder), seed=cfg.seed, data_seed=cfg.seed, use_cpu=not on_cuda,
            bf16=bf16, fp16=False, gradient_checkpointing=cfg.gradient_checkpointing,
            per_device_train_batch_size=cfg.num_generations * cfg.prompts_per_step, gradient_accumulation_steps=1,
            steps_per_generation=1, num_generations=cfg.num_generations, max_completion_length=cfg.prompt_length,
            temperature=cfg.temperature, top_p=cfg.top_p, top_k=cfg.top_k or 0, generation_kwargs=generation,
            learning_rate=cfg.effective_learning_rate, lr_scheduler_type="constant", warmup_steps=0,
            max_grad_norm=cfg.max_grad_norm,
            beta=cfg.beta, epsilon=cfg.epsilon, num_iterations=cfg.num_iterations, max_steps=max_steps,
            logging_steps=1, save_strategy="no", report_to="none", disable_tqdm=True, log_completions=False,
            dataloader_num_workers=0, remove_unused_columns=False,
        )

    def _learn(self) -> None:
        from datasets import Dataset
        from transformers import PrinterCallback, ProgressCallback
        from trl import GRPOTrainer, RLOOTrainer

        cfg = self.config
        self.stale = 0
        rows = max(64, 4 * cfg.prompts_per_step)
        dataset = Dataset.from_dict({"prompt": self.meta_prompts(rows)})
        agent = self

        def task_reward(prompts: list[str], completions: list[str], completion_ids: list[list[int]],
                        **kwargs: Any) -> list[float]:
            return agent.reward_completions(prompts, completion_ids)

        logger = progress_logger(self)
        trainer_class = GRPOTrainer if cfg.algorithm is Algorithm.GRPO else RLOOTrainer
        try:
            with tempfile.TemporaryDirectory(prefix="rlprompt-trl-") as folder, warnings.catch_warnings():
                # transformers 5 renames gradient_checkpointing; TRL still sets it (not ours to fix).
                warnings.filterwarnings("ignore", r".*gradient_checkpointing.*", FutureWarning)
                trainer = trainer_class(
                    model=self.policy, reward_funcs=[task_reward], args=self._trainer_args(Path(folder)),
                    train_dataset=dataset, processing_class=self.policy_tokenizer,
                    callbacks=[budget_callback(self, logger)],
                )
                for noisy in (PrinterCallback, ProgressCallback):  # rlprompt shows its own progress
                    trainer.remove_callback(noisy)
                trainer.train()
        finally:
            if logger is not None:
                logger.close()
        if self.stale >= STALL_ROUNDS and self.budget is not None and self.budget.room(self.train_batch_size):
            self.message = (f"stopped: no new prompt in {STALL_ROUNDS} steps; spent {self.budget.used:.1f} of "
                            f"{self.budget.limit} prompt evaluations")
            self.status = "early-stopped"
        last = self.history[-5:]
        self.extra.update({"algorithm": cfg.algorithm.value, "policy": self.policy_name, "lora": cfg.lora,
                           "steps": self.steps, "candidates": len(self.seen),
                           "final_reward_mean": statistics.fmean(h["reward_mean"] for h in last) if last
                           else math.nan})

    # -- saving -------------------------------------------------------------------------------

    @staticmethod
    def policy_path(path: str | Path) -> Path:
        """Where the policy of a prompt file is saved: ``x/prompt.json`` -> ``x/prompt.policy/``."""
        path = Path(path)
        return path.with_name(path.stem + ".policy")

    def save(self, path: str | Path) -> Path:
        """Write the kept prompts (JSON, at ``path``) and the policy (a folder beside it).

        :param path: the prompt file, e.g. ``runs/x/prompt.json``.
        :returns: ``path``.
        """
        out = super().save(path)
        save_policy(self.policy, self.policy_path(out), lora=self.config.lora, meta={
            "agent": self.name, "algorithm": self.config.algorithm.value, "policy": self.policy_name,
            "lora": self.config.lora, "steps": self.steps,
        })
        return out

    @classmethod
    def load(cls: type[A], path: str | Path, engine: ScoringEngine, task: Task, **kwargs: Any) -> A:
        """An agent with the prompts (and, when saved, the policy) at ``path``.

        :param path: a ``prompt.json`` written by :meth:`save`.
        :param engine: the scoring engine.
        :param task: the task.
        :param kwargs: passed to the constructor (``out_dir``, ``policy_lm``).
        :raises DataError: missing or malformed files, or a policy that does not fit.
        """
        agent = super().load(path, engine, task, **kwargs)
        folder = cls.policy_path(path)
        if folder.is_dir():
            meta = load_policy(agent.policy, folder, lora=agent.config.lora, device=str(engine.device))
            agent.steps = int(meta.get("steps", 0))
        return agent


class RLOOAgent(GRPOAgent):
    """The prompt-writing policy LM trained with TRL's RLOO (REINFORCE leave-one-out).

    Same parameters as :class:`GRPOAgent`; its config is an :class:`RLOOAgentConfig`.
    """

    name: ClassVar[str] = "rloo"
    config_class: ClassVar[type[AgentConfig]] = RLOOAgentConfig
