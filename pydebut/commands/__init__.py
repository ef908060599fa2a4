"""Subcommands of the ``pydebut`` command line, one module each."""

from . import chains, check, demo, fit

COMMANDS = [chains, check, demo, fit]
