"""Adam hyperparameter study: beta1, beta2 and epsilon, one at a time and as a grid.

Parts:

* ``beta1``, ``beta2``, ``eps``: each swept with the other two at Adam's defaults
  (beta1 0.9, beta2 0.999, eps 1e-8);
* ``grid``: every beta1 x beta2 pair at the default eps (the heatmap).

A run that serves several parts (the all-default run is in every one of them, and
each one-at-a-time beta run is also a grid cell) trains once; its summary lists
every part it belongs to under ``memberships``.
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
        "lr": 1e-3,
        "beta1s": [0.0, 0.9],
        "beta2s": [0.99, 0.999],
        "epss": [1e-8, 1.0],
        "grid": True,
        "defaults": {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8},
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
        "lr": 1e-3,
        "beta1s": [0.0, 0.5, 0.8, 0.9, 0.95, 0.99],
        "beta2s": [0.9, 0.99, 0.999, 0.9999],
        "epss": [1e-10, 1e-8, 1e-6, 1e-4, 1e-2, 1.0],
        "grid": True,
        "defaults": {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8},
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
        "lr": 1e-3,
        "beta1s": [0.0, 0.5, 0.8, 0.9, 0.95, 0.99],
        "beta2s": [0.9, 0.99, 0.999, 0.9999],
        "epss": [1e-10, 1e-8, 1e-6, 1e-4, 1e-3, 1e-2, 1e-1, 1.0],
        "grid": True,
        "defaults": {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8},
        "seeds": [0, 1, 2],
        "target_accuracy": 0.88,
    },
}


def _adam(s: Settings, seed: int, beta1: float, beta2: float, eps: float) -> dict:
    hparams = {"lr": s.lr, "betas": [beta1, beta2], "eps": eps}
    return {"optimizer": "adam", "hparams": hparams, "seed": seed}


def plan(s: Settings) -> Iterator[PlannedRun]:
    d = s.defaults
    for seed in s.seeds:
        for beta1 in s.beta1s:
            yield PlannedRun(
                part="beta1", series="beta1", x_name="beta1", x=beta1,
                config=_adam(s, seed, beta1, d["beta2"], d["eps"]),
            )
        for beta2 in s.beta2s:
            yield PlannedRun(
                part="beta2", series="beta2", x_name="beta2", x=beta2,
                config=_adam(s, seed, d["beta1"], beta2, d["eps"]),
            )
        for eps in s.epss:
            yield PlannedRun(
                part="eps", series="eps", x_name="eps", x=eps,
                config=_adam(s, seed, d["beta1"], d["beta2"], eps),
            )
        if s.grid:
            for beta1 in s.beta1s:
                for beta2 in s.beta2s:
                    yield PlannedRun(
                        part="grid", series=f"beta2={beta2:g}",
                        x_name="beta1", x=beta1, y_name="beta2", y=beta2,
                        config=_adam(s, seed, beta1, beta2, d["eps"]),
                    )


STUDY = Study(
    name="adam-hparams",
    title="Adam's hyperparameters: beta1, beta2 and epsilon",
    model="mlp",
    questions=(
        "How does beta1 change the speed and the stability of training?",
        "How does beta2 change the adaptation of the learning rate?",
        "What role does epsilon play, and when does it matter?",
        "What are the trade-offs between the three?",
    ),
    presets=PRESETS,
    plan=plan,
    swept_fields=("optimizer", "hparams", "seed"),
)
