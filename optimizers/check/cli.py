"""``optimlab check FILE.py:ClassName --as ALGORITHM``: the autograder's command.

Exit status: 0 when every property holds, 1 when one fails, 2 when the submission
cannot be loaded or run (or the command itself is misused), 3 when nothing failed
but a property could not be tested at all (its constructor refuses a flag that
every scenario of the property needs).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

from optimizers.literals import read_literal

EPILOG = """\
The class is loaded and run in a child process under the time and memory limits
and compared step by step (float64) with optimlab's reference implementation:
trajectories over the algorithm's settings, one step from a hand-set state, param
groups, hyperparameters changed between steps, a state_dict round trip, parameters
without a gradient, .grad left alone, the loss falling on a convex problem. When a
property fails, the known mistakes whose behaviour it matches (or the nearest, with
distances) are explained. Put --hparams after the target.

exit status: 0 every property holds, 1 a property fails, 2 the submission cannot
be loaded or run (or the command is misused), 3 nothing failed but a property
was never tested (shown as "skip"; the constructor refuses a flag it needs)."""

ALGORITHM_NAMES = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument(
        "target",
        metavar="FILE.py:ClassName",
        help="the file holding the optimizer and the class to grade",
    )
    parser.add_argument(
        "--as",
        dest="algorithm",
        required=True,
        choices=ALGORITHM_NAMES,
        help="the algorithm it implements",
    )
    parser.add_argument(
        "--hparams",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="hyperparameters passed to every setting, e.g. lr=0.01 betas=(0.9,0.99)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print a machine-readable result"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="wall-clock limit for the submission (default 60, at most 86400)",
    )
    parser.add_argument(
        "--memory-mb",
        type=int,
        default=2048,
        metavar="MB",
        help="memory (data segment) limit for the submission (default 2048, 256 to "
        "1048576)",
    )


def parse_target(target: str) -> tuple[str, str]:
    """``path/to/file.py:ClassName`` -> (path, class name)."""
    path, sep, name = target.rpartition(":")
    if not sep or not path or not name.isidentifier():
        raise ValueError(f"target: {target!r} is not of the form FILE.py:ClassName")
    return path, name


def parse_hparams(items: list[str]) -> dict[str, Any]:
    """``["lr=0.1", "nesterov=true", "betas=(0.9,0.99)"]`` -> a dict of literals."""
    hparams: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.isidentifier():
            raise ValueError(f"--hparams: {item!r} is not of the form key=value")
        try:
            value = read_literal(text)
        except ValueError:
            raise ValueError(
                f"--hparams: {key}={text!r} is not a number, bool or tuple"
            ) from None
        if not isinstance(value, int | float | bool | tuple):
            raise ValueError(
                f"--hparams: {key}={text!r} must be a number, bool or tuple"
            )
        if not all(
            _finite(x) for x in (value if isinstance(value, tuple) else [value])
        ):
            raise ValueError(
                f"--hparams: {key}={text[:40]!r} must hold finite numbers "
                f"(at most {sys.float_info.max:.3g} in size)"
            )
        hparams[key] = value
    return hparams


def main(args: argparse.Namespace) -> int:
    try:
        path, class_name = parse_target(args.target)
        hparams = parse_hparams(args.hparams)
        from optimizers.check.api import check, check_limits

        check_limits(args.timeout, args.memory_mb, ("--timeout", "--memory-mb"))

        result = check(
            path,
            class_name,
            args.algorithm,
            hparams,
            timeout=args.timeout,
            memory_mb=args.memory_mb,
        )
    except ValueError as error:
        message = str(error)
        if args.json:
            print(json.dumps({"status": "error", "exit_code": 2, "error": message}))
        else:
            print(f"optimlab check: error: {message}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(result.format())
    return result.exit_code


def _finite(value: Any) -> bool:
    """False for a number that is not finite as a float (1e400, 10**400)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return True
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False
