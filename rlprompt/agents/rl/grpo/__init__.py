"""TRL's GRPO and RLOO training a prompt-writing policy LM: :mod:`.agent`, :mod:`.config`."""
