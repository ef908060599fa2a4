"""Subcommands of the ``pydebut`` command line, one module each."""

from . import demo, fit

COMMANDS = [demo, fit]
