"""The ``optimlab`` command line.

Each subcommand lives in its own module that exposes two functions:
``add_arguments(parser)`` to declare its flags and ``main(args) -> int`` to run.
Modules are imported only when their subcommand is used, so ``optimlab --help``
stays fast and a broken subcommand cannot take the others down.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# name -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "train": ("experiments.train", "train one model with one optimizer"),
    "run": ("experiments.sweep", "run a study (or all six) as a resumable sweep"),
    "report": ("experiments.report", "write the analysis report from the runs"),
    "check": ("optimizers.check.cli", "grade an optimizer against the reference math"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="optimlab",
        description="A PyTorch Lightning laboratory for gradient-based optimizers.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name and module_name.startswith(error.name):
                continue  # subcommand not built yet
            raise
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(sub)
        sub.set_defaults(_handler=module.main)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "_handler", None) is None:
        parser.print_help()
        return 0
    return int(args._handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
