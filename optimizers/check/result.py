"""What a check returns: a result object that prints as text or JSON."""

from __future__ import annotations

import math
import textwrap
from dataclasses import asdict, dataclass, field
from typing import Any

from optimizers.check.compare import Mismatch

EXIT_PASS, EXIT_FAIL, EXIT_ERROR = 0, 1, 2


@dataclass(frozen=True)
class PropertyResult:
    """One property of the issue, held or not."""

    name: str
    description: str
    passed: bool
    detail: str = ""
    mismatch: Mismatch | None = None
    skipped: tuple[str, ...] = ()  # settings the submission's constructor refused


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
    """The outcome of ``check``; ``exit_code`` is 0 pass, 1 fail, 2 error."""

    submission: str
    algorithm: str
    status: str  # "pass" | "fail" | "error"
    properties: list[PropertyResult] = field(default_factory=list)
    diagnosis: list[Diagnosis] = field(default_factory=list)
    reference_distance: float | None = None
    error: str | None = None
    stdout: str = ""
    stderr: str = ""
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        return {"pass": EXIT_PASS, "fail": EXIT_FAIL}.get(self.status, EXIT_ERROR)

    @property
    def passed(self) -> bool:
        return self.status == "pass"

    @property
    def matched(self) -> list[Diagnosis]:
        return [d for d in self.diagnosis if d.matched]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["exit_code"] = self.exit_code
        return _json_safe(data)

    def format(self) -> str:
        verdict = {"pass": "PASS", "fail": "FAIL", "error": "ERROR"}[self.status]
        lines = [
            f"{self.submission} as {self.algorithm}: {verdict} "
            f"(exit {self.exit_code}, {self.seconds:.1f} s)"
        ]
        if self.error:
            lines.append(f"  error: {self.error}")
        for prop in self.properties:
            mark = "ok  " if prop.passed else "FAIL"
            lines.append(f"  {mark} {prop.description}")
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


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value
