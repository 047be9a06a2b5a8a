"""optimlab check: grade anyone's optimizer against the reference math.

``check(file, class_name, algorithm)`` loads a ``torch.optim.Optimizer`` subclass
from a file in a child process (time and memory limited), runs it through small
float64 problems, compares every step with optimlab's reference implementation,
checks the torch.optim contract, and, when something is wrong, names the known
mistakes (see ``optimizers.check.mistakes``) whose behaviour it matches.
``check_class`` does the same in-process for trusted classes.
"""

from __future__ import annotations

from optimizers.check.algorithms import ALGORITHMS
from optimizers.check.api import check, check_class
from optimizers.check.mistakes import CATALOGUE, Mistake
from optimizers.check.result import CheckResult, Diagnosis, PropertyResult

__all__ = [
    "ALGORITHMS",
    "CATALOGUE",
    "CheckResult",
    "Diagnosis",
    "Mistake",
    "PropertyResult",
    "check",
    "check_class",
]
