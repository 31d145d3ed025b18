"""A custom reward in ten lines, used from Python and from the command line.

From the command line (run in this folder, so the module is importable):

    rlprompt eval --prompt " It was" --reward custom_reward:confident_accuracy

From Python: ``python examples/custom_reward.py``.
"""

from __future__ import annotations

import torch


def confident_accuracy(logprobs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Fraction of examples where the label gets more than 70% of the class probability.

    :param logprobs: [P prompts, E examples, C classes] log-probabilities from the engine.
    :param labels: [E] class ids.
    :returns: [P], one reward per prompt.
    """
    probs = logprobs.softmax(-1)  # renormalise over the classes
    p_label = probs.gather(-1, labels.view(1, -1, 1).expand(probs.shape[0], -1, 1)).squeeze(-1)
    return (p_label > 0.7).float().mean(-1)


if __name__ == "__main__":
    from rlprompt.lm import ScoringEngine, load_lm
    from rlprompt.rewards.evaluate import evaluate_prompts
    from rlprompt.tasks import load_task

    task = load_task("demo")
    engine = ScoringEngine(load_lm(), task.verbalizers, task.template)
    for result in evaluate_prompts(engine, task, [" It was", " The review is"], split="dev",
                                   reward=confident_accuracy):
        print(f"{result.prompt!r}: accuracy {result.accuracy:.3f}, confident accuracy {result.reward:.3f}")
