"""Run a submission in a child process under a time and a memory limit.

The child gets its limits from ``resource.setrlimit`` before it starts (address
space cannot be used: torch maps more than any sensible limit, so the data segment,
which covers the heap and anonymous mappings, is limited instead; CPU time is capped
as a backstop). The parent enforces the wall-clock limit, and when the check ends,
by the child's exit or by running over, it kills the child's whole process group,
so nothing the submission started outlives the check. It reads back only a JSON
file of numbers.
"""

from __future__ import annotations

import json
import math
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optimizers.check.scenarios import Scenario

_REPO_ROOT = Path(__file__).resolve().parents[2]
_TAIL = 4000
_FILE_LIMIT = (
    256 << 20
)  # no file the child writes (its output included) grows past this
STARTUP_LIMIT_S = 120.0  # torch import and warm-up, before the submission's clock


@dataclass
class ChildOutcome:
    """What came back from the child.

    ``status``: ``ok``, ``load_error``, ``timeout``, ``memory``, ``output_limit``
    (stdout or stderr reached the file-size limit), ``file_limit`` (another file
    did), ``crashed`` (died without writing its results) or ``malformed`` (wrote
    something unreadable).
    """

    status: str
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    error: str | None = None
    stdout: str = ""
    stderr: str = ""
    seconds: float = 0.0
    last_phase: str | None = None
    where: str | None = None  # the scenario that hit the file-size limit


def run_child(
    file: str | os.PathLike[str],
    class_name: str,
    scenarios: list[Scenario],
    *,
    optional_keys: tuple[str, ...] = (),
    timeout: float = 60.0,
    memory_mb: int = 2048,
) -> ChildOutcome:
    """Load ``class_name`` from ``file`` in a child process and run ``scenarios``."""
    with tempfile.TemporaryDirectory(prefix="optimlab-check-") as tmp:
        work = Path(tmp)
        spec_path, out_path, progress_path = (
            work / "spec.json",
            work / "out.json",
            work / "progress",
        )
        spec_path.write_text(
            json.dumps(
                {
                    "file": str(Path(file).resolve()),
                    "class": class_name,
                    "optional_keys": list(optional_keys),
                    "scenarios": [s.to_dict() for s in scenarios],
                }
            )
        )
        stdout_path, stderr_path = work / "stdout", work / "stderr"
        command = [
            sys.executable,
            "-m",
            "optimizers.check.child",
            str(spec_path),
            str(out_path),
            str(progress_path),
        ]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(_REPO_ROOT), env.get("PYTHONPATH", "")) if p
        )
        env.setdefault("OMP_NUM_THREADS", "1")
        env["PYTHONUNBUFFERED"] = "1"  # keep what it printed before a kill
        start = time.monotonic()
        with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
            proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                cwd=work,
                env=env,
                start_new_session=True,
                preexec_fn=_limits(timeout, memory_mb),
            )
            timed_out = _wait(proc, progress_path, timeout)
        seconds = time.monotonic() - start
        outcome = ChildOutcome(
            status="ok",
            stdout=_tail(stdout_path),
            stderr=_tail(stderr_path),
            seconds=seconds,
            last_phase=_read(progress_path),
        )
        if timed_out:
            outcome.status = "timeout"
            outcome.error = (
                f"did not finish within the time limit of {timeout:g} s "
                f"(it was busy with: {outcome.last_phase or 'starting'})"
            )
            return outcome
        _read_results(out_path, proc.returncode, outcome)
        flooded = [
            name
            for name, path in (("stdout", stdout_path), ("stderr", stderr_path))
            if _size(path) >= _FILE_LIMIT
        ]
        if flooded:
            where = outcome.where or outcome.last_phase or "starting"
            outcome.status = "output_limit"
            outcome.error = (
                f"the submission wrote more than {_mib(_FILE_LIMIT)} to "
                f"{' and '.join(flooded)} (the grader's limit on output); writing "
                f"failed from there on, so it was not graded: print less "
                f"(it hit the limit in: {where})"
            )
        return outcome


