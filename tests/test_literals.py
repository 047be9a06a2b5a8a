"""``optimizers.literals.read_literal``, the core of the key=value readers."""

from __future__ import annotations

from typing import Any

import pytest

from optimizers.check.cli import parse_hparams
from optimizers.literals import read_literal

READ_CASES: list[tuple[str, Any]] = [
    ("0.1", 0.1),
    ("-3", -3),
    ("1e-3", 1e-3),
    ("TRUE", True),
    (" false ", False),
    ("True", True),
    ("(0.9, 0.99)", (0.9, 0.99)),
    ("[0.9, 0.99]", (0.9, 0.99)),
    ("'adam'", "adam"),
    ("None", None),
    ("{'a': [1]}", {"a": [1]}),
]

NOT_LITERALS = ["adam", "1,a", "none", "yes", "", "{[1]: 2}", "{{1}}", "1+", "f(1)"]


@pytest.mark.parametrize(("text", "expected"), READ_CASES)
def test_reads_literals_and_bool_words(text: str, expected: Any) -> None:
    value = read_literal(text)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize("text", NOT_LITERALS)
def test_anything_else_is_one_value_error(text: str) -> None:
    with pytest.raises(ValueError, match="is not a literal"):
        read_literal(text)


def test_grader_refuses_an_unhashable_literal_with_its_own_message() -> None:
    # ast.literal_eval raises TypeError here; the grader used to let it escape.
    with pytest.raises(ValueError, match=r"--hparams: lr='\{\[1\]: 2\}' is not a"):
        parse_hparams(["lr={[1]: 2}"])
