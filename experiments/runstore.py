"""The files a sweep leaves behind, and how each is written.

Layout (see docs/architecture.md)::

    <logdir>/<study>/study.json            what the sweep planned (written at start)
    <logdir>/<study>/index.json            every ended run's summary (rebuilt often)
    <logdir>/<study>/<run-id>/config.json  resolved config + provenance (at start)
    <logdir>/<study>/<run-id>/events.*     TensorBoard events (during the run)
    <logdir>/<study>/<run-id>/summary.json the outcome, once the run has ended
    <logdir>/<study>/<run-id>/.lock        held (flock) while a process trains it

Every JSON file is written atomically: to a temporary file in the same folder,
flushed to disk, then renamed over the target, so a reader (or a sweep killed at any
instant) sees the old file or the new one, never half of one. A run counts as ended
exactly when its ``summary.json`` exists; nothing else is trusted.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import math
import os
import platform
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

_log = logging.getLogger("optimlab.sweep")

SCHEMA = 1
ENDED = ("done", "diverged")  # statuses a re-run skips; "failed" runs are retried
SUMMARY = "summary.json"
CONFIG = "config.json"
INDEX = "index.json"
STUDY = "study.json"
LOCK = ".lock"
INVALID = ".invalid-"  # summary.json.invalid-<time>: a summary set aside, kept

# TrainConfig fields that say where and how a run is placed, not what it computes;
# they are left out of the run id so the same run is found again from any logdir,
# data folder or device.
PLACEMENT_FIELDS = frozenset(
    {"logdir", "name", "version", "progress_bar", "data_dir", "accelerator", "devices"}
)


class RunBusy(RuntimeError):
    """Another live process holds the run's lock (it is training that run now)."""


def atomic_write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as JSON to ``path`` so that no reader ever sees a partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(obj, indent=2, allow_nan=False, default=_jsonable)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; these files are for reading
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def read_json(path: Path) -> Any | None:
    """The JSON in ``path``, or None when it is missing or not valid JSON."""
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError,
            UnicodeDecodeError):
        return None


def finite_or_none(value: Any) -> Any:
    """Replace NaN and infinities (not JSON) by None, recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(v) for v in value]
    return value


def run_id(config: Mapping[str, Any], label: str = "") -> str:
    """Stable id of a run: a readable ``label`` and a hash of the resolved config.

    The hash covers every field except :data:`PLACEMENT_FIELDS`, the seed included,
    so equal configs give equal ids in any process, on any day.
    """
    identity = {k: v for k, v in config.items() if k not in PLACEMENT_FIELDS}
    canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"),
                           default=_jsonable)
    digest = hashlib.sha256(canonical.encode()).hexdigest()[:10]
    slug = re.sub(r"[^A-Za-z0-9._+=-]+", "-", label).strip("-_")[:60]
    return f"{slug}-{digest}" if slug else digest


def run_dir(logdir: Path, study: str, rid: str) -> Path:
    return Path(logdir) / study / rid


def read_summary(directory: Path) -> dict[str, Any] | None:
    summary = read_json(Path(directory) / SUMMARY)
    return summary if isinstance(summary, dict) and "status" in summary else None


def planned_summary(directory: Path, rid: str) -> dict[str, Any] | None:
    """The summary of run ``rid`` in ``directory``, after checking it is that run's.

    A summary whose ``run_id`` is not ``rid``, or whose config hashes to another
    id (copied or edited by hand), would make the sweep skip a run it never
    trained. It is renamed to ``summary.json.invalid-<UTC time>`` (kept, never
    deleted), a warning names it, and None is returned so the run is trained.
    """
    path = Path(directory) / SUMMARY
    summary = read_summary(directory)
    if summary is None:
        return None
    problem = None
    if summary.get("run_id") != rid:
        problem = f"its run_id {summary.get('run_id')!r} is not the folder's {rid!r}"
    elif not isinstance(summary.get("config"), Mapping) or not rid.endswith(
            run_id(summary["config"])):
        problem = "its config is not the config planned for this run"
    if problem is None:
        return summary
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    aside = path.with_name(f"{SUMMARY}{INVALID}{stamp}")
    with contextlib.suppress(FileNotFoundError):
        os.replace(path, aside)
        _log.warning("%s: %s; moved aside to %s and the run will be trained",
                     path, problem, aside.name)
    return None


def has_ended(directory: Path) -> bool:
    """True when the run in ``directory`` is done or diverged (a re-run skips it)."""
    summary = read_summary(directory)
    return summary is not None and summary["status"] in ENDED


@contextlib.contextmanager
def run_lock(directory: Path, wait: float = 0.0) -> Iterator[None]:
    """Hold an exclusive lock on a run while training it; RunBusy if taken.

    The lock is an ``flock`` on ``.lock``: the kernel drops it when the holder dies,
    SIGKILL included, so a killed sweep never leaves a run locked. ``wait`` seconds
    are granted to a holder that is just exiting.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + wait
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as error:
                if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() >= deadline:
                    raise RunBusy(
                        f"{directory} is being trained by another process"
                    ) from None
                time.sleep(0.05)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)


def clear_partial(directory: Path) -> None:
    """Remove what an interrupted attempt left in a run folder (events, checkpoints).

    Only called with the run's lock held and no summary present, so what is removed
    belongs to an attempt that never ended.
    """
    for entry in Path(directory).iterdir():
        if entry.name == LOCK or entry.name.startswith(SUMMARY + INVALID):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def time_to_target(
    history: Sequence[Mapping[str, Any]], target: float
) -> tuple[int | None, float | None, float | None]:
    """(steps, epochs, seconds) at the first history row with val_acc >= target.

    History rows are written at the end of each epoch, ``epoch`` counting from 0
    (Lightning's ``current_epoch``), so the epochs returned are the epochs completed
    (``epoch + 1``). None for all three when no row reached the target: the run is
    censored.
    """
    for row in history:
        accuracy = row.get("val_acc")
        if accuracy is not None and math.isfinite(accuracy) and accuracy >= target:
            epoch = row.get("epoch")
            return (row.get("step"), None if epoch is None else epoch + 1,
                    row.get("time_s"))
    return None, None, None


def write_index(
    logdir: Path, study: str, preset: str, run_ids: Iterable[str]
) -> dict[str, Any]:
    """Rebuild ``index.json`` from the summaries of ``run_ids`` that exist."""
    runs = []
    for rid in run_ids:
        summary = read_summary(run_dir(logdir, study, rid))
        if summary is not None and summary.get("run_id") == rid:
            runs.append(summary)
    index = {"study": study, "preset": preset, "runs": runs}
    atomic_write_json(Path(logdir) / study / INDEX, index)
    return index


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for package in ("torch", "lightning", "torchvision", "numpy", "optimlab"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def git_commit(repo: Path | None = None) -> tuple[str | None, bool | None]:
    """(HEAD sha, whether the work tree has changes) of the optimlab checkout."""
    repo = repo or Path(__file__).resolve().parents[1]
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True,
            timeout=10, check=True,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None, None
    return (sha or None), bool(status.strip())


def _jsonable(value: Any) -> Any:
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):  # numpy / torch scalars
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable: {value!r}")
