"""Generation through the engine: the frozen LM writes a completion for every (prompt, input).

:meth:`GenerationEngine.generate` runs text that rows share once. With the prompt after the
input (``"{input} {prompt}"``) each input's tokens are run once and their key/value cache is
shared by every prompt; with the prompt first (RLPrompt's ``'{prompt} "{input}" "'``) each
prompt's tokens, with the template's head, are run once and shared by every input. Each row
then runs its own remaining tokens, laid out ``[shared][padding][own]`` (the padding masked,
positions continuing right after the shared part), and decoding grows every row by one token
per forward until each has stopped: the end-of-sequence token, a stop string (the closing
quote of RLPrompt's template, a newline) or ``max_new_tokens``. ``use_cache=False`` runs
every full sequence on its own (the reference the shared path is tested against).

Shapes: P prompts, E inputs, S samples per input, R rows (P x E x S, in chunks), V vocabulary.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from rlprompt import stop
from rlprompt.errors import ConfigError
from rlprompt.lm.counters import EngineCounters
from rlprompt.lm.engine_core import EngineCore, Prompt
from rlprompt.lm.loading import FrozenLM
from rlprompt.lm.padding import pad_left
from rlprompt.lm.sampling import draw
from rlprompt.lm.template import Template
from rlprompt.lm.template_tokens import TemplateTokens
from rlprompt.lm.transformers_compat import DecoderForward, cache_tensors, make_cache

GENERATION_TEMPLATE = '{prompt} "{input}" "'
"""RLPrompt's style-transfer template: the LM continues after the opening quote."""

MAX_NEW_TOKENS = 1024
"""The most tokens one completion may ask for (beyond, a setting is surely a mistake)."""

LENGTH_SLACK = 4
"""Tokens a completion may have beyond ``length_ratio`` times its input's (see :class:`GenerationSettings`)."""


@dataclass(frozen=True)
class GenerationSettings:
    """How the frozen task LM writes.

    :param max_new_tokens: the most tokens per completion (1..:data:`MAX_NEW_TOKENS`).
    :param greedy: take the most likely token at each step (then ``num_samples`` is 1).
    :param temperature: divides the logits before sampling (positive; sampling only).
    :param top_k: sample among the k most likely tokens only (None: all).
    :param stop: strings that end a completion (cut before them), e.g. ``('"', "\\n")``.
    :param num_samples: completions per (prompt, input); a task keeps the best by reward
        (RLPrompt samples several rewrites and keeps the best).
    :param length_ratio: also end a completion after ``length_ratio x`` its input's tokens plus
        :data:`LENGTH_SLACK` (a rewrite far longer than its input is a ramble; without a cap one
        such row keeps the whole batch decoding); None: ``max_new_tokens`` only.
    :raises ConfigError: a value out of range.
    """

    max_new_tokens: int = 32
    greedy: bool = True
    temperature: float = 1.0
    top_k: int | None = None
    stop: tuple[str, ...] = field(default=('"', "\n"))
    num_samples: int = 1
    length_ratio: float | None = None

    def __post_init__(self) -> None:
        n = self.max_new_tokens
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_NEW_TOKENS:
            raise ConfigError(f"max_new_tokens must be an integer in 1..{MAX_NEW_TOKENS}, got {n!r}")
        t = self.temperature
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not t > 0 or t != t or t == float("inf"):
            raise ConfigError(f"temperature must be a positive number, got {t!r}")
        if self.top_k is not None and (isinstance(self.top_k, bool) or not isinstance(self.top_k, int)
                                       or self.top_k < 1):
            raise ConfigError(f"top_k must be a positive integer or None, got {self.top_k!r}")
        s = self.num_samples
        if isinstance(s, bool) or not isinstance(s, int) or s < 1:
            raise ConfigError(f"num_samples must be a positive integer, got {s!r}")
        if self.greedy and s > 1:
            raise ConfigError(f"num_samples={s} with greedy decoding writes {s} identical completions; "
                              "sample instead (greedy=False) or keep num_samples=1")
        if isinstance(self.stop, str) or any(not isinstance(x, str) or not x for x in self.stop):
            raise ConfigError(f"stop must be a sequence of non-empty strings, got {self.stop!r}")
        object.__setattr__(self, "stop", tuple(self.stop))
        r = self.length_ratio
        if r is not None and (isinstance(r, bool) or not isinstance(r, (int, float)) or not 0 < r < 1000):
            raise ConfigError(f"length_ratio must be a positive number or None, got {r!r}")

    def limit(self, input_tokens: int) -> int:
        """The most tokens a completion of an input of this many tokens may have."""
        if self.length_ratio is None:
            return self.max_new_tokens
        return min(self.max_new_tokens, int(self.length_ratio * input_tokens) + LENGTH_SLACK)


