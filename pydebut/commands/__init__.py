"""Subcommands of the ``pydebut`` command line, one module each."""

from . import demo

COMMANDS = [demo]
