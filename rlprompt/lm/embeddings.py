"""Soft prompts in and out of the vocabulary: initial embeddings, the fixed random
projection a low-dimensional search acts through, and the nearest tokens of a learned
soft prompt (a readable approximation of it)."""

from __future__ import annotations

import enum
import math
from typing import Any

import torch

from rlprompt.errors import ConfigError


class Metric(str, enum.Enum):
    """How "nearest" is measured between a soft token and the embedding table."""

    COSINE = "cosine"
    L2 = "l2"


def real_token_ids(tokenizer: Any, n_embeddings: int) -> torch.Tensor:
    """Ids of the table rows that are real, non-special tokens (padding rows excluded)."""
    size = min(len(tokenizer), n_embeddings)
    special = set(tokenizer.all_special_ids)
    return torch.tensor([i for i in range(size) if i not in special], dtype=torch.long)


def nearest_tokens(embeds: torch.Tensor, table: torch.Tensor, metric: Metric | str = Metric.COSINE,
                   allowed: torch.Tensor | None = None) -> torch.Tensor:
    """The vocabulary token nearest to each soft token.

    :param embeds: soft prompt [T, H].
    :param table: the LM's input embedding table [V, H].
    :param metric: ``"cosine"`` or ``"l2"``.
    :param allowed: token ids to choose from [K] (default: every row).
    :returns: long tensor [T] of token ids.
    """
    metric = Metric(metric)
    with torch.no_grad():
        rows = table.detach().float()
        ids = torch.arange(rows.shape[0], device=rows.device) if allowed is None else allowed.to(rows.device)
        rows = rows[ids]
        x = embeds.detach().float().to(rows.device)
        if metric is Metric.COSINE:
            sim = torch.nn.functional.normalize(x, dim=-1) @ torch.nn.functional.normalize(rows, dim=-1).T
        else:
            sim = -torch.cdist(x, rows)
        return ids[sim.argmax(-1)].cpu()


def random_projection(rows: int, dim: int, generator: torch.Generator,
                      device: torch.device | str | None = None) -> torch.Tensor:
    """A fixed Gaussian matrix [rows, dim] with entries N(0, 1/dim), drawn on the CPU from ``generator``.

    Black-box tuning (Sun et al., 2022) searches ``z`` [dim] and writes ``A z`` [rows]: with
    entries of variance 1/dim, ``A z`` has about the spread of ``z`` per coordinate.
    """
    return (torch.randn(rows, dim, generator=generator) / math.sqrt(dim)).to(device)


def sample_vocab_embeddings(table: torch.Tensor, n_tokens: int, allowed: torch.Tensor,
                            generator: torch.Generator) -> torch.Tensor:
    """Embeddings of ``n_tokens`` tokens drawn uniformly from ``allowed`` ids; [T, H] float32."""
    pick = allowed[torch.randint(len(allowed), (n_tokens,), generator=generator)]
    return table.detach()[pick.to(table.device)].float().clone()


def text_embeddings(engine: Any, text: str, n_tokens: int) -> torch.Tensor:
    """Embeddings of a text prompt's tokens (as the template reads them), repeated or cut to ``n_tokens``.

    :raises ConfigError: the text gives no tokens.
    """
    ids = engine.prompt_tokens(text)
    if not ids:
        raise ConfigError(f"init text {text!r} gives no tokens; give a non-empty text prompt")
    ids = (ids * (n_tokens // len(ids) + 1))[:n_tokens]
    table = engine.lm.input_embeddings().weight
    return table.detach()[torch.tensor(ids, device=table.device)].float().clone()
