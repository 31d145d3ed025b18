"""The text of every token of a tokenizer, decoded once per tokenizer.

Filtering a vocabulary (whole-word tokens, tokens with line breaks, ...) reads the text
of each token id; decoding a whole vocabulary takes a while, so it is done once per
tokenizer object and remembered for as long as the tokenizer lives.
"""

from __future__ import annotations

from typing import Any
from weakref import WeakKeyDictionary

_TEXTS: WeakKeyDictionary[Any, tuple[str, ...]] = WeakKeyDictionary()


def token_texts(tokenizer: Any, size: int) -> tuple[str, ...]:
    """The text of each token id below ``size``, one id decoded at a time (special tokens as text).

    :param tokenizer: a transformers tokenizer.
    :param size: how many ids, from 0 (at most ``len(tokenizer)``).
    :returns: ``size`` strings; ``texts[i]`` is ``tokenizer.decode([i])``.
    """
    texts = _TEXTS.get(tokenizer)
    if texts is None or len(texts) < size:
        texts = tuple(tokenizer.batch_decode([[i] for i in range(size)]))
        _TEXTS[tokenizer] = texts
    return texts if len(texts) == size else texts[:size]
