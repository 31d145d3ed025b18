"""Tests for rlprompt.rewards: built-in values, gradients, z-scores, registry, plug-in failures."""

from __future__ import annotations

import doctest
import functools
import json
import sys
import threading
import types
from importlib import metadata
from pathlib import Path

import pytest
import torch

import rlprompt.rewards.builtin
import rlprompt.rewards.metrics
import rlprompt.rewards.normalize
from rlprompt.errors import ConfigError, RewardError
from rlprompt.rewards import (
    Reward,
    RewardOutput,
    ZScore,
    accuracy,
    balanced_accuracy,
    balanced_gap,
    class_accuracy,
    gap,
    get_reward,
    list_rewards,
    log_likelihood,
    make_gap_reward,
    register_reward,
)
from rlprompt.rewards import registry as reward_registry


def lp_from_probs(probs: list[list[list[float]]], scale: float = 1.0) -> torch.Tensor:
    """Log-probs [P, E, C]; ``scale`` < 1 makes them un-normalised (as the engine's are)."""
    return torch.log(torch.tensor(probs, dtype=torch.float64) * scale)


# Two prompts, three examples, two classes.
PROBS = [
    [[0.9, 0.1], [0.3, 0.7], [0.6, 0.4]],
    [[0.2, 0.8], [0.5, 0.5], [0.1, 0.9]],
]
LABELS = torch.tensor([0, 1, 1])


# -- built-in values on hand-computed cases -------------------------------------


def test_accuracy_values() -> None:
    # prompt 0: correct, correct, wrong; prompt 1: wrong, tie -> class 0 (wrong), correct
    assert accuracy(lp_from_probs(PROBS), LABELS).tolist() == pytest.approx([2 / 3, 1 / 3])


def test_log_likelihood_renormalises() -> None:
    expected = [
        (torch.tensor([0.9, 0.7, 0.4]).log().mean()).item(),
        (torch.tensor([0.2, 0.5, 0.9]).log().mean()).item(),
    ]
    # un-normalised inputs (class probs summing to 0.01) give the same value
    for scale in (1.0, 0.01):
        got = log_likelihood(lp_from_probs(PROBS, scale), LABELS)
        assert got.tolist() == pytest.approx(expected, abs=1e-6)


def test_gap_values() -> None:
    # prompt 0 gaps: 0.8, 0.4, -0.2 -> 160, 80, -36; prompt 1: -0.6, 0 (tie: not > 0), 0.8 -> -108, 0, 160
    got = gap(lp_from_probs(PROBS, 0.05), LABELS)
    assert got.tolist() == pytest.approx([(160 + 80 - 36) / 3, (-108 + 0 + 160) / 3])
    custom = make_gap_reward(correct=1.0, incorrect=2.0)
    assert custom(lp_from_probs(PROBS), LABELS).tolist() == pytest.approx(
        [(0.8 + 0.4 - 0.4) / 3, (-1.2 + 0.8) / 3]
    )
    partial = functools.partial(gap, correct_coef=1.0, incorrect_coef=2.0)
    assert torch.equal(partial(lp_from_probs(PROBS), LABELS), custom(lp_from_probs(PROBS), LABELS))


def test_gap_multiclass_uses_max_other() -> None:
    lp = lp_from_probs([[[0.5, 0.3, 0.2], [0.2, 0.5, 0.3]]])
    # ex 0: label 0, 0.5 - 0.3 = 0.2 -> 40; ex 1: label 2, 0.3 - 0.5 = -0.2 -> -36
    assert gap(lp, torch.tensor([0, 2])).item() == pytest.approx((40 - 36) / 2)


def test_balanced_values() -> None:
    lp = lp_from_probs([[[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.4, 0.6]]])
    labels = torch.tensor([0, 0, 0, 1])
    assert balanced_accuracy(lp, labels).item() == pytest.approx(1.0)
    lp_wrong = lp_from_probs([[[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.6, 0.4]]])
    assert accuracy(lp_wrong, labels).item() == pytest.approx(0.75)
    assert balanced_accuracy(lp_wrong, labels).item() == pytest.approx(0.5)
    # class 0 gaps 0.8, 0.6, 0.4 -> mean 120; class 1 gap -0.2 -> -36
    assert balanced_gap(lp_wrong, labels).item() == pytest.approx((120 - 36) / 2)
    # a class absent from the labels is left out of the mean (3 classes, only 0 and 1 occur)
    lp3 = lp_from_probs([[[0.9, 0.05, 0.05], [0.1, 0.1, 0.8]]])
    assert balanced_accuracy(lp3, torch.tensor([0, 1])).item() == pytest.approx(0.5)


