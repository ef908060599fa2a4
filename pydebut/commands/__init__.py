"""Subcommands of the ``pydebut`` command line, one module each."""

COMMANDS: list = []
