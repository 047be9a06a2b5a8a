"""Step-by-step comparison of two runs of one scenario.

Parameters are compared by how far they moved: the error of a coordinate at step
``t`` is ``|x_t - r_t| / D`` where ``r`` is the run compared against and ``D`` the
largest distance any coordinate of ``r`` travelled from its start. This measures
the update itself, not the (much larger) parameter values, so a mistake that
changes a step by one part in a million still shows. Two NaNs at the same place
agree; a NaN against a number is an infinite error.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from optimizers.check.scenarios import param_layout

#: Largest relative error two correct float64 implementations show on these problems
#: (rounding differs with the order of operations); measured errors are ~1e-13.
RTOL = 1e-8
_FLOOR = 1e-12
#: Position index of the step taken from hand-set values in the hand-set scenarios
#: (0: start, 1-3: the hand-chosen gradient history, 4: the values set by hand).
HANDSET_STEP = 5


@dataclass(frozen=True)
class Mismatch:
    """Where a run first leaves the one it is compared with."""

    scenario: str
    step: int  # 0: the start, k: after the k-th step
    parameter: str  # e.g. "W2[1, 3]"
    submitted: float
    expected: float
    difference: float  # |submitted - expected|
    relative: float  # difference / largest distance travelled by the expected run

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        where = f"after step {self.step}"
        if self.scenario.startswith("hand-set") and self.step == HANDSET_STEP:
            where = "in the step from the hand-set values"
        return (
            f"{self.scenario}: first differs {where} at "
            f"{self.parameter}: submitted {self.submitted:.10g}, expected "
            f"{self.expected:.10g} (difference {self.difference:.3g}, "
            f"{self.relative:.3g} of the distance travelled)"
        )


def error_matrix(
    positions: Sequence[Sequence[float]],
    expected: Sequence[Sequence[float]],
    lenient_after_blowup: bool = False,
) -> torch.Tensor | None:
    """Relative error per (step, coordinate); ``None`` when the shapes differ.

    With ``lenient_after_blowup`` a non-finite value against a number costs
    nothing once both runs have already produced a non-finite value: two runs that
    blow up at the same step need not spread their NaNs alike (``0 * nan`` is NaN,
    skipping a zero weight decay is not).
    """
    x = _as_tensor(positions)
    r = _as_tensor(expected)
    if x is None or r is None or x.shape != r.shape or r.numel() == 0:
        return None
    finite = torch.isfinite(r)
    travelled = (r - r[:1]).abs()
    scale = float(travelled[finite].max()) if bool(finite.any()) else 0.0
    scale = max(scale, _FLOOR)
    err = (x - r).abs() / scale
    both_nan = x.isnan() & r.isnan()
    same_inf = torch.isinf(x) & (x == r)
    err = torch.where(both_nan | same_inf, torch.zeros_like(err), err)
    if lenient_after_blowup:
        blown = (~torch.isfinite(x)).any(dim=1).cummax(dim=0).values
        blown &= (~torch.isfinite(r)).any(dim=1).cummax(dim=0).values
        nonfinite = ~torch.isfinite(x) | ~torch.isfinite(r)
        err = torch.where(blown[:, None] & nonfinite, torch.zeros_like(err), err)
    return torch.nan_to_num(err, nan=math.inf)


def distance(
    positions: Sequence[Sequence[float]],
    expected: Sequence[Sequence[float]],
    lenient_after_blowup: bool = False,
) -> float:
    """Largest relative error over the whole run (``inf`` if incomparable)."""
    err = error_matrix(positions, expected, lenient_after_blowup)
    if err is None:
        return math.inf
    return float(err.max())


def first_mismatch(
    scenario: str,
    problem: str,
    positions: Sequence[Sequence[float]],
    expected: Sequence[Sequence[float]],
    rtol: float = RTOL,
    step_offset: int = 0,
) -> Mismatch | None:
    """The first step and coordinate whose error exceeds ``rtol``, if any."""
    err = error_matrix(positions, expected)
    if err is None:
        return Mismatch(
            scenario, step_offset, "(all)", math.nan, math.nan, math.inf, math.inf
        )
    bad = (err > rtol).any(dim=1)
    if not bool(bad.any()):
        return None
    step = int(bad.nonzero()[0, 0])
    coord = int(err[step].argmax())
    submitted = float(positions[step][coord])
    expected_value = float(expected[step][coord])
    return Mismatch(
        scenario=scenario,
        step=step + step_offset,
        parameter=coordinate_name(problem, coord),
        submitted=submitted,
        expected=expected_value,
        difference=abs(submitted - expected_value),
        relative=float(err[step, coord]),
    )


def coordinate_name(problem: str, index: int) -> str:
    """``W2[1, 3]`` for the ``index``-th coordinate of ``problem``'s flat vector."""
    for name, shape in param_layout(problem):
        size = math.prod(shape)
        if index < size:
            coords = []
            for dim in reversed(shape):
                coords.append(index % dim)
                index //= dim
            return f"{name}[{', '.join(str(c) for c in reversed(coords))}]"
        index -= size
    return f"coordinate {index}"


def _as_tensor(rows: Sequence[Sequence[float]]) -> torch.Tensor | None:
    try:
        return torch.tensor(rows, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        return None
