"""Subcommands of the ``pydebut`` command line, one module each.

They are imported when the parser is built (:func:`command_modules`), inside
:func:`pydebut.cli.main`, so that what their import refuses (a Numba setting
the kernels cannot run under) is reported as a mistake in one line.
"""

import importlib
from types import ModuleType

#: The subcommands, in the order ``pydebut --help`` lists them.
COMMAND_NAMES = ("chains", "check", "demo", "fit")


class UsageError(Exception):
    """A mistake in what the user asked for; printed as one line, exit status 2."""


def command_modules() -> list[ModuleType]:
    """Import the subcommands' modules (each has ``register(subparsers)``)."""
    return [importlib.import_module(f".{name}", __name__) for name in COMMAND_NAMES]
