"""Adam written plainly, and its mistakes.

``TextbookAdam`` follows torch.optim's Adam one tensor at a time:

    (1) g_t = grad + lambda * theta_{t-1}                      (weight decay, L2)
    (2) m_t = beta1 * m_{t-1} + (1 - beta1) * g_t
    (3) v_t = beta2 * v_{t-1} + (1 - beta2) * g_t^2
        (amsgrad: vmax_t = max(vmax_{t-1}, v_t) replaces v_t below)
    (4) mhat_t = m_t / (1 - beta1^t),  vhat_t = v_t / (1 - beta2^t)
    (5) theta_t = theta_{t-1} - gamma * mhat_t / (sqrt(vhat_t) + eps)

t counts the steps this parameter has taken.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from optimizers.check.mistakes._base import Group, TextbookOptimizer


class TextbookAdam(TextbookOptimizer):
    """Adam with betas, eps, L2 weight decay and AMSGrad."""

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad
        )
        super().__init__(params, defaults)

    def _step_parameter(self, p: Tensor, grad: Tensor, group: Group) -> None:
        state = self._state(p)
        if "step" not in state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(p)
            state["exp_avg_sq"] = torch.zeros_like(p)
            state["max_exp_avg_sq"] = torch.zeros_like(p)
        state["step"] += 1
        t = self._t(state, group)
        g = self._gradient(p, grad, group)  # (1)
        beta1, beta2 = group["betas"]
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m.lerp_(g, 1 - beta1)  # (2)
        v.mul_(beta2).addcmul_(g, g, value=1 - beta2)  # (3)
        if group["amsgrad"]:
            torch.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])
            v = state["max_exp_avg_sq"]
        self._update(p, m, v, t, group)  # (4), (5)

    def _t(self, state: dict[str, Any], group: Group) -> int:
        return state["step"]

    def _update(self, p: Tensor, m: Tensor, v: Tensor, t: int, group: Group) -> None:
        beta1, beta2 = group["betas"]
        step_size = group["lr"] / (1 - beta1**t)
        denom = (v.sqrt() / math.sqrt(1 - beta2**t)).add_(group["eps"])
        p.addcdiv_(m, denom, value=-step_size)


class NoBiasCorrection(TextbookAdam):
    """theta_t = theta - gamma m_t / (sqrt(v_t) + eps): (4) left out."""

    def _update(self, p: Tensor, m: Tensor, v: Tensor, t: int, group: Group) -> None:
        p.addcdiv_(m, v.sqrt().add_(group["eps"]), value=-group["lr"])


class BiasCorrectionSwapped(TextbookAdam):
    """mhat_t = m_t / (1 - beta2^t), vhat_t = v_t / (1 - beta1^t)."""

    def _update(self, p: Tensor, m: Tensor, v: Tensor, t: int, group: Group) -> None:
        beta1, beta2 = group["betas"]
        m_hat = m / (1 - beta2**t)
        v_hat = v / (1 - beta1**t)
        p.addcdiv_(m_hat, v_hat.sqrt().add_(group["eps"]), value=-group["lr"])


class SecondMomentUncorrected(TextbookAdam):
    """mhat_t = m_t / (1 - beta1^t) but vhat_t = v_t: only m is corrected."""

    def _update(self, p: Tensor, m: Tensor, v: Tensor, t: int, group: Group) -> None:
        beta1, _ = group["betas"]
        m_hat = m / (1 - beta1**t)
        p.addcdiv_(m_hat, v.sqrt().add_(group["eps"]), value=-group["lr"])


class EpsInsideSqrt(TextbookAdam):
    """theta_t = theta - gamma mhat_t / sqrt(vhat_t + eps)."""

    def _update(self, p: Tensor, m: Tensor, v: Tensor, t: int, group: Group) -> None:
        beta1, beta2 = group["betas"]
        m_hat = m / (1 - beta1**t)
        v_hat = v / (1 - beta2**t)
        p.addcdiv_(m_hat, v_hat.add(group["eps"]).sqrt(), value=-group["lr"])


class EpsBeforeBiasCorrection(TextbookAdam):
    """theta_t = theta - gamma sqrt(1-beta2^t)/(1-beta1^t) m_t/(sqrt(v_t) + eps)."""

    def _update(self, p: Tensor, m: Tensor, v: Tensor, t: int, group: Group) -> None:
        beta1, beta2 = group["betas"]
        step_size = group["lr"] * math.sqrt(1 - beta2**t) / (1 - beta1**t)
        p.addcdiv_(m, v.sqrt().add_(group["eps"]), value=-step_size)


class DecoupledWeightDecay(TextbookAdam):
    """theta_t = (1 - gamma lambda) theta - ...: AdamW's decay, not Adam's L2."""

    def _gradient(self, p: Tensor, grad: Tensor, group: Group) -> Tensor:
        p.mul_(1 - group["lr"] * group["weight_decay"])
        return grad


class StepPerGroup(TextbookAdam):
    """t counts the group's steps: a parameter that skipped steps is miscorrected."""

    def _begin_group(self, group: Group) -> None:
        group["step"] = group.get("step", 0) + 1

    def _t(self, state: dict[str, Any], group: Group) -> int:
        return group["step"]


class SharedState(TextbookAdam):
    """One (m, v) for all parameters of a shape: their moments mix."""

    def _state(self, p: Tensor) -> dict[str, Any]:
        return self.state[f"shared{tuple(p.shape)}"]
