"""The two kinds of prompt an agent can find: discrete (token ids) and soft (embeddings).

Each kind says how its prompts are scored, shown, saved and loaded; an agent subclasses
one of them and writes only its loop (``_learn``).
"""

from __future__ import annotations

import dataclasses
import json
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import torch

from rlprompt.agents.core.base import BaseAgent
from rlprompt.agents.core.config import AgentConfig, enum_choice
from rlprompt.agents.core.tracking import Candidate
from rlprompt.agents.gradient.peft_format import export_peft, load_soft_prompt, save_soft_prompt
from rlprompt.errors import ConfigError, DataError
from rlprompt.lm.embeddings import Metric, nearest_tokens, real_token_ids
from rlprompt.lm.template import Placement

if TYPE_CHECKING:
    from rlprompt.lm import ScoringEngine
    from rlprompt.tasks import Task

A = TypeVar("A", bound=BaseAgent)


def config_from_dict(config_class: type[AgentConfig], values: dict[str, Any], where: str) -> AgentConfig:
    """Rebuild a config from saved options (unknown keys are ignored)."""
    names = {f.name for f in dataclasses.fields(config_class)}
    try:
        return config_class(**{k: v for k, v in values.items() if k in names})
    except (TypeError, ConfigError) as exc:
        raise DataError(f"{where}: saved options do not fit {config_class.__name__}: {exc}") from None


class DiscreteAgent(BaseAgent):
    """An agent whose prompts are token ids of the task LM's vocabulary (readable text).

    Saved as JSON: the selected prompt (text and token ids), the kept top prompts and options.
    """

    prompt_kind: ClassVar[str] = "discrete"
    artefact_name: ClassVar[str] = "prompt.json"

    def score(self, prompts: Sequence[Sequence[int]], texts: Sequence[str]) -> torch.Tensor:
        return self.engine.score([list(p) for p in prompts], texts)

    def describe(self, prompt: Sequence[int]) -> str:
        return self.engine.decode(list(prompt))

    def _freeze_prompt(self, prompt: Sequence[int]) -> tuple[int, ...]:
        return tuple(int(t) for t in prompt)

    def predict(self) -> list[int]:
        """Token ids of the prompt selected on dev (``self.describe(ids)`` reads it)."""
        return list(super().predict())

    def save(self, path: str | Path) -> Path:
        from rlprompt.io import write_json

        best = self.tracker.best
        if best is None:
            raise ConfigError("nothing to save yet; call learn() first")
        top = [{"text": c.text, "tokens": list(c.prompt), "dev_accuracy": c.dev_accuracy, "dev_score": c.dev_score,
                "pooled_accuracy": c.pooled_accuracy} for c in self.tracker.top]
        return write_json(path, {
            "format": "rlprompt-discrete-prompt", "agent": self.name, "model": self.engine.lm.name,
            "task": self.task.name, "prompt": best.text, "tokens": list(best.prompt),
            "dev_accuracy": best.dev_accuracy, "top": top, "config": self.config.as_dict(),
        })

    @classmethod
    def load(cls: type[A], path: str | Path, engine: ScoringEngine, task: Task, **kwargs: Any) -> A:
        """An agent holding the prompts saved at ``path`` (``predict`` returns the best).

        :param path: a ``prompt.json`` written by :meth:`save`.
        :param engine: the scoring engine.
        :param task: the task.
        :param kwargs: passed to the constructor (``out_dir``).
        :raises DataError: missing or malformed file.
        """
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            top = data["top"]
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
            raise DataError(f"cannot read a discrete prompt from {str(path)!r}: {exc}") from None
        agent = cls(engine, task, config_from_dict(cls.config_class, data.get("config") or {}, str(path)), **kwargs)
        for c in top:
            tokens = tuple(engine.prompt_tokens([int(t) for t in c["tokens"]]))
            agent.tracker.offer(Candidate(prompt=tokens, text=engine.decode(list(tokens)),
                                          dev_accuracy=float(c["dev_accuracy"]),
                                          dev_score=float(c.get("dev_score") or float("-inf")),
                                          pooled_accuracy=c.get("pooled_accuracy")))
        agent.status = "loaded"
        return agent


