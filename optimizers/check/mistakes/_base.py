"""The step every textbook class of the catalogue shares.

``TextbookOptimizer.step`` evaluates the closure, walks the param groups and hands
each parameter that has a gradient to ``_step_parameter``. A textbook class writes
only that method (its numbered equations), and each mistake overrides the one
equation it gets wrong, so the loop around them is the same for every entry. L2
weight decay, equation (1) of all four algorithms, and the state lookup live here
too, so that a mistake in either (decoupled decay, shared state) is one override.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

Group = dict[str, Any]
Closure = Callable[[], Any]


class TextbookOptimizer(torch.optim.Optimizer):
    """A one-tensor-at-a-time optimizer: subclasses define ``_step_parameter``."""

    @torch.no_grad()
    def step(self, closure: Closure | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            self._begin_group(group)
            for p in group["params"]:
                if p.grad is not None:
                    self._step_parameter(p, p.grad, group)
        return loss

    def _begin_group(self, group: Group) -> None:
        """Runs once per group and step, before its parameters (nothing by default)."""

    def _step_parameter(self, p: Tensor, grad: Tensor, group: Group) -> None:
        raise NotImplementedError

    def _state(self, p: Tensor) -> dict[str, Any]:
        """The state entry of ``p``."""
        return self.state[p]

    def _gradient(self, p: Tensor, grad: Tensor, group: Group) -> Tensor:
        """Equation (1) of every textbook class: g_t = grad + lambda * theta_{t-1}."""
        if group["weight_decay"] == 0:
            return grad
        return grad.add(p, alpha=group["weight_decay"])
