"""The ``tgd`` command line: ``tgd <command> [options]`` (also ``python -m tgd_core``).

Each command lives in ``tgd_core/commands/<name>.py`` with ``register(subparsers)``, which adds
its parser and sets ``func``. Every failure of the user's making (:class:`TGDError`, an OSError
on a path the user gave, Ctrl-C) prints one line ``tgd: error: COMMAND: …`` on stderr and exits
2 (130 after Ctrl-C); anything else is a bug: one line ``tgd: internal error: …``, exit 1. A
command whose output's reader has gone (``tgd jobs list | head -1``) ends quietly with 141.
``tgd --debug COMMAND …`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from tgd_core.core.errors import TGDError

COMMANDS = ["pi", "evaluate", "train", "experiment", "jobs", "export"]

USER_ERROR = 2
INTERNAL_ERROR = 1
INTERRUPTED = 130
READER_LEFT = 141  # 128 + SIGPIPE: what a shell reports for a writer whose reader left


def build_parser() -> argparse.ArgumentParser:
    """The ``tgd`` parser with every command's subparser (no heavy imports)."""
    parser = argparse.ArgumentParser(prog="tgd", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true",
                        help="on an error, show the full traceback instead of one line")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"tgd_core.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit status (see the module docstring)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    args = build_parser().parse_args(argv)
    try:
        status = int(args.func(args) or 0)
        sys.stdout.flush()  # a reader of the output that left shows here, not at exit
        return status
    except (Exception, KeyboardInterrupt) as exc:
        if isinstance(exc, BrokenPipeError) and _stdout_closed():
            return _after_reader_left()
        if args.debug:
            raise
        line, status = describe_failure(exc, command_name(args))
        print(line, file=sys.stderr)
        return status
    finally:
        _leave_process_group()


def command_name(args: argparse.Namespace) -> str:
    """The command as typed: ``pi``, ``jobs submit``, …"""
    action = getattr(args, "jobs_command", None)
    return f"{args.command} {action}" if action else args.command


def describe_failure(exc: BaseException, command: str) -> tuple[str, int]:
    """The one stderr line and the exit status for an exception that ended ``command``."""
    if isinstance(exc, KeyboardInterrupt):
        return f"tgd: error: {command}: interrupted", INTERRUPTED
    if isinstance(exc, TGDError):
        return f"tgd: error: {command}: {one_line(str(exc))}", USER_ERROR
    if isinstance(exc, OSError):  # safety net: a path the user gave, not converted at source
        return f"tgd: error: {command}: {one_line(os_error_message(exc))}", USER_ERROR
    return (f"tgd: internal error: {type(exc).__name__}: {one_line(str(exc))} "
            "(run with --debug for the traceback)", INTERNAL_ERROR)


def os_error_message(exc: OSError) -> str:
    """``PATH: reason`` of an OSError (``PATH -> PATH2`` for renames), or its text."""
    paths = [str(p) for p in (exc.filename, exc.filename2) if p is not None]
    reason = exc.strerror or str(exc)
    return f"{' -> '.join(paths)}: {reason}" if paths else reason


def one_line(text: str) -> str:
    """``text`` with its line breaks and runs of spaces collapsed to single spaces."""
    return " ".join(text.split())


def _stdout_closed() -> bool:
    """Whether standard output is a pipe whose reader has gone (poll reports POLLERR)."""
    import select

    try:
        poll = select.poll()
        poll.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poll.poll(0))
    except (OSError, ValueError, AttributeError):  # no real file behind stdout
        return False


def _after_reader_left() -> int:
    """End as a pipeline's writer does when its reader has gone (``tgd jobs list | head``): no
    message, status 141 (128 + SIGPIPE); stdout goes to /dev/null, so that the flush at exit
    does not fail again."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return READER_LEFT


def _leave_process_group() -> None:
    """End a torchrun process group, if this process ever set one up (without importing
    torch when it did not: commands that never train stay fast)."""
    distributed = sys.modules.get("tgd_core.core.distributed")
    if distributed is not None:
        distributed.shutdown()
