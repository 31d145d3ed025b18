"""The soft-vector RL agents' anchor (init=lm-prior): charged, dev-checked, kept on resume."""

import numpy as np
import pytest
import torch

from rlprompt.agents.rl.sb3 import algorithms as sb3
from rlprompt.envs import SoftActionMap, SoftPromptEnv
from rlprompt.errors import ConfigError


def test_soft_rl_lm_prior_anchor_is_kept_in_the_checkpoint(great_engine, great_task, tmp_path):
    cfg = sb3.SACConfig(seed=3, n_envs=4, prompt_length=2, intrinsic_dim=4, init="lm-prior", init_samples=3,
                        action_scale=0.5)
    agent = sb3.SACAgent(great_engine, great_task, cfg, out_dir=tmp_path / "run")
    agent.learn(30, progress=False)
    anchor = agent.env.action_map.anchor
    assert anchor is not None and anchor.shape == (2, 32)
    # the anchor was checked on dev, so what is selected is at least as good there
    assert agent.tracker.best.dev_accuracy >= agent.evaluate("dev", prompt=anchor.cpu()).accuracy
    tensors, _ = agent.checkpoint_state()
    assert torch.equal(tensors["sb3/anchor"].to(anchor), anchor)
    # a resumed run keeps the anchor it had rather than sampling (and paying for) a new one
    again = sb3.SACAgent(great_engine, great_task, cfg, out_dir=tmp_path / "run")
    again.learn(40, progress=False, resume=True)
    assert torch.equal(again.env.action_map.anchor, anchor)
    assert again.budget.used == 40


def test_soft_anchor_is_what_a_zero_action_writes_at_each_position(tiny_lm, great_task):
    task = great_task
    table = tiny_lm.input_embeddings().weight.detach().float()
    anchor = table[torch.tensor([3, 5, 7])]
    amap = SoftActionMap(table, intrinsic_dim=4, scale=0.5, anchor=anchor)
    assert torch.allclose(amap(np.zeros((2, 3, 4))), anchor.expand(2, 3, 32))
    assert torch.allclose(amap(np.zeros((2, 4)), position=1), anchor[1].expand(2, 32))
    moved = amap(np.ones((3, 4)))
    plain = SoftActionMap(table, intrinsic_dim=4, scale=0.5)(np.ones((3, 4)))
    assert torch.allclose(moved - anchor, plain - table.mean(0), atol=1e-5)
    with pytest.raises(ConfigError, match="anchor"):
        SoftActionMap(table, anchor=torch.zeros(3, 8))
    # the env, stepped with zero actions, writes the anchor text's own embeddings (one per step)
    env = SoftPromptEnv(task, tiny_lm, prompt_length=3, intrinsic_dim=4, anchor=anchor, reward="log-likelihood")
    env.reset(seed=0)
    for _ in range(3):
        env.step(np.zeros(4, dtype=np.float32))
    assert torch.allclose(env.soft_prompt, anchor)
    with pytest.raises(ConfigError, match="one per prompt position"):
        SoftPromptEnv(task, tiny_lm, prompt_length=2, anchor=anchor)
    text = SoftPromptEnv(task, tiny_lm, prompt_length=3, anchor=" great")
    assert text.action_map.anchor is not None and text.action_map.anchor.shape == (3, 32)
