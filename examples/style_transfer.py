"""Text style transfer (RLPrompt's second benchmark): learn a prompt that makes the frozen LM
rewrite negative Yelp sentences as positive ones, and a custom reward on what it writes.

From the command line (the shared data in ``../shared/data/tst``)::

    rlprompt eval --task yelp-0to1 --data-dir ../shared/data/tst \
        --prompt "Rewrite the negative review as a positive one:"
    rlprompt train --task yelp-0to1 --data-dir ../shared/data/tst --agent sql --budget 100 --out runs/yelp-sql

From Python: ``python examples/style_transfer.py [path/to/tst]`` (about 4 minutes on 2 CPU cores).
"""

from __future__ import annotations

import sys
from pathlib import Path


def short_and_positive(completions: list[str], inputs: list[str], **columns: object) -> list[float]:
    """A text reward in TRL's convention: rewrites no longer than their input, with a positive word."""
    good = {"great", "good", "love", "loved", "amazing", "best", "friendly", "delicious", "nice"}
    return [float(len(c) <= len(i) + 10) * float(bool(good & set(c.lower().split())))
            for c, i in zip(completions, inputs, strict=True)]


if __name__ == "__main__":
    from rlprompt.agents import SoftQLearning, SQLConfig
    from rlprompt.lm import load_lm
    from rlprompt.lm.generation import GenerationEngine
    from rlprompt.rewards.evaluate_text import TextObjective
    from rlprompt.tasks.style_transfer import load_style_transfer

    data = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "shared/data/tst"
    task = load_style_transfer("yelp-0to1", data, seed=42, n_train=8, n_dev=16, test_examples=32)
    engine = GenerationEngine(load_lm("smollm2-135m"), task.template, settings=task.settings)

    # 1. What a hand-written instruction makes the LM write, scored by the built-in metrics.
    judge = TextObjective(engine, task, metrics=["style", "similarity", "bleu", "fluency", short_and_positive])
    manual = judge.evaluate(["Rewrite the negative review as a positive one:"], "test")[0]
    print(f"manual: joint {manual.accuracy:.3f}", {k: round(v, 3) for k, v in manual.metrics.items()})
    for row in manual.outputs[:3]:
        print(f"  {row['input']!r} -> {row['output']!r}")

    # 2. Soft Q-learning on RLPrompt's style-transfer reward (the task's), 100 prompt evaluations.
    agent = SoftQLearning(engine, task, SQLConfig(prompt_length=5, batch_size=8), out_dir="runs/example-yelp-sql")
    agent.learn(100)
    learned = judge.evaluate([agent.predict()], "test")[0]
    print(f"sql {learned.prompt!r}: joint {learned.accuracy:.3f}", {k: round(v, 3) for k, v in learned.metrics.items()})
