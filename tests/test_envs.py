"""Tests for rlprompt.envs: checkers, scores against the engine, dense rewards, the vector env, errors."""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import assert_accuracy, token_id
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import rlprompt.envs
from rlprompt.envs import (
    DISCRETE_ID,
    SOFT_ID,
    DiscretePromptEnv,
    PromptVectorEnv,
    SB3VecEnv,
    SoftActionMap,
    SoftPromptEnv,
    candidate_vocab,
)
from rlprompt.errors import ConfigError
from rlprompt.lm import ScoringEngine
from rlprompt.rewards import get_reward
from rlprompt.tasks import Example, Task, demo_task

REPO = Path(__file__).resolve().parents[1]
WORDS = [" the", " movie", " was", " great", " review", " is", " it", " story"]


@pytest.fixture(scope="module")
def task():
    return demo_task()


def discrete(tiny_lm, task, **kwargs) -> DiscretePromptEnv:
    kwargs.setdefault("vocab", WORDS)
    return DiscretePromptEnv(task, tiny_lm, **kwargs)


def run(env: gym.Env, actions) -> tuple[list[float], dict]:
    env.reset(seed=0)
    rewards, info = [], {}
    for a in actions:
        _, r, terminated, truncated, info = env.step(a)
        rewards.append(r)
    assert terminated and not truncated
    return rewards, info


