"""Options of the Gaussian policy-gradient agent (:class:`~rlprompt.agents.rl.pgpe.agent.PGPE`);
free of torch."""

from __future__ import annotations

from dataclasses import dataclass, field

from rlprompt.agents.core.config import AgentConfig, check_positive, enum_choice
from rlprompt.agents.search.config import SoftStart, SoftStartOptions
from rlprompt.errors import ConfigError
from rlprompt.lm.template import Placement


@dataclass
class PGPEConfig(AgentConfig, SoftStartOptions):
    """Options of :class:`PGPE`. The search space (``intrinsic_dim``, ``scale``, ``init``) is
    CMA-ES's, so the two compare on the same footing."""

    prompt_length: int = field(default=5, metadata={"help": "number of soft tokens"})
    placement: Placement = field(default=Placement.SUFFIX, metadata={
        "help": "suffix: after the cached input (fast); prefix: before the input (Lester; PEFT)"})
    intrinsic_dim: int = field(default=500, metadata={"help": "d, the dimension of the policy's actions"})
    scale: float = field(default=1.0, metadata={"help": "table standard deviations one unit of A z moves"})
    init: SoftStart = field(default=SoftStart.LM_PRIOR, metadata={
        "help": "p0, the anchor actions move from: lm-prior (a good discrete prompt), vocab, mean or text"})
    init_samples: int = field(default=200, metadata={
        "help": "init='lm-prior': LM-prior prompts scored on train (charged to the budget) before learning; "
                "the best is the anchor, and is checked on dev"})
    popsize: int = field(default=20, metadata={
        "help": "actions sampled per update, in antithetic pairs (even); the policy's mean is scored too"})
    sigma0: float = field(default=0.5, metadata={"help": "the policy's initial standard deviation (in z)"})
    learning_rate: float = field(default=0.05, metadata={"help": "Adam learning rate of the policy's mean"})
    std_learning_rate: float = field(default=0.05, metadata={
        "help": "Adam learning rate of the policy's log standard deviation (0 keeps it fixed)"})
    min_sigma: float = field(default=0.05, metadata={"help": "floor of the policy's standard deviation"})
    reward: str = field(default="log-likelihood", metadata={"help": "train reward to maximise"})
    dev_top_k: int = field(default=8, metadata={
        "help": "a candidate is checked on dev when its train reward is among the best k so far"})

    def __post_init__(self) -> None:
        super().__post_init__()
        self.init = self._check_start(self.init)
        for name in ("prompt_length", "intrinsic_dim", "dev_top_k"):
            check_positive(getattr(self, name), name)
        if isinstance(self.popsize, bool) or not isinstance(self.popsize, int) or self.popsize < 2 \
                or self.popsize % 2:
            raise ConfigError(f"popsize must be an even integer of at least 2 (antithetic pairs), got {self.popsize!r}")
        for name in ("sigma0", "scale", "learning_rate", "min_sigma"):
            check_positive(getattr(self, name), name, integer=False)
        rate = self.std_learning_rate
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate < float("inf"):
            raise ConfigError(f"std_learning_rate must be a number >= 0, got {self.std_learning_rate!r}")
        if self.min_sigma >= self.sigma0:
            raise ConfigError(f"min_sigma ({self.min_sigma}) must be below sigma0 ({self.sigma0})")
        self.placement = enum_choice(Placement, self.placement, "placement")