class SoftAgent(BaseAgent):
    """An agent whose prompts are soft token embeddings [T, H] in the LM's input space.

    Its config must have ``prompt_length`` and ``placement``. Saved as safetensors (tensor
    ``"prompt_embeddings"``); :meth:`export_peft` writes PEFT's prompt-tuning folder.
    """

    prompt_kind: ClassVar[str] = "soft"
    artefact_name: ClassVar[str] = "prompt.safetensors"

    def __init__(self, engine: ScoringEngine, task: Task, config: AgentConfig | None = None, *,
                 out_dir: str | Path | None = None) -> None:
        super().__init__(engine, task, config, out_dir=out_dir)
        if engine.masked:
            raise ConfigError(f"soft prompts need a causal LM; {engine.lm.name!r} is a masked LM")
        self.placement = enum_choice(Placement, getattr(self.config, "placement", "suffix"), "placement")
        table = engine.lm.input_embeddings()
        self.hidden_size = int(table.embedding_dim)
        self._real_ids = real_token_ids(engine.tokenizer, table.num_embeddings)
        self._check_context(int(getattr(self.config, "prompt_length", 1)))

    def _check_context(self, n_tokens: int) -> None:
        """Fail early when the soft tokens plus the longest input exceed the LM's context."""
        texts = self.task.texts("train") + self.task.texts("dev")
        longest = max(len(self.engine.tokenizer(t).input_ids) for t in texts)
        tail = len(self.engine.tokenizer(self.engine.template.segments("", "x")[2]).input_ids)
        room = self.engine.lm.max_length - longest - tail - 2
        if n_tokens > room:
            raise ConfigError(
                f"prompt_length={n_tokens} soft tokens plus the longest input ({longest} tokens) exceed the "
                f"{self.engine.lm.max_length}-token context of {self.engine.lm.name!r}; "
                f"use prompt_length <= {max(room, 0)}"
            )

    def score(self, prompts: torch.Tensor | Sequence[torch.Tensor], texts: Sequence[str]) -> torch.Tensor:
        embeds = prompts if isinstance(prompts, torch.Tensor) else torch.stack([torch.as_tensor(p) for p in prompts])
        return self.engine.score_soft(embeds.to(self.engine.device), texts, placement=self.placement.value)

    def nearest(self, prompt: torch.Tensor, metric: Metric | str = Metric.COSINE) -> list[int]:
        """Token ids nearest to each soft token (special tokens excluded)."""
        return nearest_tokens(prompt, self.engine.lm.input_embeddings().weight, metric, self._real_ids).tolist()

    def describe(self, prompt: torch.Tensor) -> str:
        return f"~{self.engine.decode(self.nearest(prompt))!r}"

    def _freeze_prompt(self, prompt: torch.Tensor) -> torch.Tensor:
        return prompt.detach().float().cpu().clone()

    def project(self, metric: Metric | str = Metric.COSINE, splits: Sequence[str] = ("dev", "test"),
                soft_too: bool = True) -> dict[str, Any]:
        """The selected soft prompt's nearest vocabulary tokens and the accuracy they keep.

        The projected tokens are scored at the same placement (their embeddings in place
        of the soft ones).

        :param metric: ``"cosine"`` or ``"l2"``.
        :param splits: where to measure the accuracy.
        :param soft_too: also measure the soft prompt itself, for comparison.
        :returns: ``{"metric", "tokens", "text", "<split>_accuracy"}`` (and
            ``"<split>_soft_accuracy"`` with ``soft_too``).
        """
        soft = self.predict()
        ids = self.nearest(soft, metric)
        table = self.engine.lm.input_embeddings().weight
        hard = table.detach()[torch.tensor(ids, device=table.device)].float().cpu()
        out: dict[str, Any] = {"metric": Metric(metric).value, "tokens": ids, "text": self.engine.decode(ids)}
        for split in splits:
            out[f"{split}_accuracy"] = self.evaluate(split, prompt=hard).accuracy
            if soft_too:
                out[f"{split}_soft_accuracy"] = self.evaluate(split, prompt=soft).accuracy
        return out

    def _metadata(self) -> dict[str, Any]:
        best = self.tracker.best
        return {
            "format": "rlprompt-soft-prompt", "agent": self.name, "model": self.engine.lm.name,
            "task": self.task.name, "placement": self.placement.value, "config": self.config.as_dict(),
            "dev_accuracy": best.dev_accuracy if best else None, "nearest_tokens": best.text if best else None,
        }

    def save(self, path: str | Path) -> Path:
        if self.tracker.best is None:
            raise ConfigError("nothing to save yet; call learn() first")
        return save_soft_prompt(path, self.predict(), self._metadata())

    def export_peft(self, folder: str | Path) -> Path:
        """Write the selected prompt as a PEFT prompt-tuning adapter folder.

        PEFT puts the prompt before the input; a prompt learned with ``placement="suffix"``
        is exported all the same, but scores differently there (a warning says so).
        """
        import warnings

        if self.placement is not Placement.PREFIX:
            warnings.warn(
                "exporting a soft prompt learned after the input (placement='suffix'); PEFT prepends it "
                "to the input, where it was not trained; use placement='prefix' for PEFT use", stacklevel=2,
            )
        return export_peft(self.predict(), folder, model=self.engine.model, base_model_name_or_path=self.engine.lm.name)

    @classmethod
    def load(cls: type[A], path: str | Path, engine: ScoringEngine, task: Task, **kwargs: Any) -> A:
        """An agent holding a saved soft prompt (rlprompt safetensors file or PEFT folder).

        :param path: a ``.safetensors`` file from :meth:`save`, or a PEFT prompt-tuning
            folder (loaded with ``placement="prefix"``, PEFT's placement).
        :param engine: the scoring engine.
        :param task: the task.
        :param kwargs: passed to the constructor (``out_dir``); the prompt is scored on dev.
        :raises ConfigError: another PEFT type, or a token_dim that is not the LM's.
        :raises DataError: missing or corrupt files.
        """
        hidden = engine.lm.input_embeddings().embedding_dim
        embeds, meta = load_soft_prompt(path, token_dim=hidden)
        options = dict(meta.get("config") or {})
        hints = typing.get_type_hints(cls.config_class)
        if "prompt_length" in hints:
            options["prompt_length"] = int(embeds.shape[0])
        if "placement" in hints and meta.get("placement"):
            options["placement"] = meta["placement"]
        agent = cls(engine, task, config_from_dict(cls.config_class, options, str(path)), **kwargs)
        agent.evaluate_dev(embeds.unsqueeze(0))
        agent.status = "loaded"
        return agent
