"""What every agent shares: the loop's base class (:mod:`.base`), prompt kinds (:mod:`.kinds`),
the budget (:mod:`.budget`), best-on-dev tracking (:mod:`.tracking`), checkpoints
(:mod:`.checkpoint`), logs (:mod:`.logs`) and the config base (:mod:`.config`)."""
