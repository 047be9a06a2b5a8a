"""``optimlab run``: the six studies as resumable, parallel sweeps.

    optimlab run STUDY|all --preset smoke|quick|full [--set key=value ...]
                 [--workers N] [--accelerator auto|cpu|gpu] [--logdir DIR]

A sweep expands each study's preset (``experiments/studies/``) into training runs,
gives every run a stable id (a hash of its resolved config, seed included) and
trains the runs that have not ended yet in parallel worker processes. Each run leaves
``<logdir>/<study>/<run-id>/`` with ``config.json`` (config and provenance),
TensorBoard events and, once it has ended, ``summary.json``; ``index.json`` in the
study folder collects the summaries and ``study.json`` lists what was planned. The
file formats are in ``docs/architecture.md`` and their writing in
:mod:`experiments.runstore`.

Resuming: a run counts as ended only when its summary exists. Re-running skips done
and diverged runs, trains again the runs killed halfway (their partial events are
cleared first) and retries failed ones. A run that raises is recorded as ``failed``
with its error and the sweep goes on.

Parallelism: on the CPU, ``--workers`` processes (default: one per core, at most 8)
each get ``cores // workers`` torch threads, so the machine is never oversubscribed;
on GPUs, one worker per GPU, each pinned to its device. The sweep logs one
fixed-format progress line per ended run (runs ended / total, ETA); on a terminal a
sweep-level bar sits above the per-run bar.
"""

from __future__ import annotations

import argparse
import concurrent.futures as futures
import ctypes
import json
import logging
import math
import multiprocessing
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from experiments import runstore
from experiments.studies import PRESETS, STUDIES, Study, get, parse_override
from experiments.studies.base import PlannedRun, valid_keys

log = logging.getLogger("optimlab.sweep")

# A trainer takes a resolved TrainConfig dict and returns RunResult.to_dict().
Trainer = Callable[[dict[str, Any]], dict[str, Any]]

# Marks a summary execute_run found already written (not written by this call).
ENDED_BEFORE = "_ended_before"

# Set by Ctrl-C in a single-process sweep: the run in progress is not recorded.
_STOP = threading.Event()

MAX_DEFAULT_CPU_WORKERS = 8

# Rough training cost per image (forward + backward), to order runs and estimate
# the ETA before any run of a kind has ended; measured rates replace it.
_FLOP_PER_IMAGE = {"cnn": 65e6, "mlp": 1.5e6}
_TRAIN_IMAGES = {"cnn": 50_000, "mlp": 60_000}


@dataclass(frozen=True)
class RunSpec:
    """Everything a worker needs to train one run and record it (picklable)."""

    study: str
    preset: str
    run_id: str
    config: dict[str, Any]
    target_accuracy: float
    memberships: tuple[dict[str, Any], ...]
    logdir: str
    cost: float

    @property
    def directory(self) -> Path:
        return runstore.run_dir(Path(self.logdir), self.study, self.run_id)


@dataclass
class StudyPlan:
    study: Study
    preset: str
    settings: dict[str, Any]
    runs: list[RunSpec] = field(default_factory=list)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "study", help=f"one of {', '.join(STUDIES)}, or all", metavar="STUDY"
    )
    parser.add_argument(
        "--preset", default="quick",
        help=f"scale of the sweep: {', '.join(PRESETS)} (default quick)",
    )
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a preset setting or TrainConfig field, e.g. --set epochs=2 "
        "--set lrs=1e-3,1e-2 (repeatable; unknown keys are refused)",
    )
    parser.add_argument(
        "--workers", type=int, default=None,
        help="parallel worker processes (default: one per GPU, else one per CPU "
        f"core up to {MAX_DEFAULT_CPU_WORKERS})",
    )
    parser.add_argument(
        "--accelerator", choices=("auto", "cpu", "gpu"), default="auto",
        help="where to train (default auto: the GPUs when there are any)",
    )
    parser.add_argument(
        "--logdir", default="lightning_logs",
        help="root folder of the runs (default lightning_logs)",
    )
    parser.add_argument(
        "--dry-run", action="store_true",
        help="plan and list the runs; write nothing, train nothing",
    )


