"""Read what the sweeps wrote: ``study.json``, ``index.json``, ``summary.json`` and
the TensorBoard event files (layout and keys in ``docs/architecture.md``).

Nothing here trusts the files: a missing or unreadable file becomes a line in
``Study.problems`` that the report prints, never a traceback. Only an empty or
wrong log directory is an error (:class:`ReportError`).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from experiments.report.tfrecord import event_records

log = logging.getLogger(__name__)

# The six studies of the assignment, in the order the report presents them.
KNOWN_STUDIES: tuple[str, ...] = (
    "batch-size",
    "momentum",
    "sgd-lr",
    "adaptive",
    "adaptive-lr",
    "adam-hparams",
)

CLASS_NAMES: dict[str, tuple[str, ...]] = {
    "cnn": ("airplane", "automobile", "bird", "cat", "deer",
            "dog", "frog", "horse", "ship", "truck"),
    "mlp": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
            "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
}


class ReportError(ValueError):
    """The report cannot be written at all (for example an empty log directory)."""


@dataclass
class Run:
    """One run's summary, with the fields the report uses pulled out."""

    run_id: str
    study: str
    part: str
    series: str
    x_name: str | None
    x: Any
    y_name: str | None
    y: Any
    seed: int
    status: str
    error: str | None
    result: dict[str, Any]
    config: dict[str, Any]
    steps_to_target: float | None
    epochs_to_target: float | None
    seconds_to_target: float | None
    event_dir: Path | None
    scalars: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    def value(self, key: str) -> float | None:
        """A finite float from ``result`` or ``None``."""
        return _finite(self.result.get(key))


@dataclass
class Study:
    """One study folder: its definition, its runs and what is missing."""

    name: str
    folder: Path | None
    title: str
    questions: list[str]
    model: str | None
    preset: str | None
    target_accuracy: float | None
    classes: list[str]
    fields: dict[str, Any]
    notes: str
    runs: list[Run]
    planned: list[str]
    missing: list[str]  # planned ids without a summary
    unfinished: list[str]  # run folders without summary.json
    problems: list[str]  # unreadable files and bad fields
    stale: list[str] = field(default_factory=list)  # on disk, not in the plan
    has_plan: bool = True  # False: study.json lists no plan, every run is used


def load_logdir(logdir: str | Path, studies: list[str] | None = None) -> list[Study]:
    """Every study under ``logdir`` (or those named), in the assignment's order.

    A requested study with no folder comes back as an empty :class:`Study` with a
    problem line, so the report says it is missing (and a warning is logged). An
    absent log directory, one that holds no study at all, or one that holds none
    of the requested studies raises :class:`ReportError` naming it (and the
    studies it does hold).
    """
    root = Path(logdir)
    if not root.exists():
        raise ReportError(
            f"log directory '{root}' does not exist; pass --logdir with the folder "
            "that `optimlab run` wrote (default: lightning_logs)"
        )
    if not root.is_dir():
        raise ReportError(f"log directory '{root}' is not a directory")
    found = {
        child.name: child
        for child in sorted(root.iterdir())
        if child.is_dir() and _looks_like_study(child)
    }
    if not found and _looks_like_study(root):
        raise ReportError(
            f"log directory '{root}' is one study's folder; pass its parent "
            f"(--logdir {root.parent}) and --studies {root.name}"
        )
    if not found:
        raise ReportError(
            f"log directory '{root}' holds no study: expected "
            f"'{root}/<study>/index.json', 'study.json' or '<run>/summary.json' "
            f"(studies: {', '.join(KNOWN_STUDIES)}); run `optimlab run all` first"
        )
    names = list(studies) if studies else _ordered(found)
    unknown = [n for n in names if n not in found and n not in KNOWN_STUDIES]
    if unknown:
        valid = sorted(set(KNOWN_STUDIES) | set(found))
        raise ReportError(
            f"--studies: unknown {', '.join(repr(n) for n in unknown)}; valid "
            f"studies: {', '.join(valid)}"
        )
    absent = [n for n in names if n not in found]
    if studies and len(absent) == len(names):
        raise ReportError(
            f"--studies: {', '.join(repr(n) for n in absent)} not found in log "
            f"directory '{root}'; studies found there: {', '.join(_ordered(found))}"
        )
    if studies and absent:
        log.warning("requested studies not found in '%s': %s (the report lists them "
                    "as missing; studies found: %s)", root, ", ".join(absent),
                    ", ".join(_ordered(found)))
    loaded = []
    for name in names:
        if name in found:
            loaded.append(_load_study(name, found[name], root))
        else:
            loaded.append(_absent_study(name, root))
    return loaded


