"""Reinforcement learning agents, one subpackage per family: :mod:`.sql` (RLPrompt's soft
Q-learning), :mod:`.sb3` (stable-baselines3 PPO/A2C/MaskablePPO/SAC/TD3), :mod:`.grpo`
(TRL's GRPO/RLOO training a prompt-writing LM). Each has its config in ``config.py``."""