def main(args: argparse.Namespace) -> int:
    try:
        return _main(args)
    except KeyboardInterrupt:  # while planning: nothing was started
        print("interrupted before any run started", file=sys.stderr)
        return 130


def _main(args: argparse.Namespace) -> int:
    try:
        overrides = dict(parse_override(text) for text in args.overrides)
        plans = plan_sweep(args.study, args.preset, overrides)
    except ValueError as error:
        log.error("%s", error)
        return 2
    if args.workers is not None and args.workers < 1:
        log.error("--workers must be at least 1, got %d", args.workers)
        return 2
    try:
        placement = choose_placement(args.accelerator, args.workers)
    except RuntimeError as error:
        log.error("%s", error)
        return 2
    logdir = Path(args.logdir)
    problem = logdir_problem(logdir)
    if problem:
        log.error("--logdir %s: %s", logdir, problem)
        return 2
    if args.dry_run:  # lists the plan; writes nothing
        for plan in plans:
            for spec in plan.runs:
                print(f"{plan.study.name}/{spec.run_id}")
        return 0
    try:
        check_sweep_data(plans, logdir)
    except ValueError as error:  # once, before any run, rather than once per run
        log.error("%s", error)
        return 2
    try:
        outcome = run_sweep(plans, logdir, placement)
    except SweepInterrupted as stop:
        print(f"interrupted: {stop.ended} runs ended, {stop.left} left; re-run the "
              "same command to resume", file=sys.stderr)
        return 130
    except OSError as error:  # e.g. the logdir became unwritable
        log.error("--logdir %s: cannot write: %s", logdir, error)
        return 2
    return 1 if outcome.failed else 0


def logdir_problem(logdir: Path) -> str | None:
    """Why runs cannot be written under ``logdir``, or None; creates nothing."""
    folder = logdir
    while not folder.exists():
        if folder.parent == folder:
            return None
        folder = folder.parent
    if not folder.is_dir():
        what = "is" if folder == logdir else f"is under {folder}, which is"
        return f"{what} a file, not a folder; pass a folder path"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"{folder} is not writable"
    return None