@dataclass
class _Row:
    """One completion being written: its group (shared tokens), own tokens and output slot."""

    group: int
    own: list[int]
    slot: tuple[int, int, int]  # (prompt, input, sample)
    limit: int  # the most tokens it may write


class GenerationEngine(EngineCore):
    """Writes completions of the frozen LM for prompts on inputs; see the module docstring.

    :param lm: the frozen causal LM.
    :param template: where input and prompt go (``{input}`` or ``{sentence}``, and ``{prompt}``);
        default :data:`GENERATION_TEMPLATE`.
    :param settings: the default :class:`GenerationSettings` of :meth:`generate`.
    :param max_rows: completions written side by side in one batch (memory).
    :param max_batch_tokens: bound on rows x positions of the full-vocabulary forward of
        :meth:`text_logprobs`.
    """

    def __init__(self, lm: FrozenLM, template: str | Template | None = None, *,
                 settings: GenerationSettings | None = None, max_rows: int = 128,
                 max_batch_tokens: int = 4096) -> None:
        if lm.kind == "masked":
            raise ConfigError(f"generation needs a causal LM; {lm.name!r} is a masked LM")
        self.lm = lm
        self.model = lm.model
        self.tokenizer = lm.tokenizer
        self.device = lm.device
        self.masked = False
        template = GENERATION_TEMPLATE if template is None else template
        self.template = template if isinstance(template, Template) else Template.parse(template)
        self.template_tokens = TemplateTokens(self.tokenizer, self.template, masked=False, lm_name=lm.name)
        self.settings = settings or GenerationSettings()
        if max_rows < 1 or max_batch_tokens < 1:
            raise ConfigError(f"max_rows and max_batch_tokens must be positive, got {max_rows}, {max_batch_tokens}")
        self.max_rows = max_rows
        self.max_batch_tokens = max_batch_tokens
        self.counters = EngineCounters()
        self._forward = DecoderForward(self.model)
        ids = {self.tokenizer.eos_token_id}
        gen_eos = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        ids.update(gen_eos if isinstance(gen_eos, (list, tuple)) else [gen_eos])
        self.eos_ids = torch.tensor(sorted(i for i in ids if i is not None), dtype=torch.long)

    @property
    def verbalizers(self) -> list[str]:
        """A generation engine reads no class words (empty)."""
        return []

    @property
    def cacheable(self) -> bool:
        """True when prompts follow the input, so each input's cache is shared across prompts."""
        return self.template.prompt_after_input

    # -- the sequences ------------------------------------------------------------------

    def _split(self, prompt: list[int], text: str) -> tuple[list[int], list[int]]:
        """(before, after) tokens around a prompt: the whole context is before + prompt + after."""
        if not text.strip():
            raise ConfigError("an input is empty or whitespace only; every input needs some text")
        before, _, after = self.template.segments(text, "x" if prompt else "")
        return self.template_tokens.bos + self.template_tokens.encode(before), self.template_tokens.encode(after)

    def _rows(self, tokens: list[list[int]], texts: Sequence[str], settings: GenerationSettings,
              use_cache: bool) -> tuple[list[list[int]], list[_Row]]:
        """The shared token groups and the rows that continue them (see the module docstring)."""
        groups: list[list[int]] = []
        rows: list[_Row] = []
        index: dict[tuple[int, ...], int] = {}
        longest = 0
        for e, text in enumerate(texts):
            for p, prompt in enumerate(tokens):
                before, after = self._split(prompt, text)
                full = before + prompt + after
                longest = max(longest, len(full))
                if not use_cache:
                    shared, own = [], full
                else:  # the shared part keeps one token back, so that every row runs at least one
                    head = before if self.template.prompt_after_input else before + prompt
                    shared, own = head[:-1], full[max(len(head) - 1, 0) :]
                g = index.setdefault(tuple(shared), len(groups))
                if g == len(groups):
                    groups.append(shared)
                limit = settings.limit(len(self.template_tokens.encode(text)))
                rows.extend(_Row(g, own, (p, e, s), limit) for s in range(settings.num_samples))
        self._check_length(longest + settings.max_new_tokens, "input plus prompt plus max_new_tokens")
        return groups, rows

    # -- generation ---------------------------------------------------------------------

    def generate(self, prompts: Sequence[Prompt], texts: Sequence[str], settings: GenerationSettings | None = None,
                 *, generator: torch.Generator | None = None, use_cache: bool = True) -> list[list[list[str]]]:
        """Completions of every prompt on every input.

        :param prompts: P prompts, each text or token ids.
        :param texts: E inputs.
        :param settings: how to write (default: the engine's).
        :param generator: the CPU random generator sampled tokens are drawn from (sampling only).
        :param use_cache: share the text rows have in common (default); False runs each full
            sequence on its own (the reference path).
        :returns: ``out[p][e]`` is the list of S completions (stripped; cut before a stop string).
        """
        settings = settings or self.settings
        self._check_inputs(prompts, texts)
        tokens = [self.prompt_tokens(p) for p in prompts]
        out: list[list[list[str]]] = [[[""] * settings.num_samples for _ in texts] for _ in prompts]
        with self._timed(), torch.inference_mode():
            groups, rows = self._rows(tokens, texts, settings, use_cache)
            # Rows of one group stay together, so a chunk runs few shared parts.
            order = sorted(range(len(rows)), key=lambda i: (rows[i].group, i))
            for start in range(0, len(order), self.max_rows):
                stop.check()  # a requested stop cuts a long call short (see rlprompt.stop)
                chunk = [rows[i] for i in order[start : start + self.max_rows]]
                for row, text in zip(chunk, self._write(groups, chunk, settings, generator), strict=True):
                    p, e, s = row.slot
                    out[p][e][s] = text
            self.counters.prompt_evals += len(prompts)
            self.counters.example_evals += len(prompts) * len(texts)
        return out

    def _write(self, groups: list[list[int]], rows: list[_Row], settings: GenerationSettings,
               generator: torch.Generator | None) -> list[str]:
        """Decode one chunk of rows; returns each row's completion."""
        used = sorted({r.group for r in rows})
        at = {g: i for i, g in enumerate(used)}
        pad_id = self.tokenizer.pad_token_id
        row_group = torch.tensor([at[r.group] for r in rows], device=self.device)
        shared_len = torch.tensor([len(groups[g]) for g in used], device=self.device)[row_group]
        cache, mask = None, None
        if any(groups[g] for g in used):
            ids, smask = pad_left([groups[g] for g in used], pad_id, device=self.device)
            positions = (smask.cumsum(-1) - 1).clamp(min=0)
            _, grown, _ = self._decode_step(input_ids=ids, attention_mask=smask, position_ids=positions)
            cache = make_cache([(k.index_select(0, row_group), v.index_select(0, row_group))
                                for k, v in cache_tensors(grown)])
            mask = smask.index_select(0, row_group)
        own, omask = pad_left([r.own for r in rows], pad_id, device=self.device)
        positions = shared_len[:, None] + (omask.cumsum(-1) - 1).clamp(min=0)
        mask = omask if mask is None else torch.cat([mask, omask], 1)
        hidden, cache, full = self._decode_step(input_ids=own, attention_mask=mask, position_ids=positions,
                                                cache=cache, last_only=True)
        nxt_pos = shared_len + omask.sum(-1)
        n = len(rows)
        written: list[list[int]] = [[] for _ in range(n)]
        texts: list[str | None] = [None] * n  # set when a stop string ends the row
        eos = self.eos_ids
        live = torch.arange(n)  # the rows still in the batch (finished ones are dropped)
        limits = torch.tensor([r.limit for r in rows])
        for step in range(max(r.limit for r in rows)):
            stop.check()
            logits = self._forward.logits(hidden[:, -1], None if full is None else full[:, -1]).float()
            if settings.greedy:
                nxt = logits.argmax(-1, keepdim=True)
            else:
                nxt = draw(logits, settings.temperature, settings.top_k, generator)
            tok = nxt.squeeze(-1).cpu()
            ended = torch.isin(tok, eos)
            full_rows = limits[live] <= step + 1  # this token is their last
            for j in torch.nonzero(~ended).flatten().tolist():
                i = int(live[j])
                written[i].append(int(tok[j]))
                self.counters.generated_tokens += 1
                if settings.stop:
                    text = self.tokenizer.decode(written[i], skip_special_tokens=True)
                    cut = min((text.find(s) for s in settings.stop if s in text), default=-1)
                    if cut >= 0:
                        texts[i] = text[:cut]
                        ended[j] = True
            ended |= full_rows
            if bool(ended.all()):
                break
            if bool(ended.any()):  # drop finished rows: each later step costs only the live ones
                keep = torch.nonzero(~ended).flatten()
                live, kd = live[keep], keep.to(self.device)
                nxt, nxt_pos, mask = nxt[kd], nxt_pos[kd], mask[kd]
                cache = make_cache([(k.index_select(0, kd), v.index_select(0, kd)) for k, v in cache_tensors(cache)])
            mask = torch.cat([mask, mask.new_ones(len(live), 1)], 1)
            hidden, cache, full = self._decode_step(input_ids=nxt, attention_mask=mask,
                                                    position_ids=nxt_pos[:, None], cache=cache, last_only=True)
            nxt_pos = nxt_pos + 1
        return [(self.tokenizer.decode(w, skip_special_tokens=True) if t is None else t).strip()
                for t, w in zip(texts, written, strict=True)]

    # -- scoring text (fluency) ---------------------------------------------------------

    def text_logprobs(self, texts: Sequence[str]) -> list[tuple[float, int]]:
        """The LM's log-probability of each text on its own: ``(sum of token log-probs, tokens)``.

        Each text is read after the tokenizer's BOS token (its EOS where it has none), so
        every token of the text is scored; an empty text gives ``(0.0, 0)``. Perplexity is
        ``exp(-sum / tokens)``.
        """
        start = self.tokenizer.bos_token_id
        start = self.tokenizer.eos_token_id if start is None else start
        seqs = [[start] + self.template_tokens.encode(t) for t in texts]
        out: list[tuple[float, int]] = [(0.0, 0)] * len(seqs)
        order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
        with self._timed(), torch.inference_mode():
            order = [j for j in order if len(seqs[j]) > 1]
            i = 0
            while i < len(order):
                # Sorted by length: a batch grows while rows x its longest row fits the bound.
                end = i + 1
                while end < len(order) and (end - i + 1) * len(seqs[order[end]]) <= self.max_batch_tokens:
                    end += 1
                sel, i = order[i:end], end
                self._check_length(max(len(seqs[j]) for j in sel), "text")
                ids, mask = pad_left([seqs[j] for j in sel], self.tokenizer.pad_token_id, device=self.device)
                hidden, _, full = self._decode_step(input_ids=ids, attention_mask=mask,
                                                    position_ids=(mask.cumsum(-1) - 1).clamp(min=0))
                real = (mask[:, :-1] * mask[:, 1:]).bool()  # a real token predicting a real token
                # Only the real positions, as one contiguous [N, H] block: a bf16 linear on a
                # strided 3-D view runs about 25x slower on a CPU.
                logits = self._forward.logits(hidden[:, :-1][real], None if full is None else full[:, :-1][real])
                picked = torch.log_softmax(logits.float(), -1).gather(-1, ids[:, 1:][real][:, None]).squeeze(-1)
                sums = torch.zeros(len(sel), dtype=picked.dtype, device=picked.device)
                sums.index_add_(0, torch.nonzero(real)[:, 0], picked)
                for row, j in enumerate(sel):
                    out[j] = (float(sums[row]), len(seqs[j]) - 1)
        return out

    def describe_settings(self) -> dict[str, Any]:
        """The default settings as a JSON-ready dict."""
        s = self.settings
        return {"max_new_tokens": s.max_new_tokens, "greedy": s.greedy, "temperature": s.temperature,
                "top_k": s.top_k, "stop": list(s.stop), "num_samples": s.num_samples, "length_ratio": s.length_ratio}
