"""Detect a diverging run from its training loss without stalling the device.

A run diverges at optimizer step ``t`` when its loss ``L_t`` is NaN or infinite, or
when ``L_t > factor * L_0`` with ``L_0`` the loss of the first step.

On the CPU reading a tensor costs nothing, so the check is immediate: the step
that diverged is refused before the optimizer applies it. On an accelerator the
test runs on the device; its verdict (the first bad step, or -1) is copied to
pinned host memory without blocking and read at the next step once the copy has
landed, so the run stops one step late at most but the recorded step is exact.
"""

from __future__ import annotations

import torch

DIVERGENCE_FACTOR = 1e3


class DivergenceGuard:
    """Tracks the first step whose loss is non-finite or exceeds ``factor * L_0``."""

    def __init__(self, factor: float = DIVERGENCE_FACTOR) -> None:
        self.factor = factor
        self.diverged_step: int | None = None
        self.initial_loss: float | None = None
        self._initial: torch.Tensor | None = None
        self._first_bad: torch.Tensor | None = None
        self._host: torch.Tensor | None = None
        self._event = None

    def update(self, loss: torch.Tensor, step: int) -> bool:
        """Record ``loss`` of optimizer step ``step``; True once divergence is known."""
        if self.diverged_step is not None:
            return True
        loss = loss.detach().float()
        if loss.device.type == "cpu":
            return self._update_host(float(loss), step)
        return self._update_device(loss, step)

    def _update_host(self, value: float, step: int) -> bool:
        if self.initial_loss is None:
            self.initial_loss = value
        finite = value == value and abs(value) != float("inf")
        if not finite or value > self.factor * self.initial_loss:
            self.diverged_step = step
            return True
        return False

    def _update_device(self, loss: torch.Tensor, step: int) -> bool:
        self._poll()
        if self.diverged_step is not None:
            return True
        if self._initial is None:
            self._initial = loss.clone()
            self._first_bad = torch.full((), -1, dtype=torch.long, device=loss.device)
            self._host = torch.full((), -1, dtype=torch.long)
            if loss.device.type == "cuda":
                self._host = self._host.pin_memory()
        bad = ~torch.isfinite(loss) | (loss > self.factor * self._initial)
        unset = self._first_bad < 0
        self._first_bad = torch.where(bad & unset, step, self._first_bad)
        self._host.copy_(self._first_bad, non_blocking=True)
        self._event = torch.cuda.Event() if loss.device.type == "cuda" else None
        if self._event is not None:
            self._event.record()
        else:  # another accelerator: no event API to poll, read at once
            self._poll(block=True)
        return self.diverged_step is not None

    def _poll(self, block: bool = False) -> None:
        if self._host is None:
            return
        if self._event is not None and not block and not self._event.query():
            return
        if self._event is not None and block:
            self._event.synchronize()
        first_bad = int(self._host)
        if first_bad >= 0:
            self.diverged_step = first_bad

    def finalize(self) -> None:
        """Wait for the last verdict (call once, when training ends)."""
        if self.diverged_step is None:
            self._poll(block=True)
        if self._initial is not None and self.initial_loss is None:
            self.initial_loss = float(self._initial)