def check_sweep_data(plans: Sequence[StudyPlan], logdir: Path) -> None:
    """Find the data of every run still to train (files located, not read).

    Raises one ``ValueError`` for the first data set that is missing, naming the
    folder searched and where it came from, so that a sweep without its data stops
    at once instead of failing each run in turn.
    """
    from experiments.train import TrainConfig, check_data

    checked: set[tuple[Any, Any]] = set()
    for plan in plans:
        for spec in plan.runs:
            key = (spec.config.get("model"), spec.config.get("data_dir"))
            if key in checked:
                continue
            if runstore.has_ended(runstore.run_dir(logdir, spec.study, spec.run_id)):
                continue
            checked.add(key)
            check_data(TrainConfig.from_dict(spec.config),
                       setting="--set data_dir=DIR", given_by="--set data_dir")


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C ended a sweep: ``ended`` runs have a summary, ``left`` have none."""

    def __init__(self, ended: int, left: int):
        super().__init__(f"{ended} runs ended, {left} left")
        self.ended = ended
        self.left = left


def train_backend() -> tuple[dict[str, Any], Callable[[dict[str, Any]], dict]]:
    """(TrainConfig defaults as a dict, normaliser dict -> validated dict)."""
    from experiments.train import TrainConfig

    def normalize(config: dict[str, Any]) -> dict[str, Any]:
        return TrainConfig.from_dict(config).to_dict()

    return TrainConfig().to_dict(), normalize


def plan_sweep(
    study: str,
    preset: str,
    overrides: Mapping[str, Any],
    logdir: Path | str = "lightning_logs",
) -> list[StudyPlan]:
    """Expand ``study`` (or ``all``) at ``preset`` into runs with ids and configs."""
    if study == "all":
        studies = list(STUDIES.values())
    else:
        studies = [get(study)]
    if preset not in PRESETS:
        raise ValueError(
            f"unknown preset {preset!r}; valid presets: {', '.join(PRESETS)}"
        )
    defaults, normalize = train_backend()
    _check_override_keys(studies, preset, overrides, defaults)
    plans = []
    for definition in studies:
        own = {
            k: v for k, v in overrides.items()
            if k in definition.presets[preset] or k in defaults
        }
        _refuse_per_run_keys(definition, preset, own)
        settings = definition.resolve(preset, own, defaults)
        _check_target(definition, settings["target_accuracy"])
        plan = StudyPlan(definition, preset, dict(settings))
        plan.runs = _specs(definition, preset, settings, defaults, normalize,
                           str(logdir))
        plans.append(plan)
    return plans


# TrainConfig fields the sweep itself sets in every run, and what to use instead.
SWEEP_SET_FIELDS = {
    "logdir": "use --logdir",
    "accelerator": "use --accelerator",
    "devices": "set by the sweep (one device per worker; use --workers)",
    "name": "set by the sweep (the study's name)",
    "version": "set by the sweep (the run id)",
    "progress_bar": "set by the sweep",
}


def _refuse_per_run_keys(
    definition: Study, preset: str, overrides: Mapping[str, Any]
) -> None:
    """Refuse ``--set`` of a field the study or the sweep overwrites in each run."""
    for key in overrides:
        if key in definition.presets[preset]:
            continue  # a preset setting the plan reads
        if key in SWEEP_SET_FIELDS:
            reason = SWEEP_SET_FIELDS[key]
        elif key == "seed" and "seeds" in definition.presets[preset]:
            reason = "set by the study per run; use --set seeds=0,1,..."
        elif key in definition.swept_fields:
            reason = "set by the study per run; change the study's grid settings"
        else:
            continue
        raise ValueError(
            f"study {definition.name!r}: --set {key} is refused: {reason}"
        )


def _check_target(definition: Study, target: Any) -> None:
    if not (isinstance(target, (int, float)) and not isinstance(target, bool)
            and 0.0 < target <= 1.0):
        raise ValueError(
            f"study {definition.name!r}: target_accuracy={target!r} is invalid; "
            "allowed: a fraction in (0, 1]"
        )


def _check_override_keys(
    studies: Sequence[Study], preset: str, overrides: Mapping[str, Any],
    defaults: Mapping[str, Any],
) -> None:
    known = set(defaults)
    for definition in studies:
        known |= set(definition.presets.get(preset, {}))
    unknown = sorted(set(overrides) - known)
    if unknown:
        scope = f"study {studies[0].name!r}" if len(studies) == 1 else "all studies"
        valid = sorted(known) if len(studies) > 1 else valid_keys(
            studies[0], preset, defaults)
        raise ValueError(
            f"unknown setting{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(map(repr, unknown))} for {scope} at preset {preset!r}; "
            f"valid: {', '.join(valid)}"
        )


def _specs(
    definition: Study,
    preset: str,
    settings: Any,
    defaults: Mapping[str, Any],
    normalize: Callable[[dict[str, Any]], dict[str, Any]],
    logdir: str,
) -> list[RunSpec]:
    by_key: dict[str, dict[str, Any]] = {}
    for planned in definition.expand(settings):
        raw = {**defaults, **settings.train, **planned.config}
        raw.update(name=definition.name, logdir=logdir)
        try:
            config = normalize(raw)
        except (ValueError, TypeError) as error:
            raise ValueError(
                f"study {definition.name!r} preset {preset!r}: run "
                f"{planned.series} {planned.x_name}={planned.x} has an invalid "
                f"config: {error}"
            ) from None
        _check_run(definition, preset, planned, config)
        key = runstore.run_id(config)  # the config alone decides identity
        membership = _membership(planned)
        if key in by_key:
            if membership not in by_key[key]["memberships"]:
                by_key[key]["memberships"].append(membership)
            continue
        rid = runstore.run_id(config, _label(planned, config))
        config["version"] = rid
        by_key[key] = {"run_id": rid, "config": config, "memberships": [membership]}
    target = float(settings["target_accuracy"])
    return [
        RunSpec(
            study=definition.name, preset=preset, run_id=entry["run_id"],
            config=entry["config"], target_accuracy=target,
            memberships=tuple(entry["memberships"]), logdir=logdir,
            cost=estimate_cost(entry["config"]),
        )
        for entry in by_key.values()
    ]


def _check_run(
    definition: Study, preset: str, planned: PlannedRun, config: Mapping[str, Any]
) -> None:
    """Refuse at plan time what would make the run fail when it starts training."""
    where = (f"study {definition.name!r} preset {preset!r}: run {planned.series} "
             f"{planned.x_name}={planned.x}")
    hparams = dict(config.get("hparams") or {})
    optimizer = config.get("optimizer")
    checked = json.dumps([optimizer, hparams], sort_keys=True, default=str)
    if checked not in _CHECKED_OPTIMIZERS:
        import torch

        import optimizers

        try:
            optimizers.build(optimizer, [torch.nn.Parameter(torch.zeros(1))],
                             **hparams)
        except (ValueError, TypeError) as error:
            raise ValueError(
                f"{where}: optimizer {optimizer!r} with {hparams}: {error}"
            ) from None
        _CHECKED_OPTIMIZERS.add(checked)
    subset = config.get("subset")
    model = config.get("model")
    if isinstance(subset, int) and not isinstance(subset, bool) and model in (
            _TRAIN_IMAGES):
        available = _TRAIN_IMAGES[model] - int(config.get("val_size") or 0)
        if subset > available:
            raise ValueError(
                f"{where}: subset={subset} is larger than the training split; "
                f"allowed: at most {available} (the {_TRAIN_IMAGES[model]} "
                f"training images less val_size={config.get('val_size')})"
            )


# (optimizer, hparams) pairs already built once in this process.
_CHECKED_OPTIMIZERS: set[str] = set()


def _membership(planned: PlannedRun) -> dict[str, Any]:
    return {
        "part": planned.part, "series": planned.series,
        "x_name": planned.x_name, "x": planned.x,
        "y_name": planned.y_name, "y": planned.y,
    }


def _label(planned: PlannedRun, config: Mapping[str, Any]) -> str:
    """Readable start of a run id, e.g. ``nesterov_lr=0.01_s0``."""
    swept = [
        f"{name}={_short(value)}"
        for name, value in ((planned.x_name, planned.x), (planned.y_name, planned.y))
        if name
    ]
    # The series is left out where the swept values already say it ("beta1=0.9"
    # in the beta1 part, "beta1=0_beta2=0.99" in the grid's "beta2=0.99" curve).
    redundant = planned.series in swept or (
        planned.series == planned.x_name and planned.series != config.get("optimizer")
    )
    pieces = [] if redundant else [planned.series]
    return "_".join([*pieces, *swept, f"s{config.get('seed', 0)}"])


def _short(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def estimate_cost(config: Mapping[str, Any]) -> float:
    """Relative training cost of a run (image passes x FLOP per image)."""
    model = config.get("model", "mlp")
    images = _TRAIN_IMAGES.get(model, 50_000) - int(config.get("val_size") or 0)
    subset = config.get("subset")
    if isinstance(subset, float):
        images = int(subset * images)
    elif isinstance(subset, int):
        images = min(subset, images)
    epochs = max(1, int(config.get("epochs") or 1))
    passes = images * epochs
    if config.get("max_steps") and config.get("batch_size") != "full":
        passes = min(passes, int(config["max_steps"]) * int(config["batch_size"]))
    return float(max(passes, 1)) * _FLOP_PER_IMAGE.get(model, 10e6)


def study_record(plan: StudyPlan) -> dict[str, Any]:
    """The ``study.json`` object of a plan (see docs/architecture.md)."""
    return {
        "schema": runstore.SCHEMA,
        "study": plan.study.name,
        "title": plan.study.title,
        "questions": list(plan.study.questions),
        "model": plan.study.model,
        "preset": plan.preset,
        "fields": plan.settings,
        "target_accuracy": plan.settings["target_accuracy"],
        "notes": plan.study.notes,
        "planned_runs": [spec.run_id for spec in plan.runs],
        "planned": [
            {"run_id": spec.run_id, "seed": spec.config.get("seed"),
             "memberships": list(spec.memberships)}
            for spec in plan.runs
        ],
    }


def write_study_files(plans: Sequence[StudyPlan], logdir: Path) -> None:
    for plan in plans:
        folder = logdir / plan.study.name
        runstore.atomic_write_json(folder / runstore.STUDY, study_record(plan))
        runstore.write_index(logdir, plan.study.name, plan.preset,
                             [spec.run_id for spec in plan.runs])


@dataclass(frozen=True)
class Placement:
    accelerator: str  # "cpu" or "gpu"
    workers: int
    threads: int  # torch threads per worker (CPU)
    gpus: tuple[int, ...] = ()


def usable_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def gpu_count() -> int:
    try:
        import torch
    except ImportError:
        return 0
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def choose_placement(accelerator: str, workers: int | None) -> Placement:
    """Workers and threads for ``accelerator`` (auto, cpu, gpu) on this machine."""
    cpus = usable_cpus()
    gpus = gpu_count() if accelerator in ("auto", "gpu") else 0
    if accelerator == "gpu" and gpus == 0:
        raise RuntimeError("--accelerator gpu: no CUDA GPU is visible; use cpu or auto")
    if gpus:
        count = workers or gpus
        return Placement("gpu", count, max(1, cpus // count), tuple(range(gpus)))
    count = workers or min(cpus, MAX_DEFAULT_CPU_WORKERS)
    return Placement("cpu", count, max(1, cpus // count))


def train_with_lightning(config: dict[str, Any]) -> dict[str, Any]:
    """The real trainer: ``experiments.train.train`` on the resolved config.

    With ``progress_bar`` on (a single-process sweep on a terminal) the per-run bar
    is drawn one line below the sweep's own bar.
    """
    from experiments.train import TrainConfig, train

    callbacks = []
    if config.get("progress_bar"):
        from lightning.pytorch.callbacks import TQDMProgressBar

        callbacks.append(TQDMProgressBar(process_position=1))
    return train(TrainConfig.from_dict(config), callbacks=callbacks).to_dict()


def execute_run(spec: RunSpec, trainer: Trainer | None = None) -> dict[str, Any]:
    """Train one run unless it has ended; write its summary; return the summary.

    Returns ``{"status": "busy"}`` (writing nothing) when another live process is
    training the same run.
    """
    trainer = trainer or train_with_lightning
    directory = spec.directory
    try:
        # A short wait covers a killed worker whose lock is still being released.
        with runstore.run_lock(directory, wait=2.0):
            existing = runstore.planned_summary(directory, spec.run_id)
            if existing is not None and existing["status"] in runstore.ENDED:
                # Another sweep ended it after this one planned: a skip.
                return {**existing, ENDED_BEFORE: True}
            runstore.clear_partial(directory)
            return _train_and_record(spec, trainer, directory)
    except runstore.RunBusy:
        return {"status": "busy", "run_id": spec.run_id, "study": spec.study}


def _train_and_record(spec: RunSpec, trainer: Trainer, directory: Path) -> dict:
    started = _now()
    commit, dirty = runstore.git_commit()
    provenance = {
        "schema": runstore.SCHEMA,
        "run_id": spec.run_id,
        "study": spec.study,
        "preset": spec.preset,
        "seed": spec.config.get("seed"),
        "config": spec.config,
        "memberships": list(spec.memberships),
        "versions": runstore.package_versions(),
        "git_commit": commit,
        "git_dirty": dirty,
        "host": {"cpus": usable_cpus(), "pid": os.getpid()},
        "started_at": started,
    }
    runstore.atomic_write_json(directory / runstore.CONFIG, provenance)
    clock = time.monotonic()
    cpu_clock = time.process_time()  # a worker trains one run at a time
    error = error_trace = None
    result: dict[str, Any] = {}
    try:
        result = dict(trainer(dict(spec.config)))
        if _STOP.is_set():
            raise KeyboardInterrupt
        status = result.get("status", "done")
        if status not in runstore.ENDED:
            raise RuntimeError(f"trainer returned unknown status {status!r}")
    except SystemExit as exc:
        if _STOP.is_set():  # Lightning's fit() turns Ctrl-C into sys.exit(1)
            raise KeyboardInterrupt from exc
        raise
    except Exception as exc:  # a broken run must not stop the sweep
        if _STOP.is_set():
            raise KeyboardInterrupt from exc
        status = "failed"
        error = f"{type(exc).__name__}: {exc}"
        error_trace = traceback.format_exc(limit=-12)
        result = {}
    wall = time.monotonic() - clock
    cpu_seconds = time.process_time() - cpu_clock
    result.setdefault("wall_time_s", wall)
    steps = epochs = seconds = None
    if status == "done":
        steps, epochs, seconds = runstore.time_to_target(
            result.get("history") or [], spec.target_accuracy
        )
    primary = spec.memberships[0]
    summary = {
        "schema": runstore.SCHEMA,
        "run_id": spec.run_id,
        "study": spec.study,
        "preset": spec.preset,
        **primary,
        "memberships": list(spec.memberships),
        "seed": spec.config.get("seed"),
        "status": status,
        "error": error,
        "traceback": error_trace,
        "config": spec.config,
        "target_accuracy": spec.target_accuracy,
        "steps_to_target": steps,
        "epochs_to_target": epochs,
        "seconds_to_target": seconds,
        "result": result,
        "log_dir": _relative_log_dir(result.get("log_dir"), spec),
        "cpu_time_s": cpu_seconds,
        "versions": provenance["versions"],
        "git_commit": commit,
        "git_dirty": dirty,
        "started_at": started,
        "ended_at": _now(),
    }
    summary = runstore.finite_or_none(summary)
    runstore.atomic_write_json(directory / runstore.SUMMARY, summary)
    return summary


def _relative_log_dir(log_dir: Any, spec: RunSpec) -> str:
    fallback = f"{spec.study}/{spec.run_id}"
    if not log_dir:
        return fallback
    try:
        return Path(log_dir).resolve().relative_to(
            Path(spec.logdir).resolve()).as_posix()
    except ValueError:
        return fallback


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _init_worker(threads: int, devices: Any, trainer: Trainer | None) -> None:
    """Runs first in each worker: die with the parent, pin threads and device."""
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
    if devices is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(devices.get())
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(threads)
    import torch

    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass  # already set in this process
    global _WORKER_TRAINER
    _WORKER_TRAINER = trainer


_WORKER_TRAINER: Trainer | None = None


def _worker_execute(spec: RunSpec) -> dict[str, Any]:
    return execute_run(spec, _WORKER_TRAINER)


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this worker when the sweep process dies (PDEATHSIG).

    Without it a killed sweep would leave orphan workers training; their run locks
    keep a re-run from training the same run twice, but they would waste the CPU.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(1)


@dataclass
class SweepOutcome:
    done: int = 0
    diverged: int = 0
    failed: int = 0
    skipped: int = 0
    busy: int = 0
    summaries: list[dict[str, Any]] = field(default_factory=list)


class Progress:
    """Sweep-level progress: runs ended / total, elapsed and ETA, one line each."""

    def __init__(self, total: int, skipped: int, pending: Sequence[RunSpec],
                 workers: int):
        self.total = total
        self.ended = skipped
        self.workers = workers
        self.remaining_cost = sum(spec.cost for spec in pending)
        self.measured_cost = 0.0
        self.measured_seconds = 0.0
        self.start = time.monotonic()
        self.bar = None
        if sys.stderr.isatty() and pending:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=skipped, desc="sweep", unit="run",
                            position=0, leave=True, dynamic_ncols=True)

    def eta_seconds(self) -> float | None:
        if self.measured_cost <= 0:
            return None
        rate = self.measured_seconds / self.measured_cost
        return self.remaining_cost * rate / self.workers

    def update(self, spec: RunSpec, summary: Mapping[str, Any]) -> None:
        self.ended += 1
        self.remaining_cost = max(0.0, self.remaining_cost - spec.cost)
        wall = (summary.get("result") or {}).get("wall_time_s")
        if summary.get("status") == "done" and wall:
            self.measured_cost += spec.cost
            self.measured_seconds += float(wall)
        eta = self.eta_seconds()
        result = summary.get("result") or {}
        accuracy = result.get("final_val_acc")
        line = (
            f"sweep {self.ended:>4d}/{self.total:<4d} | "
            f"elapsed {_clock(time.monotonic() - self.start)} | "
            f"ETA {_clock(eta) if eta is not None else '--:--'} | "
            f"{spec.study}/{spec.run_id} {summary.get('status', '?'):<8s} "
            f"val_acc {'-' if accuracy is None else f'{accuracy:.4f}'} "
            f"in {float(wall or 0):.1f}s"
        )
        if summary.get("status") == "failed":
            line += f" | {summary.get('error')}"
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix_str(f"ETA {_clock(eta) if eta else '--:--'}")
            self.bar.write(line, file=sys.stderr)
        else:
            log.info("%s", line)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _clock(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "--:--"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def run_sweep(
    plans: Sequence[StudyPlan],
    logdir: Path,
    placement: Placement,
    trainer: Trainer | None = None,
) -> SweepOutcome:
    """Train every planned run that has not ended; keep the index files current.

    ``trainer`` replaces the real training (tests pass a fast fake); in worker
    processes it must be a module-level function.
    """
    logdir = Path(logdir)
    plans = _placed_all(plans, logdir, placement)
    write_study_files(plans, logdir)
    outcome = SweepOutcome()
    specs = [spec for plan in plans for spec in plan.runs]
    pending = []
    for spec in specs:
        runstore.planned_summary(spec.directory, spec.run_id)  # sets aside strays
        if runstore.has_ended(spec.directory):
            outcome.skipped += 1
        else:
            pending.append(spec)
    # Longest runs first, so the workers finish together.
    pending.sort(key=lambda spec: spec.cost, reverse=True)
    workers = min(placement.workers, max(1, len(pending)))
    log.info(
        "sweep: %d studies, %d runs planned, %d already ended, %d to train on %s "
        "(%d worker%s x %d thread%s) -> %s",
        len(plans), len(specs), outcome.skipped, len(pending), placement.accelerator,
        workers, "s" if workers > 1 else "", placement.threads,
        "s" if placement.threads > 1 else "", logdir,
    )
    progress = Progress(len(specs), outcome.skipped, pending, workers)
    presets = {plan.study.name: (plan.preset, [s.run_id for s in plan.runs])
               for plan in plans}

    def record(spec: RunSpec, summary: dict[str, Any]) -> None:
        status = summary.get("status")
        if status == "busy":
            outcome.busy += 1
            log.warning("%s/%s is being trained by another process; skipped",
                        spec.study, spec.run_id)
            return
        if summary.get(ENDED_BEFORE):
            outcome.skipped += 1
            progress.update(spec, {"status": "skipped"})
            return
        setattr(outcome, status, getattr(outcome, status) + 1)
        outcome.summaries.append(summary)
        preset, ids = presets[spec.study]
        runstore.write_index(logdir, spec.study, preset, ids)
        progress.update(spec, summary)

    try:
        if workers == 1 and placement.accelerator == "cpu":
            _run_inline(pending, placement, trainer, record)
        else:
            _run_pool(pending, placement, workers, trainer, record)
    except KeyboardInterrupt:
        ended = sum(runstore.has_ended(spec.directory) for spec in specs)
        raise SweepInterrupted(ended, len(specs) - ended) from None
    finally:
        progress.close()
        for study, (preset, ids) in presets.items():
            runstore.write_index(logdir, study, preset, ids)
    log.info(
        "sweep finished in %s: %d done, %d diverged, %d failed, %d skipped (ended "
        "before), %d busy elsewhere",
        _clock(time.monotonic() - progress.start), outcome.done, outcome.diverged,
        outcome.failed, outcome.skipped, outcome.busy,
    )
    return outcome


def _placed_all(
    plans: Sequence[StudyPlan], logdir: Path, placement: Placement
) -> list[StudyPlan]:
    per_run_bar = placement.workers == 1 and sys.stderr.isatty()
    return [_placed(plan, logdir, placement, per_run_bar) for plan in plans]


def _placed(
    plan: StudyPlan, logdir: Path, placement: Placement, per_run_bar: bool
) -> StudyPlan:
    """The plan with this sweep's logdir and device written into every config."""
    runs = []
    for spec in plan.runs:
        config = dict(spec.config)
        config.update(logdir=str(logdir), accelerator=placement.accelerator,
                      devices=1, progress_bar=per_run_bar)
        runs.append(RunSpec(**{**spec.__dict__, "config": config,
                               "logdir": str(logdir)}))
    return StudyPlan(plan.study, plan.preset, plan.settings, runs)


