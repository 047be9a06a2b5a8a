"""Reading a command-line value as a literal, safely and with one kind of error.

``read_literal`` is the strict core the ``key=value`` readers share: the grader's
``--hparams`` (``optimizers.check.cli``) accepts exactly what it returns, narrowed
to numbers, bools and tuples, and ``optimlab train``'s hyperparameter flags
(``experiments.train.parse_value``) fall back to words and comma lists where it
raises. No code runs: Python literals are read by ``ast.literal_eval``.
"""

from __future__ import annotations

import ast
from typing import Any

_BOOLS = {"true": True, "false": False}


def read_literal(text: str) -> Any:
    """``text`` as ``true``/``false`` (any case) or a Python literal; lists as tuples.

    ``'0.1'`` -> 0.1, ``'TRUE'`` -> True, ``'(0.9, 0.99)'`` and ``'[0.9, 0.99]'`` ->
    (0.9, 0.99), ``"'adam'"`` -> 'adam'. Raises ValueError when ``text`` is none of
    these (``'adam'``, ``'1,a'``, ``'{[1]: 2}'``); ``ast.literal_eval``'s other
    errors (SyntaxError, TypeError, MemoryError, RecursionError) never escape.
    """
    word = text.strip().lower()
    if word in _BOOLS:
        return _BOOLS[word]
    try:
        value = ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise ValueError(f"{text!r} is not a literal") from None
    return tuple(value) if isinstance(value, list) else value
