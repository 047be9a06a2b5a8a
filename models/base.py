"""The image-classification LightningModule shared by ``models.CNN`` and ``models.MLP``.

Training uses manual optimisation so that one optimizer step can be assembled
from several backward passes:

* **minibatch** (``batch_size=N``): one batch, one step. When a gradient probe asks
  for it (the noise-scale estimator), the batch is split into two halves whose
  gradients are accumulated one after the other.
* **full batch** (the data module's ``full_batch`` is true): every batch is a chunk
  of the training split; chunk ``c`` of ``n_c`` samples contributes

  (1)  g <- g + (1 / N) * sum_{i in c} grad l_i(theta)

  with ``N`` the size of the split, so after the last chunk ``g`` is the gradient of
  the mean loss over all ``N`` samples, and one optimizer step follows. Memory is
  bounded by the chunk size. (If the chunks turn out to hold ``N' != N`` samples,
  ``g`` is rescaled by ``N / N'`` before the step.)

Training loss and accuracy are accumulated on the device; nothing is read back to
the host except at instrument steps (see ``experiments.callbacks``) and at the end
of an epoch. A loss that is NaN, infinite, or above ``1e3`` times the first one
stops the run (:mod:`models.divergence`).

Validation and test compute the loss and a torchmetrics confusion matrix, from
which accuracy and per-class accuracy follow; they are written to TensorBoard
under ``val/...``, ``test/...`` and ``per_class_acc/{val,test}/<class>``, plus the
confusion matrix as an image.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from lightning.pytorch.trainer.states import TrainerFn
from torchmetrics.classification import MulticlassConfusionMatrix

from models.divergence import DivergenceGuard
from models.probes import GradientProbe

SCHEDULES = ("constant", "step", "cosine")
# "step" multiplies the learning rate by STEP_GAMMA at each of these fractions of
# the post-warm-up steps.
STEP_MILESTONES = (0.5, 0.75)
STEP_GAMMA = 0.1


def lr_factor(
    step: int, *, schedule: str, warmup_steps: int, total_steps: int | None
) -> float:
    """Multiplier of the base learning rate at optimizer step ``step`` (0-based).

    Linear warm-up ``(step + 1) / warmup_steps`` for the first ``warmup_steps``
    steps, then over the remaining ``T = total_steps - warmup_steps`` steps with
    progress ``s = (step - warmup_steps) / T``:
    constant 1; step ``0.1 ** #{m in (0.5, 0.75): s >= m}``;
    cosine ``(1 + cos(pi * s)) / 2``.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    if total_steps is None:
        raise ValueError(f"schedule {schedule!r} needs the total number of steps")
    span = max(total_steps - warmup_steps, 1)
    progress = min((step - warmup_steps) / span, 1.0)
    if schedule == "step":
        passed = sum(progress >= milestone for milestone in STEP_MILESTONES)
        return STEP_GAMMA**passed
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"schedule={schedule!r} is not one of {SCHEDULES}")


# Values that ``torch.nn.Module.__setattr__`` can never register as a parameter,
# buffer or submodule.
_PLAIN_VALUE_TYPES = (type(None), bool, int, float, str)


