"""What a check returns: a result object that prints as text or JSON."""

from __future__ import annotations

import math
import textwrap
from dataclasses import asdict, dataclass, field
from typing import Any

from optimizers.check.compare import Mismatch

EXIT_PASS, EXIT_FAIL, EXIT_ERROR, EXIT_INCOMPLETE = 0, 1, 2, 3


@dataclass(frozen=True)
class PropertyResult:
    """One property of the issue: held, failed or never tested.

    ``status``: ``ok`` (held in every scenario that tested it), ``fail`` or
    ``skipped`` (no scenario could test it: the constructor refuses a flag each
    one needs, or the state cannot be set by hand). ``passed`` is ``status ==
    "ok"``. ``ran`` of ``total`` scenarios tested it; ``skipped`` says why the
    others did not.
    """

    name: str
    description: str
    passed: bool
    detail: str = ""
    mismatch: Mismatch | None = None
    skipped: tuple[str, ...] = ()  # scenarios not run on this submission, and why
    status: str = ""  # "ok" | "fail" | "skipped"; "" means ok/fail from ``passed``
    ran: int = 0
    total: int = 0
    unfinished: int = 0  # scenarios that broke before they could test it

    def __post_init__(self) -> None:
        if not self.status:
            object.__setattr__(self, "status", "ok" if self.passed else "fail")


@dataclass(frozen=True)
class Diagnosis:
    """A catalogue entry and how close the submission came to it."""

    name: str
    title: str
    distance: float  # largest relative error between the two (0: identical)
    matched: bool
    explanation: str
    equation: str


@dataclass
class CheckResult:
    """The outcome of ``check``; ``exit_code`` is 0 pass, 1 fail, 2 error,
    3 incomplete (nothing failed, but a property could not be tested at all)."""

    submission: str
    algorithm: str
    status: str  # "pass" | "fail" | "error" | "incomplete"
    properties: list[PropertyResult] = field(default_factory=list)
    diagnosis: list[Diagnosis] = field(default_factory=list)
    reference_distance: float | None = None
    error: str | None = None
    stdout: str = ""
    stderr: str = ""
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        codes = {"pass": EXIT_PASS, "fail": EXIT_FAIL, "incomplete": EXIT_INCOMPLETE}
        return codes.get(self.status, EXIT_ERROR)

    @property
    def passed(self) -> bool:
        return self.status == "pass"

    @property
    def matched(self) -> list[Diagnosis]:
        return [d for d in self.diagnosis if d.matched]

    @property
    def untested(self) -> list[str]:
        """Names of the properties no scenario could test."""
        return [p.name for p in self.properties if p.status == "skipped"]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["exit_code"] = self.exit_code
        data["untested"] = self.untested
        return _json_safe(data)

    def format(self) -> str:
        verdict = {
            "pass": "PASS",
            "fail": "FAIL",
            "error": "ERROR",
            "incomplete": "INCOMPLETE",
        }[self.status]
        lines = [
            f"{self.submission} as {self.algorithm}: {verdict} "
            f"(exit {self.exit_code}, {self.seconds:.1f} s)"
        ]
        if self.error:
            lines.append(f"  error: {self.error}")
        if self.status == "incomplete":
            lines.append(
                f"  nothing failed, but {len(self.untested)} propert"
                f"{'y was' if len(self.untested) == 1 else 'ies were'} not tested "
                f"at all: {', '.join(self.untested)}"
            )
        for prop in self.properties:
            mark = {"ok": "ok  ", "fail": "FAIL", "skipped": "skip"}[prop.status]
            lines.append(f"  {mark} {prop.description}{_coverage(prop)}")
            if not prop.passed and prop.detail:
                lines += [f"       {line}" for line in prop.detail.splitlines()]
            if prop.skipped:
                lines.append(f"       skipped: {'; '.join(prop.skipped)}")
        if self.diagnosis:
            lines.append("")
            lines += self._format_diagnosis()
        for name, text in (("stdout", self.stdout), ("stderr", self.stderr)):
            if text.strip():
                lines.append(f"\nCaptured {name} (last lines):")
                lines += [f"  | {line}" for line in text.strip().splitlines()[-15:]]
        return "\n".join(lines)

    def _format_diagnosis(self) -> list[str]:
        near = [d for d in self.diagnosis if math.isfinite(d.distance)]
        if self.matched:
            lines = [
                "Diagnosis: the submission behaves exactly like these known mistakes:"
            ]
            shown = self.matched
        elif near:
            lines = ["Diagnosis: no known mistake matches exactly; the closest are:"]
            shown = near[:3]
        else:
            return [
                "Diagnosis: no known mistake comes close (the submission's "
                "runs are not comparable with any of them: it raised, or has "
                "NaN where they have numbers)."
            ]
        for entry in shown:
            lines.append(
                f"  * {entry.name}: {entry.title} (distance {entry.distance:.3g})"
            )
            lines.append(f"    breaks: {entry.equation}")
            lines += [f"    {line}" for line in textwrap.wrap(entry.explanation, 84)]
        if self.matched:
            others = [d for d in near if not d.matched][:2]
            if others:
                nearest = ", ".join(f"{d.name} ({d.distance:.3g})" for d in others)
                lines.append(f"  next closest: {nearest}")
        return lines


def _coverage(prop: PropertyResult) -> str:
    """`` (2 of 6 scenarios; 4 skipped)`` when not every scenario tested ``prop``."""
    if prop.total == 0 or prop.ran == prop.total:
        return ""
    skipped = prop.total - prop.ran - prop.unfinished
    why = [f"{skipped} skipped"] if skipped else []
    why += [f"{prop.unfinished} did not finish"] if prop.unfinished else []
    if prop.status == "skipped" and prop.total == 1:
        return " (not tested: its scenario " + (
            "was skipped)" if skipped else "did not finish)"
        )
    if prop.status == "skipped":
        return f" (not tested: none of its {prop.total} scenarios ran; {why[0]}" + (
            f", {why[1]})" if len(why) > 1 else ")"
        )
    return f" ({prop.ran} of {_count(prop.total)}; {', '.join(why)})"


def _count(n: int) -> str:
    return f"{n} scenario{'s' if n != 1 else ''}"


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value
