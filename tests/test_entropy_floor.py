"""PPO's entropy floor (``entropy_floor``): the weight's steps by hand, and the option's wiring."""

from __future__ import annotations

import math

import pytest

from rlprompt.agents.core.budget import Budget
from rlprompt.agents.rl.sb3 import algorithms as sb3
from rlprompt.agents.rl.sb3.entropy import MAX_ENT_COEF, adapt_ent_coef
from rlprompt.errors import ConfigError


def test_the_bonus_grows_under_the_floor_and_returns_to_its_set_value_above():
    assert adapt_ent_coef(0.01, entropy=0.5, floor=1.0, base=0.01) == pytest.approx(0.015)
    assert adapt_ent_coef(0.03, entropy=2.0, floor=1.0, base=0.01) == pytest.approx(0.02)
    assert adapt_ent_coef(0.012, entropy=2.0, floor=1.0, base=0.01) == pytest.approx(0.01)  # not below its value
    assert adapt_ent_coef(0.9, entropy=0.0, floor=1.0, base=0.01) == MAX_ENT_COEF  # capped
    assert adapt_ent_coef(0.0, entropy=0.0, floor=1.0, base=0.0) == pytest.approx(1e-4)  # grows from zero too
    with pytest.raises(ValueError, match="factor"):
        adapt_ent_coef(0.01, 0.5, 1.0, 0.01, factor=1.0)


@pytest.mark.parametrize("bad", [0, -1.0, "high", math.nan])
def test_entropy_floor_config_errors(bad):
    with pytest.raises(ConfigError, match="entropy_floor"):
        sb3.PPOConfig(entropy_floor=bad)


def test_ppo_raises_its_bonus_while_the_policy_is_under_the_floor_and_resumes_it(great_engine, great_task):
    def run(floor: float, prior: bool = False) -> tuple[list[float], sb3.PPOAgent]:
        cfg = sb3.PPOConfig(seed=0, n_envs=8, n_steps=2, batch_size=16, prompt_length=2, entropy_floor=floor,
                            prior=prior)
        agent = sb3.PPOAgent(great_engine, great_task, cfg)
        used, train = [], agent.model.train

        def spy() -> None:  # the weight each update trains with
            used.append(agent.model.ent_coef)
            train()

        agent.model.train = spy
        agent.learn(40, progress=False)
        return used, agent

    high, agent = run(100.0)  # far above any policy's entropy: grows every rollout
    assert len(high) >= 3 and high == sorted(high) and high[0] == pytest.approx(0.015)
    low, _ = run(1e-3)  # far below: stays at the set value
    assert low and all(c == pytest.approx(0.01) for c in low)
    assert run(100.0, prior=True)[0][:2] == pytest.approx([0.015, 0.0225])  # the policy that adds the LM prior
    tensors, meta = agent.checkpoint_state()
    assert meta["sb3"]["ent_coef"] >= high[-1]  # the weight for the next update
    fresh = sb3.PPOAgent(great_engine, great_task, agent.config)
    fresh.budget = Budget(fresh.engine, 40, train_examples=len(great_task.texts("train")))
    fresh.restore_state(tensors, meta)
    assert fresh.model.ent_coef == pytest.approx(meta["sb3"]["ent_coef"])
