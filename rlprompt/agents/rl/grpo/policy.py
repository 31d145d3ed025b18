"""The policy LM's plumbing: which LMs can be a policy, a weight-sharing copy for LoRA, the
tokens that end a written prompt, and the TRL callback that keeps training inside the budget."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from rlprompt.agents.core.config import STALL_ROUNDS
from rlprompt.errors import ConfigError, DataError
from rlprompt.lm.vocabulary import token_texts

if TYPE_CHECKING:
    from rlprompt.lm.loading import FrozenLM


def check_can_generate(lm: FrozenLM, what: str) -> None:
    """Refuse a policy LM that cannot write text left to right.

    :param lm: the candidate policy.
    :param what: how to name it in the message.
    :raises ConfigError: a masked LM, a model without a generating head, or a tokenizer without EOS.
    """
    model = lm.model
    if lm.kind != "causal":
        raise ConfigError(f"{what} {lm.name!r} is a {lm.kind} LM and cannot generate a prompt; "
                          "the policy must be a causal LM (set policy_model to one, e.g. smollm2-135m)")
    can = getattr(model, "can_generate", None)
    if not callable(getattr(model, "generate", None)) or (callable(can) and not can()):
        raise ConfigError(f"{what} {lm.name!r} ({type(model).__name__}) cannot generate text: it has no "
                          "language-model head; use a causal LM (e.g. ...ForCausalLM)")
    if lm.tokenizer.eos_token_id is None:
        raise ConfigError(f"{what} {lm.name!r} has a tokenizer without an EOS token, so a written prompt "
                          "cannot end; set tokenizer.eos_token")


def shared_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A new module tree whose parameters and buffers are the same tensors as ``model``'s.

    Adapters (LoRA) can then be put on the copy without touching the original modules,
    while the weights stay shared (no memory is copied).
    """
    memo: dict[int, Any] = {id(t): t for t in (*model.parameters(), *model.buffers())}
    return copy.deepcopy(model, memo)


def line_break_ids(tokenizer: Any, vocab_size: int) -> list[int]:
    """Token ids whose text holds a line break (a written prompt ends there)."""
    return [i for i, t in enumerate(token_texts(tokenizer, min(len(tokenizer), vocab_size))) if "\n" in t]


def budget_callback(agent: Any, logger: Any) -> Any:
    """TRL's TrainerCallback that stops at the budget (or after STALL_ROUNDS steps without a new
    prompt) and writes TRL's metrics into the agent's logger."""
    from transformers import TrainerCallback

    class BudgetCallback(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            agent.steps = int(state.global_step)
            assert agent.budget is not None
            if agent.budget.room(agent.train_batch_size) == 0 or agent.stale >= STALL_ROUNDS:
                control.should_training_stop = True
            return control

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None,
                   **kwargs: Any) -> Any:
            if logger is None or not logs:
                return control
            for key, value in logs.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    logger.record(f"train/{key}", value)
            assert agent.budget is not None
            logger.record("budget/prompt_evals", agent.budget.used)
            logger.dump(int(state.global_step))
            return control

    return BudgetCallback()


def save_policy(policy: torch.nn.Module, folder: Path, *, lora: bool, meta: dict[str, Any]) -> None:
    """Write the policy into ``folder``: LoRA adapters in PEFT's format (``adapter_model.safetensors``
    and ``adapter_config.json``) or the full model as ``model.safetensors``, and ``policy.json``."""
    from safetensors.torch import save_model

    from rlprompt.io import write_json

    folder.mkdir(parents=True, exist_ok=True)
    if lora:
        policy.save_pretrained(str(folder))  # type: ignore[operator]
    else:
        save_model(policy, str(folder / "model.safetensors"), metadata={"format": "rlprompt-policy-lm"})
    write_json(folder / "policy.json", {"format": "rlprompt-policy-lm", **meta})


def load_policy(policy: torch.nn.Module, folder: Path, *, lora: bool, device: str) -> dict[str, Any]:
    """Load weights saved by :func:`save_policy` into ``policy``; returns ``policy.json``.

    :raises DataError: missing or malformed files, or weights that do not fit the policy.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file, load_model

    try:
        meta = json.loads((folder / "policy.json").read_text(encoding="utf-8"))
        if lora:
            from peft import set_peft_model_state_dict

            state = load_file(str(folder / "adapter_model.safetensors"), device="cpu")
            result = set_peft_model_state_dict(policy, state)
            unfit = [k for k in getattr(result, "unexpected_keys", []) if "lora" in k]
            if unfit:
                raise RuntimeError(f"adapter weights that fit no layer: {unfit[:3]}")
        else:
            load_model(policy, str(folder / "model.safetensors"), device=device)
    except (SafetensorError, OSError, RuntimeError, json.JSONDecodeError, ValueError) as exc:
        raise DataError(f"cannot read the policy {str(folder)!r}: {exc}") from None
    return meta
