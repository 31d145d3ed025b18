"""Generation through the engine: shared caches equal full sequences, settings, stop strings,
counters, text log-probabilities, and the bad inputs of a generation task."""

from __future__ import annotations

import pytest
import torch
from conftest import build_tiny_causal

from rlprompt.errors import ConfigError, DataError
from rlprompt.lm.generation import GenerationEngine, GenerationSettings
from rlprompt.tasks.generation import GenerationTask, TextExample, generation_task_from_files

pytestmark = pytest.mark.usefixtures("one_thread")

TEXTS = ["it was good , not bad at all", "i loved it .", "world sports business tech news today ."]
PROMPTS = ["the review", "", "what is"]


@pytest.fixture(scope="module")
def sharp():
    return build_tiny_causal(initializer_range=0.3, name="tiny-sharp-gen")


@pytest.mark.parametrize("template", ['{prompt} "{input}" "', "{input} {prompt}", "Q: {input} {prompt} A:"])
def test_shared_cache_generation_equals_full_sequences_greedy(sharp, template: str) -> None:
    engine = GenerationEngine(sharp, template, settings=GenerationSettings(max_new_tokens=12, stop=()))
    cached = engine.generate(PROMPTS, TEXTS)
    full = engine.generate(PROMPTS, TEXTS, use_cache=False)
    assert cached == full
    assert len(cached) == 3 and all(len(row) == 3 and len(row[0]) == 1 for row in cached)
    assert len({c for row in cached for e in row for c in e}) > 3  # prompts and inputs change what is written


def test_shared_cache_runs_fewer_tokens(sharp) -> None:
    engine = GenerationEngine(sharp, "{input} {prompt}", settings=GenerationSettings(max_new_tokens=4, stop=()))
    engine.generate(PROMPTS, TEXTS)
    shared = engine.counters.forward_tokens
    engine.counters.forward_tokens = 0
    engine.generate(PROMPTS, TEXTS, use_cache=False)
    assert shared < engine.counters.forward_tokens


def test_counters_and_stop_strings(sharp) -> None:
    engine = GenerationEngine(sharp, "{input} {prompt}", settings=GenerationSettings(max_new_tokens=16, stop=()))
    free = engine.generate(["the review"], TEXTS)
    c = engine.counters
    assert (c.prompt_evals, c.example_evals) == (1, 3)
    assert 0 < c.generated_tokens <= 3 * 16
    # A stop string cut from a longer completion: the text before it, and it no longer grows.
    word = free[0][0][0].strip()[:3]
    assert word
    stopped = engine.generate(["the review"], TEXTS[:1], GenerationSettings(max_new_tokens=16, stop=(word,)))
    assert word not in stopped[0][0][0] and free[0][0][0].startswith(stopped[0][0][0])


def test_sampling_is_seeded_and_gives_several_samples(sharp) -> None:
    engine = GenerationEngine(sharp, "{input} {prompt}")
    settings = GenerationSettings(max_new_tokens=6, greedy=False, num_samples=3, stop=())
    a = engine.generate(["x"], TEXTS, settings, generator=torch.Generator().manual_seed(1))
    b = engine.generate(["x"], TEXTS, settings, generator=torch.Generator().manual_seed(1))
    assert a == b and all(len(s) == 3 for s in a[0])
    assert len(set(a[0][0])) > 1


