"""`rlprompt compare` / `rlprompt demo`: the harness on a tiny in-memory-built model folder.

The task is the built-in demo task; the model is the tiny random Llama saved to a folder,
so every (method, seed) run takes a second or two.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import assert_accuracy

from rlprompt.agents.core.kinds import DiscreteAgent
from rlprompt.agents.gradient.peft_format import load_soft_prompt
from rlprompt.agents.registry import AGENTS, AgentSpec
from rlprompt.cli import main
from rlprompt.errors import ConfigError
from rlprompt.experiments import CompareConfig, compare
from rlprompt.experiments.config import parse_methods, parse_seeds
from rlprompt.experiments.results import ResultsLog
from rlprompt.lm import ScoringEngine, load_lm
from rlprompt.tasks import load_task

BUDGET = 16


def config(model: Path, **kw: Any) -> CompareConfig:
    values: dict[str, Any] = {"task": "demo", "seeds": [1, 2], "methods": ["manual", "random", "soft-prompt"],
                              "budget": BUDGET, "model": str(model), "prompt_length": 2}
    values.update(kw)
    if "soft-prompt" in values["methods"]:
        values.setdefault("options", {"soft-prompt": {"batch_size": 8}})
    return CompareConfig(**values)


def assert_record_reports_its_prompt(r: dict[str, Any], out: Path, dtype: str) -> None:
    """A results.jsonl record's accuracies are those of the prompt it names, recomputed from the
    engine's scores (on the LM the run loaded, in its dtype): the dev accuracy is the selected
    prompt's (the best of the manual candidates, the best of an agent's curve), the test accuracy
    the same prompt's on the test split (all of it: ``test_examples`` is its size here)."""
    lm = load_lm(r["model"], device="cpu", dtype=dtype)
    task = load_task(r["task"], seed=r["seed"])
    assert r["test_examples"] == len(task.test)
    engine = ScoringEngine(lm, task.verbalizers, task.template)
    placement = "suffix"
    if r["method"] == "manual":
        prompt = r["prompt"]
        assert r["dev_accuracy"] == max(r["candidates"].values()) == r["candidates"][prompt]
    else:
        assert r["dev_accuracy"] == max(best for _, best in r["curve"]) == r["curve"][-1][1]
        artefact = out / r["artefact"]
        if r["prompt_kind"] == "soft":
            prompt, meta = load_soft_prompt(artefact)
            placement = meta["placement"]
        else:
            prompt = json.loads(artefact.read_text())["tokens"]
    assert_accuracy(r["dev_accuracy"], engine, task, prompt, "dev", placement=placement)
    assert_accuracy(r["test_accuracy"], engine, task, prompt, "test", placement=placement)


def test_compare_writes_results_summary_and_plot_then_skips_finished_runs(tiny_model_dir, tmp_path):
    cfg = config(tiny_model_dir, dtype="float32")  # bfloat16 would blur the tiny LM's class gaps
    result = compare(cfg, tmp_path, progress=False, log=lambda _: None)
    assert result.ran == 6 and result.skipped == 0 and not result.failed, result.failed
    lines = (tmp_path / "results.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert {(r["method"], r["seed"]) for r in records} == {(m, s) for m in cfg.methods for s in cfg.seeds}
    for r in records:
        assert r["status"] == "completed" and r["test_examples"] == 200
        assert 0 < r["prompt_evals"] <= BUDGET and r["forward_tokens"] > 0 and r["wall_seconds"] > 0
        assert r["curve"] and r["curve"][-1][0] <= BUDGET
        assert_record_reports_its_prompt(r, tmp_path, cfg.dtype)
    soft = [r for r in records if r["method"] == "soft-prompt"]
    assert all(r["prompt_kind"] == "soft" and (tmp_path / r["artefact"]).is_file() for r in soft)
    assert all(r["backward_tokens"] > 0 for r in soft)
    summary = (tmp_path / "summary.md").read_text()
    for method in cfg.methods:
        assert f"| {method} |" in summary
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.rglob(".*.tmp"))

    again = compare(cfg, tmp_path, progress=False, log=lambda _: None)
    assert again.ran == 0 and again.skipped == 6
    assert (tmp_path / "results.jsonl").read_text().splitlines() == lines


def test_compare_grows_by_a_method_and_refuses_another_configuration(tiny_model_dir, tmp_path):
    compare(config(tiny_model_dir, methods=["manual"], seeds=[1]), tmp_path, progress=False, log=lambda _: None)
    grown = compare(config(tiny_model_dir, methods=["manual", "random"], seeds=[1]), tmp_path, progress=False,
                    log=lambda _: None)
    assert grown.ran == 1 and grown.skipped == 1
    stored = json.loads((tmp_path / "config.json").read_text())
    assert stored["methods"] == ["manual", "random"]

    with pytest.raises(ConfigError, match=r"another comparison \(budget: 16 there, 32 here\)"):
        compare(config(tiny_model_dir, methods=["manual"], seeds=[1], budget=32), tmp_path, progress=False)
    forced = compare(config(tiny_model_dir, methods=["manual"], seeds=[1], budget=32), tmp_path, force=True,
                     progress=False, log=lambda _: None)
    assert forced.ran == 1
    (previous,) = tmp_path.glob("previous-*")
    assert len((previous / "results.jsonl").read_text().splitlines()) == 2  # nothing was deleted


