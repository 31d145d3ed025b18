"""The quality protocol's target arithmetic (benchmarks/bench_quality.py), on tables written by hand."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _import_bench(name: str):  # noqa: ANN202
    """A benchmark script as a module (benchmarks/ on sys.path while the fixture lives)."""
    sys.path.insert(0, str(BENCH))
    try:
        yield importlib.import_module(name)
    finally:
        sys.path.remove(str(BENCH))


@pytest.fixture(scope="module")
def bench_quality():
    yield from _import_bench("bench_quality")


def _rows(**means: float) -> dict:
    return {m: {"tests": [v - 1.0, v + 1.0], "wall": [1.0, 1.0], "curves": [[(100.0, 0.5)], [(100.0, 0.7)]],
                "family": m, "variant": ""} for m, v in means.items()}


def test_targets_score_one_agent_on_every_task_not_the_best_per_task(bench_quality) -> None:
    # sql wins task a by 10, ppo wins task b by 10: a per-task pick would credit "RL" +10 on
    # both; each agent alone is +10 on one task and -5 on the other, so +2.5.
    tables = {
        "a": _rows(random=60, **{"lm-prior": 62}, sql=72, ppo=57, cma=61, pgpe=63),
        "b": _rows(random=50, **{"lm-prior": 48}, sql=45, ppo=60, cma=55, pgpe=50),
    }
    figures: dict = {}
    bench_quality.targets(tables, figures)
    assert figures["target1_discrete_rl_agent"] in ("sql", "ppo")
    assert figures["target1_mean_margin"] == pytest.approx(2.5)
    assert figures["target1_tasks_above"] == 1
    # each task: seeds {v-1, v+1} on both sides, SE sqrt(2/2 + 2/2); over two tasks sqrt(2 + 2) / 2
    assert figures["target1_mean_margin_se"] == pytest.approx(1.0)
    assert figures["a/sql/margin_over_search"] == pytest.approx(10.0)
    assert figures["b/ppo/margin_over_search"] == pytest.approx(10.0)
    # pgpe: +2 over max(cma, random) on a, -5 on b
    assert figures["target3_soft_rl_agent"] == "pgpe"
    assert figures["target3_soft_rl_margin"] == pytest.approx(-1.5)


def test_an_agent_missing_on_a_task_is_not_ranked(bench_quality) -> None:
    tables = {
        "a": _rows(random=60, **{"lm-prior": 62}, sql=61, grpo=90),
        "b": _rows(random=50, **{"lm-prior": 48}, sql=53),
    }
    figures: dict = {}
    bench_quality.targets(tables, figures)
    assert figures["target1_discrete_rl_agent"] == "sql"
    assert figures["target1_mean_margin"] == pytest.approx(1.0)


def test_a_variant_folder_is_ranked_as_its_method_and_named_in_the_table(bench_quality, tmp_path) -> None:
    # the variant's folder: one ppo run with prior=true, read as "ppo-prior", an RL agent like ppo
    folder = tmp_path / "variant" / "a"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"options": {"ppo": {"prior": "true"}}}))
    record = {"method": "ppo", "seed": 42, "status": "completed", "test_accuracy": 0.7, "wall_seconds": 3.0,
              "curve": [[10.0, 0.6]]}
    (folder / "results.jsonl").write_text(json.dumps(record) + "\n")
    tables = {"a": _rows(random=60, **{"lm-prior": 62}, ppo=50)}
    tables["a"].update(bench_quality.read_task(folder, "prior"))
    assert tables["a"]["ppo-prior"]["tests"] == [pytest.approx(70.0)]
    figures: dict = {}
    bench_quality.targets(tables, figures)
    assert figures["target1_discrete_rl_agent"] == "ppo-prior"
    assert figures["target1_mean_margin"] == pytest.approx(8.0)
    table = bench_quality.markdown_table(tables, ["random", "lm-prior", "ppo", "ppo-prior"], seeds=3)
    assert "| PPO (SB3, discrete RL), `--set ppo.prior=true` | **70.0 [1 seed]** | 70.0 |" in table
    assert "| random search | 60.0 (1.4) [2 seeds] | 60.0 |" in table
    with pytest.raises(SystemExit):
        bench_quality.main(["--report", "--with", "prior"])  # SUFFIX=FOLDER, not a bare name


@pytest.fixture(scope="module")
def bench_tst():
    yield from _import_bench("bench_tst")


def _tst_folder(folder: Path, joints: dict[str, float]) -> None:
    folder.mkdir(parents=True)
    (folder / "results.jsonl").write_text("".join(
        json.dumps({"method": m, "seed": 42, "status": "completed", "test_accuracy": j / 100, "wall_seconds": 1.0,
                    "test_metrics": {"style": 0.3}}) + "\n" for m, j in joints.items()))


def test_tst_report_ranks_a_variant_folder_as_an_rl_agent(bench_tst, tmp_path, capsys) -> None:
    """bench_tst --with SUFFIX=FOLDER: the variant's ppo runs are 'ppo-prior', an RL agent for the target."""
    _tst_folder(tmp_path / "base" / "yelp-0to1", {"manual": 12.0, "lm-prior": 11.0, "sql": 10.0})
    _tst_folder(tmp_path / "prior" / "yelp-0to1", {"ppo": 13.5})
    figures = bench_tst.main(["--report", "--tasks", "yelp-0to1", "--out", str(tmp_path / "base"),
                              "--with", f"prior={tmp_path / 'prior'}"])
    assert figures["yelp-0to1/ppo-prior/joint"] == pytest.approx(13.5)
    assert figures["yelp-0to1/rl_margin"] == pytest.approx(1.5)  # ppo-prior minus the better of manual, LM-prior
    assert figures["target_met_directions"] == 1
    assert "ppo-prior" in capsys.readouterr().out


