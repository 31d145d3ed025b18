"""Token ids of a template's pieces, the verbalizers and the tokenizer's special tokens.

Each segment of a template (see :meth:`~rlprompt.lm.template.Template.segments`) is
tokenised on its own, so the input before a prompt can be cached and the prompt's
tokens appended; texts are tokenised once and remembered.
"""

from __future__ import annotations

from typing import Any

from rlprompt.errors import ConfigError
from rlprompt.lm.template import MASK, Template

MAX_REMEMBERED = 100_000
"""Texts whose tokens are remembered (beyond this, texts are tokenised every time)."""


class TemplateTokens:
    """The token ids an LM reads for a template.

    :param tokenizer: the LM's tokenizer.
    :param template: the parsed template.
    :param masked: the LM is a masked LM (``<mask>`` becomes its mask token).
    :param lm_name: the LM's name, for messages.
    """

    def __init__(self, tokenizer: Any, template: Template, *, masked: bool, lm_name: str) -> None:
        self.tokenizer = tokenizer
        self.template = template
        self.masked = masked
        self.lm_name = lm_name
        self.bos, self.eos = self._special_wrap()
        self._remembered: dict[str, list[int]] = {}

    def verbalizer_ids(self, verbalizers: list[str]) -> list[list[int]]:
        """The token ids of each class's verbalizer.

        :raises ConfigError: fewer than two classes, an empty or unknown verbalizer, a
            multi-token verbalizer on a masked LM, or two classes with the same tokens.
        """
        if len(verbalizers) < 2:
            raise ConfigError(f"need at least two verbalizers (one per class), got {verbalizers!r}")
        unk = self.tokenizer.unk_token_id
        out: list[list[int]] = []
        for v in verbalizers:
            if not isinstance(v, str) or not v.strip():
                raise ConfigError(f"verbalizer {v!r} is empty; give one non-empty word per class")
            ids = self.tokenizer(v, add_special_tokens=False).input_ids
            if not ids or (unk is not None and unk in ids):
                raise ConfigError(
                    f"verbalizer {v!r} is not in the vocabulary of {self.lm_name!r} (tokens {ids}); "
                    "check spelling and the leading space (byte-level BPE: ' great' != 'great')"
                )
            if self.masked and len(ids) > 1:
                pieces = self.tokenizer.convert_ids_to_tokens(ids)
                raise ConfigError(
                    f"verbalizer {v!r} is {len(ids)} tokens {pieces} but a masked LM reads one token at "
                    "<mask>; pick a single-token word (a leading space often makes one)"
                )
            out.append(list(ids))
        if len({tuple(i) for i in out}) != len(out):
            raise ConfigError(f"verbalizers {verbalizers!r} map to the same tokens; classes must differ")
        return out

    def _special_wrap(self) -> tuple[list[int], list[int]]:
        """Special tokens the tokenizer adds before and after a text (BOS, <s>...</s>)."""
        bare = self.tokenizer("x", add_special_tokens=False).input_ids
        full = self.tokenizer("x").input_ids
        for start in range(len(full) - len(bare) + 1):
            if full[start : start + len(bare)] == bare:
                before, after = full[:start], full[start + len(bare) :]
                # A causal LM reads the class right after the context: no trailing EOS.
                return before, (after if self.masked else [])
        return [], []

    def encode(self, text: str) -> list[int]:
        """Token ids of one segment (no special tokens; ``<mask>`` as the mask token)."""
        if not text:
            return []
        ids = self._remembered.get(text)
        if ids is None:
            if self.masked and MASK in text:
                # "<mask>" in the template becomes the tokenizer's own mask token.
                parts = text.split(MASK)
                ids = []
                for i, part in enumerate(parts):
                    if i:
                        ids.append(self.tokenizer.mask_token_id)
                    ids.extend(self.tokenizer(part, add_special_tokens=False).input_ids if part.strip() else [])
            else:
                ids = self.tokenizer(text, add_special_tokens=False).input_ids
            if len(self._remembered) < MAX_REMEMBERED:
                self._remembered[text] = ids
        return list(ids)

    def prompt(self, text: str) -> list[int]:
        """The tokens a text prompt occupies in the template (its leading space included)."""
        return self.encode(self.template.segments("", text)[1])

    def tail(self, prompt_empty: bool) -> list[int]:
        """The template's tokens after the prompt (they differ for an empty prompt)."""
        return self.encode(self.template.segments("", "" if prompt_empty else "x")[2])

    def input(self, text: str) -> list[int]:
        """The cacheable tokens before the prompt: special tokens, head and input."""
        return self.bos + self.encode(self.template.segments(text, "x")[0])

    def full_sequence(self, prompt_tokens: list[int], text: str) -> list[int]:
        """Every token of one (prompt, example) pair, for the uncached path."""
        before, _, after = self.template.segments(text, "x" if prompt_tokens else "")
        return self.bos + self.encode(before) + prompt_tokens + self.encode(after) + self.eos
