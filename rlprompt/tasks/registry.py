"""Known task specs: one registry, name -> :class:`TaskSpec`.

A spec says how to score a task (verbalizers, label names) and where its data
lives (the fsc16 few-shot folder layout and/or a Hugging Face dataset). The data
itself is loaded by :func:`rlprompt.tasks.load_task`.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import NamedTuple

from rlprompt.errors import ConfigError


@dataclass(frozen=True)
class TaskSpec:
    """How to score a known task and where to find its data.

    :param name: registry name, e.g. ``"sst-2"``.
    :param verbalizers: one word per class in label order (RLPrompt's choices).
    :param label_names: human-readable class names in label order.
    :param hf_path: Hugging Face dataset id (``None`` where there is none).
    :param hf_config: dataset configuration name, e.g. ``"sst2"`` for ``glue``.
    :param text_column: column(s) holding the input; several are joined with a space.
    :param label_column: column holding the integer class id.
    :param test_split: the labelled split used as test (GLUE's ``test`` is unlabelled).
    :param hf_label_order: ``hf_label_order[i]`` is this task's class id for the
        dataset's label ``i``, where the dataset orders classes differently.
    :param fewshot: the task is in the fsc16 few-shot folder layout.
    :param description: one line for ``rlprompt tasks``.
    """

    name: str
    verbalizers: tuple[str, ...]
    label_names: tuple[str, ...]
    hf_path: str | None = None
    hf_config: str | None = None
    text_column: str | tuple[str, ...] = "text"
    label_column: str = "label"
    test_split: str = "test"
    hf_label_order: tuple[int, ...] | None = None
    fewshot: bool = False
    description: str = ""

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.verbalizers)

    @property
    def source(self) -> str:
        """Where the data comes from, in words."""
        if self.name == "demo":
            return "built-in (generated)"
        parts = ["fsc16 folder"] if self.fewshot else []
        if self.hf_path:
            hf = self.hf_path + (f"/{self.hf_config}" if self.hf_config else "")
            parts.append(f"HF {hf}")
        return ", ".join(parts)


_POLARITY = (" terrible", " great")
_FIVE = (" terrible", " bad", " okay", " good", " great")

TASKS: dict[str, TaskSpec] = {}


def register_task(spec: TaskSpec, *, overwrite: bool = False) -> TaskSpec:
    """Add a task spec to the registry.

    :param spec: the spec; its ``name`` is the key.
    :param overwrite: replace an existing spec of the same name.
    :raises ConfigError: the name is taken and ``overwrite`` is false.
    """
    if spec.name in TASKS and not overwrite:
        raise ConfigError(f"task {spec.name!r} is already registered; pass overwrite=True to replace it")
    TASKS[spec.name] = spec
    return spec


def get_task_spec(name: str) -> TaskSpec:
    """Look a task spec up by name.

    :param name: registry name (case-insensitive; ``_`` and ``-`` are interchangeable).
    :raises ConfigError: unknown name; the message lists the known names and the closest match.
    """
    key = normalize_task_name(name)
    if key in TASKS:
        return TASKS[key]
    close = difflib.get_close_matches(key, list(TASKS), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ConfigError(f"unknown task {name!r}{hint} known tasks: {', '.join(sorted(TASKS))}")


def normalize_task_name(name: str) -> str:
    """Canonical spelling of a task name: lower case, ``-`` for ``_``."""
    return name.strip().lower().replace("_", "-")


class TaskRow(NamedTuple):
    """One row of ``rlprompt tasks``."""

    name: str
    classes: int
    verbalizers: tuple[str, ...]
    source: str


def list_tasks() -> list[TaskRow]:
    """The registered tasks as rows (name, classes, verbalizers, source), demo first."""
    names = sorted(TASKS, key=lambda n: (n != "demo", n))
    return [TaskRow(n, TASKS[n].num_classes, TASKS[n].verbalizers, TASKS[n].source) for n in names]


for _spec in (
    TaskSpec(
        "demo",
        _POLARITY,
        ("negative", "positive"),
        description="generated movie-review sentiment (32 train / 32 dev / 200 test)",
    ),
    TaskSpec(
        "sst-2",
        _POLARITY,
        ("negative", "positive"),
        "glue",
        "sst2",
        text_column="sentence",
        test_split="validation",
        fewshot=True,
        description="Stanford Sentiment Treebank, binary",
    ),
    TaskSpec("mr", _POLARITY, ("negative", "positive"), "rotten_tomatoes", description="movie reviews"),
    TaskSpec("cr", _POLARITY, ("negative", "positive"), "SetFit/CR", description="customer reviews"),
    TaskSpec("yelp-2", _POLARITY, ("negative", "positive"), "yelp_polarity", description="Yelp polarity"),
    TaskSpec(
        "sst-5",
        _FIVE,
        ("very negative", "negative", "neutral", "positive", "very positive"),
        "SetFit/sst5",
        fewshot=True,
        description="Stanford Sentiment Treebank, 5 classes",
    ),
    TaskSpec(
        "yelp-5",
        _FIVE,
        ("1 star", "2 stars", "3 stars", "4 stars", "5 stars"),
        "yelp_review_full",
        description="Yelp review stars",
    ),
    TaskSpec(
        "agnews",
        ("World", "Sports", "Business", "Tech"),
        ("World", "Sports", "Business", "Sci/Tech"),
        "ag_news",
        fewshot=True,
        description="AG News topics",
    ),
    TaskSpec(
        "subj",
        (" subjective", " objective"),
        ("subjective", "objective"),
        "SetFit/subj",
        description="subjectivity",
    ),
    TaskSpec(
        "trec",
        (" Description", " Entity", " Expression", " Human", " Location", " Number"),
        ("description", "entity", "abbreviation", "human", "location", "number"),
        "trec",
        label_column="coarse_label",
        # HF trec orders ABBR, ENTY, DESC, HUM, LOC, NUM; LM-BFF/RLPrompt order DESC, ENTY, ABBR, ...
        hf_label_order=(2, 1, 0, 3, 4, 5),
        fewshot=True,
        description="TREC question types",
    ),
    TaskSpec(
        "dbpedia",
        (
            "Company",
            "Education",
            "Artist",
            "Sports",
            "Office",
            "Transportation",
            "Building",
            "Natural",
            "Village",
            "Animal",
            "Plant",
            "Album",
            "Film",
            "Written",
        ),
        (
            "company",
            "educational institution",
            "artist",
            "athlete",
            "office holder",
            "mean of transportation",
            "building",
            "natural place",
            "village",
            "animal",
            "plant",
            "album",
            "film",
            "written work",
        ),
        "dbpedia_14",
        text_column="content",
        description="DBpedia ontology classes",
    ),
    TaskSpec(
        "yahoo",
        (
            "culture",
            "science",
            "health",
            "education",
            "computer",
            "sports",
            "business",
            "music",
            "family",
            "politics",
        ),
        (
            "society & culture",
            "science & mathematics",
            "health",
            "education & reference",
            "computers & internet",
            "sports",
            "business & finance",
            "entertainment & music",
            "family & relationships",
            "politics & government",
        ),
        "yahoo_answers_topics",
        text_column=("question_title", "question_content"),
        label_column="topic",
        description="Yahoo! Answers topics",
    ),
):
    register_task(_spec)
