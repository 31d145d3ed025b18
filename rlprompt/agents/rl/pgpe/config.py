"""Options of the Gaussian policy-gradient agent (:class:`~rlprompt.agents.rl.pgpe.agent.PGPE`);
free of torch."""

from __future__ import annotations

from dataclasses import dataclass, field

from rlprompt.agents.core.config import AgentConfig, check_positive
from rlprompt.agents.search.config import SoftStart, SubspaceOptions
from rlprompt.errors import ConfigError


@dataclass
class PGPEConfig(AgentConfig, SubspaceOptions):
    """Options of :class:`PGPE`. The search space (``intrinsic_dim``, ``scale``, ``init``) is
    CMA-ES's, so the two compare on the same footing."""

    init: SoftStart = field(default=SoftStart.LM_PRIOR, metadata={
        "help": "p0, the anchor actions move from: lm-prior (a good discrete prompt), best (of LM-prior "
                "and random prompts), vocab, mean or text"})
    init_samples: int = field(default=200, metadata={
        "help": "init='lm-prior' or 'best': sampled prompts scored on train (charged to the budget) before learning; "
                "the best is the anchor, and is checked on dev"})
    popsize: int = field(default=20, metadata={
        "help": "actions sampled per update, in antithetic pairs (even); the policy's mean is scored too"})
    sigma0: float = field(default=0.5, metadata={"help": "the policy's initial standard deviation (in z)"})
    learning_rate: float = field(default=0.05, metadata={"help": "Adam learning rate of the policy's mean"})
    std_learning_rate: float = field(default=0.05, metadata={
        "help": "Adam learning rate of the policy's log standard deviation (0 keeps it fixed)"})
    min_sigma: float = field(default=0.05, metadata={"help": "floor of the policy's standard deviation"})

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_subspace()
        if isinstance(self.popsize, bool) or not isinstance(self.popsize, int) or self.popsize < 2 \
                or self.popsize % 2:
            raise ConfigError(f"popsize must be an even integer of at least 2 (antithetic pairs), got {self.popsize!r}")
        for name in ("sigma0", "learning_rate", "min_sigma"):
            check_positive(getattr(self, name), name, integer=False)
        rate = self.std_learning_rate
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate < float("inf"):
            raise ConfigError(f"std_learning_rate must be a number >= 0, got {self.std_learning_rate!r}")
        if self.min_sigma >= self.sigma0:
            raise ConfigError(f"min_sigma ({self.min_sigma}) must be below sigma0 ({self.sigma0})")