class _Crashes(DiscreteAgent):
    """A real agent plug-in that spends a little budget, then fails."""

    name = "crashes"
    artefact_name = "prompt.json"

    def _learn(self) -> None:
        self.evaluate_dev([[self.engine.lm.tokenizer.eos_token_id]])
        raise RuntimeError("the method broke after one dev evaluation")


@pytest.fixture
def crashing_method():
    from rlprompt.agents.search.config import RandomSearchConfig

    _Crashes.config_class = RandomSearchConfig
    AGENTS["crashes"] = AgentSpec(f"{__name__}:_Crashes", "rlprompt.agents.search.config:RandomSearchConfig")
    yield "crashes"
    del AGENTS["crashes"]


def test_a_crashing_method_is_recorded_and_the_others_continue(tiny_model_dir, tmp_path, crashing_method):
    cfg = config(tiny_model_dir, methods=["manual", crashing_method, "random"], seeds=[1])
    result = compare(cfg, tmp_path, progress=False, log=lambda _: None)
    (failed,) = result.failed
    assert failed["method"] == "crashes" and failed["status"] == "failed"
    assert "RuntimeError: the method broke" in failed["error"]
    assert "RuntimeError" in (tmp_path / "runs" / "crashes-s1" / "error.txt").read_text()
    done = {r["method"] for r in result.records if r["status"] == "completed"}
    assert done == {"manual", "random"}
    assert "the method broke" in (tmp_path / "summary.md").read_text()
    # A re-run redoes the failed run only.
    again = compare(cfg, tmp_path, progress=False, log=lambda _: None)
    assert again.ran == 1 and again.skipped == 2
    assert len(ResultsLog(tmp_path).records) == 4


def test_parse_seeds_and_methods_errors():
    assert parse_seeds("13,21, 42") == [13, 21, 42]
    with pytest.raises(ConfigError, match="'thirteen' is not an integer"):
        parse_seeds("thirteen,21")
    with pytest.raises(ConfigError, match="repeats 1"):
        parse_seeds("1,1")
    with pytest.raises(ConfigError, match=r"unknown method 'ppoo' in --methods \(did you mean 'ppo'\?\)"):
        parse_methods("manual,ppoo")
    assert parse_methods("manual,soft-prompt-prefix") == ["manual", "soft-prompt-prefix"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--methods", "manual,nope"], "unknown method 'nope'"),
        (["--seeds", "a,b"], "'a' is not an integer"),
        (["--budget", "0"], "--budget must be a positive"),
        (["--set", "random.batch_size=4"], "method 'random' is not in --methods"),
        (["--set", "manual"], "expected METHOD.NAME=VALUE"),
        (["--methods", "manual,cma", "--set", "cma.population=4"], "CMAESConfig has no option 'population'"),
        (["--methods", "manual,cma", "--set", "cma.popsize=many"], "cma.popsize='many'"),
        (["--task", "sst-2", "--data-dir", "/no/such/dir"], "/no/such/dir"),
    ],
)
def test_compare_cli_bad_input(tiny_model_dir, tmp_path, capsys, args, message):
    code = main(["compare", "--model", str(tiny_model_dir), "--methods", "manual", "--seeds", "1",
                 "--out", str(tmp_path / "cmp"), *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("rlprompt: error:") and message in err[-1], err
    assert not (tmp_path / "cmp" / "results.jsonl").exists()


def test_compare_cli_end_to_end_and_method_options(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "cmp"
    code = main(["compare", "--model", str(tiny_model_dir), "--methods", "manual,cma,soft-prompt-prefix",
                 "--seeds", "3", "--budget", "12", "--prompt-length", "2", "--set", "cma.popsize=4",
                 "--set", "soft-prompt-prefix.batch_size=8", "--test-examples", "50", "--out", str(out),
                 "--no-progress"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "| manual |" in captured.out and "| cma |" in captured.out and "curves.png" in captured.out
    records = {r["method"]: r for r in ResultsLog(out).records}
    assert records["cma"]["options"]["popsize"] == 4 and records["cma"]["test_examples"] == 50
    assert records["soft-prompt-prefix"]["options"]["placement"] == "prefix"


def test_demo_runs_its_four_methods(tiny_model_dir, tmp_path, capsys):
    code = main(["demo", "--model", str(tiny_model_dir), "--budget", "40", "--out", str(tmp_path / "demo"),
                 "--no-progress"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    for method in ("manual", "random", "sql", "soft-prompt"):
        assert f"| {method} |" in captured.out
    assert (tmp_path / "demo" / "curves.png").exists()


def test_ray_executor_matches_in_process_results(tiny_model_dir, tmp_path):
    pytest.importorskip("ray")
    from rlprompt.experiments import RayExecutor

    cfg = config(tiny_model_dir, methods=["manual", "random"], seeds=[1, 2])
    local = compare(cfg, tmp_path / "local", progress=False, log=lambda _: None)
    spread = compare(cfg, tmp_path / "ray", executor=RayExecutor(num_cpus=2), progress=False, log=lambda _: None)
    assert spread.ran == 4 and not spread.failed, spread.failed

    def key(result):
        return {(r["method"], r["seed"]): (r["prompt"], r["dev_accuracy"], r["test_accuracy"], r["prompt_evals"])
                for r in result.records}

    assert key(spread) == key(local)
    assert (tmp_path / "ray" / "runs" / "random-s2" / "summary.json").is_file()
