"""Grade an optimizer class: run it, compare it with the reference, diagnose it."""

from __future__ import annotations

import json
import math
import os
import time
from functools import lru_cache
from typing import Any

import torch

from optimizers.check.algorithms import build_scenarios, get_spec
from optimizers.check.compare import RTOL, distance, first_mismatch
from optimizers.check.mistakes import mistakes_for
from optimizers.check.reference import class_factory, reference_factory
from optimizers.check.result import CheckResult, Diagnosis, PropertyResult
from optimizers.check.runner import run_child
from optimizers.check.scenarios import (
    ConstructionError,
    InvalidRun,
    NotApplicable,
    OptimizerFactory,
    Scenario,
    Settings,
    run_scenario,
    tuples,
)

Records = dict[str, dict[str, Any]]

PROPERTIES: dict[str, str] = {
    "trajectory": "trajectories equal the reference step by step (float64)",
    "hand_set_state": "one step from a hand-set state equals the reference",
    "param_groups": "param groups with different settings are honoured",
    "hparams_changed": "hyperparameters changed between steps are honoured",
    "state_dict": "a state_dict round trip continues identically",
    "no_grad_untouched": "parameters without a gradient are left untouched",
    "grad_not_modified": "no in-place change of .grad",
    "convex_loss_decreases": "the loss decreases on a convex problem",
}

DEFAULT_TIMEOUT_S = 60.0
DEFAULT_MEMORY_MB = 2048
#: Allowed ranges of the limits: (0, MAX_TIMEOUT_S] seconds, [MIN, MAX] MB.
MAX_TIMEOUT_S = 86400.0
MIN_MEMORY_MB, MAX_MEMORY_MB = 256, 1 << 20


def check_limits(
    timeout: float,
    memory_mb: int,
    names: tuple[str, str] = ("timeout", "memory_mb"),
) -> None:
    """Raise ``ValueError`` naming the field, its value and the allowed range when
    ``timeout`` (seconds) or ``memory_mb`` is out of range; ``names`` are the
    fields as the caller spells them (``--timeout`` on the command line)."""
    timeout_ok = (
        isinstance(timeout, int | float)
        and not isinstance(timeout, bool)
        and math.isfinite(timeout)
        and 0 < timeout <= MAX_TIMEOUT_S
    )
    if not timeout_ok:
        raise ValueError(
            f"{names[0]}: must be a finite number of seconds in "
            f"(0, {MAX_TIMEOUT_S:g}], got {timeout!r}"
        )
    memory_ok = (
        isinstance(memory_mb, int)
        and not isinstance(memory_mb, bool)
        and MIN_MEMORY_MB <= memory_mb <= MAX_MEMORY_MB
    )
    if not memory_ok:
        raise ValueError(
            f"{names[1]}: must be a whole number of MB in "
            f"[{MIN_MEMORY_MB}, {MAX_MEMORY_MB}], got {memory_mb!r}"
        )


def check(
    file: str | os.PathLike[str],
    class_name: str,
    algorithm: str,
    hparams: Settings | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT_S,
    memory_mb: int = DEFAULT_MEMORY_MB,
) -> CheckResult:
    """Load ``class_name`` from ``file`` in a child process and grade it.

    The child runs under ``timeout`` seconds of wall-clock time and ``memory_mb`` of
    data segment; its output is captured into the result. Raises ``ValueError``
    for an unknown algorithm, hyperparameters the reference refuses, or limits out
    of range (see :func:`check_limits`).
    """
    check_limits(timeout, memory_mb)
    spec = get_spec(algorithm)
    scenarios = build_scenarios(algorithm, hparams)
    reference_records(algorithm, hparams)  # refuse bad --hparams before starting
    label = f"{os.fspath(file)}:{class_name}"
    problem = file_problem(file)
    if problem is not None:
        return CheckResult(label, algorithm, "error", error=problem)
    outcome = run_child(
        file,
        class_name,
        scenarios,
        optional_keys=spec.optional_keys,
        timeout=timeout,
        memory_mb=memory_mb,
    )
    if outcome.status != "ok":
        result = CheckResult(label, algorithm, "error", error=outcome.error)
    else:
        result = grade(label, algorithm, hparams, scenarios, outcome.records)
    result.stdout, result.stderr = outcome.stdout, outcome.stderr
    result.seconds = outcome.seconds
    return result


