"""A style classifier trained on a task's own unpaired data: TF-IDF + logistic regression.

Style-transfer rewards and evaluation ask "is this text in the target style?". No fine-tuned
classifier is reachable offline, so one is trained here (scikit-learn) on unpaired sentences
of each style that the prompts never see (for Yelp, lines of ``yelp/dev.*.txt`` disjoint from
the prompt-training and -selection inputs), a share held out to report its accuracy. It is
cached on disk by a hash of its training data (plain arrays and JSON, nothing pickled), so
the first use trains it (seconds) and later ones load it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rlprompt.errors import ConfigError

HELD_OUT = 0.1
"""Share of each style's sentences held out to measure the classifier's accuracy."""

MAX_PER_STYLE = 20_000
"""Training sentences per style at most (a seeded sample beyond)."""

_VECTORIZER = {"ngram_range": (1, 2), "sublinear_tf": True, "lowercase": True}


def _cache_root(cache_dir: str | os.PathLike[str] | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    return Path(os.environ.get("RLPROMPT_CACHE", Path.home() / ".cache" / "rlprompt"))


@dataclass
class StyleClassifier:
    """A trained style classifier (see the module docstring).

    :param vectorizer: the fitted TF-IDF vectorizer.
    :param model: the fitted logistic regression (classes are the style ids).
    :param held_out_accuracy: accuracy on the held-out sentences.
    :param info: how it was trained (sentences per style, held out, cache file).
    """

    vectorizer: Any
    model: Any
    held_out_accuracy: float
    info: dict[str, Any]

    @classmethod
    def train(cls, texts: Mapping[int, Sequence[str]], *, seed: int = 0) -> StyleClassifier:
        """Train on ``{style id: sentences}`` (at least two styles, each with sentences)."""
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        if len(texts) < 2 or any(len(t) < 10 for t in texts.values()):
            raise ConfigError("a style classifier needs at least two styles with 10 or more sentences each")
        rng = np.random.default_rng(seed)
        train_x, train_y, test_x, test_y = [], [], [], []
        for style, lines in sorted(texts.items()):
            order = rng.permutation(len(lines))
            n_test = max(1, int(len(lines) * HELD_OUT))
            test_x += [lines[i] for i in order[:n_test]]
            test_y += [style] * n_test
            keep = order[n_test : n_test + MAX_PER_STYLE]
            train_x += [lines[i] for i in keep]
            train_y += [style] * len(keep)
        vectorizer = TfidfVectorizer(min_df=2, **_VECTORIZER)
        features = vectorizer.fit_transform(train_x)
        model = LogisticRegression(C=4.0, max_iter=1000).fit(features, train_y)
        acc = float((model.predict(vectorizer.transform(test_x)) == np.array(test_y)).mean())
        info = {"train_per_style": {str(s): train_y.count(s) for s in texts},
                "held_out": len(test_y), "features": len(vectorizer.vocabulary_)}
        return cls(vectorizer, model, acc, info)

    def prob(self, texts: Sequence[str], styles: Sequence[int]) -> list[float]:
        """The probability of the given style (one per text)."""
        if len(texts) != len(styles):
            raise ConfigError(f"{len(texts)} texts but {len(styles)} target styles")
        if not texts:
            return []
        classes = [int(c) for c in self.model.classes_]
        bad = sorted({int(s) for s in styles} - set(classes))
        if bad:
            raise ConfigError(f"target style(s) {bad} unknown to the style classifier (styles {classes})")
        probs = self.model.predict_proba(self.vectorizer.transform(list(texts)))
        return [float(probs[i, classes.index(int(s))]) for i, s in enumerate(styles)]

    # -- on disk (arrays and JSON only) -------------------------------------------------

    def save(self, path: Path) -> None:
        """Write the classifier to ``path`` (``.npz``) and ``path.with_suffix('.json')``."""
        path.parent.mkdir(parents=True, exist_ok=True)
        vocab = sorted(self.vectorizer.vocabulary_, key=self.vectorizer.vocabulary_.get)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, idf=self.vectorizer.idf_, coef=self.model.coef_, intercept=self.model.intercept_,
                 classes=self.model.classes_)
        meta = {"vocabulary": vocab, "held_out_accuracy": self.held_out_accuracy, "info": self.info}
        path.with_suffix(".json").write_text(json.dumps(meta), encoding="utf-8")
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> StyleClassifier:
        """Read a classifier written by :meth:`save`."""
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        arrays = np.load(path, allow_pickle=False)
        meta = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
        vectorizer = TfidfVectorizer(vocabulary={t: i for i, t in enumerate(meta["vocabulary"])}, **_VECTORIZER)
        vectorizer.idf_ = arrays["idf"]
        model = LogisticRegression()
        model.coef_, model.intercept_, model.classes_ = arrays["coef"], arrays["intercept"], arrays["classes"]
        return cls(vectorizer, model, float(meta["held_out_accuracy"]), {**meta["info"], "cache": str(path)})


def style_classifier(texts: Mapping[int, Sequence[str]], cache_dir: str | os.PathLike[str] | None = None,
                     *, seed: int = 0) -> StyleClassifier:
    """The classifier for these training sentences: loaded from the cache, or trained and cached."""
    digest = hashlib.sha256()
    for style, lines in sorted(texts.items()):
        digest.update(f"{style}\0{len(lines)}\0".encode())
        for line in lines:
            digest.update(line.encode("utf-8", "replace") + b"\n")
    digest.update(json.dumps([seed, HELD_OUT, MAX_PER_STYLE, sorted(_VECTORIZER)]).encode())
    path = _cache_root(cache_dir) / "style" / f"{digest.hexdigest()[:20]}.npz"
    if path.is_file() and path.with_suffix(".json").is_file():
        try:
            return StyleClassifier.load(path)
        except (OSError, ValueError, KeyError, json.JSONDecodeError):
            pass  # a damaged cache entry: train again and overwrite it
    clf = StyleClassifier.train(texts, seed=seed)
    try:
        clf.save(path)
        clf.info["cache"] = str(path)
    except OSError:
        clf.info["cache"] = None  # a read-only cache: keep it in memory only
    return clf

