"""Option values from text: what ``--set NAME=VALUE`` (``rlprompt train``/``compare``) and the
generated flags of ``rlprompt tune`` turn into config fields. It sits beside the configs so that
the CLI and the comparison harness parse options the same way, and nothing imports from the CLI."""

from __future__ import annotations

import dataclasses
import json
import typing
from typing import Any

from rlprompt.errors import ConfigError

TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


def parse_bool(text: str) -> bool:
    """``"yes"``/``"true"``/``"1"``/``"on"`` -> True, their opposites -> False.

    :raises ValueError: any other text.
    """
    lowered = text.strip().lower()
    if lowered in TRUE_WORDS:
        return True
    if lowered in FALSE_WORDS:
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def parse_value(text: str, hint: Any, name: str) -> Any:
    """Convert ``--set NAME=TEXT`` to the field's type (JSON for lists; ``none`` for None)."""
    args = typing.get_args(hint)
    optional = type(None) in args
    if optional and text.strip().lower() in ("none", "null"):
        return None
    base = hint
    if args and typing.get_origin(hint) is not list:
        base = next((a for a in args if a is not type(None)), hint)
    try:
        if base is bool:
            return parse_bool(text)
        if base is int:
            return int(text)
        if base is float:
            return float(text)
        if typing.get_origin(base) is list or base is list:
            value = json.loads(text)
            if not isinstance(value, list):
                raise ValueError("not a JSON list")
            return value
    except (ValueError, json.JSONDecodeError) as exc:
        raise ConfigError(f"--set {name}={text!r}: {exc}; expected {getattr(base, '__name__', base)}") from None
    return text


def describe_options(config_class: type) -> str:
    """One line per option: name, default and help text."""
    lines = [f"options of {config_class.__name__} (set with --set NAME=VALUE):"]
    for f in dataclasses.fields(config_class):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        default = getattr(default, "value", default)
        lines.append(f"  {f.name:<22} {default!r:<14} {f.metadata.get('help', '')}")
    return "\n".join(lines)
