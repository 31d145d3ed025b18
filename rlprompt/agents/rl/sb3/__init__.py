"""stable-baselines3 agents: :mod:`.agent` (the budgeted loop), :mod:`.algorithms` (one table row
per algorithm), :mod:`.policies` (the LM-aware policy), :mod:`.config` (options)."""
