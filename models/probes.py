"""Hooks into the training step of :class:`models.base.ImageClassifier`.

The classifier runs the backward passes itself (manual optimisation), so it can tell
an observer exactly when a gradient is complete. A callback that derives from
:class:`GradientProbe` is found among ``trainer.callbacks`` and called:

1. ``wants_micro_batches(step)`` before a minibatch step: return 2 to have the batch
   split into two halves whose gradients are accumulated one after the other
   (the gradient noise scale needs the gradient of a smaller batch); 1 otherwise.
2. ``on_micro_backward(module, size, divisor)`` after each micro-batch's backward
   pass (in full-batch mode, after each chunk): ``p.grad`` then holds the sum of
   the per-sample loss gradients seen so far in this step divided by ``divisor``.
3. ``on_gradient(module, optimizer, total)`` once the gradient of the step is
   complete (mean over ``total`` samples) and before ``optimizer.step()``.
4. ``on_step_end(module, optimizer)`` right after ``optimizer.step()``.

None of these may synchronise with the host unless they are about to log.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from lightning.pytorch import LightningModule


class GradientProbe:
    """Base with no-op hooks; override what you need."""

    def wants_micro_batches(self, step: int) -> int:
        return 1

    def on_micro_backward(
        self, module: LightningModule, size: int, divisor: float
    ) -> None:
        """A micro-batch of ``size`` samples was back-propagated.

        ``p.grad`` holds ``sum_i grad loss_i / divisor`` over the samples seen so
        far in this step.
        """

    def on_gradient(
        self, module: LightningModule, optimizer: torch.optim.Optimizer, total: int
    ) -> None:
        """The mean gradient over ``total`` samples is in ``p.grad``."""

    def on_step_end(
        self, module: LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        """``optimizer.step()`` has just run."""
