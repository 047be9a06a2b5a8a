"""The grader end to end: child process, limits, exit codes, the CLI and --json.

Each case here starts a child process (about 2 s: it imports torch), so the table
is short; the identification of every mistake is in test_check_catalogue.
"""

from __future__ import annotations

import errno
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from experiments.cli import main as optimlab
from optimizers.check import check, runner
from optimizers.check.child import _file_too_large, _load_class, _LoadError

SUBMISSIONS = Path(__file__).parent / "check_submissions"
REPO = Path(__file__).resolve().parents[1]


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = optimlab(["check", *argv])
    out, err = capsys.readouterr()
    return code, out, err


# (file:class, --as, exit code, text that must appear in the output)
CLI_CASES = [
    ("missing_file.py:X", "sgd", 2, "no such file"),
    (".:X", "sgd", 2, "is a directory; expected a .py file"),
]


@pytest.mark.parametrize(
    ("target", "algorithm", "code", "text"), CLI_CASES, ids=[c[0] for c in CLI_CASES]
)
def test_cli_exit_codes(capsys, target, algorithm, code, text):
    got, out, err = run_cli(capsys, str(SUBMISSIONS / target), "--as", algorithm)
    assert got == code, out + err
    assert text in out + err


def test_correct_submission_passes_with_json(capsys):
    target = str(SUBMISSIONS / "correct_adam.py") + ":StudentAdam"
    code, out, _ = run_cli(capsys, target, "--as", "adam", "--json")
    data = json.loads(out)
    assert code == 0 and data["exit_code"] == 0 and data["status"] == "pass"
    assert len(data["properties"]) == 8
    assert all(p["passed"] for p in data["properties"])
    assert data["diagnosis"] == [] and data["reference_distance"] <= 1e-8


def test_import_error_names_the_line(capsys):
    target = str(SUBMISSIONS / "raises_on_import.py") + ":BrokenSGD"
    code, out, _ = run_cli(capsys, target, "--as", "sgd", "--json")
    data = json.loads(out)
    assert code == 2 and data["exit_code"] == 2 and data["status"] == "error"
    assert "raised RuntimeError on import" in data["error"]
    assert 'raises_on_import.py", line 5' in data["error"]
    assert "optimizers/check" not in data["error"]  # only the submission's frames


def test_infinite_loop_is_stopped_within_the_limit():
    start = time.monotonic()
    result = check(SUBMISSIONS / "loops_forever.py", "ForeverSGD", "sgd", timeout=3)
    elapsed = time.monotonic() - start
    assert result.exit_code == 2 and result.status == "error"
    assert "time limit of 3 s" in result.error
    assert "trajectory[lr=0.05]" in result.error  # where it hung
    assert "starting step" in result.stdout  # its output was captured
    # the limit counts from the submission's start; torch's start-up comes first
    assert 3 <= result.seconds and elapsed < 3 + runner.STARTUP_LIMIT_S


def test_memory_limit():
    result = check(
        SUBMISSIONS / "eats_memory.py", "HungrySGD", "sgd", timeout=30, memory_mb=1024
    )
    assert result.exit_code == 2, result.format()
    assert "memory" in result.error.lower()


def test_output_limit_is_the_graders_not_a_mistake(monkeypatch):
    monkeypatch.setattr(runner, "_FILE_LIMIT", 1 << 20)
    result = check(SUBMISSIONS / "writes_too_much.py", "LoudSGD", "sgd")
    assert result.exit_code == 2 and result.status == "error", result.format()
    assert "wrote more than 1 MiB to stdout (the grader's limit on output)" in (
        result.error
    )
    assert "trajectory[lr=0.05]" in result.error  # where it happened


def test_file_size_error_is_recognised_through_its_chain():
    """The child's test for EFBIG (a file of the submission's own past the limit;
    writes_too_much.HoarderSGD end to end): found however it was re-raised."""
    try:
        try:
            raise OSError(errno.EFBIG, "File too large")
        except OSError as error:
            raise RuntimeError("could not save") from error
    except RuntimeError as wrapped:
        assert _file_too_large(wrapped)
    assert not _file_too_large(OSError(errno.ENOSPC, "No space left on device"))
    assert not _file_too_large(ValueError("File too large"))


def test_class_lookup_errors():
    """The child's loader, called in-process: a missing class and a non-optimizer."""
    path = str(SUBMISSIONS / "correct_sgd.py")
    with pytest.raises(_LoadError, match="optimizer classes in the file: StudentSGD"):
        _load_class(path, "NoSuchClass", torch.optim.Optimizer)
    with pytest.raises(_LoadError, match="not a subclass of torch.optim.Optimizer"):
        _load_class(path, "Optimizer", torch.nn.Module)
    with pytest.raises(_LoadError, match="is a directory; expected a .py file"):
        _load_class(str(SUBMISSIONS), "X", torch.optim.Optimizer)


def test_usage_errors(capsys):
    code, _, err = run_cli(capsys, "no_colon.py", "--as", "sgd")
    assert code == 2 and "FILE.py:ClassName" in err
    target = str(SUBMISSIONS / "correct_sgd.py") + ":StudentSGD"
    code, _, err = run_cli(capsys, target, "--as", "sgd", "--hparams", "lr")
    assert code == 2 and "--hparams" in err and "key=value" in err
    code, _, err = run_cli(capsys, target, "--as", "sgd", "--hparams", "lr=-1")
    assert code == 2 and "lr" in err
    code, _, err = run_cli(capsys, target, "--as", "sgd", "--timeout", "0")
    assert code == 2 and "--timeout" in err
    with pytest.raises(SystemExit) as exit_info:
        optimlab(["check", "x.py:X", "--as", "adamax"])
    assert exit_info.value.code == 2