def read_scalars(run: Run, tags: frozenset[str]) -> list[str]:
    """Fill ``run.scalars`` with the scalars of ``tags`` as (steps, values); return
    a line for each event file that could not be read to its end.

    Events are decoded with TensorBoard's own ``Event`` protobuf; the records are
    framed and their checksums verified by
    :func:`experiments.report.tfrecord.event_records` (all records of a file at
    once) rather than by TensorBoard's loader, whose byte-at-a-time pure-Python
    check (used when TensorFlow is absent) costs many times the decoding. A
    truncated or damaged file keeps what was read before the damage.
    """
    if run.scalars or run.event_dir is None or not run.event_dir.is_dir():
        return []  # already read (through another membership of the same run)
    from tensorboard.compat.proto.event_pb2 import Event

    problems: list[str] = []
    points: dict[str, dict[int, float]] = {}
    for path in sorted(run.event_dir.rglob("events.out.tfevents.*")):
        try:
            for record in event_records(path.read_bytes(), str(path), problems):
                event = Event.FromString(record)
                for value in event.summary.value:
                    if value.tag not in tags:
                        continue
                    if value.HasField("simple_value"):
                        number = float(value.simple_value)
                    elif value.HasField("tensor") and value.tensor.float_val:
                        number = float(value.tensor.float_val[0])
                    else:
                        continue
                    points.setdefault(value.tag, {})[int(event.step)] = number
        except Exception as error:  # a damaged file from a killed run
            problems.append(f"event file {path}: damaged record ({error}); kept "
                            "the scalars before it")
            log.warning("%s", problems[-1])
    for tag, by_step in points.items():
        steps = np.fromiter(sorted(by_step), dtype=float)
        values = np.array([by_step[int(s)] for s in steps], dtype=float)
        run.scalars[tag] = (steps, values)
    return problems


# summary.json fields the report reads, with the JSON types it accepts (None is
# always accepted for the optional ones). A field of another type is named with its
# file and left out; the rest of the run is used where that is safe.
NUMBER, TEXT, LIST, OBJECT = "a number", "a string", "a list", "an object"
TOP_FIELDS: dict[str, str] = {
    "part": TEXT, "series": TEXT, "x_name": TEXT, "y_name": TEXT, "seed": NUMBER,
    "error": TEXT, "config": OBJECT, "steps_to_target": NUMBER,
    "epochs_to_target": NUMBER, "seconds_to_target": NUMBER, "log_dir": TEXT,
    "target_accuracy": NUMBER, "memberships": LIST,
}
RESULT_FIELDS: dict[str, str] = {
    "final_val_acc": NUMBER, "best_val_acc": NUMBER, "test_acc": NUMBER,
    "final_train_acc": NUMBER, "test_loss": NUMBER, "final_train_loss": NUMBER,
    "final_val_loss": NUMBER, "global_step": NUMBER, "epochs_completed": NUMBER,
    "wall_time_s": NUMBER, "samples_per_s": NUMBER, "b_simple": NUMBER,
    "diverged_step": NUMBER, "num_train": NUMBER, "num_val": NUMBER,
    "num_test": NUMBER, "per_class_test_acc": LIST, "history": LIST,
}
# a diverged run's losses are legitimately inf or NaN; any other number must be finite
MAY_BE_NONFINITE = frozenset({"test_loss", "final_train_loss", "final_val_loss"})
_CONSEQUENCE = {
    "history": "the per-epoch history is left out",
    "memberships": "the run is placed by its top-level part, series, x and y",
    "config": "the run's configuration is left out",
}


