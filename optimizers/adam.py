"""Adam, with AMSGrad and decoupled weight decay (AdamW) as flags."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from optimizers.base import (
    FLAG,
    NON_NEGATIVE,
    UNIT,
    Betas,
    GroupStats,
    Optimizer,
    Params,
    check_hyperparameter,
    hyperparameter_error,
    reject_unknown,
    write_into,
    zeros_like,
)


class Adam(Optimizer):
    r"""Adam (Kingma and Ba, 2015), as ``torch.optim.Adam`` and ``AdamW`` compute it.

    For each parameter tensor θ with gradient g_t (−∇f with ``maximize``), step t
    (counted per tensor, from 1) applies, element-wise::

        (1) g_t ← g_t + λ θ_{t-1}                 L2 weight decay, if λ ≠ 0
            θ_{t-1} ← (1 − γ λ) θ_{t-1}           instead, if decoupled (AdamW)
        (2) m_t = β₁ m_{t-1} + (1 − β₁) g_t       m_0 = 0
        (3) v_t = β₂ v_{t-1} + (1 − β₂) g_t²      v_0 = 0
        (4) v_max,t = max(v_max,t-1, v_t)         AMSGrad only; then v_t ← v_max,t
        (5) γ_t = γ / (1 − β₁ᵗ),   c_t = √(1 − β₂ᵗ)
        (6) θ_t = θ_{t-1} − γ_t m_t / (√v_t / c_t + ε)

    (5)-(6) are the bias-corrected update θ −= γ m̂ / (√v̂ + ε) with m̂ = m / (1 − β₁ᵗ)
    and v̂ = v / (1 − β₂ᵗ), arranged as PyTorch arranges it. The effective learning
    rate the instruments report is the element-wise γ_t / (√v̂_t + ε).

    Arguments and symbols: ``lr`` γ, ``betas`` (β₁, β₂), ``eps`` ε,
    ``weight_decay`` λ, ``amsgrad`` turns on (4), ``decoupled_weight_decay``
    selects the second line of (1). State: ``m``, ``v``, ``v_max`` (AMSGrad only)
    and ``step`` (t, an int, per parameter tensor, as in PyTorch). Defaults equal
    ``torch.optim.Adam``'s: γ = 1e-3, β = (0.9, 0.999), ε = 1e-8, λ = 0; the
    registry's ``adamw`` equals ``torch.optim.AdamW`` (decoupled, λ = 1e-2).

    Note (epsilon placement): here ε is added to the bias-corrected √v̂, as in the
    paper's Algorithm 1. Keras/TF add their ε ("epsilon hat", default 1e-7) to the
    uncorrected √v and fold both corrections into the step size,
    γ √(1 − β₂ᵗ) / (1 − β₁ᵗ); that equals this rule with ε replaced by
    ε̂ / √(1 − β₂ᵗ), which is about 30 ε̂ at t = 1 with β₂ = 0.999 and shrinks to ε̂
    as t grows. Keras's default ε̂ = 1e-7 is also ten times PyTorch's 1e-8.

    Note (weight decay): with L2 decay (1) the decay term passes through the
    adaptive scaling; decoupled decay (Loshchilov and Hutter) shrinks θ by γλ
    directly, so its strength follows the learning-rate schedule.

    References:
        Kingma, D. P., Ba, J. "Adam: A Method for Stochastic Optimization."
        ICLR 2015. https://arxiv.org/abs/1412.6980
        Reddi, S. J., Kale, S., Kumar, S. "On the Convergence of Adam and Beyond."
        ICLR 2018 (AMSGrad). https://openreview.net/forum?id=ryQu7f-RZ
        Loshchilov, I., Hutter, F. "Decoupled Weight Decay Regularization."
        ICLR 2019 (AdamW). https://arxiv.org/abs/1711.05101
    """

    state_keys = ("step", "m", "v")
    torch_state_names = {"exp_avg": "m", "exp_avg_sq": "v", "max_exp_avg_sq": "v_max"}
    rules = {
        "lr": NON_NEGATIVE,
        "eps": NON_NEGATIVE,
        "weight_decay": NON_NEGATIVE,
        "amsgrad": FLAG,
        "decoupled_weight_decay": FLAG,
        "maximize": FLAG,
    }

    def __init__(
        self,
        params: Params,
        lr: float = 1e-3,
        betas: Betas = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        *,
        decoupled_weight_decay: bool = False,
        maximize: bool = False,
        **unknown: Any,
    ) -> None:
        reject_unknown(type(self).__name__, unknown, [*self.rules, "betas"])
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                        amsgrad=amsgrad, decoupled_weight_decay=decoupled_weight_decay,
                        maximize=maximize)
        super().__init__(params, defaults)

    def check_group(self, group: dict[str, Any]) -> None:
        super().check_group(group)
        owner, betas = type(self).__name__, group["betas"]
        if not isinstance(betas, tuple | list) or len(betas) != 2:
            raise hyperparameter_error(owner, "betas", betas,
                                       "a pair (beta1, beta2) of numbers in [0, 1)")
        check_hyperparameter(owner, "betas[0]", betas[0], UNIT)
        check_hyperparameter(owner, "betas[1]", betas[1], UNIT)

    def _update_group(
        self,
        group: dict[str, Any],
        params: list[Tensor],
        grads: list[Tensor],
        states: list[dict[str, Any]],
        stats: GroupStats | None,
    ) -> None:
        lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
        lam, amsgrad = group["weight_decay"], group["amsgrad"]
        decoupled = group["decoupled_weight_decay"]
        for p, state in zip(params, states, strict=True):
            if not state:
                state["step"] = 0
                state["m"] = zeros_like(p)
                state["v"] = zeros_like(p)
            if amsgrad and "v_max" not in state:
                state["v_max"] = zeros_like(p)
            state["step"] += 1
        m = [state["m"] for state in states]
        v = [state["v"] for state in states]

        # (1) weight decay
        if lam != 0 and decoupled:
            if stats is not None:
                stats.snapshot()
            torch._foreach_mul_(params, 1 - lr * lam)
        elif lam != 0:
            grads = torch._foreach_add(grads, params, alpha=lam)

        # (5) bias corrections, one per tensor
        lr_t = [lr / (1 - beta1 ** state["step"]) for state in states]
        c_t = [(1 - beta2 ** state["step"]) ** 0.5 for state in states]

        # (2)-(6) tile by tile (Optimizer.tiles): m, v and the denominator stay in
        # the cache from one equation to the next. A requested step keeps its
        # denominator (as the effective learning rate), so it gets new memory.
        v_hat = [state["v_max"] for state in states] if amsgrad else v
        for p_, g_, m_, v_, v_hat_, denom, at in self.tiles(
            params, grads, m, v, v_hat, fresh=stats is not None
        ):
            # (2) first moment, (3) second moment
            torch._foreach_lerp_(m_, g_, 1 - beta1)
            torch._foreach_mul_(v_, beta2)
            torch._foreach_addcmul_(v_, g_, g_, value=1 - beta2)
            # (4) AMSGrad: the largest second moment so far
            if amsgrad:
                torch._foreach_maximum_(v_hat_, v_)
            # (6) parameter update
            write_into(denom, "sqrt", v_hat_)
            torch._foreach_div_(denom, [c_t[i] for i in at])
            torch._foreach_add_(denom, eps)
            torch._foreach_addcdiv_(p_, m_, denom, [-lr_t[i] for i in at])

        if stats is not None:
            stats.gradient(grads)
            stats.momentum(m)
            effective_lr = stats.elementwise_lr(lr_t, denom)
            if lam != 0 and decoupled:
                stats.update_from_snapshot()
            else:
                stats.elementwise_update(m, effective_lr)
