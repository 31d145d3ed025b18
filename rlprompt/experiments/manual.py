"""Manual prompts per task: the hand-written baseline of every comparison.

``manual`` in ``rlprompt compare`` scores these on dev (one prompt evaluation each per
dev batch, charged like any method) and reports the test accuracy of the best one.
"""

from __future__ import annotations

MANUAL_PROMPTS: dict[str, list[str]] = {
    "sst-2": ["", " It was", " The movie was", " All in all, it was", " Overall, the film is",
              " In summary, this review is", " Sentiment:"],
    "sst-5": ["", " It was", " The movie was", " All in all, it was"],
    "mr": ["", " It was", " The movie was", " All in all, it was"],
    "cr": ["", " It was", " The product is", " All in all, it was"],
    "yelp-2": ["", " It was", " The restaurant was", " All in all, it was"],
    "yelp-5": ["", " It was", " The restaurant was", " All in all, it was"],
    "agnews": ["", " Topic:", " This news is about", " Category:"],
    "trec": ["", " Question type:", " The answer is a", " Answer type:"],
    "demo": ["", " It was", " The review is", " All in all, it was"],
    # style transfer: instructions before RLPrompt's template '{prompt} "{input}" "'
    "yelp-0to1": ["Rewrite the negative review as a positive one:", "Here is the text, made positive:",
                  "Change the sentiment of the sentence from negative to positive."],
    "yelp-1to0": ["Rewrite the positive review as a negative one:", "Here is the text, made negative:",
                  "Change the sentiment of the sentence from positive to negative."],
    "shakespeare-0to1": ["Rewrite the Shakespearean line in modern English:", "In plain modern English:"],
    "shakespeare-1to0": ["Rewrite the sentence in Shakespeare's English:", "As Shakespeare would say it:"],
}
"""Task name -> manual prompts (``""`` is the empty prompt, the template alone)."""

DEFAULT_MANUAL = ["", " It was", " The answer is"]
"""Used for a task without an entry of its own."""


def manual_prompts(task: str) -> list[str]:
    """The manual prompts of a task (:data:`DEFAULT_MANUAL` when it has none)."""
    return list(MANUAL_PROMPTS.get(task, DEFAULT_MANUAL))
