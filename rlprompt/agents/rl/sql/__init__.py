"""Soft Q-learning (RLPrompt): :mod:`.agent` (the loop), :mod:`.config` (options)."""
