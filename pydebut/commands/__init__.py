"""Subcommands of the ``pydebut`` command line, one module each."""

from . import chains, check

COMMANDS: list = [chains, check]