def _kind(value: Any) -> str:
    """How a JSON value reads in a message: ``an int``, ``a string ('high')``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({value})"
    if isinstance(value, int):
        return f"an int ({value})"
    if isinstance(value, float):
        return (f"a float ({value})" if math.isfinite(value) else
                f"not finite ({value})")
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"a string ({shown!r})"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _fits(value: Any, expected: str, name: str) -> bool:
    if value is None:
        return True
    if expected == NUMBER:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        return math.isfinite(value) or name in MAY_BE_NONFINITE
    if expected == TEXT:
        return isinstance(value, str)
    if expected == LIST:
        return isinstance(value, list)
    return isinstance(value, dict)


def check_summary(summary: dict[str, Any], source: str
                  ) -> tuple[dict[str, Any] | None, list[str]]:
    """``summary`` with every field of a wrong type left out, and one line per
    field naming ``source`` (its file), the field, what it holds and what was
    expected. ``None`` when the run cannot be used at all (a bad ``status`` or a
    ``result`` that is not an object)."""
    problems: list[str] = []

    def bad(name: str, value: Any, expected: str, consequence: str) -> None:
        problems.append(f"{source}: field {name} is {_kind(value)}, expected "
                        f"{expected}; {consequence}")

    status = summary.get("status", "failed")
    if status not in ("done", "diverged", "failed"):
        problems.append(f"{source}: field status {_kind(status)}: status "
                        f"'{status}' is not done, diverged or failed; the run is "
                        "left out")
        return None, problems
    result = summary.get("result")
    if result is not None and not isinstance(result, dict):
        bad("result", result, OBJECT, "the run is left out")
        return None, problems
    clean = {**summary, "status": status}
    for name, expected in TOP_FIELDS.items():
        value = clean.get(name)
        if not _fits(value, expected, name):
            bad(name, value, expected, _CONSEQUENCE.get(name, "left out"))
            clean[name] = None
    members = clean.get("memberships") or []
    kept = [m for m in members if isinstance(m, dict)]
    if len(kept) != len(members):
        problems.append(f"{source}: field memberships holds {len(members) - len(kept)}"
                        " entries that are not objects; those are left out")
        clean["memberships"] = kept
    config = clean.get("config") or {}
    if not isinstance(config.get("hparams", {}), dict):
        bad("config.hparams", config["hparams"], OBJECT, "left out")
        clean["config"] = {**config, "hparams": {}}
    result = dict(result or {})
    for name, expected in RESULT_FIELDS.items():
        value = result.get(name)
        if not _fits(value, expected, name):
            bad(f"result.{name}", value, expected,
                _CONSEQUENCE.get(name, "left out (the rest of the run is used)"))
            result[name] = None
    per_class = result.get("per_class_test_acc") or []
    if not all(_fits(v, NUMBER, "") and v is not None for v in per_class):
        problems.append(f"{source}: field result.per_class_test_acc holds an entry "
                        "that is not a finite number; left out")
        result["per_class_test_acc"] = None
    history = result.get("history") or []
    rows = [dict(row) for row in history if isinstance(row, dict)]
    if len(rows) != len(history):
        problems.append(f"{source}: field result.history holds "
                        f"{len(history) - len(rows)} rows that are not objects; "
                        "those rows are left out")
    result["history"] = rows
    clean["result"] = result
    return clean, problems


def _looks_like_study(folder: Path) -> bool:
    if (folder / "index.json").is_file() or (folder / "study.json").is_file():
        return True
    return any(folder.glob("*/summary.json"))


def _ordered(found: dict[str, Path]) -> list[str]:
    known = [name for name in KNOWN_STUDIES if name in found]
    return known + sorted(name for name in found if name not in KNOWN_STUDIES)


def _absent_study(name: str, root: Path) -> Study:
    return Study(
        name=name, folder=None, title=name, questions=[], model=None, preset=None,
        target_accuracy=None, classes=[], fields={}, notes="", runs=[], planned=[],
        missing=[],
        unfinished=[],
        problems=[f"no folder '{root / name}': the study was not run"],
    )


def _read_json(path: Path, problems: list[str]) -> Any:
    try:
        with path.open(encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        problems.append(f"unreadable {path}: {error}")
        return None


def _plan(meta: dict[str, Any]) -> tuple[list[str], dict[str, list]]:
    """The planned run ids of ``study.json`` and each one's memberships."""
    members: dict[str, list] = {}
    for entry in meta.get("planned") or []:
        if isinstance(entry, dict) and entry.get("run_id"):
            members[str(entry["run_id"])] = list(entry.get("memberships") or [])
    ids = meta.get("planned_runs")
    planned = ([str(r) for r in ids] if isinstance(ids, list) and ids
               else list(members))
    return planned, members


