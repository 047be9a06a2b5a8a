"""SGD, heavy-ball momentum and Nesterov momentum, written plainly, and their mistakes.

``TextbookSGD`` follows torch.optim's SGD (PyTorch's momentum form) one tensor at a
time. Each phase of its update is one method, so that a mistake is a subclass that
overrides exactly one equation:

    (1) g_t = grad + lambda * theta_{t-1}                       (weight decay, L2)
    (2) b_1 = g_1;  b_t = mu * b_{t-1} + (1 - tau) * g_t       (momentum buffer)
    (3) d_t = g_t + mu * b_t  if Nesterov,  else  d_t = b_t     (direction)
    (4) theta_t = theta_{t-1} - gamma * d_t                      (update)

Without momentum (2) and (3) are skipped and d_t = g_t.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from optimizers.check.mistakes._base import Group, TextbookOptimizer


class TextbookSGD(TextbookOptimizer):
    """SGD with momentum, dampening, Nesterov and L2 weight decay, one tensor a time."""

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            weight_decay=weight_decay,
            nesterov=nesterov,
        )
        super().__init__(params, defaults)

    def _step_parameter(self, p: Tensor, grad: Tensor, group: Group) -> None:
        state = self._state(p)
        g = self._gradient(p, grad, group)  # (1)
        if group["momentum"] != 0:
            b = self._buffer(state, g, group)  # (2)
            g = self._direction(state, g, b, group)  # (3)
        self._apply(p, g, group)  # (4)

    def _buffer(self, state: dict[str, Any], g: Tensor, group: Group) -> Tensor:
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = g.clone()
        else:
            b = state["momentum_buffer"]
            b.mul_(group["momentum"]).add_(g, alpha=1 - group["dampening"])
        return state["momentum_buffer"]

    def _direction(
        self, state: dict[str, Any], g: Tensor, b: Tensor, group: Group
    ) -> Tensor:
        if group["nesterov"]:
            return g.add(b, alpha=group["momentum"])
        return b

    def _apply(self, p: Tensor, d: Tensor, group: Group) -> None:
        p.add_(d, alpha=-group["lr"])


class WeightDecayAfterUpdate(TextbookSGD):
    """theta' = theta - gamma g; theta_t = theta' - gamma lambda theta' (decay last)."""

    def _gradient(self, p: Tensor, grad: Tensor, group: Group) -> Tensor:
        return grad

    def _apply(self, p: Tensor, d: Tensor, group: Group) -> None:
        p.add_(d, alpha=-group["lr"])
        p.add_(p, alpha=-group["lr"] * group["weight_decay"])


class WeightDecayNotScaledByLr(TextbookSGD):
    """theta_t = theta - gamma g - lambda theta: the decay misses the learning rate."""

    def _gradient(self, p: Tensor, grad: Tensor, group: Group) -> Tensor:
        return grad

    def _apply(self, p: Tensor, d: Tensor, group: Group) -> None:
        decay = p * group["weight_decay"]
        p.add_(d, alpha=-group["lr"]).sub_(decay)


class MomentumEMA(TextbookSGD):
    """b_0 = 0; b_t = mu b_{t-1} + (1 - mu) g_t (an average, not PyTorch's sum)."""

    def _buffer(self, state: dict[str, Any], g: Tensor, group: Group) -> Tensor:
        b = state.setdefault("momentum_buffer", torch.zeros_like(g))
        mu = group["momentum"]
        b.mul_(mu).add_(g, alpha=1 - mu)
        return b


class MomentumFirstStepDampened(TextbookSGD):
    """b_0 = 0, so b_1 = (1 - tau) g_1 instead of g_1."""

    def _buffer(self, state: dict[str, Any], g: Tensor, group: Group) -> Tensor:
        b = state.setdefault("momentum_buffer", torch.zeros_like(g))
        b.mul_(group["momentum"]).add_(g, alpha=1 - group["dampening"])
        return b


class MomentumSutskever(TextbookSGD):
    """b_t = mu b_{t-1} + gamma_t g_t; theta_t = theta - b_t (lr inside the buffer)."""

    def _buffer(self, state: dict[str, Any], g: Tensor, group: Group) -> Tensor:
        scaled = g * group["lr"]
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = scaled
        else:
            b = state["momentum_buffer"]
            b.mul_(group["momentum"]).add_(scaled, alpha=1 - group["dampening"])
        return state["momentum_buffer"]

    def _apply(self, p: Tensor, d: Tensor, group: Group) -> None:
        p.sub_(d)


class MomentumLrTwice(MomentumSutskever):
    """b_t = mu b_{t-1} + gamma g_t and theta_t = theta - gamma b_t: gamma twice."""

    def _apply(self, p: Tensor, d: Tensor, group: Group) -> None:
        p.add_(d, alpha=-group["lr"])


class WeightDecayOnUpdate(TextbookSGD):
    """theta_t = theta - gamma (b_t + lambda theta): decay skips the momentum buffer."""

    def _gradient(self, p: Tensor, grad: Tensor, group: Group) -> Tensor:
        return grad

    def _apply(self, p: Tensor, d: Tensor, group: Group) -> None:
        p.add_(d.add(p, alpha=group["weight_decay"]), alpha=-group["lr"])


class NesterovAsPlainMomentum(TextbookSGD):
    """d_t = b_t although Nesterov was asked for (the look-ahead term is missing)."""

    def _direction(
        self, state: dict[str, Any], g: Tensor, b: Tensor, group: Group
    ) -> Tensor:
        return b


class NesterovDampened(TextbookSGD):
    """b_t = mu b_{t-1} + (1 - mu) g_t under Nesterov: dampening where none belongs."""

    def _buffer(self, state: dict[str, Any], g: Tensor, group: Group) -> Tensor:
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = g.clone()
        else:
            mu = group["momentum"]
            state["momentum_buffer"].mul_(mu).add_(g, alpha=1 - mu)
        return state["momentum_buffer"]


class NesterovLookaheadWithoutMu(TextbookSGD):
    """d_t = g_t + b_t: the look-ahead adds the whole buffer, not mu times it."""

    def _direction(
        self, state: dict[str, Any], g: Tensor, b: Tensor, group: Group
    ) -> Tensor:
        return g.add(b)
