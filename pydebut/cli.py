"""The ``pydebut`` command line: a thin argparse layer over the library.

Each subcommand lives in :mod:`pydebut.commands` as a module with
``register(subparsers)``; it sets ``func`` to a function that takes the parsed
arguments and returns the exit status. This module only builds the parser and
dispatches; what the subcommands share lives in :mod:`pydebut.commands._common`.

No traceback reaches the user. Mistakes in what was asked for (bad options,
unreadable or malformed files, numbers too large, input nested too deeply, a
request that does not fit in memory, a Numba setting the kernels refuse, such
as ``NUMBA_DISABLE_JIT``) print one line and exit with status 2.
Anything else is a bug in pydebut: one line says so and how to see the
traceback (``pydebut --debug ...`` or the environment variable
``PYDEBUT_DEBUG=1``), and the exit status is 3; with ``--debug`` the
traceback itself is shown instead (status 3 still), while a mistake in what was
asked for still gets its one line and status 2. Ctrl-C ends a command with one line
and status 130; SIGTERM and SIGHUP too, with 143 and 129, once the file being saved
is removed. A closed standard output is refused up front
(status 2); one that cannot be written (a full disk) is named in the error, status 2
too; with standard error closed, its messages (and progress bars) are dropped.

Options are taken as spelled, not abbreviated (``--sw`` is not ``--sweeps``).
An option given twice is refused (status 2) rather than keeping the last
value silently: ``--sup 64 72 --sup 72 144`` would read like one list of four
numbers. A required positional argument that a list option (``--sup``,
``--sub``) took as its last value is named in the error.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
import traceback
import zipfile
import zlib
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TextIO

from . import __version__
from ._arguments import shown
from .commands import UsageError, command_modules

if TYPE_CHECKING:
    from .commands._common import load_chain_json

__all__ = [
    "EXIT_BUG",
    "EXIT_USAGE",
    "MAX_CHAIN_FILE_BYTES",
    "UsageError",
    "build_parser",
    "load_chain_json",
    "main",
]

#: Exit status of a mistake in what the user asked for (one line on standard error).
EXIT_USAGE = 2
#: Exit status of a bug in pydebut (``--debug`` shows its traceback).
EXIT_BUG = 3
#: Largest chain file read (bytes): a listing's row is about 245 bytes of JSON, so this holds
#: a table of ``pydebut chains`` at its most rows (100,000, about 24 MB).
MAX_CHAIN_FILE_BYTES = 2**25
DEBUG_VARIABLE = "PYDEBUT_DEBUG"

EPILOG = f"""exit status: 0 success; 1 'check': the chain is valid but its product is not
dense; 2 invalid input (options, files, numbers, a request too large for memory);
3 a bug in pydebut (--debug or {DEBUG_VARIABLE}=1 shows its traceback).
Run 'pydebut COMMAND --help' for the options of a command."""

# Exceptions that what the user gave can raise: one line and EXIT_USAGE, never a traceback.
_INPUT_ERRORS = (
    UsageError,
    ValueError,  # includes UnicodeError, json.JSONDecodeError, numpy's LinAlgError
    TypeError,
    OSError,
    OverflowError,
    EOFError,
    zipfile.BadZipFile,
    zlib.error,
    RecursionError,  # input nested too deeply (JSON, chain lists)
    MemoryError,  # a request too large for this machine
    ImportError,  # the environment: NUMBA_DISABLE_JIT set, a dependency missing
)


#: Attribute of the parsed namespace: the option string each argument was given with, by dest.
_GIVEN = "_given"
#: What a file argument taken by a list option looks like (besides naming an existing file).
_FILE_SUFFIXES = (".npy", ".json")


class _Terminated(BaseException):
    """The process was asked to end (SIGTERM, SIGHUP): raised where it runs, so that
    what it was writing is cleaned up as for an interrupt (no half-written file)."""

    def __init__(self, signal_number: int) -> None:
        super().__init__(signal_number)
        self.signal_number = signal_number


@contextlib.contextmanager
def _terminations_raised() -> Iterator[None]:
    """SIGTERM and SIGHUP raise :class:`_Terminated` while the command runs.

    Their default ends the process at once: a save killed by ``timeout`` or
    ``kill`` left its temporary file (``.NAME.HEX.part``, as large as the
    output) beside the output. Only signals left at their default are taken,
    and only from the main thread (where Python runs handlers); they are put
    back afterwards.
    """
    names = ("SIGTERM", "SIGHUP")
    taken = [getattr(signal, name) for name in names if hasattr(signal, name)]
    if threading.current_thread() is not threading.main_thread():
        taken = []
    taken = [number for number in taken if signal.getsignal(number) == signal.SIG_DFL]

    def raise_terminated(number: int, frame: object) -> None:
        raise _Terminated(number)

    for number in taken:
        signal.signal(number, raise_terminated)
    try:
        yield
    finally:
        for number in taken:
            signal.signal(number, signal.SIG_DFL)


class _StandardOutputError(OSError):
    """Standard output could not be written (a full disk, a terminal gone)."""

    def __str__(self) -> str:
        return f"cannot write to standard output: {self.strerror}"


@contextlib.contextmanager
def _naming_standard_output() -> Iterator[None]:
    """Raise an error in writing to standard output as :class:`_StandardOutputError`.

    A reader that went away (:class:`BrokenPipeError`) is left to :func:`main`,
    which stops quietly.
    """
    try:
        yield
    except BrokenPipeError:
        raise
    except OSError as err:
        raise _StandardOutputError(err.errno, err.strerror) from None


class _NamedStandardOutput:
    """``sys.stdout`` while a command runs: its write errors name standard output.

    Without it a full disk under ``pydebut chains ... > file`` reported a bare
    ``[Errno 28] No space left on device``, as if an input file had failed.
    The first error in writing (a reader gone too) is kept in ``failure``, for
    callers that swallow it (argparse's ``--help`` and ``--version``), and the
    stream's file is then pointed at the null device: what its buffer still holds
    goes there at exit, instead of failing the interpreter's last flush again
    (status 120 and an "Exception ignored" message after the one-line error).
    Everything but writing is the wrapped stream's.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.failure: OSError | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    @contextlib.contextmanager
    def _recording(self) -> Iterator[None]:
        try:
            with _naming_standard_output():
                yield
        except OSError as err:  # _StandardOutputError or BrokenPipeError
            self.failure = self.failure or err
            self._discard_file()
            raise

    def _discard_file(self) -> None:
        """Point the stream's file at the null device (a stream with no file is left)."""
        try:
            descriptor = self._stream.fileno()
        except (OSError, ValueError):  # not a file: a StringIO
            return
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, descriptor)
        os.close(null)

    def write(self, text: str) -> int:
        with self._recording():
            return self._stream.write(text)

    def writelines(self, lines: Iterable[str]) -> None:
        with self._recording():
            self._stream.writelines(lines)

    def flush(self) -> None:
        with self._recording():
            self._stream.flush()


