"""PGPE: a Gaussian policy over soft prompts trained by policy gradient; :mod:`.agent` (the
loop), :mod:`.config` (options)."""
