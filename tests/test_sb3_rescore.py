"""``rescore``: an SB3 agent re-scores the prompts entering its episode top k on the whole
training split before their dev check, once per prompt, within the budget."""

from __future__ import annotations

import pytest
from test_agents_rl import VOCAB

from rlprompt.agents.rl.sb3 import algorithms as sb3

pytestmark = pytest.mark.usefixtures("one_thread")

OPTS = {"prompt_length": 2, "reward": "log-likelihood", "n_envs": 8, "examples_per_episode": 4,
        "n_steps": 2, "batch_size": 16, **VOCAB}


def test_rescore_ranks_by_whole_train_scores_once_per_prompt(great_engine, great_task):
    agent = sb3.PPOAgent(great_engine, great_task, sb3.PPOConfig(seed=0, rescore=True, **OPTS))
    calls: list[list[tuple[int, ...]]] = []
    train_rewards = agent.train_rewards

    def recording(prompts, indices=None):
        if indices is None:
            calls.append([tuple(int(t) for t in p) for p in prompts])
        return train_rewards(prompts, indices)

    agent.train_rewards = recording  # type: ignore[method-assign]
    agent.learn(40, progress=False)
    assert agent.budget.used <= 40 + 1e-6
    rescored = [p for call in calls for p in call]
    assert rescored, "no prompt was re-scored on the whole train split"
    assert len(rescored) == len(set(rescored)), "a prompt was re-scored twice"
    assert set(agent.full_scores) == set(rescored)
    # each kept score is the prompt's reward on every training example
    prompts = [list(p) for p in rescored]
    direct = train_rewards(prompts)
    assert [agent.full_scores[p] for p in rescored] == pytest.approx(direct, abs=1e-5)
    # those checked on dev during learning carry their whole-train score
    by_text = {agent.describe(list(p)): agent.full_scores[p] for p in rescored}
    checked = [c for c in agent.tracker.top if c.text in by_text]
    assert checked and all(c.train_score == pytest.approx(by_text[c.text]) for c in checked)


def test_rescore_state_survives_a_kill_and_resume(tiny_lm, great_task, tmp_path):
    from test_resume import stopping_after

    from rlprompt.lm import ScoringEngine

    def make(cls):
        engine = ScoringEngine(tiny_lm, great_task.verbalizers, great_task.template)
        return cls(engine, great_task, sb3.PPOConfig(seed=0, rescore=True, checkpoint_every=1e-9, **OPTS),
                   out_dir=tmp_path)

    stopped = make(stopping_after("ppo", 20))
    with pytest.raises(KeyboardInterrupt):
        stopped.learn(40, progress=False)
    assert stopped.full_scores
    resumed = make(sb3.PPOAgent)
    seen_before = dict(stopped.full_scores)
    resumed._learn = lambda: None  # restore only: what the checkpoint brought back
    resumed.learn(40, progress=False, resume=True)
    assert resumed.full_scores and set(resumed.full_scores) <= set(seen_before)
    assert all(resumed.full_scores[k] == pytest.approx(seen_before[k]) for k in resumed.full_scores)
    assert resumed.full_gate.state()


def test_without_rescore_nothing_is_scored_on_the_whole_train_split(great_engine, great_task):
    agent = sb3.PPOAgent(great_engine, great_task, sb3.PPOConfig(seed=0, **OPTS))
    agent.learn(24, progress=False)
    assert agent.full_scores == {}