def _wait(proc: subprocess.Popen[bytes], progress: Path, timeout: float) -> bool:
    """Wait for the child; return True when it ran over. Either way its process
    group is killed before the child is reaped (see :func:`_kill_group`).

    The limit counts from the moment the child starts on the submission (its
    progress file leaves the start-up phases), so torch's own start-up, which
    takes seconds on a busy machine, is not charged to the submission; start-up
    itself may take at most ``STARTUP_LIMIT_S``.
    """
    start = time.monotonic()
    deadline = start + STARTUP_LIMIT_S + timeout
    started = False
    while True:
        if _exited(proc):
            _kill_group(proc)
            return False
        time.sleep(0.05)
        now = time.monotonic()
        if not started and _read(progress) not in (None, "", "importing torch"):
            started = True
            deadline = min(deadline, now + timeout)
        if now >= deadline:
            _kill_group(proc)
            return True


def _limits(timeout: float, memory_mb: int):
    memory = int(memory_mb) << 20
    cpu = int(math.ceil(timeout + STARTUP_LIMIT_S))

    def apply() -> None:  # runs in the child between fork and exec
        resource.setrlimit(resource.RLIMIT_DATA, (memory, memory))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(resource.RLIMIT_FSIZE, (_FILE_LIMIT, _FILE_LIMIT))

    return apply


def _exited(proc: subprocess.Popen[bytes]) -> bool:
    """Whether the child has exited, without reaping it (``WNOWAIT``).

    While the exited child is not reaped its pid cannot be reused, so the
    ``killpg`` that follows can only reach the submission's own process group.
    """
    try:
        info = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:  # already reaped
        return True
    return info is not None


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """Kill everything in the child's process group (processes the submission
    forked included), then reap the child."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def _read_results(out_path: Path, returncode: int, outcome: ChildOutcome) -> None:
    if not out_path.exists():
        if "MemoryError" in outcome.stderr or "can't allocate memory" in outcome.stderr:
            outcome.status = "memory"
            outcome.error = "ran out of its memory limit"
        elif returncode == -signal.SIGXFSZ:
            outcome.status = "file_limit"
            outcome.error = (
                f"the submission wrote a file past the grader's "
                f"{_mib(_FILE_LIMIT)} file-size limit and was killed (SIGXFSZ) "
                f"(it was busy with: {outcome.last_phase or 'starting'})"
            )
        else:
            outcome.status = "crashed"
            how = (
                f"killed by signal {-returncode}"
                if returncode < 0
                else f"exited with status {returncode}"
            )
            outcome.error = (
                f"the process {how} before reporting "
                f"(it was busy with: {outcome.last_phase or 'starting'})"
            )
        return
    try:
        data = json.loads(out_path.read_text())
        status = data["status"]
        records = data["records"]
        if not isinstance(status, str) or not isinstance(records, dict):
            raise TypeError("bad types")
    except (ValueError, KeyError, TypeError) as error:
        outcome.status = "malformed"
        outcome.error = f"the child's results could not be read: {error}"
        return
    outcome.status = status
    outcome.error = None if data.get("error") is None else str(data["error"])
    if data.get("where") is not None:
        outcome.where = str(data["where"])[:200]
    outcome.records = {str(k): _clean(v) for k, v in records.items()}


def _clean(record: Any) -> dict[str, Any]:
    """Keep only well-typed fields of a record the child wrote (it is untrusted)."""
    if not isinstance(record, dict) or not isinstance(record.get("status"), str):
        return {"status": "error", "error": "malformed record from the child"}
    clean: dict[str, Any] = {"status": record["status"]}
    for key in ("error", "traceback", "grad_replaced"):
        if key in record:
            clean[key] = str(record[key])[:4000]
    try:
        for key in ("positions", "reloaded"):
            if key in record:
                clean[key] = [[float(x) for x in row] for row in record[key]]
        clean["losses"] = [float(x) for x in record.get("losses", [])]
        for key in ("grad_modified", "nograd_moved"):
            clean[key] = float(record.get(key, 0.0))
        if isinstance(record.get("state_keys"), dict):
            clean["state_keys"] = {
                str(k): str(v) for k, v in record["state_keys"].items()
            }
    except (TypeError, ValueError):
        return {"status": "error", "error": "malformed record from the child"}
    if clean["status"] == "ok" and "positions" not in clean:
        return {"status": "error", "error": "malformed record from the child"}
    return clean


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _mib(size: int) -> str:
    return f"{size / (1 << 20):g} MiB"


def _tail(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError:
        return ""
    return data[-_TAIL:].decode("utf-8", errors="replace")


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None