def file_problem(file: str | os.PathLike[str]) -> str | None:
    """Why ``file`` cannot be a submission (``None`` when it is a file)."""
    if os.path.isdir(file):
        return f"{os.fspath(file)}: is a directory; expected a .py file"
    if not os.path.isfile(file):
        return f"{os.fspath(file)}: no such file"
    return None


def check_class(
    cls: type[torch.optim.Optimizer],
    algorithm: str,
    hparams: Settings | None = None,
) -> CheckResult:
    """Grade ``cls`` in this process: for trusted code (tests, notebooks)."""
    start = time.monotonic()
    spec = get_spec(algorithm)
    scenarios = build_scenarios(algorithm, hparams)
    records = run_all(class_factory(cls, spec.optional_keys), scenarios)
    result = grade(cls.__qualname__, algorithm, hparams, scenarios, records)
    result.seconds = time.monotonic() - start
    return result


def run_all(factory: OptimizerFactory, scenarios: list[Scenario]) -> Records:
    """Run every scenario; failures become records, as in the child."""
    records: Records = {}
    for scenario in scenarios:
        try:
            records[scenario.name] = {"status": "ok", **run_scenario(factory, scenario)}
        except ConstructionError as error:
            records[scenario.name] = {"status": "construct_error", "error": str(error)}
        except NotApplicable as error:
            records[scenario.name] = {"status": "not_applicable", "error": str(error)}
        except InvalidRun as error:
            records[scenario.name] = {"status": "invalid", "error": str(error)}
        except Exception as error:  # noqa: BLE001 - recorded like the child does
            records[scenario.name] = {
                "status": "error",
                "error": f"{type(error).__name__}: {error}",
            }
    return records


def grade(
    label: str,
    algorithm: str,
    hparams: Settings | None,
    scenarios: list[Scenario],
    records: Records,
) -> CheckResult:
    """Turn the submission's records into properties and a diagnosis."""
    reference = reference_records(algorithm, hparams)
    base = records.get(scenarios[0].name, {"status": "error", "error": "missing"})
    if base.get("status") == "construct_error":
        return CheckResult(
            label,
            algorithm,
            "error",
            error=(
                f"could not be constructed with {scenarios[0].settings[0]}: "
                f"{base.get('error')}"
            ),
        )
    properties = _properties(scenarios, records, reference)
    failed = [p for p in properties if p.status == "fail"]
    untested = [p for p in properties if p.status == "skipped"]
    status = "fail" if failed else "incomplete" if untested else "pass"
    result = CheckResult(label, algorithm, status, properties=properties)
    result.reference_distance = _distance(scenarios, records, reference)
    if failed:
        result.diagnosis = diagnose(algorithm, hparams, scenarios, records)
    return result


def diagnose(
    algorithm: str,
    hparams: Settings | None,
    scenarios: list[Scenario],
    records: Records,
) -> list[Diagnosis]:
    """Every catalogue entry of ``algorithm``, nearest first."""
    entries = []
    for mistake in mistakes_for(algorithm):
        entry_records = mistake_records(mistake.name, algorithm, hparams)
        dist = _distance(scenarios, records, entry_records, lenient=True)
        entries.append(
            Diagnosis(
                mistake.name,
                mistake.title,
                dist,
                dist <= RTOL,
                mistake.explanation,
                mistake.equation,
            )
        )
    entries.sort(key=lambda d: (d.distance, d.name))
    return entries


def _distance(
    scenarios: list[Scenario], records: Records, other: Records, lenient: bool = False
) -> float:
    """Largest error over the scenarios both ran (``inf`` when none).

    Scenarios that one side could not build or run by design (a flag its
    constructor refuses, a state that cannot be set by hand) are left out; one
    that raised in ``records`` but not in ``other`` makes the two incomparable.
    ``lenient``: see ``compare.error_matrix``'s ``lenient_after_blowup``.
    """
    worst, compared = 0.0, 0
    for scenario in scenarios:
        mine = records.get(scenario.name) or {}
        theirs = other.get(scenario.name) or {}
        if mine.get("status") in _BROKE and theirs.get("status") == "ok":
            return math.inf
        if mine.get("status") != "ok" or theirs.get("status") != "ok":
            continue
        worst = max(worst, distance(mine["positions"], theirs["positions"], lenient))
        compared += 1
    return worst if compared else math.inf