def test_make_gap_reward_checks() -> None:
    with pytest.raises(ConfigError, match="correct=-1"):
        make_gap_reward(correct=-1)
    fn = make_gap_reward(balanced=True)
    assert fn.func is balanced_gap


def test_builtin_doctests() -> None:
    for module in (rlprompt.rewards.builtin, rlprompt.rewards.metrics, rlprompt.rewards.normalize):
        result = doctest.testmod(module)
        assert result.failed == 0 and result.attempted > 0, module.__name__


@pytest.mark.parametrize("fn", [gap, log_likelihood, balanced_gap])
def test_differentiable(fn) -> None:
    torch.manual_seed(0)
    logits = torch.randn(4, 8, 3, requires_grad=True)
    lp = logits.log_softmax(-1) - 1.0  # un-normalised, like the engine's output
    labels = torch.randint(0, 3, (8,))
    rewards = Reward(fn)(lp, labels).rewards
    assert rewards.requires_grad
    rewards.sum().backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


# -- class_accuracy ------------------------------------------------------------------


def test_class_accuracy() -> None:
    acc = class_accuracy(lp_from_probs(PROBS), LABELS)
    assert acc.overall.tolist() == pytest.approx([2 / 3, 1 / 3])
    torch.testing.assert_close(acc.per_class, torch.tensor([[1.0, 0.5], [0.0, 0.5]]))
    assert acc.balanced.tolist() == pytest.approx([0.75, 0.25])
    assert acc.counts.tolist() == [1, 2]
    one = class_accuracy(lp_from_probs(PROBS)[0], LABELS)  # [E, C] for a single prompt
    assert one.overall.shape == (1,)
    absent = class_accuracy(torch.zeros(1, 2, 3), torch.tensor([0, 0]))
    assert torch.isnan(absent.per_class[0, 1:]).all() and absent.balanced.item() == 1.0


# -- the Reward wrapper ----------------------------------------------------------------


def test_reward_output_and_accuracy_diagnostic() -> None:
    out = get_reward("gap")(lp_from_probs(PROBS), LABELS)
    assert isinstance(out, RewardOutput)
    assert out.rewards.shape == (2,)
    assert out.diagnostics["accuracy"].tolist() == pytest.approx([2 / 3, 1 / 3])


