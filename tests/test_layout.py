"""The tree keeps its shape: layers import only downwards, modules stay under 400 lines, config
modules stay free of torch, `import rlprompt` registers the gym ids, and a reward plug-in may
return what TRL's reward functions return (a list) as well as numpy arrays and tensors."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from rlprompt.errors import RewardError
from rlprompt.rewards import get_reward

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "rlprompt"
# Top to bottom; a module may import its own layer and the ones below it, never one above.
LAYERS = ["cli", "experiments", "agents", "envs", "rewards", "tasks", "lm"]
MAX_LINES = 400


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "rlprompt" and parts[1] in LAYERS else None


def test_nothing_imports_upwards():
    wrong = []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).parts
        if rel[0] not in LAYERS:
            continue
        mine = LAYERS.index(rel[0])
        for module in imported_modules(path):
            other = layer_of(module)
            if other is not None and LAYERS.index(other) < mine:
                wrong.append(f"{path.relative_to(REPO)} imports {module}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("folder", ["rlprompt", "tests", "benchmarks", "examples"])
def test_no_module_over_400_lines(folder):
    long = {str(p.relative_to(REPO)): n for p in (REPO / folder).rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_config_modules_import_no_torch():
    heavy = ("torch", "transformers", "stable_baselines3", "trl", "peft")
    for path in PACKAGE.glob("agents/**/config.py"):
        bad = [m for m in imported_modules(path) if m.split(".")[0] in heavy]
        assert not bad, f"{path.relative_to(REPO)} imports {bad}"


def test_gym_make_works_after_import_rlprompt_alone():
    code = ("import gymnasium as gym, rlprompt\n"
            "print(gym.spec('rlprompt/DiscretePrompt-v0').entry_point, gym.spec('rlprompt/SoftPrompt-v0').entry_point)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["rlprompt.envs.discrete:DiscretePromptEnv", "rlprompt.envs.soft:SoftPromptEnv"]


def test_import_rlprompt_stays_light():
    code = "import sys, rlprompt\nprint(sorted(m for m in ('torch', 'transformers', 'trl') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr


def test_a_reward_may_return_a_list_a_numpy_array_or_a_tensor():
    """TRL's reward functions return lists: lists, numpy arrays and tensors give the same rewards."""
    logprobs, labels = torch.log(torch.full((2, 3, 2), 0.5)), torch.tensor([0, 1, 1])
    expected = torch.tensor([0.25, -1.5])
    for returned in ([0.25, -1.5], np.array([0.25, -1.5]), np.array([0.25, -1.5], dtype=np.float32), expected):
        out = get_reward(lambda lp, y, r=returned: r)(logprobs, labels)
        assert out.rewards.dtype.is_floating_point and out.rewards.tolist() == expected.tolist()
    for bad, kind in (([True, False], "bool"), (["1.0", 2.0], "str"), ([[1.0], [2.0]], "list")):
        with pytest.raises(RewardError, match=f"returned rewards holding {kind}; expected numbers"):
            get_reward(lambda lp, y, r=bad: r)(logprobs, labels)
