"""Prompts grown one token (or soft vector) at a time on fixed examples, for environments.

Made by :meth:`~rlprompt.lm.engine.ScoringEngine.start`; each :meth:`PromptState.extend`
appends one position to every prompt and reads the classes out, at one position per
prompt per example (plus the template's tail, read but not kept).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from rlprompt.errors import ConfigError
from rlprompt.lm.packing import HiddenWithLogits, PackedCache, QueryBuilder
from rlprompt.lm.readout import check_finite

if TYPE_CHECKING:
    from rlprompt.lm.engine import ScoringEngine


class PromptState:
    """Prompts being grown one token (or soft vector) at a time on fixed examples.

    Made by :meth:`ScoringEngine.start`. Each example row keeps its cached input and
    the packed tokens of all P prompts, so :meth:`extend` costs one position per
    prompt per example (plus the template's tail, which is read but not kept) and
    never copies the input cache per prompt. The state owns its key/value buffer: each
    step writes its positions there in place (tails and continuations are overwritten by
    the next step), and the buffer is regrown (by half) only when it is full.
    """

    ROOM_STEPS = 8
    """Steps of room the buffer starts with after the inputs (beyond them it regrows)."""

    def __init__(self, engine: ScoringEngine, base: PackedCache, n_prompts: int) -> None:
        self.engine = engine
        self.n_prompts = n_prompts
        self.n_examples = base.n
        self.tokens: list[list[int]] = [[] for _ in range(n_prompts)]
        self.hidden: torch.Tensor | None = None
        self._state = base
        self._tail = engine.template_tokens.tail(prompt_empty=False)
        continued = engine.readout.continued
        with torch.inference_mode(), engine._timed():
            b = QueryBuilder(n_prompts)
            empty_tail = engine.template_tokens.tail(prompt_empty=True)
            read = [b.add_suffix(p, b.child(p + 1), empty_tail, 0, continued) for p in range(n_prompts)]
            self.logprobs = self._run(b, read, n_keep=0)
            engine.counters.prompt_evals += n_prompts
            engine.counters.example_evals += n_prompts * self.n_examples

    @property
    def length(self) -> int:
        """Positions appended so far (the same for every prompt)."""
        return len(self.tokens[0])

    def _run(self, b: QueryBuilder, read: list[int], n_keep: int, embeds: torch.Tensor | None = None,
             want_hidden: bool = False) -> torch.Tensor:
        """Forward the queued positions; keep the first ``n_keep`` in the state; [P, E, C]."""
        eng = self.engine
        q = b.build(eng.device)
        if q.group.numel() == 0:
            hidden = self._state.last_hidden.new_zeros(self.n_examples, 0, self._state.last_hidden.shape[-1])
            return eng.readout.read(self._state, hidden, q, read)
        if embeds is not None:
            table = eng.lm.input_embeddings()
            q.embeds = torch.cat([embeds.to(table.weight.dtype), table(q.ids[n_keep:])])
        hidden, _ = eng._packed_forward(self._state, q)
        scores = eng.readout.read(self._state, hidden, q, read)
        if n_keep:
            # Keep the new prompt positions; tails and continuations were read, not kept.
            self._state = self._state.keep(q, n_keep)
            if want_hidden:
                hid = hidden.hidden if isinstance(hidden, HiddenWithLogits) else hidden
                self.hidden = hid[:, :n_keep].transpose(0, 1).float()  # [P, E, H]
        return scores

    def extend(
        self,
        tokens: Sequence[int] | torch.Tensor | None = None,
        *,
        embeds: torch.Tensor | None = None,
        want_hidden: bool = False,
    ) -> torch.Tensor:
        """Append one position to every prompt and read the classes out.

        :param tokens: P token ids, one per prompt; or None with ``embeds``.
        :param embeds: P soft token embeddings [P, H] (a soft prompt grown per step).
        :param want_hidden: keep the LM's last hidden state of each new position in
            :attr:`hidden` ([P, E, H]), for policies that observe what the LM sees.
        :returns: class log-probs [P, E, C] of the grown prompts.
        """
        eng = self.engine
        if (tokens is None) == (embeds is None):
            raise ConfigError("extend takes either tokens or embeds (one per prompt)")
        if tokens is not None:
            ids = [int(t) for t in (tokens.tolist() if isinstance(tokens, torch.Tensor) else tokens)]
            if len(ids) != self.n_prompts:
                raise ConfigError(f"extend needs {self.n_prompts} tokens (one per prompt), got {len(ids)}")
            eng.prompt_tokens(ids)  # vocabulary range check
        else:
            hidden_size = eng.lm.input_embeddings().embedding_dim
            if embeds.dim() != 2 or tuple(embeds.shape) != (self.n_prompts, hidden_size):
                raise ConfigError(
                    f"extend needs embeds of shape [{self.n_prompts}, {hidden_size}], got {list(embeds.shape)}"
                )
            ids = [0] * self.n_prompts  # placeholders; the embeddings are used
        input_len = int(self._state.lengths.max())
        eng._check_length(input_len + self.length + 1 + len(self._tail), "input plus prompt")
        continued = eng.readout.continued
        with torch.inference_mode(), eng._timed():
            b = QueryBuilder(self.n_prompts)
            step = self.length
            for p, t in enumerate(ids):
                b.add(t, p + 1, step)
            read = []
            for p in range(self.n_prompts):
                b.read_if_empty = p  # no tail: read at the prompt's new position
                tail_group = b.child(p + 1) if self._tail else p + 1
                read.append(b.add_suffix(p, tail_group, list(self._tail), step + 1, continued))
            self.logprobs = self._run(b, read, self.n_prompts, embeds, want_hidden)
            for p, t in enumerate(ids):
                self.tokens[p].append(t)
            eng.counters.prompt_evals += self.n_prompts
            eng.counters.example_evals += self.n_prompts * self.n_examples
        return check_finite(self.logprobs, eng.lm.name)

    def text(self, p: int = 0) -> str:
        """The text of prompt ``p`` so far (soft positions read as token 0)."""
        return self.engine.decode(self.tokens[p])
