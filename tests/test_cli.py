"""The ``optimlab`` entry point: help without heavy imports, clear errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from experiments import cli


def test_help_lists_every_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 0
    out = capsys.readouterr().out
    for name in cli.SUBCOMMANDS:
        assert name in out


def test_help_does_not_import_torch() -> None:
    code = (
        "import sys; from experiments import cli; "
        "cli.build_parser(); print('torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "False"


def test_unknown_subcommand_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as excinfo:
        cli.main(["no-such-command"])
    assert excinfo.value.code == 2
    assert "no-such-command" in capsys.readouterr().err


def test_missing_subcommand_module_is_a_clean_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(
        cli.SUBCOMMANDS, "ghost", ("experiments.no_such_module", "not built")
    )
    with pytest.raises(SystemExit) as excinfo:
        cli.main(["ghost"])
    assert excinfo.value.code == 2
    assert "'ghost' is not available" in capsys.readouterr().err
