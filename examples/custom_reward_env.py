"""Pass your own reward function to a prompt environment.

A reward maps the frozen LM's per-class log-probabilities ``[P, E, C]`` (P prompts,
E examples, C classes) and the labels ``[E]`` to one number per prompt ``[P]``; it
may also return a dict of extra per-prompt numbers, which the env puts in
``info["diagnostics"]``. Here: the mean probability of the right class (classes
renormalised against each other) minus a penalty when the LM favours one class,
so a prompt cannot win by always answering " great".

The same callable works for ``SoftPromptEnv``, the vector env and
``gym.make("rlprompt/DiscretePrompt-v0", reward=...)``; a name such as ``"gap"`` or
``"package.module:function"`` works too.

Run: ``python examples/custom_reward_env.py [--episodes 20]`` (SmolLM2-135M, demo task).
"""

from __future__ import annotations

import argparse
from typing import Any

import torch

from rlprompt.envs import DiscretePromptEnv


def calibrated_probability(
    logprobs: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Mean p(label) over examples, minus how far the mean prediction leans to one class.

    :param logprobs: float [P, E, C] per-class log-probabilities.
    :param labels: long [E] class ids.
    :returns: rewards [P] and ``{"p_label": [P], "bias": [P]}``.
    """
    probs = logprobs.softmax(-1)  # renormalise over the classes
    p_label = probs.gather(-1, labels.view(1, -1, 1).expand(probs.shape[0], -1, 1)).squeeze(-1).mean(-1)
    bias = (probs.mean(1) - 1.0 / probs.shape[-1]).abs().sum(-1)
    return p_label - 0.5 * bias, {"p_label": p_label, "bias": bias}


def main(model: Any = "smollm2-135m", episodes: int = 20, seed: int = 0) -> dict[str, Any]:
    """Random search over prompts with the custom reward; returns the best prompt found.

    :param model: a model name or a loaded :class:`~rlprompt.lm.FrozenLM`.
    :param episodes: prompts to try.
    :param seed: seeds the environment and the action sampling.
    """
    env = DiscretePromptEnv("demo", model, prompt_length=3, reward=calibrated_probability,
                            examples_per_episode=16, render_mode="ansi")
    env.action_space.seed(seed)
    best: dict[str, Any] = {"best_prompt": "", "best_reward": float("-inf")}
    for episode in range(episodes):
        env.reset(seed=seed + episode)
        terminated = False
        while not terminated:
            mask = env.action_masks()
            _, reward, terminated, _, info = env.step(env.action_space.sample(mask.astype("int8")))
        print(env.render(), end="")
        print(f"    p_label {info['diagnostics']['p_label']:.3f}  bias {info['diagnostics']['bias']:.3f}")
        if reward > best["best_reward"]:
            best = {"best_prompt": info["prompt"], "best_reward": reward}
    print(f"best prompt {best['best_prompt']!r} reward {best['best_reward']:.4f}")
    return best


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--model", default="smollm2-135m")
    args = parser.parse_args()
    main(args.model, args.episodes)