def test_tst_target_counts_an_instruction_folders_baselines(bench_tst, tmp_path) -> None:
    """An --instruction folder's LM-prior and its no-prompt row (the instruction alone) are baselines too."""
    _tst_folder(tmp_path / "base" / "yelp-0to1", {"manual": 12.0, "lm-prior": 11.0, "sql": 10.0})
    variant = tmp_path / "instr" / "yelp-0to1"
    _tst_folder(variant, {"ppo": 16.0, "lm-prior": 14.0, "no-prompt": 15.0})
    args = ["--report", "--tasks", "yelp-0to1", "--out", str(tmp_path / "base"),
            "--with", f"instr={tmp_path / 'instr'}"]
    assert bench_tst.main(args)["yelp-0to1/rl_margin"] == pytest.approx(2.0)  # over the variant's LM-prior
    template = bench_tst.instruction_template("yelp-0to1")
    assert template == 'Rewrite the negative review as a positive one:{prompt} "{input}" "'
    (variant / "config.json").write_text(json.dumps({"task_args": {"template": template}}))
    assert bench_tst.main(args)["yelp-0to1/rl_margin"] == pytest.approx(1.0)  # over the instruction alone
    with pytest.raises(SystemExit):  # manual would write an instruction after the instruction
        bench_tst.main(["--instruction", "--methods", "manual", "--out", str(tmp_path / "x")])
    assert not (tmp_path / "x").exists()


@pytest.fixture(scope="module")
def make_large_dev():
    yield from _import_bench("make_large_dev")


def _split(path: Path, rows: list[tuple[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("text\tlabel\n" + "".join(f"{t}\t{lab}\n" for t, lab in rows), encoding="utf-8")


def test_large_dev_keeps_train_adds_other_seeds_per_class_and_never_this_seeds_train(make_large_dev, tmp_path) -> None:
    src = tmp_path / "data" / "t"
    _split(src / "test.tsv", [("q \\$ 1", "0")])
    _split(src / "1" / "train.tsv", [("a", "0"), ("b", "1")])
    _split(src / "1" / "dev.tsv", [("c", "0"), ("d", "1")])
    # seed 2 holds seed 1's training text 'a' (must not reach seed 1's dev), a duplicate of 'c',
    # and more of class 1 than the target of 3 per class takes
    _split(src / "2" / "train.tsv", [("a", "0"), ("c", "0"), ("e \\$", "0")])
    _split(src / "2" / "dev.tsv", [("f", "1"), ("g", "1"), ("h", "1")])
    assert make_large_dev.main(["--data-dir", str(tmp_path / "data"), "--task", "t", "--dev-per-class", "3",
                                "--out", str(tmp_path / "out")]) == 0
    out = tmp_path / "out" / "t"
    assert (out / "1" / "train.tsv").is_symlink() and (out / "test.tsv").is_symlink()
    _, dev = make_large_dev.read_split(out / "1" / "dev.tsv")
    assert dev[:2] == [("c", "0"), ("d", "1")]  # its own dev first, unchanged
    texts = [t for t, _ in dev]
    assert "a" not in texts and len(texts) == len(set(texts))
    assert sorted(t for t, lab in dev if lab == "0") == ["c", "e \\$"]  # the pool ran out of class 0
    assert sum(lab == "1" for _, lab in dev) == 3
    _, again = make_large_dev.read_split(out / "1" / "dev.tsv")
    make_large_dev.main(["--data-dir", str(tmp_path / "data"), "--task", "t", "--dev-per-class", "3",
                         "--out", str(tmp_path / "out")])
    assert make_large_dev.read_split(out / "1" / "dev.tsv")[1] == again  # seeded: the same draw again


def test_large_dev_refuses_a_missing_task_and_an_out_inside_the_repository(make_large_dev, tmp_path) -> None:
    with pytest.raises(SystemExit, match="no such task folder"):
        make_large_dev.main(["--data-dir", str(tmp_path), "--task", "nope", "--out", str(tmp_path / "out")])
    (tmp_path / "t" / "1").mkdir(parents=True)
    inside = Path(__file__).resolve().parents[1] / "runs" / "large-dev"
    with pytest.raises(SystemExit, match="inside the repository"):
        make_large_dev.main(["--data-dir", str(tmp_path), "--task", "t", "--out", str(inside)])
    assert not inside.exists()