def test_reward_diagnostics_passed_through() -> None:
    def with_diag(lp: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return accuracy(lp, labels), {"ones": torch.ones(lp.shape[0], dtype=torch.long)}

    out = Reward(with_diag)(lp_from_probs(PROBS), LABELS)
    assert out.diagnostics["ones"].dtype.is_floating_point and "accuracy" in out.diagnostics


def test_integer_rewards_become_float() -> None:
    out = Reward(lambda lp, y: (lp.argmax(-1) == y).sum(-1))(lp_from_probs(PROBS), LABELS)
    assert out.rewards.tolist() == [2.0, 1.0] and out.rewards.is_floating_point()


def raises_value_error(lp: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    raise ValueError("bad maths")


def wrong_shape(lp: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return lp[..., 0]  # [P, E], not [P]


def returns_nan(lp: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return torch.tensor([float("nan"), float("inf")])


@pytest.mark.parametrize(
    ("fn", "match"),
    [
        (raises_value_error, r"reward 'test_rewards:raises_value_error' raised ValueError: bad maths"),
        (
            wrong_shape,
            r"'test_rewards:wrong_shape' returned rewards of shape \[2, 3\]; expected \[P\] = \[2\]",
        ),
        (returns_nan, r"'test_rewards:returns_nan' returned 2 non-finite value\(s\)"),
        (
            lambda lp, y: ["1.0", 2.0],
            r"returned rewards holding str; expected numbers, one per prompt \(\[P\] = \[2\]\)",
        ),
        (lambda lp, y: (torch.ones(2), {}, 1), r"returned a tuple of 3"),
        (lambda lp, y: (torch.ones(2), {"d": torch.ones(3)}), r"diagnostic 'd' of shape \[3\]"),
        (lambda lp, y: torch.ones(2, dtype=torch.complex64), "complex"),
    ],
)
def test_plugin_failures(fn, match: str) -> None:
    with pytest.raises(RewardError, match=match) as info:
        get_reward(fn)(lp_from_probs(PROBS), LABELS)
    assert "\n" not in str(info.value)


def test_plugin_exception_is_chained() -> None:
    with pytest.raises(RewardError) as info:
        Reward(raises_value_error, name="mypkg.mod:fn")(lp_from_probs(PROBS), LABELS)
    assert str(info.value).startswith("reward 'mypkg.mod:fn' raised ValueError")
    assert isinstance(info.value.__cause__, ValueError)


def test_bad_inputs() -> None:
    reward = get_reward("accuracy")
    with pytest.raises(RewardError, match=r"logprobs must be a float tensor \[P, E, C\], got \(3, 2\)"):
        reward(torch.zeros(3, 2), LABELS)
    with pytest.raises(RewardError, match=r"labels must be an integer tensor \[E\] = \[3\]"):
        reward(lp_from_probs(PROBS), torch.tensor([0, 1]))
    with pytest.raises(RewardError, match=r"labels must lie in \[0, 2\)"):
        reward(lp_from_probs(PROBS), torch.tensor([0, 1, 2]))
    assert reward(lp_from_probs(PROBS), [0, 1, 1]).rewards.shape == (2,)  # a list is converted


def test_timeout() -> None:
    release = threading.Event()

    def hangs(lp: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        release.wait(5)
        return accuracy(lp, labels)

    try:
        with pytest.raises(RewardError, match=r"did not return within 0\.1 s; its thread cannot be killed"):
            Reward(hangs, timeout=0.1)(lp_from_probs(PROBS), LABELS)
    finally:
        release.set()
    # a fast reward under a timeout works, keeps gradients, and errors still name it
    logits = torch.randn(2, 3, 2, requires_grad=True)
    out = get_reward("gap", timeout=5)(logits.log_softmax(-1), LABELS)
    out.rewards.sum().backward()
    assert logits.grad is not None
    with pytest.raises(RewardError, match="raised ValueError"):
        Reward(raises_value_error, timeout=5)(lp_from_probs(PROBS), LABELS)
    with pytest.raises(RewardError, match="positive number"):
        Reward(accuracy, timeout=0)


def test_timeout_keeps_inference_mode() -> None:
    seen: dict[str, bool] = {}

    def probe(lp: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        seen["grad"] = torch.is_grad_enabled()
        return accuracy(lp, labels)

    with torch.no_grad():
        Reward(probe, timeout=5)(lp_from_probs(PROBS), LABELS)
    assert seen["grad"] is False


# -- z-score --------------------------------------------------------------------------


def test_zscore_batch() -> None:
    rewards = torch.tensor([1.0, 2.0, 3.0, 6.0], requires_grad=True)
    z = ZScore(lambda lp, y: rewards * 1, mode="batch")
    out = get_reward(z)(torch.zeros(4, 1, 2), torch.tensor([0]))
    expected = (rewards - rewards.mean()) / rewards.std(unbiased=False)
    assert out.rewards.tolist() == pytest.approx(expected.tolist(), abs=1e-6)
    assert out.diagnostics["raw_reward"].tolist() == [1.0, 2.0, 3.0, 6.0]
    out.rewards.sum().backward()  # gradient flows through the normaliser
    assert rewards.grad is not None
    assert "zscore[batch]" in get_reward(z).name
    with pytest.raises(RewardError, match="at least 2 prompts"):
        ZScore("accuracy")(torch.zeros(1, 1, 2), torch.tensor([0]))


def test_zscore_running_matches_all_values_and_roundtrips() -> None:
    torch.manual_seed(0)
    batches = [torch.randn(n) * 3 + 5 for n in (4, 1, 7)]
    it = iter(batches)
    z = ZScore(lambda lp, y: next(it), mode="running")
    outs = [z(torch.zeros(len(b), 1, 2), torch.tensor([0]))[0] for b in batches]
    seen = torch.cat(batches).double()
    assert z.count == 12
    assert z.mean == pytest.approx(seen.mean().item())
    assert z.std == pytest.approx(seen.std(unbiased=False).item())
    assert outs[-1].tolist() == pytest.approx(((batches[-1] - z.mean) / z.std).tolist(), abs=1e-5)
    state = json.loads(json.dumps(z.state_dict()))  # plain numbers
    z2 = ZScore("accuracy", mode="running")
    z2.load_state_dict(state)
    assert (z2.count, z2.mean, z2.m2) == (z.count, z.mean, z.m2)
    with pytest.raises(ConfigError, match="mode 'running'"):
        ZScore("accuracy", mode="batch").load_state_dict(state)
    with pytest.raises(ConfigError, match="lacks"):
        z2.load_state_dict({"mode": "running"})
    with pytest.raises(ConfigError, match="not one of"):
        ZScore("accuracy", mode="rolling")  # type: ignore[arg-type]


def test_zscore_first_single_value_is_zero() -> None:
    z = ZScore(lambda lp, y: torch.tensor([4.0]), mode="running")
    assert z(torch.zeros(1, 1, 2), torch.tensor([0]))[0].tolist() == [0.0]


# -- registry -------------------------------------------------------------------------


def test_builtin_names() -> None:
    for name in ("accuracy", "log-likelihood", "gap", "balanced-accuracy", "balanced-gap"):
        assert name in list_rewards()
        assert get_reward(name).name == name
    assert get_reward("log_likelihood").fn is log_likelihood


def test_unknown_name_lists_known() -> None:
    with pytest.raises(
        ConfigError, match=r"unknown reward 'gapp'; did you mean 'gap'\?.*accuracy.*balanced-gap"
    ):
        get_reward("gapp")


def test_register_reward(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reward_registry, "_REWARDS", dict(reward_registry._REWARDS))
    register_reward("my_reward", accuracy)
    assert get_reward("my-reward").fn is accuracy
    with pytest.raises(ConfigError, match="already registered"):
        register_reward("my-reward", gap)
    register_reward("my-reward", gap, overwrite=True)
    assert get_reward("my_reward").fn is gap
    with pytest.raises(ConfigError, match="not callable"):
        register_reward("x", 3)  # type: ignore[arg-type]


@pytest.fixture()
def plugin_module(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    mod = types.ModuleType("my_plugins")

    def neg_acc(lp: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return -accuracy(lp, labels)

    class Holder:
        fn = staticmethod(neg_acc)

    mod.neg_acc = neg_acc  # type: ignore[attr-defined]
    mod.Holder = Holder  # type: ignore[attr-defined]
    mod.not_callable = 3  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "my_plugins", mod)
    return mod


def test_import_string(plugin_module: types.ModuleType) -> None:
    reward = get_reward("my_plugins:neg_acc")
    assert reward.name == "my_plugins:neg_acc"
    assert reward(lp_from_probs(PROBS), LABELS).rewards.tolist() == pytest.approx([-2 / 3, -1 / 3])
    assert get_reward("my_plugins:Holder.fn").fn is plugin_module.neg_acc
    with pytest.raises(ConfigError, match="cannot import module 'no_such_mod_xyz'"):
        get_reward("no_such_mod_xyz:fn")
    with pytest.raises(ConfigError, match="module 'my_plugins' has no attribute 'missing'"):
        get_reward("my_plugins:missing")
    with pytest.raises(ConfigError, match="'not_callable' is a int, not a function"):
        get_reward("my_plugins:not_callable")
    with pytest.raises(ConfigError, match="expected 'package.module:function'"):
        get_reward("my_plugins:")


def test_import_string_from_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "user_reward_mod.py").write_text(
        "import torch\n\ndef half(lp, labels):\n    return torch.full((lp.shape[0],), 0.5)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert get_reward("user_reward_mod:half")(lp_from_probs(PROBS), LABELS).rewards.tolist() == [0.5, 0.5]


def test_entry_point(plugin_module: types.ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    eps = [
        metadata.EntryPoint("neg-acc", "my_plugins:neg_acc", "rlprompt.rewards"),
        metadata.EntryPoint("broken", "my_plugins:missing", "rlprompt.rewards"),
    ]

    def fake_entry_points(*, group: str) -> list[metadata.EntryPoint]:
        return eps if group == "rlprompt.rewards" else []

    monkeypatch.setattr(reward_registry.metadata, "entry_points", fake_entry_points)
    assert "neg-acc" in list_rewards()
    reward = get_reward("neg_acc")
    assert reward.fn is plugin_module.neg_acc and "my_plugins:neg_acc" in reward.name
    with pytest.raises(ConfigError, match=r"entry point 'broken' = 'my_plugins:missing'.*failed to load"):
        get_reward("broken")


def test_callable_and_reward_specs() -> None:
    reward = get_reward(accuracy)
    assert reward.name == "rlprompt.rewards.builtin:accuracy"
    assert get_reward(reward) is reward
    assert get_reward(reward, timeout=3).timeout == 3
    assert "gap" in get_reward(make_gap_reward(1, 1)).name
    with pytest.raises(ConfigError, match="is not a name"):
        get_reward(3)  # type: ignore[arg-type]
