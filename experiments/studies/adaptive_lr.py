"""Adaptive learning-rate study: Adagrad, RMSProp and Adam over a log grid of lrs.

The sensitivity curve of each optimizer (final validation accuracy against lr, with
diverged runs marked) gives its acceptable range and shows how it behaves at very
small lrs (too slow) and very large ones (unstable or diverged).
"""

from __future__ import annotations

from collections.abc import Iterator

from experiments.studies.base import PlannedRun, Settings, Study

_MLP = {"model": "mlp", "arch": "default", "schedule": "constant"}

PRESETS = {
    "smoke": {
        **_MLP,
        "subset": 512,
        "val_size": 256,
        "epochs": 1,
        "batch_size": 64,
        "log_every": 2,
        "lrs": [1e-3, 1.0],
        "seeds": [0],
        "target_accuracy": 0.5,
    },
    "quick": {
        **_MLP,
        "subset": None,
        "val_size": 5000,
        "epochs": 3,
        "batch_size": 128,
        "log_every": 20,
        "val_every": 0.5,
        # 11 points, half a decade apart from 1e-5 to 1.
        "lrs": [1e-5, 3.16e-5, 1e-4, 3.16e-4, 1e-3, 3.16e-3, 1e-2, 3.16e-2, 0.1,
                0.316, 1.0],
        "seeds": [0, 1],
        "target_accuracy": 0.86,
    },
    "full": {
        **_MLP,
        "subset": None,
        "val_size": 5000,
        "epochs": 20,
        "batch_size": 128,
        "log_every": 25,
        "lrs": [1e-5, 3.16e-5, 1e-4, 3.16e-4, 1e-3, 3.16e-3, 1e-2, 3.16e-2, 0.1,
                0.316, 1.0],
        "seeds": [0, 1, 2],
        "target_accuracy": 0.88,
    },
}

OPTIMIZERS = ("adagrad", "rmsprop", "adam")


def plan(s: Settings) -> Iterator[PlannedRun]:
    for seed in s.seeds:
        for name in OPTIMIZERS:
            for lr in s.lrs:
                yield PlannedRun(
                    part="main",
                    series=name,
                    x_name="lr",
                    x=lr,
                    config={"optimizer": name, "hparams": {"lr": lr}, "seed": seed},
                )


STUDY = Study(
    name="adaptive-lr",
    title="Learning-rate sensitivity of Adagrad, RMSProp and Adam",
    model="mlp",
    questions=(
        "How sensitive is each adaptive optimizer to its learning rate?",
        "What is the acceptable learning-rate range of each?",
        "How do they behave at very high and very low learning rates?",
        "Which learning rate would we recommend in practice?",
    ),
    presets=PRESETS,
    plan=plan,
    swept_fields=("optimizer", "hparams", "seed"),
)