#: Record statuses of a run that went wrong by the submission's doing.
_BROKE = ("error", "invalid")


def _properties(
    scenarios: list[Scenario], records: Records, reference: Records
) -> list[PropertyResult]:
    problems: dict[str, list[str]] = {name: [] for name in PROPERTIES}
    base_ok = _matches(scenarios[0], records, reference)
    mismatches: dict[str, Any] = {}
    skipped: dict[str, list[str]] = {name: [] for name in PROPERTIES}
    for scenario in scenarios:
        record = records.get(scenario.name) or {
            "status": "error",
            "error": "no result came back",
        }
        status = record.get("status")
        if status == "not_applicable":
            skipped[scenario.prop].append(f"{scenario.name}: {record.get('error')}")
            continue
        if status == "construct_error":
            error = str(record.get("error", ""))
            if "unexpected keyword" in error:
                skipped[scenario.prop].append(f"{scenario.name}: {error}")
            else:
                problems[scenario.prop].append(
                    f"{scenario.name}: could not be constructed: {error}"
                )
            continue
        if status == "invalid":
            problems[scenario.prop].append(f"{scenario.name}: {record.get('error')}")
            continue
        if status != "ok":
            text = f"{scenario.name}: raised {record.get('error')}"
            if record.get("traceback"):
                text += "\n" + str(record["traceback"]).rstrip()
            problems[scenario.prop].append(text)
            continue
        expected = reference[scenario.name]
        mismatch = first_mismatch(
            scenario.name, scenario.problem, record["positions"], expected["positions"]
        )
        if mismatch is not None:
            prop = _owner(scenario, base_ok)
            mismatches.setdefault(prop, mismatch)
            problems[prop].append(_describe(mismatch))
        _extra_checks(scenario, record, problems)
    results = []
    for name, description in PROPERTIES.items():
        feeding = [s for s in scenarios if _tests(s, name)]
        outcomes = [_outcome(s, records, name) for s in feeding]
        ran = outcomes.count("ran")
        status = "fail" if problems[name] else "ok" if ran else "skipped"
        results.append(
            PropertyResult(
                name,
                description,
                passed=status == "ok",
                detail="\n".join(problems[name][:4]),
                mismatch=mismatches.get(name),
                skipped=tuple(skipped[name]),
                status=status,
                ran=ran,
                total=len(feeding),
                unfinished=outcomes.count("unfinished"),
            )
        )
    return results


def _tests(scenario: Scenario, prop: str) -> bool:
    """Whether ``scenario`` is one of the runs that test property ``prop``."""
    if prop == "grad_not_modified":
        return True  # every step of every scenario
    if prop == "convex_loss_decreases":
        return scenario.name == "convex"
    return scenario.prop == prop


def _outcome(scenario: Scenario, records: Records, prop: str) -> str:
    """What ``scenario`` did for property ``prop``: ``ran`` (tested it; a run that
    raised tested its own property, and failed it), ``skipped`` (the constructor
    refuses a flag it needs, or the state cannot be set by hand) or
    ``unfinished`` (it broke before the record ``prop`` is judged on, the
    ``.grad`` check's or the convex loss's, was complete)."""
    record = records.get(scenario.name) or {}
    status = record.get("status")
    if status == "ok":
        return "ran"
    refused = status == "construct_error" and "unexpected keyword" in str(
        record.get("error", "")
    )
    if status == "not_applicable" or refused:
        return "skipped"
    if prop in ("grad_not_modified", "convex_loss_decreases"):
        return "unfinished"
    return "ran"
    if prop in ("grad_not_modified", "convex_loss_decreases"):
        return False
    if status == "not_applicable":
        return False
    if status == "construct_error":
        return "unexpected keyword" not in str(record.get("error", ""))
    return True


