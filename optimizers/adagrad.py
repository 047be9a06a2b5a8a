"""Adagrad: per-coordinate step sizes from the sum of all past squared gradients."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from optimizers.base import (
    FLAG,
    NON_NEGATIVE,
    GroupStats,
    Optimizer,
    Params,
    reject_unknown,
    write_into,
)


class Adagrad(Optimizer):
    r"""Adagrad (Duchi, Hazan and Singer, 2011), as ``torch.optim.Adagrad`` computes it.

    For each parameter tensor θ with gradient g_t (−∇f with ``maximize``), step t
    (counted per tensor, from 1) applies, element-wise::

        (1) g_t ← g_t + λ θ_{t-1}                          weight decay, if λ ≠ 0
        (2) γ_t = γ / (1 + (t − 1) η)                      learning-rate decay
        (3) v_t = v_{t-1} + g_t²                           v_0 = v_init
        (4) θ_t = θ_{t-1} − γ_t g_t / (√v_t + ε)

    Arguments and symbols: ``lr`` γ, ``lr_decay`` η, ``weight_decay`` λ,
    ``initial_accumulator_value`` v_init, ``eps`` ε. State: ``v`` (the running sum
    of squared gradients, v_t) and ``step`` (t, an int). Defaults equal
    ``torch.optim.Adagrad``'s: γ = 1e-2, η = λ = v_init = 0, ε = 1e-10.

    The effective learning rate the instruments report is the element-wise
    γ_t / (√v_t + ε) (here v_hat = v).

    Note (other libraries): Keras (and TF's ``tf.keras.optimizers.Adagrad``) start
    the accumulator at v_init = 0.1, use γ = 1e-3 and put ε = 1e-7 inside the root,
    g / √(v + ε); TF1's ``tf.train.AdagradOptimizer`` also starts at 0.1 and has no
    ε. A v_init of 0.1 damps the first steps strongly when gradients are small: the
    first step is γ g / √(0.1 + g²) instead of about γ sign(g). The paper's
    diagonal form is (3)-(4) with ε = 0 and no decay.

    References:
        Duchi, J., Hazan, E., Singer, Y. "Adaptive Subgradient Methods for Online
        Learning and Stochastic Optimization." JMLR 12, 2011.
        https://www.jmlr.org/papers/v12/duchi11a.html
    """

    state_keys = ("step", "v")
    torch_state_names = {"sum": "v"}
    rules = {
        "lr": NON_NEGATIVE,
        "lr_decay": NON_NEGATIVE,
        "weight_decay": NON_NEGATIVE,
        "initial_accumulator_value": NON_NEGATIVE,
        "eps": NON_NEGATIVE,
        "maximize": FLAG,
    }

    def __init__(
        self,
        params: Params,
        lr: float = 1e-2,
        lr_decay: float = 0.0,
        weight_decay: float = 0.0,
        initial_accumulator_value: float = 0.0,
        eps: float = 1e-10,
        *,
        maximize: bool = False,
        **unknown: Any,
    ) -> None:
        reject_unknown(type(self).__name__, unknown, self.rules)
        defaults = dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                        initial_accumulator_value=initial_accumulator_value,
                        eps=eps, maximize=maximize)
        super().__init__(params, defaults)

    def _update_group(
        self,
        group: dict[str, Any],
        params: list[Tensor],
        grads: list[Tensor],
        states: list[dict[str, Any]],
        stats: GroupStats | None,
    ) -> None:
        lr, eta = group["lr"], group["lr_decay"]
        lam, eps = group["weight_decay"], group["eps"]
        for p, state in zip(params, states, strict=True):
            if not state:
                state["step"] = 0
                state["v"] = torch.full_like(
                    p, group["initial_accumulator_value"],
                    memory_format=torch.preserve_format,
                )
            state["step"] += 1
        v = [state["v"] for state in states]

        # (1) weight decay
        if lam != 0:
            grads = torch._foreach_add(grads, params, alpha=lam)

        # (2) decayed learning rate, one per tensor
        lr_t = [lr / (1 + (state["step"] - 1) * eta) for state in states]

        # (3)-(4) tile by tile (Optimizer.tiles), so that v and the denominator
        # stay in the cache. A requested step keeps its denominator (as the
        # effective learning rate), so it gets new memory.
        for p_, g_, v_, denom, at in self.tiles(params, grads, v,
                                                fresh=stats is not None):
            # (3) accumulate squared gradients
            torch._foreach_addcmul_(v_, g_, g_)
            # (4) parameter update
            write_into(denom, "sqrt", v_)
            torch._foreach_add_(denom, eps)
            torch._foreach_addcdiv_(p_, g_, denom, [-lr_t[i] for i in at])

        if stats is not None:
            stats.gradient(grads)
            effective_lr = stats.elementwise_lr(lr_t, denom)
            stats.elementwise_update(grads, effective_lr)