def _run_inline(pending, placement, trainer, record) -> None:
    """One worker: train in this process (no start-up cost, same terminal)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(placement.threads)
    previous = signal.getsignal(signal.SIGINT)

    def interrupt(signum, frame):
        # Lightning catches KeyboardInterrupt and ends fit() early; the flag keeps
        # such a cut-short run from being recorded as done.
        _STOP.set()
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, interrupt)
    try:
        for spec in pending:
            record(spec, execute_run(spec, trainer))
            if _STOP.is_set():
                raise KeyboardInterrupt
    finally:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, previous)
        _STOP.clear()
        torch.set_num_threads(threads)


def _run_pool(pending, placement, workers, trainer, record) -> None:
    context = multiprocessing.get_context("spawn")
    devices = None
    if placement.accelerator == "gpu":
        devices = context.Queue()
        for index in range(workers):
            devices.put(placement.gpus[index % len(placement.gpus)])
    deaths: dict[str, int] = {}
    queue = list(pending)
    while queue:
        pool_started = time.time()
        pool = futures.ProcessPoolExecutor(
            max_workers=workers, mp_context=context, initializer=_init_worker,
            initargs=(placement.threads, devices, trainer),
        )
        running = {pool.submit(_worker_execute, spec): spec for spec in queue}
        recorded: set[str] = set()
        queue = []
        try:
            for future in futures.as_completed(running):
                spec = running[future]
                try:
                    summary = future.result()
                except futures.process.BrokenProcessPool:
                    raise
                except Exception as error:  # the recording itself failed
                    log.error("%s/%s: %s: %s (retried by the next sweep)",
                              spec.study, spec.run_id, type(error).__name__, error)
                    recorded.add(spec.run_id)
                    continue
                recorded.add(spec.run_id)
                record(spec, summary)
        except futures.process.BrokenProcessPool:
            queue = _after_broken_pool(running, recorded, deaths, pool_started,
                                       record)
            log.warning("a worker process died; %d runs go to a new pool", len(queue))
        except BaseException:
            _kill_workers(pool)
            raise
        else:
            # Every future has its result and the workers are idle: end them now
            # rather than wait seconds for torch's interpreter teardown in each.
            _kill_workers(pool)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def _after_broken_pool(running, recorded, deaths, pool_started, record):
    """Sort out the runs of a pool whose worker died (killed, out of memory...).

    Runs whose summary exists have ended and are recorded. A run that had started
    (its config.json is newer than the pool) may have been the one that killed its
    worker; after two such deaths it is recorded as failed, so that it cannot loop
    forever. The others are returned to be trained by a new pool.
    """
    retry = []
    for spec in running.values():
        if spec.run_id in recorded:
            continue
        summary = runstore.read_summary(spec.directory)
        if summary is not None:
            record(spec, summary)
            continue
        config_file = spec.directory / runstore.CONFIG
        started = config_file.exists() and config_file.stat().st_mtime >= pool_started
        if started:
            deaths[spec.run_id] = deaths.get(spec.run_id, 0) + 1
        if deaths.get(spec.run_id, 0) >= 2:
            record(spec, record_failure(
                spec, "WorkerDied: the worker process died twice while training "
                "this run (killed by a signal or out of memory)"))
        else:
            retry.append(spec)
    return retry


def record_failure(spec: RunSpec, error: str) -> dict[str, Any]:
    """Write a failed summary for a run that could not report for itself."""
    # The dead worker's lock goes with its last file descriptor, which the kernel
    # may close a moment after the pool noticed the death.
    with runstore.run_lock(spec.directory, wait=10.0):
        return _train_and_record(spec, _Raiser(error), spec.directory)


class _Raiser:
    def __init__(self, message: str):
        self.message = message

    def __call__(self, config: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError(self.message)


def _kill_workers(pool: futures.ProcessPoolExecutor) -> None:
    """Stop the workers now (on Ctrl-C), instead of waiting for their runs."""
    processes = getattr(pool, "_processes", None) or {}
    for process in list(processes.values()):
        try:
            process.kill()
        except (OSError, AttributeError):
            pass