def _matches(scenario: Scenario, records: Records, reference: Records) -> bool:
    record = records.get(scenario.name) or {}
    if record.get("status") != "ok":
        return False
    return (
        first_mismatch(
            scenario.name,
            scenario.problem,
            record["positions"],
            reference[scenario.name]["positions"],
        )
        is None
    )


def _owner(scenario: Scenario, base_ok: bool) -> str:
    """The property a reference mismatch of ``scenario`` counts against.

    The state_dict scenario's own property is the restored run agreeing with the
    uninterrupted one, so its reference comparison is a trajectory. A parameter
    that misses gradients is the no-gradient property's business only when the
    plain trajectory is right; otherwise the mismatch is just the trajectory's.
    """
    if scenario.prop == "state_dict":
        return "trajectory"
    if scenario.prop == "no_grad_untouched" and not base_ok:
        return "trajectory"
    return scenario.prop


def _describe(mismatch: Any) -> str:
    text = mismatch.describe()
    if not math.isfinite(mismatch.submitted):
        text += " [non-finite value: the update produced NaN or inf]"
    return text


def _extra_checks(
    scenario: Scenario, record: dict[str, Any], problems: dict[str, list[str]]
) -> None:
    grad_change = record.get("grad_modified", 0.0)
    if not grad_change == 0.0:
        problems["grad_not_modified"].append(
            f"{scenario.name}: step() changed .grad in place "
            f"(by up to {grad_change:.3g})"
        )
    replaced = record.get("grad_replaced")
    if replaced:
        name, _, how = str(replaced).partition(": ")
        problems["grad_not_modified"].append(
            f"{scenario.name}: step() replaced .grad ({how}) of parameter {name}"
        )
    moved = record.get("nograd_moved", 0.0)
    if not moved == 0.0:
        problems["no_grad_untouched"].append(
            f"{scenario.name}: a parameter with .grad None moved by up to {moved:.3g}"
        )
    if scenario.reload_at is not None:
        original = record["positions"][scenario.reload_at + 1 :]
        mismatch = first_mismatch(
            f"{scenario.name} (restored run vs uninterrupted)",
            scenario.problem,
            record.get("reloaded", []),
            original,
            step_offset=scenario.reload_at + 1,
        )
        if mismatch is not None:
            problems["state_dict"].append(_describe(mismatch))
    if scenario.name == "convex":
        losses = record.get("losses") or [math.nan]
        first, last = float(losses[0]), float(losses[-1])
        if not (math.isfinite(last) and last <= 0.5 * first):
            problems["convex_loss_decreases"].append(
                f"convex quadratic: loss went from {first:.6g} to {last:.6g} in "
                f"{len(losses)} steps (must at least halve)"
            )


@lru_cache(maxsize=16)
def _cached_records(kind: str, name: str, algorithm: str, hparams_json: str) -> Records:
    hparams = tuples(json.loads(hparams_json))
    scenarios = build_scenarios(algorithm, hparams)
    if kind == "reference":
        factory = reference_factory(algorithm)
    else:
        from optimizers.check.mistakes import CATALOGUE

        factory = class_factory(CATALOGUE[name].cls)
    return run_all(factory, scenarios)


def reference_records(algorithm: str, hparams: Settings | None = None) -> Records:
    """The reference's records for ``algorithm`` (computed once per process).

    Raises ``ValueError`` when the reference itself refuses ``hparams``.
    """
    records = _cached_records("reference", "", algorithm, _key(hparams))
    for name, record in records.items():
        if record["status"] != "ok":
            raise ValueError(
                f"--hparams {hparams}: the reference {algorithm} refuses them in "
                f"scenario {name!r}: {record.get('error')}"
            )
    return records


def mistake_records(
    name: str, algorithm: str, hparams: Settings | None = None
) -> Records:
    """A catalogue entry's records (computed once per process)."""
    return _cached_records("mistake", name, algorithm, _key(hparams))


def _key(hparams: Settings | None) -> str:
    return json.dumps(hparams or {}, sort_keys=True)
