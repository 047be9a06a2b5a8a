"""Adagrad written plainly, and its mistakes.

``TextbookAdagrad`` follows torch.optim's Adagrad one tensor at a time:

    (1) g_t = grad + lambda * theta_{t-1}                      (weight decay, L2)
    (2) gamma_t = gamma / (1 + (t - 1) * eta)                   (lr decay)
    (3) G_t = G_{t-1} + g_t^2,   G_0 = initial_accumulator_value
    (4) theta_t = theta_{t-1} - gamma_t * g_t / (sqrt(G_t) + eps)
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from optimizers.check.mistakes._base import Group, TextbookOptimizer


class TextbookAdagrad(TextbookOptimizer):
    """Adagrad with lr decay, initial accumulator, eps and L2 weight decay."""

    def __init__(
        self,
        params: Any,
        lr: float = 1e-2,
        lr_decay: float = 0.0,
        weight_decay: float = 0.0,
        initial_accumulator_value: float = 0.0,
        eps: float = 1e-10,
    ) -> None:
        defaults = dict(
            lr=lr,
            lr_decay=lr_decay,
            weight_decay=weight_decay,
            initial_accumulator_value=initial_accumulator_value,
            eps=eps,
        )
        super().__init__(params, defaults)

    def _step_parameter(self, p: Tensor, grad: Tensor, group: Group) -> None:
        state = self._state(p)
        if not state:
            state["step"] = 0
            state["sum"] = torch.full_like(p, group["initial_accumulator_value"])
        state["step"] += 1
        g = self._gradient(p, grad, group)  # (1)
        clr = self._lr(state["step"], group)  # (2)
        self._accumulate(state["sum"], g)  # (3)
        denom = self._denominator(state["sum"], group)
        p.addcdiv_(g, denom, value=-clr)  # (4)

    def _lr(self, step: int, group: Group) -> float:
        return group["lr"] / (1 + (step - 1) * group["lr_decay"])

    def _accumulate(self, total: Tensor, g: Tensor) -> None:
        total.addcmul_(g, g, value=1)

    def _denominator(self, total: Tensor, group: Group) -> Tensor:
        return total.sqrt().add_(group["eps"])


class AccumulatesGradients(TextbookAdagrad):
    """G_t = G_{t-1} + g_t: the gradients are summed, not their squares."""

    def _accumulate(self, total: Tensor, g: Tensor) -> None:
        total.add_(g)


class EpsInsideSqrt(TextbookAdagrad):
    """theta_t = theta - gamma_t g_t / sqrt(G_t + eps)."""

    def _denominator(self, total: Tensor, group: Group) -> Tensor:
        return total.add(group["eps"]).sqrt()


class TensorFlowAccumulator(TextbookAdagrad):
    """G_0 = 0.1 by default (TensorFlow/Keras) instead of 0 (PyTorch)."""

    def __init__(
        self,
        params: Any,
        lr: float = 1e-2,
        lr_decay: float = 0.0,
        weight_decay: float = 0.0,
        initial_accumulator_value: float = 0.1,
        eps: float = 1e-10,
    ) -> None:
        super().__init__(
            params, lr, lr_decay, weight_decay, initial_accumulator_value, eps
        )


class LrDecayOffByOne(TextbookAdagrad):
    """gamma_t = gamma / (1 + t eta): the decay starts one step early."""

    def _lr(self, step: int, group: Group) -> float:
        return group["lr"] / (1 + step * group["lr_decay"])
