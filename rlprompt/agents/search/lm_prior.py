"""LM-prior sampling: prompts drawn from the task LM's own next-token distribution.

Each candidate is ``prompt_length`` tokens sampled from the frozen task LM after a
short context (``context``: by default a one-line task description followed by a
training input, so the sample continues the input where the template puts the prompt).
The best of the samples, selected on dev, is the result: a strong baseline, since the
LM proposes fluent text it finds natural in the prompt's position. Ranking, dev checks
and the budget follow :mod:`rlprompt.agents.search.discrete`.

Budget: sampling reads no labels and costs no prompt evaluation; its LM tokens are
charged to the budget's forward tokens (and so appear in the summary's LM tokens).
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch

from rlprompt.agents.core.config import AgentConfig
from rlprompt.agents.search.config import LMPriorConfig
from rlprompt.agents.search.discrete import DiscreteSearch
from rlprompt.errors import ConfigError

if TYPE_CHECKING:
    from rlprompt.lm import ScoringEngine
    from rlprompt.tasks import Task


class LMPriorSampling(DiscreteSearch):
    """The best on dev of prompts sampled from the task LM; see the module docstring.

    :param engine: the scoring engine (its LM samples the prompts).
    :param task: the task.
    :param config: an :class:`LMPriorConfig`.
    :param out_dir: where to write the curve, the best prompt and the summary.
    """

    name: ClassVar[str] = "lm-prior"
    config_class: ClassVar[type[AgentConfig]] = LMPriorConfig
    config: LMPriorConfig

    def __init__(self, engine: ScoringEngine, task: Task, config: AgentConfig | None = None, *,
                 out_dir: str | Path | None = None) -> None:
        super().__init__(engine, task, config, out_dir=out_dir)
        if engine.masked:
            raise ConfigError(f"lm-prior sampling needs a causal LM; {engine.lm.name!r} is a masked LM")
        self.description = self.config.description or default_description(task)
        self._banned = banned_tokens(engine.tokenizer, self.engine.model.get_output_embeddings().weight.shape[0])
        self._generator = torch.Generator().manual_seed(self.config.seed)

    def _start_loop(self) -> None:
        super()._start_loop()
        self._generator = torch.Generator().manual_seed(self.config.seed)

    def checkpoint_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors, meta = super().checkpoint_state()
        tensors["lm_prior/generator"] = self._generator.get_state()
        return tensors, meta

    def restore_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        super().restore_state(tensors, meta)
        self._generator.set_state(tensors["lm_prior/generator"])

    def propose(self, n: int, rng: np.random.Generator) -> list[list[int]]:
        if n <= 0:
            return []
        train = self.task.texts("train")
        contexts = [self.config.context.format(description=self.description, example=train[i])
                    for i in rng.integers(len(train), size=n)]
        tokens, cost = sample_continuations(
            self.engine.lm, contexts, self.config.prompt_length, self._generator,
            temperature=self.config.temperature, top_k=self.config.top_k, banned=self._banned,
        )
        assert self.budget is not None
        self.budget.charge(**cost)
        return tokens.tolist()


def default_description(task: Task) -> str:
    """A one-line task description from the class names: ``"Is the text negative or positive?"``."""
    names = list(task.label_names or [v.strip() for v in task.verbalizers])
    choice = ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else names[0]
    return f"Is the text {choice}?"


def banned_tokens(tokenizer: Any, vocab_size: int) -> torch.Tensor:
    """Token ids a sampled prompt may not contain: special tokens, line breaks, ids past the tokenizer."""
    size = min(len(tokenizer), vocab_size)
    texts = tokenizer.batch_decode([[i] for i in range(size)])
    bad = set(tokenizer.all_special_ids) | {i for i, t in enumerate(texts) if "\n" in t or not t}
    bad |= set(range(size, vocab_size))
    return torch.tensor(sorted(bad), dtype=torch.long)


@torch.inference_mode()
def sample_continuations(lm: Any, contexts: list[str], length: int, generator: torch.Generator, *,
                         temperature: float = 1.0, top_k: int | None = None,
                         banned: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, int]]:
    """Sample ``length`` tokens after each context from a causal LM (one batch, key/value cache).

    :param lm: a :class:`~rlprompt.lm.FrozenLM`.
    :param contexts: N context texts (tokenised with the tokenizer's special tokens).
    :param length: tokens to sample per context.
    :param generator: the random generator (CPU).
    :param temperature: divides the logits.
    :param top_k: keep only the k most likely tokens (None: all).
    :param banned: token ids never sampled.
    :returns: token ids [N, length] (CPU) and the cost ``{"forward_tokens", "forward_calls"}``.
    """
    model, tok, device = lm.model, lm.tokenizer, lm.device
    seqs = [tok(c).input_ids for c in contexts]
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), tok.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):  # left padding: every row ends at its last context token
        ids[i, width - len(s) :] = torch.tensor(s)
        mask[i, width - len(s) :] = 1
    ids, mask = ids.to(device), mask.to(device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    # transformers >= 5 names the cache argument "cache"; older versions "past_key_values".
    cache_kw = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1)
    cost = {"forward_tokens": int(ids.numel()), "forward_calls": 1}
    sampled = []
    for step in range(length):
        logits = out.logits[:, -1].float() / temperature
        if banned is not None and banned.numel():
            logits[:, banned.to(device)] = float("-inf")
        if top_k is not None and top_k < logits.shape[-1]:
            kth = logits.topk(top_k, dim=-1).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        probs = torch.softmax(logits, -1).cpu()
        nxt = torch.multinomial(probs, 1, generator=generator).to(device)  # [N, 1]
        sampled.append(nxt)
        if step + 1 < length:
            mask = torch.cat([mask, mask.new_ones(len(seqs), 1)], 1)
            positions = positions[:, -1:] + 1
            past = getattr(out, cache_kw, None)
            past = out.past_key_values if past is None else past
            out = model(input_ids=nxt, attention_mask=mask, position_ids=positions, use_cache=True,
                        **{cache_kw: past})
            cost["forward_tokens"] += len(seqs)
            cost["forward_calls"] += 1
    return torch.cat(sampled, 1).cpu(), cost
