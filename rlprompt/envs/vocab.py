"""Candidate vocabularies: which LM tokens a discrete agent may write.

``"words"`` keeps whole-word tokens (a leading space, then two or more ASCII
letters: ``" great"``, ``" movie"``), the most frequent first (byte-level BPE
numbers merges roughly by frequency), capped at ``max_vocab``. ``"full"`` keeps
every token but the special ones. A list gives the tokens itself, as words
(each must be exactly one token) or as token ids.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from rlprompt.errors import ConfigError
from rlprompt.lm.embeddings import real_token_ids
from rlprompt.lm.vocabulary import token_texts

VocabSpec = str | Sequence[str | int]
"""``"words"``, ``"full"``, or a list of single-token words / token ids."""

def is_word(text: str) -> bool:
    """A whole-word token: a leading space, then at least two ASCII letters (``" great"``)."""
    body = text[1:]
    return text[:1] == " " and len(body) >= 2 and body.isascii() and body.isalpha()


def candidate_vocab(tokenizer: Any, n_embeddings: int, spec: VocabSpec = "words",
                    max_vocab: int | None = 4096) -> np.ndarray:
    """Token ids an agent may choose from, in action order.

    :param tokenizer: the task LM's tokenizer.
    :param n_embeddings: rows of the LM's input embedding table (ids must be below it).
    :param spec: ``"words"``, ``"full"``, or a list of words (one token each) or token ids.
    :param max_vocab: keep at most this many ``"words"`` tokens (lowest ids first);
        ``None`` keeps them all. Ignored for ``"full"`` and lists.
    :returns: int64 array [K] of distinct token ids.
    :raises ConfigError: unknown spec, a word that is not exactly one token, an id out of
        range, a repeated entry, or an empty result.
    """
    size = min(len(tokenizer), n_embeddings)
    if isinstance(spec, str):
        if spec == "words":
            if max_vocab is not None and max_vocab < 1:
                raise ConfigError(f"max_vocab must be a positive number of tokens or None, got {max_vocab}")
            special = set(tokenizer.all_special_ids)
            ids = [i for i, t in enumerate(token_texts(tokenizer, size)) if i not in special and is_word(t)]
            ids = ids[:max_vocab] if max_vocab is not None else ids
        elif spec == "full":
            ids = real_token_ids(tokenizer, n_embeddings).tolist()
        else:
            raise ConfigError(f"vocab {spec!r} is not known; use 'words', 'full' or a list of words/token ids")
    else:
        ids = [_one_token(tokenizer, entry, size) for entry in spec]
        counts = Counter(ids)
        repeats = [entry for entry, t in zip(spec, ids, strict=True) if counts[t] > 1]
        if repeats:
            raise ConfigError(f"candidate vocab repeats {repeats[:5]}; give each word or token id once")
    if not ids:
        raise ConfigError(
            f"candidate vocab {spec if isinstance(spec, str) else list(spec)!r} is empty for this tokenizer; "
            "give a non-empty word list or use vocab='full'"
        )
    return np.asarray(ids, dtype=np.int64)


def _one_token(tokenizer: Any, entry: str | int, size: int) -> int:
    if isinstance(entry, (int, np.integer)) and not isinstance(entry, bool):
        if not 0 <= int(entry) < size:
            raise ConfigError(f"candidate token id {int(entry)} is outside the vocabulary (0..{size - 1})")
        return int(entry)
    if not isinstance(entry, str) or not entry:
        raise ConfigError(f"candidate vocab entry {entry!r} is neither a non-empty word nor a token id")
    ids = tokenizer(entry, add_special_tokens=False).input_ids
    if len(ids) != 1:
        hint = ""
        if not entry[:1].isspace() and len(tokenizer(" " + entry, add_special_tokens=False).input_ids) == 1:
            hint = f"; {' ' + entry!r} (with a leading space) is one token"
        raise ConfigError(
            f"candidate word {entry!r} is {len(ids)} tokens {ids}, not one; each action writes one token{hint}"
        )
    return int(ids[0])
