"""The ``optimlab`` command line.

Each subcommand lives in its own module that exposes two functions:
``add_arguments(parser)`` to declare its flags and ``main(args) -> int`` to run.
Only the module of the subcommand being run is imported, so ``optimlab --help``
stays fast and a broken subcommand cannot take the others down.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

# name -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "train": ("experiments.train", "train one model with one optimizer"),
    "run": ("experiments.sweep", "run a study (or all six) as a resumable sweep"),
    "report": ("experiments.report", "write the analysis report from the runs"),
    "check": ("optimizers.check.cli", "grade an optimizer against the reference math"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only ``command``'s module is imported to declare its flags."""
    parser = argparse.ArgumentParser(
        prog="optimlab",
        description="A PyTorch Lightning laboratory for gradient-based optimizers.",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log debug messages too"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        if name == command:
            try:
                module = importlib.import_module(module_name)
            except ModuleNotFoundError as error:
                if error.name is None or not module_name.startswith(error.name):
                    raise  # a missing dependency, not a missing subcommand
                parser.error(f"subcommand {name!r} is not available in this install")
            module.add_arguments(sub)
            sub.set_defaults(_handler=module.main)
    return parser


def _warnings_only(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.WARNING


def _find_command(argv: Sequence[str]) -> str | None:
    for token in argv:
        if token in SUBCOMMANDS:
            return token
        if not token.startswith("-"):
            return None
    return None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_find_command(argv))
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if not args.verbose:
        # torch dumps its FakeTensor cache counts at exit at INFO (seen after a
        # Ctrl-C during start-up); they mean nothing to a user of optimlab
        logging.getLogger("torch._subclasses.fake_tensor").addFilter(_warnings_only)
    if getattr(args, "_handler", None) is None:
        parser.print_help()
        return 0
    return int(args._handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
