"""Subcommands of the ``pydebut`` command line, one module each."""

from . import chains, check, demo

COMMANDS = [chains, check, demo]