def _load_study(name: str, folder: Path, root: Path) -> Study:
    problems: list[str] = []
    meta = _read_json(folder / "study.json", problems) or {}
    if not isinstance(meta, dict):
        problems.append(f"{folder / 'study.json'} is not a JSON object; ignored")
        meta = {}
    index = _read_json(folder / "index.json", problems) or {}
    summaries: dict[str, dict[str, Any]] = {}
    sources: dict[str, str] = {}  # run id -> the file its summary came from
    for summary in index.get("runs", []) if isinstance(index, dict) else []:
        if isinstance(summary, dict) and summary.get("run_id"):
            summaries[str(summary["run_id"])] = summary
            sources[str(summary["run_id"])] = (f"{folder / 'index.json'} (run "
                                               f"{summary['run_id']})")
    unfinished = []
    damaged: set[str] = set()  # run folders whose summary.json is unusable
    for run_folder in sorted(p for p in folder.iterdir() if p.is_dir()):
        path = run_folder / "summary.json"
        if not path.is_file():
            if run_folder.name not in summaries:
                unfinished.append(run_folder.name)
            continue
        summary = _read_json(path, problems)  # unreadable: a problem line
        if not (isinstance(summary, dict) and summary.get("run_id")):
            damaged.add(run_folder.name)  # a problem line, not also 'missing'
        if isinstance(summary, dict) and summary.get("run_id"):
            if str(summary["run_id"]) not in summaries:
                summaries[str(summary["run_id"])] = summary
                sources[str(summary["run_id"])] = str(path)
        elif isinstance(summary, dict):
            problems.append(f"damaged run summary {path}: it has no 'run_id'; "
                            "left out")
        elif summary is not None:
            problems.append(f"damaged run summary {path}: not a JSON object; "
                            "left out")
    planned, members = _plan(meta)
    stale: list[str] = []
    if planned:
        wanted = set(planned)
        stale = sorted({*(r for r in summaries if r not in wanted),
                        *(u for u in unfinished if u not in wanted)})
        summaries = {r: s for r, s in summaries.items() if r in wanted}
        unfinished = [u for u in unfinished if u in wanted]
    runs = []
    for run_id, summary in summaries.items():
        clean, bad = _checked(summary, sources[run_id], folder / run_id)
        problems += bad
        if clean is None:
            continue  # listed once, as damaged; it is not also 'missing'
        if members.get(run_id):  # the current plan says which parts it serves
            clean = {**clean, "memberships": members[run_id]}
        try:
            runs += _parse_run(clean, folder, root)
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            problems.append(f"{sources[run_id]}: bad summary ({error}); the run is "
                            "left out")
    missing = [run_id for run_id in planned
               if run_id not in summaries and run_id not in damaged]
    unfinished = [u for u in unfinished if u not in summaries]
    model = meta.get("model") or _first(runs, lambda r: r.config.get("model"))
    target = _finite(meta.get("target_accuracy"))
    if target is None:
        target = _first(runs, lambda r: _finite(r.result.get("target_accuracy")))
    classes = meta.get("classes") or list(CLASS_NAMES.get(str(model), ()))
    for line in problems:  # on the console too, like the event-file damage
        log.warning("study %s: %s", name, line)
    return Study(
        name=name,
        folder=folder,
        title=str(meta.get("title") or name),
        questions=[str(q) for q in meta.get("questions", [])],
        model=model,
        preset=meta.get("preset") or (index.get("preset") if isinstance(index, dict)
                                       else None),
        target_accuracy=target,
        classes=[str(c) for c in classes],
        fields=meta.get("fields") or {},
        notes=str(meta.get("notes") or ""),
        runs=runs,
        planned=planned,
        missing=missing,
        unfinished=unfinished,
        problems=problems,
        stale=stale,
        has_plan=bool(planned),
    )


