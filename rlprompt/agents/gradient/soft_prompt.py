"""Gradient soft prompt tuning (Lester et al. 2021) through the frozen LM.

``prompt_length`` embedding vectors are learned by gradient descent on the cross-entropy of
the verbalizer classes (or RLPrompt's gap reward, as a differentiable surrogate); the LM
stays frozen. Two placements:

- ``suffix``: at the template's ``{prompt}``, after the input ("{sentence} {prompt}",
  RLPrompt's position). The input's key/value cache is computed once without gradients;
  only the soft tokens and the template's tail run forward and backward.
- ``prefix``: before everything, Lester's (and PEFT's) placement; a full forward and
  backward per example. Export it with :meth:`SoftAgent.export_peft` and
  ``PeftModel.from_pretrained`` gives the same scores.

Budget: a step is one forward on a batch of b of the n training examples (b/n prompt
evaluations) plus its backward (b/n more); each dev evaluation costs n_dev/n (see
:mod:`rlprompt.agents.core.budget`).
The prompt is evaluated on dev before the first step and every ``eval_every`` steps; the
best on dev is kept. A NaN/infinite loss stops training and keeps the best checkpoint.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from rlprompt.agents.core.config import AgentConfig
from rlprompt.agents.core.kinds import SoftAgent
from rlprompt.agents.gradient.config import Init, Loss, Optimizer, SoftPromptConfig
from rlprompt.lm.embeddings import sample_vocab_embeddings, text_embeddings
from rlprompt.lm.engine import NonFiniteScoresError


class SoftPromptTuning(SoftAgent):
    """Soft prompt tuning by gradient descent; see the module docstring.

    :param engine: the scoring engine.
    :param task: the task (learns on ``train``, selects on ``dev``).
    :param config: a :class:`SoftPromptConfig`.
    :param out_dir: where to write the curve, the best prompt and the summary.
    """

    name: ClassVar[str] = "soft-prompt"
    supports_resume: ClassVar[bool] = True
    config_class: ClassVar[type[AgentConfig]] = SoftPromptConfig
    config: SoftPromptConfig

    def initial_prompt(self, generator: torch.Generator) -> torch.Tensor:
        """The starting soft prompt [T, H] (float32) for ``config.init``."""
        cfg = self.config
        table = self.engine.lm.input_embeddings().weight
        real = self._real_ids
        if cfg.init is Init.RANDOM:
            std = table.detach().float()[real.to(table.device)].std()
            return (torch.rand(cfg.prompt_length, self.hidden_size, generator=generator) - 0.5) * 2 * std.cpu()
        if cfg.init is Init.TEXT:
            return text_embeddings(self.engine, cfg.init_text or "", cfg.prompt_length).cpu()
        prompt = sample_vocab_embeddings(table, cfg.prompt_length, real, generator).cpu()
        if cfg.init is Init.VERBALIZERS:
            ids = [ids[0] for ids in self.engine.verbalizer_ids][: cfg.prompt_length]
            prompt[: len(ids)] = table.detach()[torch.tensor(ids, device=table.device)].float().cpu()
        return prompt

    def _optimizer(self, params: list[torch.Tensor]) -> torch.optim.Optimizer:
        cfg = self.config
        if cfg.optimizer is Optimizer.ADAFACTOR:
            from transformers.optimization import Adafactor

            return Adafactor(params, lr=cfg.effective_learning_rate, relative_step=False, scale_parameter=False,
                             warmup_init=False)
        return torch.optim.Adam(params, lr=cfg.effective_learning_rate)

    def _loss(self, logprobs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """logprobs [1, B, C] -> scalar loss."""
        if self.config.loss is Loss.GAP:
            from rlprompt.rewards import gap

            return -gap(logprobs, labels)[0] / 100.0  # rescaled: gap lies in [-180, 200]
        return F.cross_entropy(logprobs[0], labels)  # renormalises over the classes

    def _start_loop(self) -> None:
        """The loop's fresh state: the generator (init, batch order), the prompt, the optimiser."""
        cfg, engine = self.config, self.engine
        self._gen = torch.Generator().manual_seed(cfg.seed)  # seeding: all randomness from one generator
        self._soft = torch.nn.Parameter(self.initial_prompt(self._gen).to(engine.device))
        self._optimizer_obj = self._optimizer([self._soft])
        n = len(self.task.texts("train"))
        self._batch_list = self._batches(n, min(cfg.batch_size, n), self._gen)
        self._step, self._since_best = 0, 0

    def checkpoint_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        from rlprompt.agents.core.checkpoint import optimizer_state

        tensors, meta = super().checkpoint_state()
        tensors["soft_prompt/prompt"] = self._soft.detach()
        tensors["soft_prompt/generator"] = self._gen.get_state()
        meta["soft_prompt"] = {
            "step": self._step, "since_best": self._since_best, "batches": self._batch_list,
            "optimizer": optimizer_state(self._optimizer_obj, "soft_prompt/optimizer", tensors),
        }
        return tensors, meta

    def restore_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        from rlprompt.agents.core.checkpoint import load_optimizer_state

        super().restore_state(tensors, meta)
        self._start_loop()
        state = meta["soft_prompt"]
        with torch.no_grad():
            self._soft.copy_(tensors["soft_prompt/prompt"].to(self._soft.device))
        self._gen.set_state(tensors["soft_prompt/generator"])
        load_optimizer_state(self._optimizer_obj, state["optimizer"], tensors)
        self._batch_list = [[int(i) for i in b] for b in state["batches"]]
        self._step, self._since_best = int(state["step"]), int(state["since_best"])

    def _learn(self) -> None:
        cfg, budget, engine = self.config, self.budget, self.engine
        assert budget is not None
        texts, labels = self.task.texts("train"), self.task.label_tensor("train").to(engine.device)
        batch = min(cfg.batch_size, len(texts))
        steps_per_epoch = math.ceil(len(texts) / batch)
        eval_every = cfg.eval_every or steps_per_epoch
        max_steps = min(cfg.max_steps or math.inf, (cfg.epochs or math.inf) * steps_per_epoch)
        if not self.resuming:
            self._start_loop()
            self.evaluate_dev(self._soft.detach().unsqueeze(0))  # step 0: the initial prompt
            self.safe_point()
        soft, optimizer, gen = self._soft, self._optimizer_obj, self._gen
        best = self.tracker.best.dev_accuracy
        # A step costs its forward and its backward on `batch` examples; keep room for a dev evaluation.
        step_cost = 2 * budget.cost(1, batch)
        dev_cost = budget.cost(1, self.selection_examples)
        while self._step < max_steps and budget.remaining + 1e-9 >= step_cost + dev_cost:
            # -- one step: forward on a batch, backward (as many example evaluations), update --
            step = self._step
            if step % steps_per_epoch == 0 and step > 0:
                self._batch_list = self._batches(len(texts), batch, gen, self._batch_list)
            idx = self._batch_list[step % steps_per_epoch]
            try:
                logprobs = engine.score_soft(soft.unsqueeze(0), [texts[i] for i in idx],
                                             placement=cfg.placement.value, grad=True)
                loss = self._loss(logprobs, labels[idx])
            except NonFiniteScoresError:
                loss = torch.tensor(math.nan)
            if not torch.isfinite(loss):
                return self._stop_on_nan(step + 1)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            budget.charge(example_evals=len(idx), prompt_evals=1)  # the backward pass
            step = self._step = step + 1
            self.extra["steps"] = step
            self.tick(loss.item())
            # -- dev evaluation, best checkpoint, early stopping -------------------------
            if step % eval_every == 0 or step == max_steps or budget.remaining + 1e-9 < step_cost + dev_cost:
                try:
                    self.evaluate_dev(soft.detach().unsqueeze(0), train_scores=[-loss.item()])
                except NonFiniteScoresError:
                    return self._stop_on_nan(step)
                self._since_best = 0 if self.tracker.best.dev_accuracy > best else self._since_best + 1
                best = self.tracker.best.dev_accuracy
                if cfg.patience is not None and self._since_best >= cfg.patience:
                    return self.stop("early-stopped", f"no better dev accuracy in {cfg.patience} evaluations "
                                                      f"(stopped at step {step})")
            self.safe_point()
        return None

    def _batches(self, n: int, size: int, gen: torch.Generator,
                 previous: list[list[int]] | None = None) -> list[list[int]]:
        """This epoch's batches of example indices.

        By default the examples are split into batches once (with the seed) and each
        epoch visits those batches in a new order: each batch's input cache is then
        computed once and reused (suffix placement), where regrouping the examples every
        epoch (``reshuffle=True``) rebuilds the caches at every step, several times the
        compute of the step itself.
        """
        if previous is None or self.config.reshuffle:
            order = torch.randperm(n, generator=gen).tolist()
            return [order[i : i + size] for i in range(0, n, size)]
        return [previous[i] for i in torch.randperm(len(previous), generator=gen).tolist()]

    def _stop_on_nan(self, step: int) -> None:
        best = self.tracker.best
        self.stop(
            "non-finite-loss",
            f"the loss became NaN/infinite at step {step} (learning rate {self.config.effective_learning_rate:g} is "
            f"probably too high; try a smaller lr); training stopped and the best checkpoint "
            f"(dev accuracy {best.dev_accuracy:.4f}) is kept",
        )
