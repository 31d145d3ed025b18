"""Generation on the real SmolLM2 and the shared style-transfer data (integration)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rlprompt.cli import main
from rlprompt.lm.generation import GenerationEngine, GenerationSettings
from rlprompt.tasks.style_transfer import load_style_transfer

pytestmark = pytest.mark.integration


def _lines(path: Path) -> list[str]:
    return [x.strip() for x in path.read_text().splitlines() if x.strip()]


@pytest.mark.parametrize("name", ["yelp-0to1", "yelp-1to0"])
def test_yelp_tasks_keep_prompt_inputs_and_style_data_apart(tst, name: str) -> None:
    task = load_style_transfer(name, tst, seed=13, n_train=8, n_dev=16)
    src, tgt = int(name[5]), int(name[8])
    pool = _lines(tst / "yelp" / f"dev.{src}.txt")
    first_half = set(pool[: len(pool) // 2])
    assert {ex.input for ex in task.train + task.dev} <= first_half
    assert not first_half & set(task.style_texts[src]) - set(pool[len(pool) // 2 :])
    assert len(task.test) == 500 and task.test[3].references == (_lines(tst / "yelp" / f"ref.{src}.txt")[3],)
    assert task.test[3].input == _lines(tst / "yelp" / f"test.{src}.txt")[3]
    assert all(ex.columns["target_style"] == tgt for ex in task.train)
    assert load_style_transfer(name, tst, seed=21, n_train=8).texts("train") != task.texts("train")


def test_shakespeare_task_loads(tst) -> None:
    task = load_style_transfer("shakespeare-0to1", tst, seed=42, n_train=8, n_dev=8, test_examples=20)
    assert len(task.train) == 8 and len(task.test) == 20 and not task.has_references("test")
    assert set(task.style_texts) == {0, 1} and min(len(v) for v in task.style_texts.values()) >= 100


@pytest.mark.parametrize("template", ['{prompt} "{input}" "', '"{input}" {prompt} "'])
def test_shared_cache_generation_equals_full_sequences_on_smollm(smollm32, tst, template: str) -> None:
    task = load_style_transfer("yelp-0to1", tst, seed=42, n_train=4, n_dev=4)
    engine = GenerationEngine(smollm32, template, settings=GenerationSettings(max_new_tokens=16))
    prompts = ["Rewrite the negative review as a positive one:", "Here is a nicer version"]
    cached = engine.generate(prompts, task.texts("train"))
    assert cached == engine.generate(prompts, task.texts("train"), use_cache=False)
    assert all(c[0] for row in cached for c in row)  # the LM writes something after every pair


def test_train_learns_a_style_transfer_prompt_end_to_end(tst, tmp_path: Path, capsys) -> None:
    out = tmp_path / "yelp-sql"
    args = ["train", "--task", "yelp-0to1", "--data-dir", str(tst), "--agent", "sql", "--budget", "24",
            "--n-train", "4", "--n-dev", "4", "--set", "batch_size=8", "--dtype", "float32", "--out", str(out),
            "--no-test"]
    assert main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["prompt"] and summary["extra"]["metric"] == "joint"
    assert summary["extra"]["reward"] == "tst" and summary["prompt_evals"] == pytest.approx(24.0)
    curve = [row["best_dev_accuracy"] for row in summary["curve"]]
    assert curve == sorted(curve) and summary["dev_accuracy"] == pytest.approx(curve[-1])
    assert "dev joint" in capsys.readouterr().out
