"""Stochastic gradient descent with heavy-ball or Nesterov momentum."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from optimizers.base import (
    CLOSED_UNIT,
    FLAG,
    NON_NEGATIVE,
    UNIT,
    GroupStats,
    Optimizer,
    Params,
    hyperparameter_error,
    reject_unknown,
    write_into,
)


class SGD(Optimizer):
    r"""Stochastic gradient descent, optionally with momentum (heavy ball or Nesterov).

    For each parameter tensor θ with gradient g_t = ∇f(θ_{t-1}) (−∇f with
    ``maximize``), step t applies::

        (1) g_t ← g_t + λ θ_{t-1}                          weight decay, if λ ≠ 0
        (2) b_t = g_t                                      first step with momentum
            b_t = μ b_{t-1} + (1 − τ) g_t                  later steps, if μ ≠ 0
        (3) d_t = g_t + μ b_t    (Nesterov)
            d_t = b_t            (heavy ball, μ ≠ 0)
            d_t = g_t            (μ = 0)
        (4) θ_t = θ_{t-1} − γ d_t

    Arguments and symbols: ``lr`` γ, ``momentum`` μ, ``dampening`` τ,
    ``weight_decay`` λ, ``nesterov`` selects the first line of (3), ``maximize``
    ascends instead of descending. State: ``momentum_buffer`` holds b (only when
    μ ≠ 0). Defaults equal ``torch.optim.SGD``'s (γ = 1e-3, μ = τ = λ = 0).

    Note (momentum form): this is PyTorch's form, where the buffer b accumulates
    gradients and γ multiplies it at the time of the step. Sutskever et al. (2013),
    and Keras/TF (``velocity = μ v − γ g; θ += v``), put γ inside the buffer:
    v_t = μ v_{t-1} − γ_t g_t, θ_t = θ_{t-1} + v_t. With a constant γ the two agree
    exactly (v = −γ b). When γ changes, PyTorch's form rescales the whole
    accumulated velocity at once (every past gradient is now scaled by the new γ),
    while Sutskever's keeps past gradients at the γ they were taken with, so a
    change takes effect gradually, over about 1 / (1 − μ) steps. Note also that
    (2) starts the buffer at g_1 without dampening, as PyTorch does.

    Note (Nesterov form): Sutskever et al. take the gradient at the look-ahead
    point θ + μ v. (3) is the rearrangement of Bengio et al. (2013) that keeps the
    look-ahead point as the stored parameters, so only the gradient at θ is needed;
    Keras's ``nesterov=True`` (θ += μ v − γ g) is the same rearrangement in the
    velocity form.

    Note (steady state): with a constant gradient, b converges to g (1 − τ)/(1 − μ)
    and so does d (Nesterov has τ = 0: g + μ g / (1 − μ) = g / (1 − μ)); momentum
    then acts like plain SGD with the effective learning rate γ (1 − τ) / (1 − μ),
    γ / (1 − μ) without dampening. The instruments report it as ``steady_state``.

    References:
        Polyak, B. T. "Some methods of speeding up the convergence of iteration
        methods." USSR Comp. Math. and Math. Physics 4(5), 1964.
        Nesterov, Y. "A method for solving the convex programming problem with
        convergence rate O(1/k^2)." Soviet Math. Doklady 27, 1983.
        Sutskever, I., Martens, J., Dahl, G., Hinton, G. "On the importance of
        initialization and momentum in deep learning." ICML 2013.
        https://proceedings.mlr.press/v28/sutskever13.html
        Bengio, Y., Boulanger-Lewandowski, N., Pascanu, R. "Advances in optimizing
        recurrent networks." ICASSP 2013. https://arxiv.org/abs/1212.0901
    """

    param_norm_in_update = True
    rules = {
        "lr": NON_NEGATIVE,
        "momentum": UNIT,
        "dampening": CLOSED_UNIT,
        "weight_decay": NON_NEGATIVE,
        "nesterov": FLAG,
        "maximize": FLAG,
    }

    def __init__(
        self,
        params: Params,
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
        **unknown: Any,
    ) -> None:
        reject_unknown(type(self).__name__, unknown, self.rules)
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening,
                        weight_decay=weight_decay, nesterov=nesterov,
                        maximize=maximize)
        super().__init__(params, defaults)

    def check_group(self, group: dict[str, Any]) -> None:
        super().check_group(group)
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise hyperparameter_error(
                type(self).__name__, "nesterov", True,
                "only with momentum > 0 and dampening = 0 (got momentum="
                f"{group['momentum']}, dampening={group['dampening']})",
            )

    def _update_group(
        self,
        group: dict[str, Any],
        params: list[Tensor],
        grads: list[Tensor],
        states: list[dict[str, Any]],
        stats: GroupStats | None,
    ) -> None:
        lr, mu, tau = group["lr"], group["momentum"], group["dampening"]
        lam = group["weight_decay"]

        # (1) weight decay
        if lam != 0:
            grads = torch._foreach_add(grads, params, alpha=lam)

        # (2)-(4) tile by tile, so that b, g and d stay in the cache from one
        # equation to the next (a tile's d lives only in a cache-sized work
        # buffer: .grad is never written); the statistics read each tile there.
        b = grads
        tiled_momentum = False
        if mu != 0:
            b, b_old, g_old = _momentum_buffers(states, grads)
            tiled_momentum = len(b_old) == len(b)
            if b_old and not tiled_momentum:  # some buffers start this step
                torch._foreach_mul_(b_old, mu)
                torch._foreach_add_(b_old, g_old, alpha=1 - tau)
        nesterov = group["nesterov"]
        whole = not (tiled_momentum or nesterov)
        for p_, g_, b_, d_, at in self.tiles(params, grads, b, work=nesterov,
                                             whole=whole):
            # (2) momentum buffer
            if tiled_momentum:
                torch._foreach_mul_(b_, mu)
                torch._foreach_add_(b_, g_, alpha=1 - tau)
            # (3) direction
            if nesterov:
                write_into(d_, "add", g_, b_, alpha=mu)
            else:
                d_ = b_  # heavy ball (μ ≠ 0) or plain (b is g)
            if stats is not None:  # θ not yet updated
                stats.tile(at, p_, g_, b_ if mu != 0 else None, d_)
            # (4) parameter update
            torch._foreach_add_(p_, d_, alpha=-lr)

        if stats is not None:
            stats.finish_tiles(lr)
            stats.scalar_lr(lr, lr * (1 - tau) / (1 - mu) if mu != 0 else lr)


def _momentum_buffers(
    states: list[dict[str, Any]], grads: list[Tensor]
) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
    """All buffers, plus the ones that existed before this step and their gradients.

    A buffer that does not exist yet starts as a copy of the gradient, b_1 = g_1.
    """
    buffers, old_buffers, old_grads = [], [], []
    for state, g in zip(states, grads, strict=True):
        b = state.get("momentum_buffer")
        if b is None:
            b = state["momentum_buffer"] = g.clone(memory_format=torch.preserve_format)
        else:
            old_buffers.append(b)
            old_grads.append(g)
        buffers.append(b)
    return buffers, old_buffers, old_grads