@pytest.mark.parametrize("kwargs, match", [
    ({"max_new_tokens": 0}, "max_new_tokens"), ({"max_new_tokens": 100_000}, "max_new_tokens"),
    ({"greedy": True, "num_samples": 2}, "identical"), ({"greedy": False, "temperature": 0.0}, "temperature"),
    ({"num_samples": 0}, "num_samples"), ({"stop": "x"}, "stop"), ({"top_k": 0}, "top_k"),
])
def test_bad_generation_settings(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        GenerationSettings(**kwargs)


def test_bad_inputs_to_generate(sharp) -> None:
    engine = GenerationEngine(sharp, "{input} {prompt}", settings=GenerationSettings(max_new_tokens=4))
    with pytest.raises(ConfigError, match="empty"):
        engine.generate(["x"], ["   "])
    with pytest.raises(ConfigError, match="context"):
        engine.generate(["x"], ["word " * 400])
    with pytest.raises(ConfigError, match="no examples"):
        engine.generate(["x"], [])


def test_text_logprobs_equal_the_models_own(sharp) -> None:
    engine = GenerationEngine(sharp)
    texts = ["i loved it .", "world sports business", "", "ok"]
    got = engine.text_logprobs(texts)
    tok = sharp.tokenizer
    start = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
    for text, (total, n) in zip(texts, got, strict=True):
        ids = [start] + tok(text, add_special_tokens=False).input_ids
        assert n == len(ids) - 1
        if n == 0:
            assert total == 0.0
            continue
        with torch.no_grad():
            logits = sharp.model(torch.tensor([ids], device=sharp.device)).logits[0, :-1].float()
        want = torch.log_softmax(logits, -1).gather(-1, torch.tensor(ids[1:], device=logits.device)[:, None]).sum()
        assert total == pytest.approx(float(want), abs=1e-3)


def test_generation_engine_refuses_a_masked_lm(tiny_masked_lm) -> None:
    with pytest.raises(ConfigError, match="causal"):
        GenerationEngine(tiny_masked_lm)


# -- tasks -------------------------------------------------------------------------------------


def _split(n: int) -> list[TextExample]:
    return [TextExample(f"input number {i}", (f"target {i}",)) for i in range(n)]


def test_generation_task_refuses_empty_splits_and_inputs() -> None:
    with pytest.raises(DataError, match="train split is empty"):
        GenerationTask(name="g", train=[], dev=_split(2), test=_split(2))
    with pytest.raises(DataError, match="empty input"):
        GenerationTask(name="g", train=[TextExample("  ")], dev=_split(2), test=_split(2))
    with pytest.raises(DataError, match="rewards receive"):
        GenerationTask(name="g", train=[TextExample("a", (), {"prompts": 1})], dev=_split(2), test=_split(2))


def test_generation_task_from_files(tmp_path) -> None:
    import json

    (tmp_path / "train.csv").write_text("question,answer,topic\nwhat is two,2,math\nwho is it,me,people\n")
    (tmp_path / "dev.tsv").write_text("question\tanswer\ttopic\nwhat is one\t1\tmath\n")
    (tmp_path / "test.jsonl").write_text(json.dumps({"question": "what is three", "answer": ["3", "three"],
                                                     "topic": "math"}) + "\n")
    task = generation_task_from_files("qa", tmp_path / "train.csv", tmp_path / "dev.tsv", tmp_path / "test.jsonl",
                                      input_column="question", reference_column="answer")
    assert task.texts("train") == ["what is two", "who is it"]
    assert task.test[0].references == ("3", "three")
    cols = task.columns("train")
    assert cols["references"] == [["2"], ["me"]] and cols["topic"] == ["math", "people"]
    with pytest.raises(DataError, match="no column 'missing'"):
        generation_task_from_files("qa", tmp_path / "train.csv", tmp_path / "dev.tsv", tmp_path / "test.jsonl",
                                   input_column="missing")
    (tmp_path / "empty.csv").write_text("question,answer\n ,x\n")
    with pytest.raises(DataError, match="empty"):
        generation_task_from_files("qa", tmp_path / "empty.csv", tmp_path / "dev.tsv", tmp_path / "test.jsonl",
                                   input_column="question")


def test_rows_that_stop_early_leave_the_others_unchanged(sharp) -> None:
    """Finished rows are dropped from the batch: every completion equals the one written alone."""
    engine = GenerationEngine(sharp, "{input} {prompt}", settings=GenerationSettings(max_new_tokens=14, stop=()))
    free = [c[0] for row in engine.generate(PROMPTS, TEXTS) for c in row]
    letters = sorted({ch for text in free for ch in text if ch.isalpha()})
    stop = (letters[len(letters) // 2],)  # a letter some completions reach early and others late
    settings = GenerationSettings(max_new_tokens=14, stop=stop)
    batch = engine.generate(PROMPTS, TEXTS, settings)
    alone = [[engine.generate([p], [t], settings)[0][0] for t in TEXTS] for p in PROMPTS]
    assert batch == alone
    lengths = {len(c[0]) for row in batch for c in row}
    assert len(lengths) > 1
