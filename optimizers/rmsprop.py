"""RMSProp: step sizes from a moving average of squared gradients."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from optimizers.base import (
    FLAG,
    NON_NEGATIVE,
    UNIT,
    GroupStats,
    Optimizer,
    Params,
    reject_unknown,
    write_into,
    zeros_like,
)


class RMSProp(Optimizer):
    r"""RMSProp (Tieleman and Hinton, 2012), as ``torch.optim.RMSprop`` computes it.

    For each parameter tensor θ with gradient g_t (−∇f with ``maximize``), step t
    applies, element-wise::

        (1) g_t ← g_t + λ θ_{t-1}                          weight decay, if λ ≠ 0
        (2) v_t = α v_{t-1} + (1 − α) g_t²                 v_0 = 0
        (3) m_t = α m_{t-1} + (1 − α) g_t                  centered only, m_0 = 0
        (4) v̂_t = v_t − m_t²   (centered)    v̂_t = v_t   (otherwise)
        (5) b_t = μ b_{t-1} + g_t / (√v̂_t + ε)            if μ > 0, b_0 = 0
        (6) θ_t = θ_{t-1} − γ b_t                          if μ > 0
            θ_t = θ_{t-1} − γ g_t / (√v̂_t + ε)            if μ = 0

    Arguments and symbols: ``lr`` γ, ``alpha`` α, ``eps`` ε, ``weight_decay`` λ,
    ``momentum`` μ, ``centered`` selects the first form of (4). State: ``v``
    (v_t), ``m`` (m_t, centered only), ``momentum_buffer`` (b_t, μ > 0 only) and
    ``step`` (t, an int, kept for parity with PyTorch; the rule does not use it).
    Defaults equal ``torch.optim.RMSprop``'s: γ = 1e-2, α = 0.99, ε = 1e-8,
    λ = μ = 0, not centered. There is no bias correction: v starts at 0, so the
    first steps are larger than later ones (the first is γ g / (√(1 − α) |g| + ε)).

    The effective learning rate the instruments report is the element-wise
    γ / (√v̂_t + ε).

    Note (other libraries): Keras/TF use γ = 1e-3, α ("rho") = 0.9 and ε = 1e-7,
    and put ε inside the root, g / √(v̂ + ε); so their ε = 1e-7 acts like about
    3e-4 here when v̂ is tiny. Their momentum buffer also carries the learning rate
    (b = μ b + γ g / √(v̂ + ε); θ −= b), Sutskever's form: with a constant γ it equals
    (5)-(6), but after γ changes the accumulated buffer keeps the old γ (see
    :class:`optimizers.sgd.SGD`). Hinton's lecture used α = 0.9.

    References:
        Tieleman, T., Hinton, G. "Lecture 6.5 - RMSProp: divide the gradient by a
        running average of its recent magnitude." COURSERA: Neural Networks for
        Machine Learning, 2012.
        Graves, A. "Generating Sequences With Recurrent Neural Networks."
        arXiv:1308.0850, 2013 (the centered form). https://arxiv.org/abs/1308.0850
    """

    state_keys = ("step", "v")
    torch_state_names = {"square_avg": "v", "grad_avg": "m"}
    rules = {
        "lr": NON_NEGATIVE,
        "alpha": UNIT,
        "eps": NON_NEGATIVE,
        "weight_decay": NON_NEGATIVE,
        "momentum": UNIT,
        "centered": FLAG,
        "maximize": FLAG,
    }

    def __init__(
        self,
        params: Params,
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
        *,
        maximize: bool = False,
        **unknown: Any,
    ) -> None:
        reject_unknown(type(self).__name__, unknown, self.rules)
        defaults = dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                        momentum=momentum, centered=centered, maximize=maximize)
        super().__init__(params, defaults)

    def _update_group(
        self,
        group: dict[str, Any],
        params: list[Tensor],
        grads: list[Tensor],
        states: list[dict[str, Any]],
        stats: GroupStats | None,
    ) -> None:
        lr, alpha, eps = group["lr"], group["alpha"], group["eps"]
        lam, mu, centered = group["weight_decay"], group["momentum"], group["centered"]
        for p, state in zip(params, states, strict=True):
            if not state:
                state["step"] = 0
                state["v"] = zeros_like(p)
            if centered and "m" not in state:
                state["m"] = zeros_like(p)
            if mu > 0 and "momentum_buffer" not in state:
                state["momentum_buffer"] = zeros_like(p)
            state["step"] += 1
        v = [state["v"] for state in states]

        # (1) weight decay
        if lam != 0:
            grads = torch._foreach_add(grads, params, alpha=lam)

        # (v stands in for a buffer these settings do not use; it is not touched)
        m = [state["m"] for state in states] if centered else v
        b = [state["momentum_buffer"] for state in states] if mu > 0 else v

        # (2)-(6) tile by tile (Optimizer.tiles), so that the state and the
        # denominator stay in the cache. A requested step keeps its denominator
        # (as the effective learning rate), so it gets new memory.
        for p_, g_, v_, m_, b_, denom, _ in self.tiles(params, grads, v, m, b,
                                                       fresh=stats is not None):
            # (2) second moment
            torch._foreach_mul_(v_, alpha)
            torch._foreach_addcmul_(v_, g_, g_, value=1 - alpha)
            # (3)-(4) centre it, then the denominator √v̂ + ε
            if centered:
                torch._foreach_lerp_(m_, g_, 1 - alpha)
                write_into(denom, "addcmul", v_, m_, m_, value=-1)
                torch._foreach_sqrt_(denom)
            else:
                write_into(denom, "sqrt", v_)
            torch._foreach_add_(denom, eps)
            # (5)-(6) momentum, parameter update
            if mu > 0:
                torch._foreach_mul_(b_, mu)
                torch._foreach_addcdiv_(b_, g_, denom)
                torch._foreach_add_(p_, b_, alpha=-lr)
            else:
                torch._foreach_addcdiv_(p_, g_, denom, value=-lr)

        if stats is not None:
            stats.gradient(grads)
            effective_lr = stats.elementwise_lr(lr, denom)
            if mu > 0:
                stats.momentum(b)
                stats.update(b, lr)
            else:
                stats.elementwise_update(grads, effective_lr)


RMSprop = RMSProp  # torch.optim's spelling