def checked(env: gym.Env) -> None:
    """Both checkers (they step many times: keep the env small)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # infinite bounds of the hidden-state Box are expected
        gym_check_env(env, skip_render_check=True)
        sb3_check_env(env)


# -- checkers and registration ----------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"reward_mode": "dense", "obs": "hidden"}, {"vocab": "full", "prompt_length": 2}],
)
def test_discrete_env_passes_both_checkers(tiny_lm, task, kwargs):
    kwargs.setdefault("vocab", "words")
    checked(discrete(tiny_lm, task, examples_per_episode=8, **kwargs))


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"intrinsic_dim": 8, "reward_mode": "dense", "obs": "hidden"}, {"one_step": True, "intrinsic_dim": 4},
     {"placement": "prefix", "prompt_length": 2}],
)
def test_soft_env_passes_both_checkers(tiny_lm, task, kwargs):
    checked(SoftPromptEnv(task, tiny_lm, examples_per_episode=8, **kwargs))


def test_registered_ids_take_kwargs(tiny_lm, task):
    assert DISCRETE_ID in gym.registry and SOFT_ID in gym.registry
    env = gym.make(DISCRETE_ID, task=task, model=tiny_lm, prompt_length=3, vocab=WORDS)
    assert env.observation_space["prompt"].shape == (3,)
    assert env.action_space.n == len(WORDS)
    soft = gym.make(SOFT_ID, task=task, model=tiny_lm, intrinsic_dim=6)
    assert soft.action_space.shape == (6,)
    venv = gym.make_vec(DISCRETE_ID, num_envs=3, task=task, model=tiny_lm, vocab=WORDS)
    assert isinstance(venv, PromptVectorEnv) and venv.num_envs == 3
    assert venv.observation_space["prompt"].shape == (3, 5)


def test_envs_share_one_engine_and_lm(tiny_lm, task):
    first = discrete(tiny_lm, task)
    second = discrete(tiny_lm, task, engine=first.engine)
    assert second.engine is first.engine and second.engine.lm is tiny_lm


# -- scores ---------------------------------------------------------------------------


def test_hand_fed_actions_give_the_engines_score(tiny_lm, task):
    env = discrete(tiny_lm, task, reward="log-likelihood", render_mode="ansi")
    rewards, info = run(env, [1, 2, 0, 3, 4])  # movie was the great review
    assert info["prompt"] == env.prompt == " movie was the great review"
    assert env.prompt_tokens == [token_id(tiny_lm.tokenizer, WORDS[a]) for a in (1, 2, 0, 3, 4)]
    fresh = ScoringEngine(tiny_lm, task.verbalizers, task.template)
    reward = get_reward("log-likelihood")
    labels = task.label_tensor("train")
    for prompt in ("movie was the great review", env.prompt_tokens):
        logprobs = fresh.score([prompt], task.texts("train"), use_cache=False)
        expected = reward(logprobs, labels)
        assert rewards[-1] == pytest.approx(float(expected.rewards[0]), abs=1e-5)
        assert info["accuracy"] == pytest.approx(float(expected.diagnostics["accuracy"][0]))
    assert rewards[:-1] == [0.0] * 4
    assert "movie was the great review" in env.render()


def test_random_agent_prompt_matches_engine(tiny_lm, task):
    env = DiscretePromptEnv(task, tiny_lm, vocab="full", reward="log-likelihood")
    env.reset(seed=5)
    env.action_space.seed(5)
    terminated = False
    while not terminated:
        _, reward, terminated, _, info = env.step(env.action_space.sample())
    logprobs = env.engine.score([env.prompt_tokens], task.texts("train"))
    assert reward == pytest.approx(float(get_reward("log-likelihood")(logprobs, task.label_tensor("train")).rewards))
    assert info["cost"]["forward_tokens"] > 0


@pytest.mark.parametrize("reward", ["accuracy", "log-likelihood", "gap"])
def test_dense_rewards_sum_to_final_minus_empty(tiny_lm, task, reward):
    actions = [4, 0, 6, 3, 7]
    dense_rewards, dense_info = run(discrete(tiny_lm, task, reward=reward, reward_mode="dense"), actions)
    final_rewards, final_info = run(discrete(tiny_lm, task, reward=reward), actions)
    engine = ScoringEngine(tiny_lm, task.verbalizers, task.template)
    empty = get_reward(reward)(engine.score([""], task.texts("train")), task.label_tensor("train")).rewards
    assert sum(dense_rewards) == pytest.approx(final_rewards[-1] - float(empty[0]), abs=1e-4)
    assert dense_info["score"] == pytest.approx(final_info["score"], abs=1e-4)


def test_dense_prompt_before_input_rescoring_path(tiny_lm):
    task = demo_task(template="{prompt} {sentence}")
    rewards, info = run(discrete(tiny_lm, task, reward="log-likelihood", reward_mode="dense", prompt_length=3),
                        [1, 3, 5])
    engine = ScoringEngine(tiny_lm, task.verbalizers, task.template)
    scores = get_reward("log-likelihood")(engine.score(["", " movie great is"], task.texts("train")),
                                          task.label_tensor("train")).rewards
    assert sum(rewards) == pytest.approx(float(scores[1] - scores[0]), abs=1e-4)
    assert info["score"] == pytest.approx(float(scores[1]), abs=1e-5)


def test_masked_lm_env(tiny_masked_lm):
    task = demo_task(masked=True, verbalizers=[" terrible", " great"])
    env = discrete(tiny_masked_lm, task, reward="log-likelihood", reward_mode="dense", prompt_length=2)
    rewards, info = run(env, [1, 3])
    engine = ScoringEngine(tiny_masked_lm, task.verbalizers, task.template)
    logprobs = engine.score([env.prompt_tokens], task.texts("train"))
    assert info["score"] == pytest.approx(float(get_reward("log-likelihood")(logprobs, task.label_tensor("train"))
                                                .rewards), abs=1e-5)
    with pytest.raises(ConfigError, match="obs='hidden' needs"):
        discrete(tiny_masked_lm, task, obs="hidden")


def lm_last_state(lm, texts: list[str], prompt_ids: list[int]) -> np.ndarray:
    """The LM's own final hidden state (after the last norm, what its head reads) at the prompt's
    last token, run on each example followed by the prompt, alone (no padding, no cache),
    then averaged over the examples [H]."""
    states = []
    for text in texts:
        ids = lm.tokenizer(text, add_special_tokens=False).input_ids + prompt_ids
        with torch.no_grad():
            out = lm.model(input_ids=torch.tensor([ids], device=lm.device), output_hidden_states=True)
        states.append(out.hidden_states[-1][0, -1])
    return torch.stack(states).mean(0).float().cpu().numpy()


def test_hidden_observation_is_the_lms_state(tiny_lm, task):
    env = discrete(tiny_lm, task, obs="hidden", reward_mode="dense")
    obs, _ = env.reset(seed=0)
    assert not obs["hidden"].any()  # no prompt yet
    texts = task.texts("train")  # the episode's examples: the whole split
    assert env.episodes.texts == texts and task.template == "{sentence} {prompt}"
    obs, *_ = env.step(3)
    assert obs["hidden"].shape == (32,) and obs["hidden"].dtype == np.float32
    assert obs["prompt"].tolist() == [3, -1, -1, -1, -1] and obs["step"].tolist() == [1]
    great = token_id(tiny_lm.tokenizer, WORDS[3])
    np.testing.assert_allclose(obs["hidden"], lm_last_state(tiny_lm, texts, [great]), atol=1e-5, rtol=1e-4)
    obs, *_ = env.step(4)
    review = token_id(tiny_lm.tokenizer, WORDS[4])
    expected = lm_last_state(tiny_lm, texts, [great, review])
    np.testing.assert_allclose(obs["hidden"], expected, atol=1e-5, rtol=1e-4)
    # not the state one step earlier, nor the input's last one: the observation moves with the prompt
    assert np.abs(expected - lm_last_state(tiny_lm, texts, [great])).max() > 100 * 1e-5


def test_action_masks_forbid_repeats(tiny_lm, task):
    env = discrete(tiny_lm, task)
    env.reset(seed=0)
    assert env.action_masks().all() and env.action_masks().shape == (len(WORDS),)
    env.step(2)
    env.step(5)
    assert env.action_masks().tolist() == [i not in (2, 5) for i in range(len(WORDS))]


def test_default_word_vocab(tiny_lm):
    vocab = candidate_vocab(tiny_lm.tokenizer, 10_000, "words")
    texts = [tiny_lm.tokenizer.decode([int(i)]) for i in vocab]
    assert texts and all(t[0] == " " and t[1:].isalpha() and len(t) >= 3 for t in texts)
    assert len(candidate_vocab(tiny_lm.tokenizer, 10_000, "words", max_vocab=5)) == 5
    special = set(tiny_lm.tokenizer.all_special_ids)
    assert not special & set(candidate_vocab(tiny_lm.tokenizer, 10_000, "full").tolist())


# -- soft prompts ---------------------------------------------------------------------


def test_soft_action_map_scales_to_the_embedding_table(tiny_lm):
    table = tiny_lm.input_embeddings().weight
    direct = SoftActionMap(table)
    assert torch.allclose(direct(np.zeros(32)), table.mean(0), atol=1e-6)
    assert torch.allclose(direct(np.ones(32)), table.mean(0) + 2 * table.std(0), atol=1e-5)
    low = SoftActionMap(table, intrinsic_dim=4, seed=1)
    again = SoftActionMap(table, intrinsic_dim=4, seed=1)
    a = np.random.default_rng(0).uniform(-1, 1, (3, 4))
    assert low(a).shape == (3, 32) and torch.equal(low(a), again(a))


def test_soft_one_step_equals_step_by_step(tiny_lm, task):
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, (3, 4)).astype(np.float32)
    kw = {"intrinsic_dim": 4, "prompt_length": 3, "reward": "log-likelihood"}
    steps, info = run(SoftPromptEnv(task, tiny_lm, reward_mode="dense", **kw), list(actions))
    env = SoftPromptEnv(task, tiny_lm, one_step=True, **kw)
    (one,), one_info = run(env, [actions.reshape(-1)])
    assert one == pytest.approx(info["score"], abs=1e-4)
    logprobs = env.engine.score_soft(env.soft_prompt[None], task.texts("train"))
    assert one == pytest.approx(float(get_reward("log-likelihood")(logprobs, task.label_tensor("train")).rewards),
                                abs=1e-5)
    empty = get_reward("log-likelihood")(env.engine.score([""], task.texts("train")), task.label_tensor("train"))
    assert sum(steps) == pytest.approx(one - float(empty.rewards[0]), abs=1e-4)
    assert len(env.nearest_tokens()) == 3 and one_info["prompt"] == "<3 soft tokens>"


def test_soft_prefix_placement_dense(tiny_lm, task):
    env = SoftPromptEnv(task, tiny_lm, placement="prefix", reward="log-likelihood", reward_mode="dense",
                        prompt_length=2, intrinsic_dim=3)
    rewards, info = run(env, [np.full(3, 0.5, np.float32), np.full(3, -0.5, np.float32)])
    logprobs = env.engine.score_soft(env.soft_prompt[None], task.texts("train"), placement="prefix")
    assert info["score"] == pytest.approx(float(get_reward("log-likelihood")(logprobs, task.label_tensor("train"))
                                                .rewards), abs=1e-5)


# -- vector env -----------------------------------------------------------------------


def test_vector_env_equals_single_envs(tiny_lm, task):
    n, kw = 3, {"reward": "log-likelihood", "reward_mode": "dense"}
    venv = PromptVectorEnv(n, DiscretePromptEnv, task=task, model=tiny_lm, vocab=WORDS, **kw)
    singles = [discrete(tiny_lm, task, engine=venv.engine, **kw) for _ in range(n)]
    actions = np.array([[0, 1, 2], [3, 4, 5], [6, 7, 0], [1, 2, 3], [4, 5, 6], [7, 0, 1], [2, 3, 4]])
    venv.reset(seed=0)
    for env in singles:
        env.reset(seed=0)
    calls = venv.engine.counters.forward_calls
    for t, row in enumerate(actions):
        obs, rewards, terminated, truncated, infos = venv.step(row)
        single = [env.step(int(a)) for env, a in zip(singles, row, strict=True)]
        if t == 4:  # episodes end: autoreset in the same step
            assert terminated.all() and infos["_final_obs"].all()
            ended = [s[0]["prompt"] for s in single]
            assert [o["prompt"].tolist() for o in infos["final_obs"]] == [e.tolist() for e in ended]
            assert list(infos["final_info"]["prompt"]) == [s[4]["prompt"] for s in single]
            assert (obs["prompt"] == -1).all() and (obs["step"] == 0).all()
            for env in singles:
                env.reset(seed=0)
        else:
            assert not terminated.any()
            assert np.array_equal(obs["prompt"], np.stack([s[0]["prompt"] for s in single]))
        assert not truncated.any()
        np.testing.assert_allclose(rewards, [s[1] for s in single], atol=1e-5)
    assert venv.engine.counters.forward_calls > calls


def test_soft_vector_env_equals_single_envs(tiny_lm, task):
    kw = {"intrinsic_dim": 4, "prompt_length": 2, "reward": "log-likelihood", "reward_mode": "dense"}
    env = SoftPromptEnv(task, tiny_lm, **kw)
    venv = PromptVectorEnv(2, env)
    actions = np.random.default_rng(1).uniform(-1, 1, (2, 2, 4)).astype(np.float32)
    venv.reset(seed=0)
    vector_rewards = [venv.step(actions[t])[1] for t in range(2)]
    for i in range(2):
        rewards, _ = run(SoftPromptEnv(task, tiny_lm, engine=env.engine, **kw), [actions[t, i] for t in range(2)])
        np.testing.assert_allclose([r[i] for r in vector_rewards], rewards, atol=1e-5)


def test_sb3_adapter_and_maskable_ppo(tiny_lm, task):
    from sb3_contrib import MaskablePPO

    venv = SB3VecEnv(PromptVectorEnv(2, DiscretePromptEnv, task=task, model=tiny_lm, vocab=WORDS,
                                     prompt_length=2, examples_per_episode=8))
    venv.seed(3)
    obs = venv.reset()
    assert obs["prompt"].shape == (2, 2) and len(venv.reset_infos) == 2
    _, _, dones, _ = venv.step(np.array([0, 1]))
    assert not dones.any()
    assert np.stack(venv.env_method("action_masks"))[:, :2].tolist() == [[False, True], [True, False]]
    obs, rewards, dones, infos = venv.step(np.array([2, 3]))
    assert dones.all() and rewards.dtype == np.float32
    assert infos[0]["terminal_observation"]["prompt"].tolist() == [0, 2]
    assert (obs["prompt"] == -1).all()
    model = MaskablePPO("MultiInputPolicy", venv, n_steps=4, batch_size=8, n_epochs=1, seed=0)
    model.learn(8)


# -- seeding --------------------------------------------------------------------------


def test_seeded_example_draws_are_reproducible(tiny_lm, task):
    env = discrete(tiny_lm, task, examples_per_episode=8, reward="log-likelihood")
    first, _ = run(env, [0, 1, 2, 3, 4])
    drawn = env.episodes.texts
    env.reset(seed=0)
    assert env.episodes.texts == drawn and len(drawn) == 8
    again, _ = run(env, [0, 1, 2, 3, 4])
    assert again == first
    env.reset(seed=1)
    assert env.episodes.texts != drawn
    other = discrete(tiny_lm, task, examples_per_episode=8, reward="log-likelihood")
    assert run(other, [0, 1, 2, 3, 4])[0] == first


# -- custom rewards through the env ---------------------------------------------------


def test_custom_reward_example(tiny_lm):
    spec = importlib.util.spec_from_file_location("custom_reward_env", REPO / "examples" / "custom_reward_env.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = module.main(model=tiny_lm, episodes=2)
    assert set(result) == {"best_prompt", "best_reward"} and np.isfinite(result["best_reward"])


# -- the real model -------------------------------------------------------------------


@pytest.mark.integration
def test_smollm_demo_prompt_matches_engine(smollm):
    task = demo_task()
    env = DiscretePromptEnv(task, smollm, reward="accuracy", reward_mode="dense")
    assert 1000 < env.action_space.n <= 4096
    words = [" The", " review", " is"]
    actions = [int(np.flatnonzero(env.vocab == smollm.tokenizer(w, add_special_tokens=False).input_ids[0])[0])
               for w in words]
    env = DiscretePromptEnv(task, smollm, prompt_length=3, reward="log-likelihood", engine=env.engine)
    rewards, info = run(env, actions)
    assert info["prompt"] == " The review is"
    fresh = ScoringEngine(smollm, task.verbalizers, task.template)
    logprobs = fresh.score(["The review is"], task.texts("train"))
    expected = get_reward("log-likelihood")(logprobs, task.label_tensor("train"))
    assert rewards[-1] == pytest.approx(float(expected.rewards[0]), abs=1e-4)
    assert info["accuracy"] == pytest.approx(float(expected.diagnostics["accuracy"][0]))


@pytest.mark.integration
def test_smollm_sst2_env(smollm, fsc16):
    env = gym.make(DISCRETE_ID, task="sst-2", task_kwargs={"data_dir": str(fsc16), "seed": 42}, model=smollm,
                   reward_mode="dense", examples_per_episode=8)
    env.reset(seed=0)
    _, reward, _, _, info = env.step(0)
    inner = env.unwrapped
    sst2 = inner.episodes.task
    labels = {e.text: e.label for e in sst2.train}
    drawn = [Example(t, labels[t]) for t in inner.episodes.texts]
    assert len(drawn) == 8 and len(set(inner.episodes.texts)) == 8
    episode = Task(name="episode", verbalizers=sst2.verbalizers, train=drawn, dev=drawn, test=drawn,
                   template=sst2.template)
    fresh = ScoringEngine(smollm, sst2.verbalizers, sst2.template)
    # the info's accuracy is the one-token prompt's on the episode's 8 examples, and the dense
    # reward is its gain over the empty prompt (default reward: accuracy)
    assert inner.prompt_tokens == [int(inner.vocab[0])]
    assert_accuracy(info["accuracy"], fresh, episode, inner.prompt_tokens, "train")
    assert_accuracy(info["accuracy"] - reward, fresh, episode, "", "train")
    assert rlprompt.envs.DiscretePromptEnv is DiscretePromptEnv
