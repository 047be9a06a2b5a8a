"""Batch-size study: SGD with momentum from batch 16 to 1024 and full batch.

Two series share the batch sizes:

* ``fixed-lr``: the same learning rate at every batch size.
* ``scaled-lr``: the linear scaling rule, lr = base_lr * B / base_batch, capped at
  ``lr_cap``, with a linear warm-up over the first ``warmup_epochs`` epochs (Goyal et
  al. 2017, "Accurate, large minibatch SGD").

``full`` is exact full-batch gradient descent: one step per epoch over the whole
training split, so it gets ``full_batch_epochs`` epochs to take a useful number of
steps. Every run records its per-epoch history (epoch, optimizer step, seconds), so
the report can compare at equal epochs, equal steps and equal wall-clock, and its
throughput (samples per second). The fixed-lr runs at the batch sizes in
``noise_scale_at`` also estimate the gradient noise scale B_simple = tr(Sigma)/|G|^2
(McCandlish et al. 2018, "An empirical model of large-batch training"), the
critical batch size estimate.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

from experiments.studies.base import PlannedRun, Settings, Study

_CNN = {"model": "cnn", "arch": "default", "schedule": "constant", "augment": False}

CIFAR10_TRAIN_IMAGES = 50_000

PRESETS = {
    "smoke": {
        **_CNN,
        "subset": 256,
        "val_size": 256,
        "epochs": 1,
        "log_every": 2,
        "batch_sizes": [32, "full"],
        "base_lr": 0.01,
        "base_batch": 128,
        "momentum": 0.9,
        "lr_cap": 0.2,
        "warmup_epochs": 0.5,
        "full_batch_epochs": 2,
        "noise_scale_at": [32],
        "seeds": [0],
        "target_accuracy": 0.15,
    },
    "quick": {
        **_CNN,
        "subset": 4000,
        "val_size": 1000,
        "epochs": 5,
        "log_every": 10,
        "val_every": 1.0,
        "batch_sizes": [16, 32, 64, 128, 256, 512, 1024, "full"],
        "base_lr": 0.01,
        "base_batch": 128,
        "momentum": 0.9,
        "lr_cap": 0.2,
        "warmup_epochs": 1,
        "full_batch_epochs": 20,
        "noise_scale_at": [64, 256],
        "seeds": [0, 1],
        "target_accuracy": 0.35,
    },
    "full": {
        **_CNN,
        "subset": None,
        "val_size": 5000,
        "epochs": 30,
        "log_every": 25,
        "batch_sizes": [16, 32, 64, 128, 256, 512, 1024, "full"],
        "base_lr": 0.01,
        "base_batch": 128,
        "momentum": 0.9,
        "lr_cap": 0.4,
        "warmup_epochs": 5,
        "full_batch_epochs": 300,
        "noise_scale_at": [32, 128, 512],
        "seeds": [0, 1, 2],
        "target_accuracy": 0.6,
    },
}


def train_images(s: Settings) -> int:
    """Images in the training split after the validation hold-out and subset."""
    available = CIFAR10_TRAIN_IMAGES - s.val_size
    subset = s.subset
    if subset is None:
        return available
    if isinstance(subset, float):
        return max(1, int(subset * available))
    return min(int(subset), available)


def plan(s: Settings) -> Iterator[PlannedRun]:
    n_train = train_images(s)
    for seed in s.seeds:
        for series in ("fixed-lr", "scaled-lr"):
            for batch in s.batch_sizes:
                effective_batch = n_train if batch == "full" else int(batch)
                config = {
                    "optimizer": "momentum",
                    "batch_size": batch,
                    "seed": seed,
                    "noise_scale": series == "fixed-lr" and batch in s.noise_scale_at,
                }
                if batch == "full":
                    config["epochs"] = s.full_batch_epochs
                if series == "fixed-lr":
                    lr = s.base_lr
                else:
                    lr = min(s.base_lr * effective_batch / s.base_batch, s.lr_cap)
                    steps_per_epoch = math.ceil(n_train / effective_batch)
                    config["warmup_steps"] = math.ceil(
                        s.warmup_epochs * steps_per_epoch
                    )
                config["hparams"] = {"lr": float(f"{lr:.4g}"), "momentum": s.momentum}
                yield PlannedRun(
                    part=series,
                    series=series,
                    x_name="batch_size",
                    x=batch,
                    config=config,
                )


STUDY = Study(
    name="batch-size",
    title="Batch size: from 16 to full-batch gradient descent",
    model="cnn",
    questions=(
        "How does the batch size change the speed of convergence, counted in "
        "epochs, in optimizer steps and in seconds?",
        "How efficient is each batch size: throughput and time to the target "
        "accuracy?",
        "How stable is training at each batch size, with a fixed and with a "
        "scaled learning rate?",
        "How does full-batch gradient descent compare with mini-batch SGD?",
        "What critical batch size does the gradient noise scale B_simple predict?",
    ),
    presets=PRESETS,
    plan=plan,
    notes=(
        "scaled-lr: lr = min(base_lr * B / base_batch, lr_cap) with a linear "
        "warm-up over warmup_epochs; full batch runs full_batch_epochs epochs."
    ),
    swept_fields=(
        "optimizer", "hparams", "batch_size", "seed", "noise_scale", "warmup_steps",
    ),
)
