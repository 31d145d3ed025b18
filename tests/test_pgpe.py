"""PGPE, the Gaussian policy-gradient agent on soft prompts: its ranks, its options, and that it
learns on a smooth synthetic objective where a random search in the same space does not."""

from __future__ import annotations

import pytest
import torch

from rlprompt.agents.rl.pgpe.agent import PGPE, centred_ranks
from rlprompt.agents.rl.pgpe.config import PGPEConfig
from rlprompt.agents.search.subspace import PromptSubspace
from rlprompt.errors import ConfigError
from rlprompt.lm import ScoringEngine
from tests.test_learning_sequence import SmoothEngine

pytestmark = pytest.mark.usefixtures("one_thread")


def test_centred_ranks_by_hand():
    assert centred_ranks(torch.tensor([3.0, -1.0, 7.0])).tolist() == [0.0, -0.5, 0.5]
    # ties share the mean of their ranks (0, 1.5, 1.5, 3 of 3)
    assert centred_ranks(torch.tensor([0.0, 2.0, 2.0, 5.0])).tolist() == [-0.5, 0.0, 0.0, 0.5]
    assert centred_ranks(torch.tensor([4.0])).tolist() == [0.0]


@pytest.mark.parametrize("options, match", [
    ({"popsize": 5}, "even"), ({"popsize": 0}, "even"), ({"sigma0": 0}, "sigma0"),
    ({"learning_rate": -1.0}, "learning_rate"), ({"std_learning_rate": -0.1}, "std_learning_rate"),
    ({"min_sigma": 2.0}, "below sigma0"), ({"init": "middle"}, "init"), ({"init": "text"}, "init_text"),
])
def test_bad_options_are_one_line_errors(options, match):
    with pytest.raises(ConfigError, match=match):
        PGPEConfig(**options)


def _target_in_subspace(tiny_lm, great_task, cfg: PGPEConfig) -> tuple[torch.Tensor, torch.Tensor, PromptSubspace]:
    """A target prompt p0 + std * A z* in the agent's own subspace (drawn as the agent draws it)."""
    probe = PGPE(ScoringEngine(tiny_lm, great_task.verbalizers, great_task.template), great_task, cfg)
    gen = torch.Generator().manual_seed(cfg.seed)
    space = PromptSubspace(probe, cfg.prompt_length, cfg.intrinsic_dim, cfg.scale, gen)
    z_star = torch.randn(cfg.intrinsic_dim, generator=torch.Generator().manual_seed(7)) * 2.0
    return space.prompts(z_star[None])[0], space.p0.clone(), space


def test_pgpe_improves_on_a_smooth_objective_where_random_points_do_not(tiny_lm, great_task):
    cfg = PGPEConfig(seed=0, prompt_length=3, intrinsic_dim=16, popsize=10, init="vocab", learning_rate=0.3)
    target, p0, space = _target_in_subspace(tiny_lm, great_task, cfg)
    engine = SmoothEngine(tiny_lm, great_task.verbalizers, great_task.template, target)
    agent = PGPE(engine, great_task, cfg)
    agent.learn(400, progress=False)
    start = float(engine.distance(p0))
    learned = float(engine.distance(agent.predict()))
    # the best of 400 random points drawn as the policy's first update draws them
    randoms = space.prompts(torch.randn(400, cfg.intrinsic_dim, generator=torch.Generator().manual_seed(1)))
    best_random = float(engine.distance(randoms).min())
    assert learned < 0.25 * start, (start, learned)
    assert learned < 0.5 * best_random, (best_random, learned)
    assert agent.extra["updates"] >= 20 and agent.budget.used <= 400


def test_pgpe_lm_prior_anchor_is_charged_checked_on_dev_and_kept(great_engine, great_task, tmp_path):
    cfg = PGPEConfig(seed=1, prompt_length=2, intrinsic_dim=4, popsize=4, init_samples=3)
    agent = PGPE(great_engine, great_task, cfg, out_dir=tmp_path / "run")
    agent.learn(30, progress=False)
    assert agent._p0 is not None and agent._p0.shape == (2, 32)
    assert agent.tracker.best.dev_accuracy >= agent.evaluate("dev", prompt=agent._p0).accuracy
    tensors, meta = agent.checkpoint_state()
    assert torch.equal(tensors["pgpe/p0"], agent._p0) and meta["pgpe"]["updates"] == agent.extra["updates"]
    assert agent.budget.used <= 30
