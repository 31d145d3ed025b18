"""The ``rlprompt`` command line: :mod:`.main` (parser, error handling), :mod:`.common` (shared
arguments), and one module per command: :mod:`.eval`, :mod:`.tasks`, :mod:`.train`, :mod:`.tune`,
:mod:`.compare`, :mod:`.demo`."""

from rlprompt.cli.main import COMMANDS, Command, build_parser, main

__all__ = ["COMMANDS", "Command", "build_parser", "main"]
