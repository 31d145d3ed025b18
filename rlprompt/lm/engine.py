"""The scoring engine: the one place where rlprompt spends LM compute.

Given prompts and examples, :meth:`ScoringEngine.score` returns
``log p(verbalizer_c | template(example, prompt))`` as a tensor of shape
``[prompts, examples, classes]`` (a verbalizer of several tokens sums their log-probs).

Why it is fast. With a template whose prompt follows the input (RLPrompt's
``"{sentence} {prompt}"``), each example's key/value cache is computed once and kept, per
example (:mod:`rlprompt.lm.input_cache`): any subset of examples, in any order, reuses it.
A call sorts its examples by input length and runs them in batches padded to their own
longest input, then restores the order. A new prompt runs only its own tokens (plus the
template's tail) on top of the cache, packed side by side with other prompts
(:mod:`rlprompt.lm.packing`), written into room left after the cache rather than
concatenated to it. :meth:`ScoringEngine.start` / :meth:`PromptState.extend` grow a prompt
one token at a time for environments, at one token per example per step. Only the read-out
position goes through the output head (:mod:`rlprompt.lm.readout`), a block of rows at a
time. On a CPU, attention over these short sequences runs as two matmuls
(:func:`~rlprompt.lm.transformers_compat.small_attention`). Other templates and
masked LMs take a plain batched path (:meth:`ScoringEngine.score` with ``use_cache=False``
is that path too, and the reference the cached path is tested against).

Shapes: P prompts, E examples, C classes, L input positions, T prompt positions,
H hidden size. Rows of a batch are prompt-major: row ``p * E + e``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Literal

import torch

from rlprompt import stop
from rlprompt.errors import ConfigError
from rlprompt.lm.cached_inputs import BATCH_POSITIONS, CachedInputs
from rlprompt.lm.counters import EngineCounters
from rlprompt.lm.engine_core import EngineCore, Prompt
from rlprompt.lm.full_sequences import score_full
from rlprompt.lm.input_cache import InputCacheStore
from rlprompt.lm.loading import FrozenLM
from rlprompt.lm.packing import HiddenWithLogits, PackedCache, Queries, packed_attention, queries_for
from rlprompt.lm.prompt_state import PromptState
from rlprompt.lm.readout import ClassReadout, NonFiniteScoresError, check_finite
from rlprompt.lm.soft_prompts import score_soft_prefix, score_soft_suffix
from rlprompt.lm.template import CAUSAL_TEMPLATE, MASKED_TEMPLATE, Placement, Template
from rlprompt.lm.template_tokens import TemplateTokens
from rlprompt.lm.transformers_compat import DecoderForward, cache_tensors, make_cache, slot_cache

__all__ = ["NonFiniteScoresError", "Placement", "Prompt", "PromptState", "ScoringEngine"]

class ScoringEngine(CachedInputs, EngineCore):
    """Scores prompts on examples with a frozen LM; see the module docstring.

    :param lm: the frozen LM (from :func:`~rlprompt.lm.loading.load_lm`).
    :param verbalizers: one string per class, in label order (e.g. ``[" terrible", " great"]``).
    :param template: where input and prompt go; default ``"{sentence} {prompt}"`` for a
        causal LM and ``"{sentence} {prompt} <mask> ."`` for a masked LM.
    :param max_batch_tokens: bound on rows x positions per forward (memory); the
        engine chunks prompts and examples to stay under it.
    :param cache_examples: keep the input caches of up to this many examples, each example
        on its own (keyed by its text, so any subset reuses them); a segmented LRU where
        examples used more than once are evicted last (see :mod:`rlprompt.lm.input_cache`).
    :param cache_bytes: and at most this many bytes of them (None: no byte bound).
    :param max_packed_prompts: at most this many prompts share one packed forward.
    :param normalize: ``"vocab"``: exact log-probabilities under the LM (the output head
        runs over the whole vocabulary, at the read-out positions only); ``"classes"``:
        log-softmax over the verbalizers' first tokens only (only those rows of the head
        run; single-token verbalizers; every built-in reward gives the same result).
    """

    def __init__(
        self,
        lm: FrozenLM,
        verbalizers: Sequence[str],
        template: str | Template | None = None,
        *,
        max_batch_tokens: int = 16384,
        cache_examples: int = 512,
        cache_bytes: int | None = 512 << 20,
        max_packed_prompts: int = 16,
        normalize: Literal["vocab", "classes"] = "vocab",
    ) -> None:
        self.lm = lm
        self.model = lm.model
        self.tokenizer = lm.tokenizer
        self.masked = lm.kind == "masked"
        if template is None:
            template = MASKED_TEMPLATE if self.masked else CAUSAL_TEMPLATE
        self.template = template if isinstance(template, Template) else Template.parse(template, masked=self.masked)
        if max_batch_tokens < 1:
            raise ConfigError(f"max_batch_tokens must be positive, got {max_batch_tokens}")
        self.max_batch_tokens = max_batch_tokens
        self._batch_positions = min(max_batch_tokens, BATCH_POSITIONS)
        self.cache_examples = cache_examples
        self.max_packed_prompts = max_packed_prompts
        if normalize not in ("vocab", "classes"):
            raise ConfigError(f"normalize must be 'vocab' or 'classes', got {normalize!r}")
        self.normalize = normalize
        self.counters = EngineCounters()
        self.device = lm.device
        self.template_tokens = TemplateTokens(self.tokenizer, self.template, masked=self.masked, lm_name=lm.name)
        self.verbalizers = list(verbalizers)
        self.verbalizer_ids = self.template_tokens.verbalizer_ids(self.verbalizers)
        self._forward = DecoderForward(self.model)
        self.readout = ClassReadout(self._forward.head, self.verbalizer_ids, normalize, self.device)
        if normalize == "classes" and (self.readout.multi or self._forward.head is None):
            raise ConfigError("normalize='classes' needs single-token verbalizers and a plain linear output head")
        self._store = InputCacheStore(cache_examples, cache_bytes)
        # The batches last assembled for score() (key: the texts and the prompt room), so that
        # repeated calls on the same examples do not even copy their entries again.
        self._memo: tuple[Any, list[tuple[torch.Tensor, PackedCache]]] | None = None

    # -- set-up checks ------------------------------------------------------------------

    @property
    def num_classes(self) -> int:
        return len(self.verbalizers)

    @property
    def cacheable(self) -> bool:
        """True when prompts follow the input, so the input's cache can be reused."""
        return not self.masked and self.template.prompt_after_input

    # -- packed prompts on a shared cache -----------------------------------------------

    def _packed_forward(self, base: PackedCache, q: Queries, grad: bool = False) -> tuple[Any, Any]:
        """Run queries of several prompts packed side by side after each example's cache.

        :returns: hidden states [E, Q, H] (with the logits, as a
            :class:`~rlprompt.lm.packing.HiddenWithLogits`, for models without a separable
            head) and the grown cache (E rows).
        """
        dtype = self.lm.dtype
        mask, positions = packed_attention(base, q, dtype)
        n_new, width = q.group.shape[0], base.width
        if q.embeds is not None:
            embeds = q.embeds if q.embeds.dim() == 3 else q.embeds.unsqueeze(0).expand(base.n, -1, -1)
            kw: dict[str, Any] = {"inputs_embeds": embeds.to(dtype)}
        else:
            kw = {"input_ids": q.ids.unsqueeze(0).expand(base.n, n_new)}
        cache = None
        if not grad:  # write the new positions into the buffer after the held ones: nothing is copied
            base.buf.reserve(width + n_new, width)
            cache = slot_cache(base.buf.layers(), width)
        in_place = cache is not None
        if cache is None:  # the graph keeps what attention read, so nothing may be overwritten later
            cache = make_cache(base.kv)
        hidden, cache, full = self._decode_step(
            attention_mask=mask, position_ids=positions, cache=cache, grad=grad, **kw
        )
        if not in_place and not grad:  # (transformers without cache layers) for keep()
            for (k, v), (bk, bv) in zip(cache_tensors(cache), base.buf.layers(), strict=True):
                bk[:, :, width : width + n_new] = k[:, :, width : width + n_new]
                bv[:, :, width : width + n_new] = v[:, :, width : width + n_new]
        if full is not None:
            hidden = HiddenWithLogits(hidden, full)
        return hidden, cache

    def _queries_for(self, suffixes: list[list[int]]) -> tuple[Queries, list[int]]:
        return queries_for(suffixes, self.readout.continued, self.device)

    # -- public scoring -----------------------------------------------------------------

    def score(
        self,
        prompts: Sequence[Prompt],
        texts: Sequence[str],
        *,
        use_cache: bool | None = None,
    ) -> torch.Tensor:
        """Per-class log-probabilities of every prompt on every example.

        :param prompts: P prompts, each text or token ids.
        :param texts: E input texts.
        :param use_cache: reuse each input's key/value cache (default: whenever the
            template allows); ``False`` runs every full sequence (the reference path).
        :returns: float32 tensor [P, E, C] on the LM's device.
        """
        self._check_inputs(prompts, texts)
        if use_cache is None:
            use_cache = self.cacheable
        if use_cache and not self.cacheable:
            raise ConfigError(
                f"template {self.template.text!r} puts the prompt before the input (or the LM is "
                "masked): its input cannot be cached; use use_cache=False"
            )
        tokens = [self.prompt_tokens(p) for p in prompts]
        with self._timed(), torch.inference_mode():
            out = self._score_cached(tokens, texts) if use_cache else score_full(self, tokens, texts)
            self.counters.prompt_evals += len(prompts)
            self.counters.example_evals += len(prompts) * len(texts)
        return check_finite(out, self.lm.name)

    def _prompt_chunks(self, n_prompts: int, per_prompt: int, n_ex: int, length: int) -> Iterator[slice]:
        """Prompt slices whose packed batch stays under ``max_batch_tokens``."""
        per = self._room(n_prompts, per_prompt, n_ex, length)
        for start in range(0, n_prompts, per):
            yield slice(start, start + per)

    def _longest_suffix(self, suffixes: list[list[int]]) -> int:
        return max(len(s) for s in suffixes) + sum(len(self.verbalizer_ids[c]) for c in self.readout.multi)

    def _score_cached(self, tokens: list[list[int]], texts: Sequence[str]) -> torch.Tensor:
        out = torch.empty(len(tokens), len(texts), self.num_classes, device=self.device)
        suffixes = [t + self.template_tokens.tail(not t) for t in tokens]
        longest = self._longest_suffix(suffixes)
        for rows, base in self._bases(texts, len(suffixes), longest):
            stop.check()  # a requested stop cuts a long call short (see rlprompt.stop)
            self._check_length(base.width + longest, "input plus prompt")
            for sl in self._prompt_chunks(len(suffixes), longest, base.n, base.width):
                q, read = self._queries_for(suffixes[sl])
                if q.group.numel() == 0:
                    hidden = base.last_hidden.new_zeros(base.n, 0, base.last_hidden.shape[-1])
                else:
                    hidden, _ = self._packed_forward(base, q)
                out[sl, rows] = self.readout.read(base, hidden, q, read)
        return out

    # -- soft prompts -------------------------------------------------------------------

    def score_soft(
        self,
        embeds: torch.Tensor,
        texts: Sequence[str],
        *,
        placement: Placement | str = Placement.SUFFIX,
        grad: bool = False,
    ) -> torch.Tensor:
        """Class log-probs of soft prompts (embedding vectors) on every example.

        :param embeds: soft prompts [P, T, H] (or one prompt [T, H]) in the LM's
            input-embedding space.
        :param texts: E input texts.
        :param placement: ``"suffix"``: at the template's ``{prompt}`` after the cached
            input (only the soft tokens and the tail run); ``"prefix"``: before everything
            (Lester et al. 2021; a full forward per example).
        :param grad: keep the graph so gradients flow into ``embeds`` (the LM stays
            frozen); counts each position as a forward and a backward token.
        :returns: float32 tensor [P, E, C].
        """
        if embeds.dim() == 2:
            embeds = embeds.unsqueeze(0)
        hidden_size = self.lm.input_embeddings().embedding_dim
        if embeds.dim() != 3 or embeds.shape[-1] != hidden_size or embeds.shape[1] == 0:
            raise ConfigError(
                f"soft prompts must be [P, T, {hidden_size}] with T >= 1, got {list(embeds.shape)}"
            )
        placement = Placement.parse(placement)
        if self.masked:
            raise ConfigError("soft prompts are supported on causal LMs only")
        self._check_inputs(list(range(embeds.shape[0])), texts)
        embeds = embeds.to(self.device)
        context = torch.enable_grad() if grad else torch.inference_mode()
        with self._timed(), context:
            if placement is Placement.SUFFIX:
                if not self.template.prompt_after_input:
                    raise ConfigError(f"suffix placement needs the prompt after the input; {self.template.text!r}")
                out = score_soft_suffix(self, embeds, texts, grad)
            else:
                out = torch.cat([score_soft_prefix(self, embeds, chunk, grad)
                                 for _, chunk in self._example_chunks(texts)], dim=1)
            self.counters.prompt_evals += embeds.shape[0]
            self.counters.example_evals += embeds.shape[0] * len(texts)
        return check_finite(out, self.lm.name)

    # -- incremental prompts (environments) ---------------------------------------------

    def start(self, n_prompts: int, texts: Sequence[str]) -> PromptState:
        """Begin ``n_prompts`` empty prompts on ``texts``, to be grown token by token.

        :param n_prompts: P, the number of prompts grown side by side (e.g. sub-envs).
        :param texts: the E examples they are scored on.
        :returns: a :class:`PromptState`; its :attr:`~PromptState.logprobs` are those of
            the empty prompt, and :meth:`PromptState.extend` appends one token per prompt.
        """
        if not self.cacheable:
            raise ConfigError(
                f"incremental prompts need a causal LM and a template with the prompt after the "
                f"input; {self.template.text!r} on a {self.lm.kind} LM is not one"
            )
        if n_prompts < 1:
            raise ConfigError(f"n_prompts must be at least 1, got {n_prompts}")
        self._check_inputs([None] * n_prompts, texts)
        with self._timed(), torch.inference_mode():
            # Its own buffer (rows in the order of ``texts``): the state grows in it in place.
            tail = len(self.template_tokens.tail(prompt_empty=False)) + 1
            continued = sum(len(self.verbalizer_ids[c]) for c in self.readout.multi)
            base = self._base(texts, n_prompts * (PromptState.ROOM_STEPS + tail + continued))
        return PromptState(self, base, n_prompts)
