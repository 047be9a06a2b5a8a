"""Momentum study: plain SGD against heavy-ball and Nesterov momentum on the CNN.

Every run uses the same learning rate, so the momentum coefficient beta also sets
the steady-state step size lr / (1 - beta): the study shows what momentum buys at a
fixed lr and where a large beta (0.99) tips the run into oscillation or divergence.
Plain SGD is the beta = 0 point of both momentum curves.
"""

from __future__ import annotations

from collections.abc import Iterator

from experiments.studies.base import PlannedRun, Settings, Study

_CNN_SUBSET = {
    "model": "cnn",
    "arch": "default",
    "schedule": "constant",
    "augment": False,
}

PRESETS = {
    "smoke": {
        **_CNN_SUBSET,
        "subset": 256,
        "val_size": 256,
        "epochs": 1,
        "batch_size": 64,
        "log_every": 2,
        "lr": 0.01,
        "momenta": [0.9],
        "seeds": [0],
        "target_accuracy": 0.15,
    },
    "quick": {
        **_CNN_SUBSET,
        "subset": 4000,
        "val_size": 1000,
        "epochs": 8,
        "batch_size": 64,
        "log_every": 10,
        "val_every": 0.5,
        "lr": 0.01,
        "momenta": [0.5, 0.9, 0.99],
        "seeds": [0, 1, 2],
        "target_accuracy": 0.35,
    },
    "full": {
        **_CNN_SUBSET,
        "subset": None,
        "val_size": 5000,
        "epochs": 30,
        "batch_size": 128,
        "log_every": 25,
        "lr": 0.01,
        "momenta": [0.5, 0.9, 0.99],
        "seeds": [0, 1, 2],
        "target_accuracy": 0.65,
    },
}


def plan(s: Settings) -> Iterator[PlannedRun]:
    for seed in s.seeds:
        yield PlannedRun(
            part="main",
            series="sgd",
            x_name="momentum",
            x=0.0,
            config={"optimizer": "sgd", "hparams": {"lr": s.lr}, "seed": seed},
        )
        for kind in ("momentum", "nesterov"):
            for beta in s.momenta:
                yield PlannedRun(
                    part="main",
                    series=kind,
                    x_name="momentum",
                    x=beta,
                    config={
                        "optimizer": kind,
                        "hparams": {"lr": s.lr, "momentum": beta},
                        "seed": seed,
                    },
                )


STUDY = Study(
    name="momentum",
    title="Momentum: plain SGD, heavy-ball and Nesterov",
    model="cnn",
    questions=(
        "How does momentum change the speed of convergence?",
        "How does it change the gradients (norms, oscillation measured by the "
        "cosine of successive gradients) and the size of the updates?",
        "Does it change the accuracy per class?",
        "Heavy-ball against Nesterov momentum: which converges faster and more "
        "stably, at beta 0.5, 0.9 and 0.99?",
    ),
    presets=PRESETS,
    plan=plan,
    swept_fields=("optimizer", "hparams", "seed"),
)
