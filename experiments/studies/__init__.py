"""The six studies of the assignment, one readable definition per module.

``STUDIES`` maps each study name to its :class:`~experiments.studies.base.Study`;
to change what a study runs, edit its presets in its module.
"""

from __future__ import annotations

from experiments.studies import (
    adam_hparams,
    adaptive,
    adaptive_lr,
    batch_size,
    momentum,
    sgd_lr,
)
from experiments.studies.base import (
    PRESETS,
    PlannedRun,
    Settings,
    Study,
    parse_override,
)

STUDIES: dict[str, Study] = {
    module.STUDY.name: module.STUDY
    for module in (batch_size, momentum, sgd_lr, adaptive, adaptive_lr, adam_hparams)
}


def get(name: str) -> Study:
    """The study called ``name``; a ValueError lists the valid names otherwise."""
    try:
        return STUDIES[name]
    except KeyError:
        raise ValueError(
            f"unknown study {name!r}; valid studies: {', '.join(STUDIES)} (or all)"
        ) from None


__all__ = ["PRESETS", "STUDIES", "PlannedRun", "Settings", "Study", "get",
           "parse_override"]
