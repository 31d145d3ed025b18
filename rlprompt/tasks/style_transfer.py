"""Text style transfer tasks from the shared ``tst`` folder (RLPrompt's second benchmark).

``yelp-0to1`` rewrites negative Yelp sentences as positive ones, ``yelp-1to0`` the opposite;
``shakespeare-0to1`` rewrites Shakespearean English as modern English, ``shakespeare-1to0``
the opposite. The layout is the one described in ``tst/README.md``:

- Yelp: prompt-training and -selection inputs are drawn (seeded) from the first half of
  ``dev.<source>.txt``; the style classifier trains on the second halves of both dev files
  (disjoint from every input); test inputs are ``test.<source>.txt`` with the human rewrites
  of ``ref.<source>.txt`` as references.
- Shakespeare 100-shot: inputs of the source style from ``<seed>/train.tsv``, ``dev.tsv`` and
  ``test.tsv``; the classifier trains on ``train.tsv`` and ``dev.tsv`` of both styles; no references.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from rlprompt.errors import ConfigError, DataError
from rlprompt.lm.generation import GENERATION_TEMPLATE, GenerationSettings
from rlprompt.tasks.generation import GenerationTask, TextExample

STYLE_TASKS = ("yelp-0to1", "yelp-1to0", "shakespeare-0to1", "shakespeare-1to0")
STYLE_SETTINGS = GenerationSettings(max_new_tokens=40, greedy=True, stop=('"', "\n"), length_ratio=1.5)
"""Greedy rewrites up to 40 tokens and 1.5 times the input's tokens (plus 4), ended by the closing quote
of RLPrompt's template or a newline."""

_NAME = re.compile(r"^(yelp|shakespeare)(?:-([01])to([01]))?$")


def is_style_task(name: str) -> bool:
    """True for a style-transfer task name (``yelp``, ``yelp-0to1``, ``shakespeare-1to0``, ...)."""
    return bool(_NAME.match(name.strip().lower()))


def _lines(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: no such file; is --data-dir the shared tst folder (with yelp/ and "
                        "shakespeare/)?") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def _sample(n: int, k: int | None, seed: int) -> list[int]:
    if k is None or k >= n:
        return list(range(n))
    return sorted(np.random.default_rng(seed).choice(n, size=k, replace=False).tolist())


def load_style_transfer(name: str, data_dir: str | Path, *, seed: int = 42, n_train: int = 16, n_dev: int = 32,
                        test_examples: int | None = None, settings: GenerationSettings | None = None,
                        template: str = GENERATION_TEMPLATE, reward: str = "tst") -> GenerationTask:
    """A style-transfer task (see the module docstring).

    :param name: ``yelp-0to1``, ``yelp-1to0``, ``shakespeare-0to1`` or ``shakespeare-1to0``
        (``yelp`` / ``shakespeare`` alone: ``0to1``).
    :param data_dir: the shared ``tst`` folder.
    :param seed: draws the Yelp inputs; names the Shakespeare seed folder.
    :param n_train: training inputs (one prompt evaluation scores a prompt on all of them).
    :param n_dev: selection inputs.
    :param test_examples: a seeded sample of this many test inputs (None: all).
    :raises ConfigError: an unknown name or a bad count.
    :raises DataError: missing files.
    """
    match = _NAME.match(name.strip().lower())
    if not match:
        raise ConfigError(f"unknown style-transfer task {name!r}; use one of {', '.join(STYLE_TASKS)}")
    dataset, src, tgt = match.group(1), int(match.group(2) or 0), int(match.group(3) or 1)
    if src == tgt:
        raise ConfigError(f"task {name!r} rewrites style {src} into itself; use 0to1 or 1to0")
    for what, value in (("n_train", n_train), ("n_dev", n_dev)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{what} must be a positive integer, got {value!r}")
    root = Path(data_dir)
    task_name = f"{dataset}-{src}to{tgt}"
    styles = {"yelp": ("negative", "positive"), "shakespeare": ("Shakespearean", "modern")}[dataset]
    description = f"Rewrite the {styles[src]} sentence as a {styles[tgt]} one."
    columns = {"source_style": src, "target_style": tgt}
    if dataset == "yelp":
        pools = {s: _lines(root / "yelp" / f"dev.{s}.txt") for s in (0, 1)}
        half = len(pools[src]) // 2
        order = np.random.default_rng(seed).permutation(half)
        if n_train + n_dev > half:
            raise ConfigError(f"n_train + n_dev = {n_train + n_dev} exceeds the {half} prompt inputs of {task_name}")
        train = [TextExample(pools[src][i], (), columns) for i in order[:n_train]]
        dev = [TextExample(pools[src][i], (), columns) for i in order[n_train : n_train + n_dev]]
        inputs, refs = _lines(root / "yelp" / f"test.{src}.txt"), _lines(root / "yelp" / f"ref.{src}.txt")
        if len(inputs) != len(refs):
            raise DataError(f"{root / 'yelp'}: test.{src}.txt has {len(inputs)} lines but ref.{src}.txt {len(refs)}")
        test = [TextExample(inputs[i], (refs[i],), columns) for i in _sample(len(inputs), test_examples, seed)]
        style_texts = {s: pool[len(pool) // 2 :] for s, pool in pools.items()}
        note = "style classifier on the second halves of yelp/dev.{0,1}.txt (disjoint from every input)"
    else:
        folder = root / "shakespeare" / str(seed)
        rows = {split: _tsv(folder / f"{split}.tsv") for split in ("train", "dev", "test")}
        train = [TextExample(t, (), columns) for t, label in rows["train"] if label == src][:n_train]
        dev = [TextExample(t, (), columns) for t, label in rows["dev"] if label == src][:n_dev]
        pool = [t for t, label in rows["test"] if label == src]
        test = [TextExample(pool[i], (), columns) for i in _sample(len(pool), test_examples, seed)]
        style_texts = {s: [t for split in ("train", "dev") for t, label in rows[split] if label == s] for s in (0, 1)}
        note = "style classifier on train.tsv and dev.tsv of both styles (the prompts' inputs among them)"
    return GenerationTask(
        name=task_name, train=train, dev=dev, test=test, template=template,
        settings=settings or STYLE_SETTINGS, reward=reward, metric="joint", description=description,
        source=str(root / dataset),
        meta={"seed": seed, "direction": f"{src}_to_{tgt}", "n_train": len(train), "n_dev": len(dev),
              "test": len(test), "style_classifier": note},
        style_texts=style_texts,
    )


def _tsv(path: Path) -> list[tuple[str, int]]:
    lines = _lines(path)
    if not lines or lines[0].split("\t")[:2] != ["text", "label"]:
        raise DataError(f"{path}: expected a header 'text<TAB>label'")
    out = []
    for i, line in enumerate(lines[1:], start=2):
        text, _, label = line.rpartition("\t")
        if label not in ("0", "1") or not text.strip():
            raise DataError(f"{path}:{i}: expected text<TAB>0 or 1")
        out.append((text.strip(), int(label)))
    return out
