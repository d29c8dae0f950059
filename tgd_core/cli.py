"""The ``tgd`` command line: ``tgd <command> [options]`` (also ``python -m tgd_core``).

Each command lives in ``tgd_core/commands/<name>.py`` with ``register(subparsers)``, which adds
its parser and sets ``func``. Errors of the user's making (:class:`TGDError`) print one line.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from tgd_core.errors import TGDError

COMMANDS = ["pi", "evaluate", "train", "experiment", "jobs", "export"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tgd", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"tgd_core.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except TGDError as exc:
        print(f"tgd {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"tgd {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        from tgd_core.distributed import shutdown

        shutdown()