def _parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """``parser.parse_known_args(argv)``, unknown arguments refused.

    ``--help`` and ``--version`` print to standard output and raise
    :class:`SystemExit` (status 0); argparse drops an error in that writing,
    so a full disk went unreported with status 0. Here it is raised instead
    (:class:`_StandardOutputError`, or :class:`BrokenPipeError` for a reader
    gone), as for a command's output.
    """
    if sys.stdout is None:  # argparse prints to stderr then
        args, unknown = parser.parse_known_args(argv)
    else:
        standard_output = _NamedStandardOutput(sys.stdout)
        try:
            with contextlib.redirect_stdout(standard_output):
                args, unknown = parser.parse_known_args(argv)
        except SystemExit:
            standard_output.flush()  # what the buffer holds fails here, not at exit
            if standard_output.failure is not None:
                raise standard_output.failure from None
            raise
    if unknown:  # named with the command they were given to
        prog = f"{parser.prog} {args.command}" if args.command else parser.prog
        raise _ArgumentError(prog, f"unrecognized arguments: {' '.join(unknown)}")
    return args


class _ArgumentError(UsageError):
    """argparse rejected the command line of ``prog``."""

    def __init__(self, prog: str, message: str) -> None:
        super().__init__(f"{message} (see '{prog} --help')")
        self.prog = prog
        self.message = message


class _StoreOnce(argparse.Action):
    """Store an argument's value, refusing an option given a second time.

    argparse keeps the last value of a repeated option silently, which reads as
    adding to a list option (``--sup 64 72 --sup 72 144``). Every parser of the
    command line stores through this action (:class:`_Parser` makes it the
    default), and it records in the namespace which arguments were given.
    """

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        given = getattr(namespace, _GIVEN, {})
        if self.dest in given:
            raise argparse.ArgumentError(
                self, "given twice; give it once (a repeat would replace its value, not add to it)"
            )
        setattr(namespace, _GIVEN, {**given, self.dest: option_string})
        setattr(namespace, self.dest, values)


