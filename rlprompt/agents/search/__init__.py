"""Black-box searches: :mod:`.random_search` (uniform prompts), :mod:`.lm_prior` (prompts the
task LM samples itself), :mod:`.cma_es` (CMA-ES over a projected soft prompt); options in
:mod:`.config`, the shared discrete loop in :mod:`.discrete`."""
