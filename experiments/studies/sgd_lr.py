"""SGD learning-rate study: SGD, heavy-ball and Nesterov over a log grid of lrs.

Each variant is trained at every learning rate of the grid; the sensitivity curve
(final validation accuracy against lr) gives each variant's acceptable range. With
momentum 0.9 the steady-state step is ten times lr, so the momentum curves are
expected to sit one decade to the left of plain SGD's.
"""

from __future__ import annotations

from collections.abc import Iterator

from experiments.studies.base import PlannedRun, Settings, Study

_CNN = {"model": "cnn", "arch": "default", "schedule": "constant", "augment": False}

PRESETS = {
    "smoke": {
        **_CNN,
        "subset": 256,
        "val_size": 256,
        "epochs": 1,
        "batch_size": 64,
        "log_every": 2,
        "lrs": [1e-3, 1.0],
        "momentum": 0.9,
        "seeds": [0],
        "target_accuracy": 0.15,
    },
    "quick": {
        **_CNN,
        "subset": 3000,
        "val_size": 1000,
        "epochs": 4,
        "batch_size": 64,
        "log_every": 10,
        "val_every": 0.5,
        # 9 points, half a decade apart from 1e-4 to 1.
        "lrs": [1e-4, 3.16e-4, 1e-3, 3.16e-3, 1e-2, 3.16e-2, 0.1, 0.316, 1.0],
        "momentum": 0.9,
        "seeds": [0, 1],
        "target_accuracy": 0.3,
    },
    "full": {
        **_CNN,
        "subset": None,
        "val_size": 5000,
        "epochs": 20,
        "batch_size": 128,
        "log_every": 25,
        "lrs": [1e-4, 3.16e-4, 1e-3, 3.16e-3, 1e-2, 3.16e-2, 0.1, 0.316, 1.0],
        "momentum": 0.9,
        "seeds": [0, 1, 2],
        "target_accuracy": 0.6,
    },
}

VARIANTS = ("sgd", "momentum", "nesterov")


def plan(s: Settings) -> Iterator[PlannedRun]:
    for seed in s.seeds:
        for variant in VARIANTS:
            for lr in s.lrs:
                hparams = {"lr": lr}
                if variant != "sgd":
                    hparams["momentum"] = s.momentum
                yield PlannedRun(
                    part="main",
                    series=variant,
                    x_name="lr",
                    x=lr,
                    config={"optimizer": variant, "hparams": hparams, "seed": seed},
                )


STUDY = Study(
    name="sgd-lr",
    title="Learning-rate sensitivity of SGD, heavy-ball and Nesterov",
    model="cnn",
    questions=(
        "How sensitive is each of SGD, SGD with momentum and Nesterov to the "
        "learning rate?",
        "What is the acceptable learning-rate range of each?",
    ),
    presets=PRESETS,
    plan=plan,
    swept_fields=("optimizer", "hparams", "seed"),
)
