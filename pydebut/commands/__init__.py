"""Subcommands of the ``pydebut`` command line, one module each."""

from . import fit

COMMANDS: list = [fit]
