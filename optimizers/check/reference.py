"""The reference: optimlab's own optimizers, reached through ``optimizers.build``."""

from __future__ import annotations

from typing import Any

import torch

from optimizers.check.algorithms import get_spec
from optimizers.check.scenarios import OptimizerFactory, Settings


def reference_factory(algorithm: str) -> OptimizerFactory:
    """Builds the reference optimizer of ``algorithm`` for a scenario."""
    name = get_spec(algorithm).name

    def build(
        groups: list[dict[str, Any]], settings: Settings
    ) -> torch.optim.Optimizer:
        import optimizers

        return optimizers.build(name, groups, **settings)

    return build


def class_factory(
    cls: type[torch.optim.Optimizer], optional_keys: tuple[str, ...] = ()
) -> OptimizerFactory:
    """Builds ``cls(groups, **settings)``.

    A key in ``optional_keys`` that the constructor refuses (``nesterov=True`` for a
    class that is always Nesterov) is dropped and the call retried.
    """

    def build(
        groups: list[dict[str, Any]], settings: Settings
    ) -> torch.optim.Optimizer:
        try:
            return cls(groups, **settings)
        except TypeError as error:
            refused = [k for k in optional_keys if f"'{k}'" in str(error)]
            if not refused:
                raise
            settings = {k: v for k, v in settings.items() if k not in refused}
            groups = [{k: v for k, v in g.items() if k not in refused} for g in groups]
            return cls(groups, **settings)

    return build