class _Parser(argparse.ArgumentParser):
    """argparse's parser, with options stored once (:class:`_StoreOnce`), errors raised
    (:class:`_ArgumentError`), and options taken only as spelled: argparse's default
    takes any unambiguous prefix (``--sw 3`` for ``--sweeps``), which an option added
    later would make ambiguous, breaking the scripts that used it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, allow_abbrev=False, **kwargs)
        self.register("action", None, _StoreOnce)  # argument groups share the registry
        self.register("action", "store", _StoreOnce)

    def error(self, message: str) -> None:  # type: ignore[override]
        raise _ArgumentError(self.prog, message)

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        namespace = argparse.Namespace() if namespace is None else namespace
        try:
            return super().parse_known_args(args, namespace)
        except _ArgumentError as err:
            taken = self._taken_by_a_list(namespace, err.message)
            if taken is None:
                raise
            raise _ArgumentError(self.prog, f"{err.message}; {taken}") from None

    def _taken_by_a_list(self, namespace: argparse.Namespace, message: str) -> str | None:
        """Why a required positional argument is missing, if a list option took it.

        A list option (``nargs="+"``) takes every value up to the next option,
        so a file given after it is read as its last value.
        """
        given = getattr(namespace, _GIVEN, {})
        missing = [
            action.metavar or action.dest
            for action in self._actions
            if not action.option_strings and action.required and action.dest not in given
        ]
        if not missing or not message.startswith("the following arguments are required"):
            return None
        for action in self._actions:
            if action.option_strings and action.nargs == "+" and action.dest in given:
                last = str(getattr(namespace, action.dest)[-1])
                if os.path.exists(last) or last.lower().endswith(_FILE_SUFFIXES):
                    return (
                        f"{shown(last)} was read as a value of {given[action.dest]}, which "
                        f"takes every value after it: give {missing[0]} before the options, "
                        "or last after --"
                    )
        return None


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser with every subcommand registered."""
    parser = _Parser(
        prog="pydebut",
        description="Deformable Butterfly (DeBut) matrices: design chains, check them, "
        "fit them to a matrix.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"pydebut {__version__}")
    parser.add_argument(
        "--debug",
        action="store_true",
        help=f"show the traceback of an internal error (as {DEBUG_VARIABLE}=1 does); "
        "invalid input still gets one line and exit status 2",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for module in command_modules():
        module.register(subparsers)
    return parser


def __getattr__(name: str) -> Any:
    """:func:`load_chain_json`, imported on first use (PEP 562): the subcommands'
    modules load the kernels, whose refusal of a Numba setting :func:`main`
    reports in one line only once it is running."""
    if name == "load_chain_json":
        from .commands._common import load_chain_json

        return load_chain_json
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments after the program name; by default ``sys.argv[1:]``.

    Returns
    -------
    int
        The command's status (0 on success; ``check`` gives 1 for a chain
        that is not dense), ``EXIT_USAGE`` (2) for a usage or input error,
        ``EXIT_BUG`` (3) for an internal error, 130 when interrupted, 141
        when the reader of standard output went away, and 128 plus the signal's
        number when ended by SIGTERM (143) or SIGHUP (129).

    Examples
    --------
    >>> main(["check", "--sup", "4 4 4 4", "--sub", "2 2 2 2 2 1", "--format", "json"])
    ... # doctest: +ELLIPSIS
    {
     "sup": [[4, 4], [4, 4]],
    ...
    0
    """
    if sys.stderr is None:  # started with stderr closed (``2>&-``): its messages are dropped
        with open(os.devnull, "w") as sink, contextlib.redirect_stderr(sink):
            return main(argv)
    with _terminations_raised():
        return _run(argv)


def _run(argv: Sequence[str] | None) -> int:
    """:func:`main` once standard error is open and SIGTERM raises."""
    debug = os.environ.get(DEBUG_VARIABLE, "") not in ("", "0")
    try:
        parser = build_parser()
        args = _parse(parser, argv)
        debug = debug or args.debug
        if args.command is None:
            print(parser.format_help(), end="", file=sys.stderr)
            return EXIT_USAGE
        if sys.stdout is None:  # started with stdout closed (``>&-``)
            raise UsageError("standard output is closed: redirect it to a file or /dev/null")
        with contextlib.redirect_stdout(_NamedStandardOutput(sys.stdout)):
            status = int(args.func(args))
            sys.stdout.flush()  # what the buffer holds fails here, not at exit
        return status
    except KeyboardInterrupt:
        print("pydebut: interrupted", file=sys.stderr)
        return 130
    except _Terminated as ended:
        print(f"pydebut: ended by {signal.Signals(ended.signal_number).name}", file=sys.stderr)
        return 128 + ended.signal_number
    except BrokenPipeError:  # the reader went away (``pydebut chains ... | head``)
        return 141  # quietly: _NamedStandardOutput pointed standard output at the null device
    except Exception as err:
        if not isinstance(err, _INPUT_ERRORS):
            if debug:  # the traceback, still with the bug's status (1 is check's verdict)
                traceback.print_exc()
            else:
                print(_one_line(err), file=sys.stderr)
            return EXIT_BUG
        print(_one_line(err), file=sys.stderr)
        return EXIT_USAGE


def _one_line(err: Exception) -> str:
    """The message printed for ``err``: one line, never a traceback."""
    text = " ".join(str(err).split())
    if isinstance(err, _ArgumentError):
        return f"{err.prog}: error: {text}"
    if isinstance(err, RecursionError):
        return f"pydebut: error: the input is nested too deeply ({text})"
    if isinstance(err, MemoryError):
        detail = f" ({text})" if text else ""
        return f"pydebut: error: not enough memory for this request{detail}; ask for less"
    if isinstance(err, _INPUT_ERRORS):
        return f"pydebut: error: {text or type(err).__name__}"
    return (
        f"pydebut: internal error ({type(err).__name__}: {text}). This is a bug in pydebut; "
        f"please report it with the traceback that 'pydebut --debug ...' or "
        f"{DEBUG_VARIABLE}=1 shows."
    )
