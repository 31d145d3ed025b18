"""Gradient soft prompt tuning (:mod:`.soft_prompt`, Lester et al. 2021), its options
(:mod:`.config`) and PEFT's on-disk format (:mod:`.peft_format`)."""
