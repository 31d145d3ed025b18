"""Gradient soft prompt tuning: PEFT round trip, learning, budget, NaN, bad input, `rlprompt tune`."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch
from conftest import assert_accuracy, assert_run_reports_its_prompt, build_tiny_causal, word_sentiment_task

from rlprompt.agents import Budget, SoftPromptConfig, SoftPromptTuning, get_agent_class
from rlprompt.agents.gradient.peft_format import export_peft, load_soft_prompt
from rlprompt.errors import ConfigError, DataError
from rlprompt.lm import ScoringEngine
from rlprompt.tasks import Task, load_task

TOL = 1e-4


@pytest.fixture()
def task() -> Task:
    """Binary sentiment where one word decides the class (32 train, 32 dev, 64 test)."""
    return word_sentiment_task(32)


def engine_for(lm, task: Task) -> ScoringEngine:
    return ScoringEngine(lm, task.verbalizers, task.template)


# -- PEFT ----------------------------------------------------------------------------------


def test_peft_loads_the_export_and_matches_prefix_scores(tmp_path, task):
    from peft import PeftModel

    lm = build_tiny_causal()  # a fresh copy: PEFT wraps it
    eng = engine_for(lm, task)
    agent = SoftPromptTuning(eng, task, SoftPromptConfig(placement="prefix", prompt_length=4, learning_rate=0.05))
    agent.learn(12, progress=False)
    folder = agent.export_peft(tmp_path / "peft")
    config = json.loads((folder / "adapter_config.json").read_text())
    assert config["peft_type"] == "PROMPT_TUNING" and config["task_type"] == "CAUSAL_LM"
    assert config["num_virtual_tokens"] == 4 and config["token_dim"] == 32
    assert config["base_model_name_or_path"] == "tiny-llama"

    texts = task.texts("test")[:6]
    ours = eng.score_soft(agent.predict().unsqueeze(0), texts, placement="prefix")[0]  # [E, C]
    peft_model = PeftModel.from_pretrained(build_tiny_causal().model, folder)
    torch.testing.assert_close(peft_model.get_prompt_embedding_to_save("default").cpu(), agent.predict().cpu())
    ids = [i[0] for i in eng.verbalizer_ids]
    for e, text in enumerate(texts):
        enc = lm.tokenizer(text, return_tensors="pt").to(lm.device)
        with torch.no_grad():
            logits = peft_model(input_ids=enc.input_ids, attention_mask=enc.attention_mask).logits[0, -1]
        torch.testing.assert_close(torch.log_softmax(logits, -1)[ids], ours[e], atol=TOL, rtol=0)

    # import from PEFT's format: the same prompt, prefix placement
    back = SoftPromptTuning.load(folder, eng, task)
    assert back.placement.value == "prefix" and back.config.prompt_length == 4
    torch.testing.assert_close(back.predict(), agent.predict())


def test_save_load_and_projection(tmp_path, sharp_lm, task):
    eng = engine_for(sharp_lm, task)  # prompts differ in accuracy on it
    agent = SoftPromptTuning(eng, task, SoftPromptConfig(prompt_length=3), out_dir=tmp_path / "run")
    agent.learn(10, progress=False)
    path = agent.save(tmp_path / "p.safetensors")
    embeds, meta = load_soft_prompt(path, token_dim=32)
    assert meta["agent"] == "soft-prompt" and meta["placement"] == "suffix" and meta["config"]["prompt_length"] == 3
    again = SoftPromptTuning.load(path, eng, task)
    torch.testing.assert_close(again.predict(), agent.predict())
    assert again.tracker.best.dev_accuracy == pytest.approx(agent.tracker.best.dev_accuracy)
    proj = agent.project(metric="l2", splits=("dev",))
    assert len(proj["tokens"]) == 3 and proj["text"] == eng.decode(proj["tokens"])
    # the projected tokens' dev accuracy is theirs, scored as a discrete prompt at the template's slot
    assert_accuracy(proj["dev_accuracy"], eng, task, proj["tokens"], "dev")
    assert proj["dev_soft_accuracy"] == pytest.approx(agent.tracker.best.dev_accuracy)
    assert_accuracy(proj["dev_soft_accuracy"], eng, task, agent.predict(), "dev")
    assert proj["dev_accuracy"] != proj["dev_soft_accuracy"]  # (so the two checks above tell them apart)
    # a soft prompt made of real token embeddings projects back onto those tokens
    table = sharp_lm.input_embeddings().weight
    assert agent.nearest(table[[50, 60, 70]]) == [50, 60, 70]
    for name in ("curve.csv", "prompt.safetensors", "summary.json"):
        assert (tmp_path / "run" / name).is_file()


# -- learning -----------------------------------------------------------------------------


@pytest.mark.parametrize("placement", ["suffix", "prefix"])
def test_learns_the_synthetic_task(sharp_lm, task, placement):
    eng = engine_for(sharp_lm, task)
    agent = SoftPromptTuning(eng, task, SoftPromptConfig(placement=placement, learning_rate=0.1, eval_every=4))
    agent.learn(120, progress=False)
    curve = agent.tracker.curve
    losses = [-p.train_score for p in curve[1:]]
    assert losses[-1] < 0.5 * losses[0], losses
    assert curve[0].dev_accuracy <= 0.75 and agent.tracker.best.dev_accuracy >= 0.9
    assert agent.summary(test=True).test_accuracy >= 0.9


def test_adafactor_and_gap_loss_run(sharp_lm, task):
    eng = engine_for(sharp_lm, task)
    cfg = SoftPromptConfig(optimizer="adafactor", loss="gap", init="verbalizers", eval_every=2)
    assert cfg.learning_rate is None and cfg.effective_learning_rate == 0.3
    agent = SoftPromptTuning(eng, task, cfg)
    agent.learn(40, progress=False)
    assert agent.status == "completed" and agent.tracker.best.dev_accuracy > 0.5


# -- budget, early stopping, NaN, interrupt ------------------------------------------------


@pytest.mark.parametrize("limit", [1, 7, 30, 31])
def test_budget_is_exact(tiny_lm, task, limit):
    eng = engine_for(tiny_lm, task)
    before = eng.counters.copy()
    agent = SoftPromptTuning(eng, task, SoftPromptConfig(eval_every=3))
    agent.learn(limit, progress=False)
    s = agent.summary()
    steps = agent.extra.get("steps", 0)
    # 32 training examples in batches of 16: a step (forward + backward) costs 2 * 16/32 = 1; every
    # dev evaluation (32 examples, the initial one included) costs 32/32 = 1.
    assert s.prompt_evals == steps + len(agent.tracker.curve) <= limit
    assert limit - s.prompt_evals < 2  # stops only when a step and its evaluation no longer fit
    assert s.example_evals == 32 * s.prompt_evals
    forward = (eng.counters - before).example_evals  # the backward passes are charged on top
    assert s.example_evals - forward == 16 * steps
    assert s.backward_tokens > 0 or steps == 0


def test_max_steps_epochs_and_early_stopping(tiny_lm, task):
    eng = engine_for(tiny_lm, task)
    agent = SoftPromptTuning(eng, task, SoftPromptConfig(epochs=2))  # 32 examples / 16 = 2 steps per epoch
    agent.learn(500, progress=False)
    assert agent.extra["steps"] == 4 and agent.status == "completed"
    agent = SoftPromptTuning(eng, task, SoftPromptConfig(learning_rate=1e-6, eval_every=1, patience=3))
    agent.learn(500, progress=False)
    assert agent.status == "early-stopped" and "3 evaluations" in agent.message
    assert agent.extra["steps"] < 10


class _DivergesAfter(SoftPromptTuning):
    """A loss that turns NaN after some steps, as a too-high learning rate makes it do on a
    real LM (the tiny model's RMSNorm keeps it finite until the prompt itself overflows)."""

    calls = 0

    def _loss(self, logprobs, labels):
        self.calls += 1
        loss = super()._loss(logprobs, labels)
        return loss * math.nan if self.calls > 4 else loss


def test_nan_loss_stops_and_keeps_the_best(tmp_path, tiny_lm, task):
    eng = engine_for(tiny_lm, task)
    agent = _DivergesAfter(eng, task, SoftPromptConfig(learning_rate=0.5, eval_every=1), out_dir=tmp_path)
    agent.learn(100, progress=False)
    assert agent.status == "non-finite-loss"
    assert "NaN" in agent.message and "at step 5" in agent.message and "smaller lr" in agent.message
    assert "best checkpoint" in agent.message
    assert agent.extra["steps"] == 4 and len(agent.tracker.curve) == 5
    best = max(agent.tracker.curve, key=lambda p: p.best_dev_accuracy)
    assert agent.tracker.best.dev_accuracy == best.best_dev_accuracy
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "non-finite-loss" and summary["dev_accuracy"] == agent.tracker.best.dev_accuracy
    embeds, _ = load_soft_prompt(tmp_path / "prompt.safetensors")
    torch.testing.assert_close(embeds, agent.predict())


class _InterruptAfter(SoftPromptTuning):
    """Raises Ctrl-C's exception once some budget is spent, as a user pressing it would."""

    def tick(self, train_score=None):
        super().tick(train_score)
        if self.budget.used >= 9:
            raise KeyboardInterrupt


def test_interrupt_leaves_the_best_and_the_summary(tmp_path, tiny_lm, task):
    agent = _InterruptAfter(engine_for(tiny_lm, task), task, SoftPromptConfig(eval_every=1), out_dir=tmp_path)
    with pytest.raises(KeyboardInterrupt):
        agent.learn(100, progress=False)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["prompt_evals"] >= 9
    assert (tmp_path / "prompt.safetensors").is_file()
    assert len((tmp_path / "curve.csv").read_text().splitlines()) == 1 + len(agent.tracker.curve)


# -- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"prompt_length": 0}, "prompt_length must be a positive integer, got 0"),
    ({"placement": "middle"}, "placement 'middle' is not known; choose one of 'suffix', 'prefix'"),
    ({"init": "text"}, "init='text' needs init_text"),
    ({"optimizer": "sgd"}, "optimizer 'sgd' is not known"),
    ({"learning_rate": -1.0}, "learning_rate must be a positive number"),
    ({"batch_size": 0}, "batch_size must be a positive integer"),
])
def test_bad_options(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        SoftPromptConfig(**kwargs)


def test_n_tokens_beyond_the_context(tiny_lm, task):
    with pytest.raises(ConfigError, match=r"exceed the 256-token context of 'tiny-llama'; use prompt_length <= \d+"):
        SoftPromptTuning(engine_for(tiny_lm, task), task, SoftPromptConfig(prompt_length=300))


def test_bad_budget_and_unknown_method(tiny_lm, task):
    with pytest.raises(ConfigError, match="budget must be a positive number of prompt evaluations, got 0"):
        Budget(engine_for(tiny_lm, task), 0, train_examples=4)
    with pytest.raises(ConfigError, match="unknown method 'sof-prompt'; did you mean 'soft-prompt'"):
        get_agent_class("sof-prompt")


def test_peft_folder_errors(tmp_path, tiny_lm, task):
    eng = engine_for(tiny_lm, task)
    lora = tmp_path / "lora"
    export_peft(torch.zeros(2, 32), lora)
    cfg = json.loads((lora / "adapter_config.json").read_text())
    (lora / "adapter_config.json").write_text(json.dumps({**cfg, "peft_type": "LORA"}))
    with pytest.raises(ConfigError, match="holds a 'LORA' adapter, not a soft prompt"):
        SoftPromptTuning.load(lora, eng, task)
    wide = export_peft(torch.zeros(2, 64), tmp_path / "wide")
    with pytest.raises(ConfigError, match="token_dim 64 but the LM's embeddings are 32-dimensional"):
        SoftPromptTuning.load(wide, eng, task)
    corrupt = tmp_path / "corrupt"
    shutil.copytree(wide, corrupt)
    (corrupt / "adapter_model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(DataError, match="is not a valid safetensors file"):
        SoftPromptTuning.load(corrupt, eng, task)
    garbage = tmp_path / "p.safetensors"
    garbage.write_bytes(b"garbage")
    with pytest.raises(DataError, match="is not a valid safetensors file"):
        SoftPromptTuning.load(garbage, eng, task)
    with pytest.raises(DataError, match="adapter_config.json is missing"):
        SoftPromptTuning.load(tmp_path, eng, task)


# -- rlprompt tune, end to end on SmolLM2 and the shared SST-2 ---------------------------------


@pytest.mark.integration
def test_tune_end_to_end_on_sst2(smollm32, fsc16, tmp_path, capsys):
    import argparse

    from rlprompt.cli.tune import add_tune_args, run_tune

    # the shared seed-42 train/dev, and the first 20 test examples (a full test pass is minutes on CPU)
    data = tmp_path / "fsc16"
    (data / "sst-2" / "42").mkdir(parents=True)
    for name in ("train.tsv", "dev.tsv"):
        shutil.copy(fsc16 / "sst-2" / "42" / name, data / "sst-2" / "42" / name)
    lines = (fsc16 / "sst-2" / "test.tsv").read_text().splitlines()
    (data / "sst-2" / "test.tsv").write_text("\n".join(lines[:21]) + "\n")

    parser = argparse.ArgumentParser()
    add_tune_args(parser)
    out, peft_dir = tmp_path / "run", tmp_path / "peft"
    args = parser.parse_args(["--task", "sst-2", "--data-dir", str(data), "--seed", "42", "--method", "soft-prompt",
                              "--budget", "4", "--batch-size", "8", "--out", str(out), "--export-peft", str(peft_dir),
                              "--placement", "suffix", "--no-progress", "--dtype", "float32"])
    with pytest.warns(UserWarning, match="placement='suffix'"):
        assert run_tune(args) == 0
    sst2 = load_task("sst-2", data_dir=data, seed=42)
    assert len(sst2.test) == 20
    # the dev and test accuracies in summary.json are the saved soft prompt's (recomputed on SmolLM2)
    summary = assert_run_reports_its_prompt(out, smollm32, sst2)
    assert summary["method"] == "soft-prompt" and summary["status"] == "completed"
    assert summary["prompt_evals"] == 4 and summary["test_accuracy"] is not None
    proj = summary["extra"]["projection"]
    assert proj["metric"] == "cosine"
    engine = ScoringEngine(smollm32, sst2.verbalizers, sst2.template)
    assert_accuracy(proj["test_accuracy"], engine, sst2, proj["tokens"], "test")
    assert (peft_dir / "adapter_model.safetensors").is_file() and (out / "curve.csv").is_file()
    printed = capsys.readouterr().out
    assert f"dev accuracy {summary['dev_accuracy']:.4f}, test accuracy {summary['test_accuracy']:.4f}" in printed
    assert f"keep test accuracy {proj['test_accuracy']:.4f}" in printed
    bad = parser.parse_args(["--task", "sst-2", "--data-dir", str(data), "--method", "random",
                             "--learning-rate", "0.1"])
    with pytest.raises(ConfigError, match="--learning-rate does not apply to --method random"):
        run_tune(bad)