def _checked(summary: dict[str, Any], source: str, run_folder: Path
             ) -> tuple[dict[str, Any] | None, list[str]]:
    """:func:`check_summary`, falling back to the run's own ``summary.json``
    when its ``index.json`` entry is damaged and that file is intact."""
    clean, problems = check_summary(summary, source)
    own = run_folder / "summary.json"
    if not problems or source == str(own) or not own.is_file():
        return clean, problems
    spare = _read_json(own, [])
    if isinstance(spare, dict) and str(spare.get("run_id")) == str(
            summary.get("run_id")):
        fixed, spare_problems = check_summary(spare, str(own))
        if not spare_problems:
            return fixed, [f"{line} (used {own} instead, which is intact)"
                           for line in problems]
    return clean, problems


def _parse_run(summary: dict[str, Any], folder: Path, root: Path) -> list[Run]:
    """One :class:`Run` per membership: a run shared by several parts of a study
    (say Adam's defaults in the beta1, beta2 and eps sweeps) appears in each."""
    result = summary.get("result") or {}
    if not isinstance(result, dict):
        raise ValueError("'result' is not an object")
    status = str(summary.get("status", "failed"))
    if status not in ("done", "diverged", "failed"):
        raise ValueError(f"status '{status}' is not done, diverged or failed")
    for row in result.get("history") or []:
        # history epochs count from 0 (Lightning's current_epoch); plot and compare
        # in epochs completed, as *_to_target does
        epoch = _finite(row.get("epoch"))
        row["epochs_done"] = None if epoch is None else epoch + 1
    memberships = summary.get("memberships") or [summary]
    event_dir = _event_dir(summary.get("log_dir"), str(summary["run_id"]), folder,
                           root)
    scalars: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # shared by the copies
    return [_membership_run(summary, m, result, status, event_dir, scalars, folder)
            for m in memberships]


def _membership_run(summary: dict[str, Any], member: dict[str, Any],
                    result: dict[str, Any], status: str, event_dir: Path | None,
                    scalars: dict, folder: Path) -> Run:
    config = summary.get("config") or {}
    return Run(
        run_id=str(summary["run_id"]),
        study=str(summary.get("study", folder.name)),
        part=str(member.get("part") or "main"),
        series=str(member.get("series") or config.get("optimizer", "run")),
        x_name=member.get("x_name"),
        x=member.get("x"),
        y_name=member.get("y_name"),
        y=member.get("y"),
        seed=int(summary.get("seed") or 0),
        status=status,
        error=summary.get("error"),
        result=result,
        config=config,
        steps_to_target=_finite(summary.get("steps_to_target")),
        epochs_to_target=_finite(summary.get("epochs_to_target")),
        seconds_to_target=_finite(summary.get("seconds_to_target")),
        event_dir=event_dir,
        scalars=scalars,
    )


def _event_dir(log_dir: Any, run_id: str, folder: Path, root: Path) -> Path | None:
    candidates = []
    if log_dir:
        path = Path(str(log_dir))
        candidates += [path] if path.is_absolute() else [root / path, folder / path,
                                                         root.parent / path]
    candidates.append(folder / run_id)
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    return None


def _sort_key(value: Any) -> tuple:
    """Numbers first in numeric order, then strings such as ``"full"``."""
    number = _finite(value)
    return (0, number, "") if number is not None else (1, 0.0, str(value))


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _first(runs: list[Run], get) -> Any:
    for run in runs:
        value = get(run)
        if value is not None:
            return value
    return None