# (flag, value, text the one-line message must hold)
LIMIT_CASES = [
    ("--timeout", "0", "(0, 86400]"),
    ("--timeout", "-5", "got -5.0"),
    ("--timeout", "inf", "got inf"),
    ("--timeout", "nan", "got nan"),
    ("--timeout", "1e400", "got inf"),
    ("--timeout", "1e9", "got 1000000000.0"),
    ("--memory-mb", "255", "[256, 1048576]"),
    ("--memory-mb", "99999999999999999999", "got 99999999999999999999"),
    ("--hparams", "lr=1e400", "lr='1e400' must hold finite numbers"),
    ("--hparams", "betas=(0.9,1e999)", "betas='(0.9,1e999)' must hold finite"),
    ("--hparams", "lr=1" + "0" * 400, "must hold finite numbers"),
]


@pytest.mark.parametrize(("flag", "value", "text"), LIMIT_CASES)
def test_limits_out_of_range_are_refused_in_one_line(capsys, flag, value, text):
    target = str(SUBMISSIONS / "correct_sgd.py") + ":StudentSGD"
    code, out, err = run_cli(capsys, target, "--as", "sgd", flag, value)
    assert code == 2 and out == ""
    assert err.startswith(f"optimlab check: error: {flag}: ")
    assert text in err and err.count("\n") == 1, err


def test_limits_out_of_range_are_refused_by_the_api():
    with pytest.raises(ValueError, match=r"timeout: .*\(0, 86400\], got inf"):
        check(SUBMISSIONS / "correct_sgd.py", "StudentSGD", "sgd", timeout=math.inf)
    with pytest.raises(ValueError, match=r"memory_mb: .*got 2048.5"):
        check(SUBMISSIONS / "correct_sgd.py", "StudentSGD", "sgd", memory_mb=2048.5)


def test_console_command_nan_submission():
    """The real command, as a course's grading script would call it."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    command = [sys.executable, "-m", "experiments.cli", "check"]
    command += [str(SUBMISSIONS / "returns_nan.py") + ":NanSGD", "--as", "sgd"]
    command += ["--json", "--hparams", "lr=0.02", "--timeout", "60"]
    command += ["--memory-mb", "1500"]
    proc = subprocess.run(
        command, capture_output=True, text=True, env=env, cwd=REPO, timeout=120
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    data = json.loads(proc.stdout)  # strict JSON: NaN became null
    assert data["status"] == "fail" and data["exit_code"] == 1
    trajectory = data["properties"][0]
    assert trajectory["name"] == "trajectory" and not trajectory["passed"]
    assert trajectory["mismatch"]["scenario"] == "trajectory[lr=0.02]"
    assert trajectory["mismatch"]["step"] == 1
    assert trajectory["mismatch"]["submitted"] is None
    assert "non-finite value" in trajectory["detail"]
    assert not any(d["matched"] for d in data["diagnosis"])


def test_child_records_are_sanitised():
    """The child's JSON is untrusted: only well-typed numbers get through."""
    good = runner._clean({"status": "ok", "positions": [[1, 2], [3, "nan"]]})
    assert good["positions"] == [[1.0, 2.0], [3.0, good["positions"][1][1]]]
    assert good["grad_modified"] == 0.0
    replaced = runner._clean({"status": "ok", "positions": [], "grad_replaced": 7})
    assert replaced["grad_replaced"] == "7"  # the description travels, as text
    for bad in ({"status": "ok", "positions": "x"}, {"status": "ok"}, [1], {}):
        assert runner._clean(bad) == {
            "status": "error",
            "error": "malformed record from the child",
        }


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")  # a zombie waits only for its reaper


def test_processes_forked_by_a_submission_die_with_the_check(tmp_path):
    pid_file = tmp_path / "forked.pid"
    submission = tmp_path / "forks.py"
    submission.write_text(
        "import os, time\nimport torch\n\n"
        "if os.fork() == 0:\n"
        f"    open({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
        "    time.sleep(60)\n"
        "    os._exit(0)\n\n\n"
        "class ForkingSGD(torch.optim.SGD):\n    pass\n"
    )
    outcome = runner.run_child(submission, "ForkingSGD", [], timeout=30)
    assert outcome.status == "ok", outcome
    pid = int(pid_file.read_text())
    try:
        deadline = time.monotonic() + 2.0
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(pid), "the submission's forked process outlived the check"
    finally:
        if _alive(pid):
            os.kill(pid, 9)


def test_syntax_error_message_shows_the_line_not_importlib(tmp_path):
    path = tmp_path / "bad_syntax.py"
    path.write_text("import torch\n\n\nclass X(torch.optim.SGD):\n    def step(self:\n")
    with pytest.raises(_LoadError) as info:
        _load_class(str(path), "X", torch.optim.Optimizer)
    message = str(info.value)
    assert "raised SyntaxError" in message and "line 5" in message
    assert "def step(self:" in message
    assert "importlib" not in message and "optimizers/check" not in message
