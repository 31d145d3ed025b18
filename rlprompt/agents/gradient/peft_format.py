"""Soft prompts on disk: rlprompt's safetensors file and PEFT's prompt-tuning folder.

- rlprompt: one safetensors file with the tensor ``"prompt_embeddings"`` [T, H] and
  string metadata (``"rlprompt"``: a JSON object with the agent, options and results).
- PEFT: a folder with ``adapter_config.json`` (``peft_type`` ``PROMPT_TUNING``,
  ``task_type`` ``CAUSAL_LM``, ``num_virtual_tokens``, ``token_dim``, ...) and
  ``adapter_model.safetensors`` holding ``"prompt_embeddings"``
  [num_virtual_tokens, token_dim]; ``PeftModel.from_pretrained(base, folder)`` loads
  it and prepends the prompt to every input (rlprompt's ``placement="prefix"``).

No pickle anywhere: a soft prompt file can be loaded from an untrusted source.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from rlprompt.errors import ConfigError, DataError, first_line
from rlprompt.io import atomic_write_bytes, write_json

TENSOR = "prompt_embeddings"
PEFT_CONFIG = "adapter_config.json"
PEFT_WEIGHTS = "adapter_model.safetensors"


def save_soft_prompt(path: str | Path, embeds: torch.Tensor, metadata: dict[str, Any] | None = None) -> Path:
    """Write a soft prompt [T, H] as safetensors (atomically).

    :param path: the file to write.
    :param embeds: the soft prompt [T, H].
    :param metadata: JSON-ready facts stored beside it (under the key ``"rlprompt"``).
    """
    from safetensors.torch import save

    data = save({TENSOR: _check_2d(embeds, str(path)).detach().float().cpu().contiguous()},
                metadata={"rlprompt": json.dumps(metadata or {})})
    return atomic_write_bytes(path, data)


def load_soft_prompt(path: str | Path, *, token_dim: int | None = None) -> tuple[torch.Tensor, dict[str, Any]]:
    """Read a soft prompt from an rlprompt safetensors file or a PEFT prompt-tuning folder.

    :param path: a ``.safetensors`` file, or a folder with ``adapter_config.json``.
    :param token_dim: the LM's embedding size H, checked when given.
    :returns: the soft prompt [T, H] (float32, CPU) and its metadata (``{"placement":
        "prefix", "peft": {...}}`` for a PEFT folder).
    :raises ConfigError: wrong adapter type, or the wrong embedding size.
    :raises DataError: missing, unreadable or corrupt files.
    """
    path = Path(path)
    if path.is_dir():
        embeds, config = import_peft(path, token_dim=token_dim)
        return embeds, {"placement": "prefix", "peft": config}
    tensors, meta = _read_safetensors(path)
    embeds = _prompt_tensor(tensors, path)
    _check_dim(embeds, token_dim, path)
    try:
        info = json.loads(meta.get("rlprompt", "{}")) if meta else {}
    except json.JSONDecodeError as exc:
        raise DataError(f"{str(path)!r}: its rlprompt metadata is not valid JSON ({exc.msg})") from None
    return embeds, info if isinstance(info, dict) else {}


def export_peft(embeds: torch.Tensor, folder: str | Path, *, model: Any = None,
                base_model_name_or_path: str | None = None) -> Path:
    """Write a soft prompt in PEFT's prompt-tuning format (loads with ``PeftModel.from_pretrained``).

    PEFT prepends the prompt to the input, so export a prompt trained with
    ``placement="prefix"`` to get the same scores there.

    :param embeds: the soft prompt [T, H].
    :param folder: the folder to write (created).
    :param model: the base Hugging Face model (fills ``num_layers``/``num_attention_heads``).
    :param base_model_name_or_path: recorded in the config (where the base model comes from).
    :returns: the folder.
    """
    from safetensors.torch import save

    embeds = _check_2d(embeds, str(folder)).detach().float().cpu().contiguous()
    cfg = getattr(model, "config", None)
    config = {
        "peft_type": "PROMPT_TUNING",
        "task_type": "CAUSAL_LM",
        "num_virtual_tokens": int(embeds.shape[0]),
        "token_dim": int(embeds.shape[1]),
        "num_transformer_submodules": 1,
        "num_attention_heads": getattr(cfg, "num_attention_heads", None),
        "num_layers": getattr(cfg, "num_hidden_layers", None),
        "base_model_name_or_path": base_model_name_or_path,
        "prompt_tuning_init": "RANDOM",
        "prompt_tuning_init_text": None,
        "tokenizer_name_or_path": None,
        "inference_mode": True,
        "revision": None,
        "modules_to_save": None,
    }
    folder = Path(folder)
    atomic_write_bytes(folder / PEFT_WEIGHTS, save({TENSOR: embeds}, metadata={"format": "pt"}))
    write_json(folder / PEFT_CONFIG, config)
    return folder


def import_peft(folder: str | Path, *, token_dim: int | None = None) -> tuple[torch.Tensor, dict[str, Any]]:
    """Read a PEFT prompt-tuning folder.

    :param folder: holds ``adapter_config.json`` and ``adapter_model.safetensors``.
    :param token_dim: the LM's embedding size H, checked when given.
    :returns: the soft prompt [num_virtual_tokens, token_dim] and the adapter config.
    :raises ConfigError: another ``peft_type``, several transformer submodules, or another token_dim.
    :raises DataError: missing or corrupt files.
    """
    folder = Path(folder)
    config_path, weights_path = folder / PEFT_CONFIG, folder / PEFT_WEIGHTS
    if not config_path.is_file():
        raise DataError(f"{str(folder)!r} is not a PEFT adapter folder: {PEFT_CONFIG} is missing")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot read {str(config_path)!r}: {exc}") from None
    if not isinstance(config, dict):
        raise DataError(f"{str(config_path)!r} must hold a JSON object")
    peft_type = config.get("peft_type")
    if peft_type != "PROMPT_TUNING":
        raise ConfigError(
            f"{str(folder)!r} holds a {peft_type!r} adapter, not a soft prompt; rlprompt imports PEFT "
            "adapters with peft_type 'PROMPT_TUNING' only"
        )
    if int(config.get("num_transformer_submodules") or 1) != 1:
        raise ConfigError(
            f"{str(folder)!r} has num_transformer_submodules={config['num_transformer_submodules']} "
            "(an encoder-decoder prompt); rlprompt soft prompts are for causal LMs (1 submodule)"
        )
    if not weights_path.is_file():
        raise DataError(f"{str(folder)!r}: {PEFT_WEIGHTS} is missing")
    tensors, _ = _read_safetensors(weights_path)
    embeds = _prompt_tensor(tensors, weights_path)
    declared = (config.get("num_virtual_tokens"), config.get("token_dim"))
    if declared[0] is not None and declared[1] is not None and tuple(embeds.shape) != tuple(map(int, declared)):
        raise DataError(
            f"{str(weights_path)!r}: prompt_embeddings is {list(embeds.shape)} but {PEFT_CONFIG} says "
            f"num_virtual_tokens={declared[0]}, token_dim={declared[1]}"
        )
    _check_dim(embeds, token_dim, folder)
    return embeds, config


# -- helpers ---------------------------------------------------------------------------


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import safe_open

    if not path.is_file():
        raise DataError(f"soft prompt file {str(path)!r} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    except Exception as exc:  # safetensors raises its own error types, and OSError/ValueError
        first = first_line(exc, type(exc).__name__)
        raise DataError(f"{str(path)!r} is not a valid safetensors file ({first}); re-export it") from None
    return tensors, meta


def _prompt_tensor(tensors: dict[str, torch.Tensor], path: Path) -> torch.Tensor:
    if TENSOR not in tensors:
        raise DataError(f"{str(path)!r} has no tensor {TENSOR!r} (it holds {sorted(tensors)[:5]})")
    embeds = tensors[TENSOR]
    _check_2d(embeds, str(path))
    if not embeds.is_floating_point() or not bool(torch.isfinite(embeds).all()):
        raise DataError(f"{str(path)!r}: {TENSOR} must be finite floating-point numbers")
    return embeds.float()


def _check_2d(embeds: torch.Tensor, where: str) -> torch.Tensor:
    if not isinstance(embeds, torch.Tensor) or embeds.dim() != 2 or embeds.shape[0] < 1:
        shape = list(embeds.shape) if isinstance(embeds, torch.Tensor) else type(embeds).__name__
        raise DataError(f"{where}: a soft prompt is a tensor [n_tokens, hidden] with n_tokens >= 1, got {shape}")
    return embeds


def _check_dim(embeds: torch.Tensor, token_dim: int | None, where: Path) -> None:
    if token_dim is not None and embeds.shape[1] != token_dim:
        raise ConfigError(
            f"{str(where)!r}: the soft prompt has token_dim {embeds.shape[1]} but the LM's embeddings are "
            f"{token_dim}-dimensional; load it with the model it was trained for"
        )
