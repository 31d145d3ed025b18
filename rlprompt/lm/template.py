"""Prompt templates: where the input and the prompt go in the LM's context.

A template holds exactly one ``{sentence}`` and one ``{prompt}``. When the prompt
follows the input (RLPrompt's ``"{sentence} {prompt}"`` for left-to-right LMs) the
scoring engine caches the input once and pays only for the prompt's tokens; when it
precedes the input, every prompt needs a full forward.

Token boundaries: the text is cut into segments at the placeholders, and whitespace
that ends a segment is moved to the start of the next one, so that byte-level BPE
tokenisers see ``" It"`` (one token) rather than ``" "`` + ``"It"``. A text prompt that
already starts with whitespace does not get a second space.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from rlprompt.errors import ConfigError

SENTENCE = "{sentence}"
INPUT = "{input}"
"""Another name of ``{sentence}`` (generation tasks' templates read better with it)."""
PROMPT = "{prompt}"
MASK = "<mask>"

CAUSAL_TEMPLATE = "{sentence} {prompt}"
MASKED_TEMPLATE = "{sentence} {prompt} <mask> ."


class Placement(str, enum.Enum):
    """Where a soft prompt goes: after the cached input (the template's ``{prompt}``) or
    before everything (Lester et al. 2021; PEFT's prompt tuning)."""

    SUFFIX = "suffix"
    PREFIX = "prefix"

    @classmethod
    def parse(cls, value: Placement | str) -> Placement:
        """The placement named by ``value`` (a :class:`Placement` or its string).

        :raises ConfigError: any other value.
        """
        try:
            return cls(value)
        except ValueError:
            raise ConfigError(f"placement {value!r} is not known; use 'suffix' or 'prefix'") from None


def _split_trailing_ws(text: str) -> tuple[str, str]:
    body = text.rstrip()
    return body, text[len(body) :]


@dataclass(frozen=True)
class Template:
    """A parsed template.

    :param text: the template string, e.g. ``"{sentence} {prompt}"`` (``{input}`` is read as
        ``{sentence}``).
    :param prompt_after_input: True when ``{prompt}`` follows ``{sentence}``.
    :param head: literal text before the first placeholder.
    :param middle: literal text between the two placeholders.
    :param tail: literal text after the second placeholder (holds ``<mask>`` for masked LMs).
    """

    text: str
    prompt_after_input: bool
    head: str
    middle: str
    tail: str

    @classmethod
    def parse(cls, text: str, *, masked: bool = False) -> Template:
        """Parse and check a template string.

        :param text: template with one ``{sentence}`` and one ``{prompt}``.
        :param masked: the LM is a masked LM: the template must hold one ``<mask>``
            after both placeholders (the read-out position).
        :raises ConfigError: a placeholder is missing or repeated, an unknown ``{field}``
            is present, or ``<mask>`` is misplaced.
        """
        if not isinstance(text, str):
            raise ConfigError(f"template must be a string, got {type(text).__name__}")
        if INPUT in text and SENTENCE not in text:
            text = text.replace(INPUT, SENTENCE)
        for name in (SENTENCE, PROMPT):
            count = text.count(name)
            if count != 1:
                what = "is missing" if count == 0 else f"appears {count} times"
                raise ConfigError(
                    f"template {text!r}: {name} {what}; a template needs exactly one {SENTENCE} "
                    f"and one {PROMPT}, e.g. {CAUSAL_TEMPLATE!r}"
                )
        unknown = set(re.findall(r"\{[^{}]*\}", text)) - {SENTENCE, PROMPT}
        if unknown:
            raise ConfigError(
                f"template {text!r}: unknown placeholder(s) {sorted(unknown)}; "
                f"only {SENTENCE} and {PROMPT} are filled in"
            )
        s_at, p_at = text.index(SENTENCE), text.index(PROMPT)
        first, second = (SENTENCE, PROMPT) if s_at < p_at else (PROMPT, SENTENCE)
        head, rest = text.split(first, 1)
        middle, tail = rest.split(second, 1)
        n_mask = text.count(MASK)
        if masked:
            if n_mask != 1 or MASK not in tail:
                raise ConfigError(
                    f"template {text!r}: a masked LM needs exactly one {MASK} after {SENTENCE} and "
                    f"{PROMPT}, e.g. {MASKED_TEMPLATE!r}"
                )
        elif n_mask:
            raise ConfigError(
                f"template {text!r} holds {MASK}, which only masked LMs read; "
                f"use e.g. {CAUSAL_TEMPLATE!r} for a causal LM"
            )
        return cls(text=text, prompt_after_input=s_at < p_at, head=head, middle=middle, tail=tail)

    def render(self, sentence: str, prompt: str) -> str:
        """The full text for one input and one text prompt (the naive, uncached view)."""
        return "".join(self.segments(sentence, prompt))

    def segments(self, sentence: str, prompt: str) -> tuple[str, str, str]:
        """Cut the rendered text into ``(before, prompt, after)`` around the prompt.

        Whitespace that ends a segment moves to the start of the next one, so each
        segment can be tokenised on its own and still give the tokens of the whole.
        For ``prompt_after_input`` templates, ``before`` holds the input (cacheable) and
        ``after`` the tail; otherwise ``before`` is the head and ``after`` the input.
        """
        if self.prompt_after_input:
            before, after_raw = self.head + sentence + self.middle, self.tail
        else:
            before, after_raw = self.head, self.middle + sentence + self.tail
        before, ws = _split_trailing_ws(before)
        if prompt:
            prompt_seg = prompt if (ws and prompt[:1].isspace()) else ws + prompt
        else:
            prompt_seg, after_raw = "", ws + after_raw
        prompt_seg, ws2 = _split_trailing_ws(prompt_seg)
        after = ws2 + after_raw
        # Whitespace at the very end would sit between the context and the class
        # word, which carries its own leading space in BPE vocabularies: drop it.
        return before, prompt_seg, after if after.strip() else ""
