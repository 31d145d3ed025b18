"""The built-in ``demo`` task: generated movie-review sentiment, no external data.

Sentences are built from aspects ("the acting"), verbs, intensifiers and clearly
positive or negative adjectives, in SST's lower-case, space-before-punctuation
style: ``"the acting was wonderful and the story moving ."``. About one sentence
in ten is a contrast ("the pacing was slow at times , but the story was gripping
overall .") whose label follows the clause after "but".

Measured with SmolLM2-135M-Instruct on the test split (template
``"{sentence} {prompt}"``, argmax over " terrible"/" great"): an empty prompt
scores 56.5% (the LM leans to " great"), "It was" 66%, "The review is" 86%,
while the two class scores separate the classes almost perfectly (AUC 0.99), so
prompt search has clear room to improve and a clear ceiling.

Generation is deterministic (a fixed seed over an enumerated pool), classes are
balanced in every split, and the splits are disjoint.
"""

from __future__ import annotations

import itertools
import random

from rlprompt.tasks.registry import TASKS
from rlprompt.tasks.task import Example, Task

# (aspect, is plural)
_ASPECTS = (
    ("the acting", False),
    ("the story", False),
    ("the plot", False),
    ("the dialogue", False),
    ("the soundtrack", False),
    ("the ending", False),
    ("the direction", False),
    ("the script", False),
    ("the humor", False),
    ("the cinematography", False),
    ("the movie", False),
    ("this film", False),
    ("the characters", True),
    ("the performances", True),
    ("the visuals", True),
    ("the jokes", True),
)
_POSITIVE = (
    "wonderful",
    "moving",
    "brilliant",
    "delightful",
    "charming",
    "superb",
    "gripping",
    "beautiful",
    "touching",
    "excellent",
    "clever",
    "memorable",
    "heartfelt",
    "engaging",
    "stunning",
    "hilarious",
)
_NEGATIVE = (
    "dull",
    "boring",
    "clumsy",
    "tedious",
    "awful",
    "bland",
    "lifeless",
    "predictable",
    "painful",
    "forgettable",
    "sloppy",
    "tiresome",
    "dreadful",
    "lazy",
    "pointless",
    "terrible",
)
# Mild words of the opposite polarity, used only in the conceded clause of a contrast.
_MILD = {1: ("slow", "uneven", "a bit long", "thin"), 0: ("pleasant", "nice", "decent", "fine")}
_INTENSIFIERS = ("", "truly ", "really ", "quite ", "utterly ", "genuinely ", "simply ")
_OPENERS = ("in the end", "on the whole", "from start to finish", "frankly", "all in all", "honestly")
_SEED = 20220527  # fixed: the demo data never changes


def _verb(plural: bool, past: bool) -> str:
    return ("were" if plural else "was") if past else ("are" if plural else "is")


def _sentences(label: int, rng: random.Random) -> list[str]:
    """Every sentence of one class from a fixed pattern pool, deduplicated, in a seeded order."""
    adjs = _POSITIVE if label == 1 else _NEGATIVE
    pool: set[str] = set()
    for (a1, pl1), (a2, pl2) in itertools.permutations(_ASPECTS, 2):
        j1, j2 = rng.sample(adjs, 2)
        past = rng.random() < 0.7
        i = rng.choice(_INTENSIFIERS)
        pool.add(f"{a1} {_verb(pl1, past)} {i}{j1} .")
        pool.add(f"{a1} {_verb(pl1, past)} {j1} and {a2} {j2} .")
        pool.add(f"{rng.choice(_OPENERS)} , {a1} {_verb(pl1, past)} {i}{j1} .")
        pool.add(f"i found {a1} {i}{j1} , and {a2} {_verb(pl2, True)} {j2} too .")
        if rng.random() < 0.45:
            mild = rng.choice(_MILD[label])
            pool.add(f"{a2} {_verb(pl2, past)} {mild} at times , but {a1} {_verb(pl1, past)} {j1} overall .")
    ordered = sorted(pool)
    rng.shuffle(ordered)
    return ordered


def demo_examples(n_per_class: int, *, offset: int = 0) -> list[Example]:
    """Generated examples, balanced and interleaved by class.

    :param n_per_class: examples of each class.
    :param offset: skip this many sentences per class first (for disjoint splits).
    :return: ``2 * n_per_class`` examples alternating negative (0) and positive (1).
    """
    rng = random.Random(_SEED)
    per_class = [_sentences(label, rng) for label in (0, 1)]
    out: list[Example] = []
    for k in range(offset, offset + n_per_class):
        for label in (0, 1):
            out.append(Example(per_class[label][k], label))
    return out


def demo_task(
    *,
    n_train: int = 32,
    n_dev: int = 32,
    n_test: int = 200,
    template: str | None = None,
    verbalizers: list[str] | None = None,
    masked: bool = False,
) -> Task:
    """The built-in demo task (the default when no task is named).

    :param n_train: training examples (even; half per class).
    :param n_dev: validation examples (even).
    :param n_test: test examples (even).
    :param template: task template (``None``: the default for ``masked``).
    :param verbalizers: override ``[" terrible", " great"]``.
    :param masked: the task LM is a masked LM.
    """
    spec = TASKS["demo"]
    sizes = [n // 2 for n in (n_train, n_dev, n_test)]
    examples = demo_examples(sum(sizes))
    cut1, cut2 = 2 * sizes[0], 2 * (sizes[0] + sizes[1])
    return Task(
        name="demo",
        verbalizers=list(verbalizers or spec.verbalizers),
        label_names=list(spec.label_names),
        train=examples[:cut1],
        dev=examples[cut1:cut2],
        test=examples[cut2:],
        template=template,
        masked=masked,
        source="built-in generator (rlprompt.tasks.demo)",
    )