class PlainAttributeMixin:
    """Assigns plain Python values without ``torch.nn.Module.__setattr__``'s checks.

    Lightning stores the name of the hook it is running on the module before and
    after every hook (``_current_fx_name``), about 30 assignments per training
    step, and each one passes through ``nn.Module.__setattr__``: two
    ``isinstance`` tests against classes with Python-level ``__instancecheck__``
    (``Parameter``, ``Buffer``) plus dictionary look-ups, about 1 us apiece. For
    a value of an exact type in ``_PLAIN_VALUE_TYPES`` whose name is not a
    registered parameter, buffer or submodule, ``nn.Module`` ends in
    ``object.__setattr__``; this mixin goes there directly. Every other
    assignment (tensors, modules, names already registered) takes the
    ``nn.Module`` path unchanged. Put it before the ``LightningModule`` base.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if type(value) in _PLAIN_VALUE_TYPES:
            state = self.__dict__
            if not (
                name in state.get("_parameters", ())
                or name in state.get("_buffers", ())
                or name in state.get("_modules", ())
            ):
                object.__setattr__(self, name, value)
                return
        super().__setattr__(name, value)


class ImageClassifier(PlainAttributeMixin, pl.LightningModule):
    """Cross-entropy classifier trained by any optimizer of the registry.

    Subclasses build their layers in ``__init__`` and define ``forward``.

    Args:
        optimizer: registry name (``sgd``, ``adam``, ...) or ``package.module:Class``.
        hparams: the optimizer's hyperparameters, ``lr`` included.
        schedule: ``constant``, ``step`` or ``cosine`` (see :func:`lr_factor`).
        warmup_steps: linear warm-up steps before the schedule.
        total_steps: optimizer steps of the whole run (needed by step and cosine).
        class_names: one name per class, used in tag names.
    """

    def __init__(
        self,
        optimizer: str = "sgd",
        hparams: dict[str, Any] | None = None,
        schedule: str = "constant",
        warmup_steps: int = 0,
        total_steps: int | None = None,
        class_names: Sequence[str] | None = None,
        num_classes: int = 10,
    ) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.optimizer_name = optimizer
        self.optimizer_hparams = dict(hparams or {"lr": 0.01})
        self.schedule = schedule
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps
        self.num_classes = num_classes
        self.class_names = list(class_names or [str(k) for k in range(num_classes)])
        if len(self.class_names) != num_classes:
            raise ValueError(
                f"class_names has {len(self.class_names)} names, expected {num_classes}"
            )
        self.val_confusion = MulticlassConfusionMatrix(num_classes)
        self.test_confusion = MulticlassConfusionMatrix(num_classes)
        self.full_batch = False
        self.full_batch_size: int | None = None
        self.divergence = DivergenceGuard()
        self.history: list[dict[str, Any]] = []
        self.last_val: dict[str, Any] | None = None  # since the last epoch end
        self.final_val: dict[str, Any] | None = None  # latest validation
        self.best_val_acc: float | None = None
        self.test_result: dict[str, Any] | None = None
        self.train_samples = 0
        self.train_seconds = 0.0
        self._reset_step_state()
        self._reset_epoch_state()
        self._fit_start = time.perf_counter()
        self._epoch_start = self._fit_start

    # ----------------------------------------------------------------- setup
    def configure_optimizers(self) -> torch.optim.Optimizer:
        import optimizers

        optimizer = optimizers.build(
            self.optimizer_name, self.parameters(), **self.optimizer_hparams
        )
        if self.schedule != "constant" or self.warmup_steps > 0:
            self.scheduler = torch.optim.lr_scheduler.LambdaLR(
                optimizer, self._lr_factor
            )
        else:
            self.scheduler = None
        return optimizer

    def _lr_factor(self, step: int) -> float:
        # The run's length is known only once the data is (see on_train_start);
        # before that, only step 0 is asked for, where every schedule gives 1.
        total = self.total_steps if self.total_steps is not None else step + 1
        return lr_factor(step, schedule=self.schedule,
                         warmup_steps=self.warmup_steps, total_steps=total)

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        self.full_batch = bool(getattr(datamodule, "full_batch", False))
        if self.full_batch:
            self.full_batch_size = getattr(datamodule, "num_train", None)

    def on_fit_start(self) -> None:
        self._fit_start = time.perf_counter()
        self._reset_step_state()

    def on_train_start(self) -> None:
        if self.total_steps is None:
            trainer = self.trainer
            per_epoch = 1 if self.full_batch else int(trainer.num_training_batches)
            total = per_epoch * max(int(trainer.max_epochs or 1), 1)
            if trainer.max_steps is not None and trainer.max_steps > 0:
                total = min(total, trainer.max_steps)
            self.total_steps = total

    # -------------------------------------------------------------- training
    def _probes(self) -> list[GradientProbe]:
        if self._trainer is None:
            return []
        return [cb for cb in self.trainer.callbacks if isinstance(cb, GradientProbe)]

    def _reset_step_state(self) -> None:
        self._step_loss_sum: torch.Tensor | float = 0.0
        self._step_correct: torch.Tensor | float = 0.0
        self._step_count = 0

    def _reset_epoch_state(self) -> None:
        self._epoch_loss_sum: torch.Tensor | float = 0.0
        self._epoch_correct: torch.Tensor | float = 0.0
        self._epoch_count = 0

    def on_train_epoch_start(self) -> None:
        self._reset_epoch_state()
        self._reset_step_state()
        self._epoch_start = time.perf_counter()

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int):
        x, y = batch
        probes = self._probes()
        step = self.trainer.global_step
        if self.full_batch:
            divisor = float(self.full_batch_size or y.shape[0])
            parts = [(x, y)]
        else:
            divisor = float(y.shape[0])
            splits = max((p.wants_micro_batches(step) for p in probes), default=1)
            parts = _split(x, y, splits)
        for x_part, y_part in parts:
            loss_sum, correct = self.batch_loss(x_part, y_part)
            self.manual_backward(loss_sum / divisor)
            self._step_loss_sum = self._step_loss_sum + loss_sum.detach()
            self._step_correct = self._step_correct + correct
            self._step_count += y_part.shape[0]
            for probe in probes:
                probe.on_micro_backward(self, y_part.shape[0], divisor)

        last_chunk = batch_idx + 1 >= self.trainer.num_training_batches
        if self.full_batch and not last_chunk:
            return None
        self._optimizer_step(probes, divisor)
        return None

    def batch_loss(
        self, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Sum over the batch of the per-sample losses, and the correct predictions.

        A sum, not a mean: the training step divides by the samples of the whole
        step, which is what makes chunked accumulation exact.
        """
        logits = _at_least_float32(self(x))
        loss_sum = F.cross_entropy(logits, y, reduction="sum")
        correct = (logits.detach().argmax(dim=1) == y).sum()
        return loss_sum, correct

    def _optimizer_step(self, probes: list[GradientProbe], divisor: float) -> None:
        optimizer = self.optimizers()
        total = self._step_count
        if total != divisor:
            rescale = divisor / total
            for p in self.parameters():
                if p.grad is not None:
                    p.grad.mul_(rescale)
        step_loss = self._step_loss_sum / total
        self.step_loss = step_loss
        self.step_acc = self._step_correct / total
        self.step_samples = total
        self._epoch_loss_sum = self._epoch_loss_sum + self._step_loss_sum
        self._epoch_correct = self._epoch_correct + self._step_correct
        self._epoch_count += total
        self.train_samples += total
        self._reset_step_state()

        step = self.trainer.global_step
        if self.divergence.update(step_loss, step):
            optimizer.zero_grad(set_to_none=True)
            self.trainer.should_stop = True
            return
        for probe in probes:
            probe.on_gradient(self, optimizer.optimizer, total)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if self.scheduler is not None:
            self.scheduler.step()
        for probe in probes:
            probe.on_step_end(self, optimizer.optimizer)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> int | None:
        # -1 ends the epoch at once; should_stop then ends the fit.
        if self.divergence.diverged_step is not None:
            return -1
        return None

    def on_train_epoch_end(self) -> None:
        now = time.perf_counter()
        self.train_seconds += now - self._epoch_start
        self.divergence.finalize()
        if self.divergence.diverged_step is not None:
            self.trainer.should_stop = True
        count = max(self._epoch_count, 1)
        train_loss = _as_float(self._epoch_loss_sum) / count
        train_acc = _as_float(self._epoch_correct) / count
        val = self.last_val or {}
        self.history.append(
            {
                "epoch": self.current_epoch,
                "step": self.trainer.global_step,
                "time_s": now - self._fit_start,
                "train_loss": train_loss,
                "train_acc": train_acc,
                "val_loss": val.get("loss"),
                "val_acc": val.get("acc"),
                "per_class_val_acc": val.get("per_class_acc"),
            }
        )
        self.last_val = None
        writer = self._writer()
        if writer is not None:
            step = self.trainer.global_step
            writer.add_scalar("train/epoch_loss", train_loss, step)
            writer.add_scalar("train/epoch_acc", train_acc, step)
            seconds = max(now - self._epoch_start, 1e-9)
            writer.add_scalar("perf/samples_per_s", self._epoch_count / seconds, step)

    # ---------------------------------------------------- validation and test
    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int):
        self._eval_step(batch, self.val_confusion, "val")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int):
        self._eval_step(batch, self.test_confusion, "test")

    def on_validation_epoch_start(self) -> None:
        self._eval_loss_sum: torch.Tensor | float = 0.0
        self.val_confusion.reset()
        self._val_start = time.perf_counter()

    def on_test_epoch_start(self) -> None:
        self._eval_loss_sum = 0.0
        self.test_confusion.reset()

    def _eval_step(self, batch, confusion: MulticlassConfusionMatrix, split: str):
        x, y = batch
        logits = _at_least_float32(self(x))
        loss_sum = F.cross_entropy(logits, y, reduction="sum")
        self._eval_loss_sum = self._eval_loss_sum + loss_sum
        confusion.update(logits.argmax(dim=1), y)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        if self.trainer.state.fn == TrainerFn.FITTING:  # not training time
            self._epoch_start += time.perf_counter() - self._val_start
        result = self._eval_result(self.val_confusion, "val")
        result["step"] = self.trainer.global_step
        self.last_val = result
        self.final_val = result
        if self.best_val_acc is None or result["acc"] > self.best_val_acc:
            self.best_val_acc = result["acc"]
        self.log("val_acc", result["acc"], prog_bar=True, logger=False)

    def on_test_epoch_end(self) -> None:
        self.test_result = self._eval_result(self.test_confusion, "test")

    def _eval_result(
        self, confusion: MulticlassConfusionMatrix, split: str
    ) -> dict[str, Any]:
        matrix = confusion.compute().double()
        count = matrix.sum().clamp_min(1.0)
        per_class = matrix.diagonal() / matrix.sum(dim=1).clamp_min(1.0)
        result = {
            "loss": _as_float(self._eval_loss_sum) / float(count),
            "acc": float(matrix.diagonal().sum() / count),
            "per_class_acc": [float(v) for v in per_class.tolist()],
        }
        writer = self._writer()
        if writer is not None:
            step = self.trainer.global_step
            writer.add_scalar(f"{split}/loss", result["loss"], step)
            writer.add_scalar(f"{split}/acc", result["acc"], step)
            for name, value in zip(
                self.class_names, result["per_class_acc"], strict=True
            ):
                tag = f"per_class_acc/{split}/{name.replace('/', '-')}"
                writer.add_scalar(tag, value, step)
            writer.add_image(
                f"{split}/confusion_matrix", confusion_image(matrix), step
            )
        return result

    def _writer(self):
        logger = self.logger
        experiment = getattr(logger, "experiment", None) if logger else None
        return experiment if hasattr(experiment, "add_scalar") else None


def _split(x: torch.Tensor, y: torch.Tensor, parts: int):
    if parts <= 1 or y.shape[0] < parts:
        return [(x, y)]
    return list(zip(x.chunk(parts), y.chunk(parts), strict=True))


def _at_least_float32(logits: torch.Tensor) -> torch.Tensor:
    """Half-precision logits are upcast for the loss; float64 stays float64."""
    if logits.dtype in (torch.float16, torch.bfloat16):
        return logits.float()
    return logits


def _as_float(value: torch.Tensor | float) -> float:
    return float(value)


def confusion_image(matrix: torch.Tensor, cell: int = 16) -> torch.Tensor:
    """Row-normalised confusion matrix as a ``3 x H x W`` image in ``[0, 1]``.

    Rows are true classes, columns predictions; white is 0 and dark blue is 1.
    """
    rows = matrix.sum(dim=1, keepdim=True).clamp_min(1.0)
    share = (matrix / rows).float().cpu()
    big = share.repeat_interleave(cell, 0).repeat_interleave(cell, 1)
    white = torch.ones(3, 1, 1)
    blue = torch.tensor([0.05, 0.2, 0.55]).view(3, 1, 1)
    return white + (blue - white) * big.unsqueeze(0)
