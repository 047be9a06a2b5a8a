"""RMSProp written plainly, and its mistakes.

``TextbookRMSprop`` follows torch.optim's RMSprop one tensor at a time:

    (1) g_t = grad + lambda * theta_{t-1}                      (weight decay, L2)
    (2) v_t = alpha * v_{t-1} + (1 - alpha) * g_t^2             (square average)
    (3) centered: mbar_t = alpha * mbar_{t-1} + (1 - alpha) * g_t,
        vtilde_t = v_t - mbar_t^2;   else vtilde_t = v_t
    (4) with momentum mu > 0: b_t = mu * b_{t-1} + g_t / (sqrt(vtilde_t) + eps),
        theta_t = theta_{t-1} - gamma * b_t;
        else theta_t = theta_{t-1} - gamma * g_t / (sqrt(vtilde_t) + eps)
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from optimizers.check.mistakes._base import Group, TextbookOptimizer


class TextbookRMSprop(TextbookOptimizer):
    """RMSProp with alpha, eps, centering, momentum and L2 weight decay."""

    def __init__(
        self,
        params: Any,
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr,
            alpha=alpha,
            eps=eps,
            weight_decay=weight_decay,
            momentum=momentum,
            centered=centered,
        )
        super().__init__(params, defaults)

    def _step_parameter(self, p: Tensor, grad: Tensor, group: Group) -> None:
        state = self._state(p)
        if not state:
            state["step"] = 0
            state["square_avg"] = torch.zeros_like(p)
            state["momentum_buffer"] = torch.zeros_like(p)
            state["grad_avg"] = torch.zeros_like(p)
        state["step"] += 1
        g = self._gradient(p, grad, group)  # (1)
        v = state["square_avg"]
        self._square_average(v, g, group)  # (2)
        if group["centered"]:  # (3)
            state["grad_avg"].lerp_(g, 1 - group["alpha"])
            v = v.addcmul(state["grad_avg"], state["grad_avg"], value=-1)
        denom = self._denominator(v, group)
        if group["momentum"] > 0:  # (4)
            b = state["momentum_buffer"]
            b.mul_(group["momentum"]).addcdiv_(g, denom)
            p.add_(b, alpha=-group["lr"])
        else:
            p.addcdiv_(g, denom, value=-group["lr"])

    def _square_average(self, v: Tensor, g: Tensor, group: Group) -> None:
        v.mul_(group["alpha"]).addcmul_(g, g, value=1 - group["alpha"])

    def _denominator(self, v: Tensor, group: Group) -> Tensor:
        return v.sqrt().add_(group["eps"])


class AveragesGradient(TextbookRMSprop):
    """v_t = alpha v_{t-1} + (1 - alpha) g_t: g averaged, not its square."""

    def _square_average(self, v: Tensor, g: Tensor, group: Group) -> None:
        v.mul_(group["alpha"]).add_(g, alpha=1 - group["alpha"])


class EpsInsideSqrt(TextbookRMSprop):
    """theta_t = theta - gamma g_t / sqrt(v_t + eps) (the Keras placement)."""

    def _denominator(self, v: Tensor, group: Group) -> Tensor:
        return v.add(group["eps"]).sqrt()


class AlphaSwapped(TextbookRMSprop):
    """v_t = (1 - alpha) v_{t-1} + alpha g_t^2: the decay weights the wrong term."""

    def _square_average(self, v: Tensor, g: Tensor, group: Group) -> None:
        v.mul_(1 - group["alpha"]).addcmul_(g, g, value=group["alpha"])
