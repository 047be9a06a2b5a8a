"""The six studies of the assignment, one readable definition per module.

``STUDIES`` maps each study name to its :class:`~experiments.studies.base.Study`.
To change what a study runs, edit the preset dicts in its module, or override a
setting for one sweep from the command line::

    optimlab run sgd-lr --preset quick --set seeds=0,1,2 --set epochs=6
    optimlab run adaptive --preset full --set "lrs={'adam': 3e-4}"
    optimlab run all --preset smoke --dry-run     # list the runs, train nothing

A preset key is either a ``TrainConfig`` field (shared by the study's runs) or one
of the study's own knobs (its grid, ``seeds``, ``target_accuracy``); ``--set``
accepts both and refuses anything else by name.
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
