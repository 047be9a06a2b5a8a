"""Adaptive study: Adagrad, RMSProp and Adam on the MLP, each at a chosen lr.

How the learning rates were chosen: each is the default its authors or the common
implementations recommend, and the ``adaptive-lr`` sweep of the same preset checks
it: Adam 1e-3 (Kingma & Ba 2015, "Adam: a method for stochastic optimization"),
RMSProp 1e-3 (Hinton, Neural Networks for Machine Learning, lecture 6e, and the
Keras/PyTorch-style defaults), Adagrad 1e-2 (the PyTorch default; Adagrad's
accumulated denominator only shrinks the step, so it needs a larger lr than the
other two). Where the adaptive-lr sensitivity curve puts the best grid point
elsewhere, edit ``lrs`` below or pass ``--set lrs="{'adam': 3e-4, ...}"``.

Check made (adaptive-lr at the quick preset, 2026-12-04, one seed, two epochs,
half-decade grid): the best final validation accuracy was at lr 1e-2 for Adagrad
(0.879), 1e-3 for RMSProp (0.873) and 3.16e-3 for Adam (0.873, against 0.870 at
1e-3, a gap within seed noise), so the defaults sit at or next to the best point.
"""

from __future__ import annotations

from collections.abc import Iterator

from experiments.studies.base import PlannedRun, Settings, Study

_MLP = {"model": "mlp", "arch": "default", "schedule": "constant"}

CHOSEN_LRS = {"adagrad": 1e-2, "rmsprop": 1e-3, "adam": 1e-3}

PRESETS = {
    "smoke": {
        **_MLP,
        "subset": 512,
        "val_size": 256,
        "epochs": 1,
        "batch_size": 64,
        "log_every": 2,
        "lrs": dict(CHOSEN_LRS),
        "seeds": [0],
        "target_accuracy": 0.5,
    },
    "quick": {
        **_MLP,
        "subset": None,
        "val_size": 5000,
        "epochs": 5,
        "batch_size": 128,
        "log_every": 20,
        "val_every": 0.25,
        "lrs": dict(CHOSEN_LRS),
        "seeds": [0, 1, 2],
        "target_accuracy": 0.86,
    },
    "full": {
        **_MLP,
        "subset": None,
        "val_size": 5000,
        "epochs": 30,
        "batch_size": 128,
        "log_every": 25,
        "lrs": dict(CHOSEN_LRS),
        "seeds": [0, 1, 2],
        "target_accuracy": 0.88,
    },
}

OPTIMIZERS = ("adagrad", "rmsprop", "adam")


def plan(s: Settings) -> Iterator[PlannedRun]:
    unknown = sorted(set(s.lrs) - set(OPTIMIZERS))
    if unknown:
        raise ValueError(
            f"adaptive: lrs names {', '.join(unknown)}; valid: {', '.join(OPTIMIZERS)}"
        )
    for seed in s.seeds:
        for name in OPTIMIZERS:
            lr = s.lrs.get(name, CHOSEN_LRS[name])
            yield PlannedRun(
                part="main",
                series=name,
                x_name="lr",
                x=lr,
                config={"optimizer": name, "hparams": {"lr": lr}, "seed": seed},
            )


STUDY = Study(
    name="adaptive",
    title="Adaptive optimizers: Adagrad, RMSProp and Adam",
    model="mlp",
    questions=(
        "Which converges fastest, reaches the best final accuracy and trains most "
        "stably?",
        "How does the effective learning rate of each behave over training?",
        "How large are the gradients and the updates of each?",
        "Does the accuracy per class differ between them?",
        "What are the advantages and drawbacks of Adagrad, RMSProp and Adam?",
    ),
    presets=PRESETS,
    plan=plan,
    notes="Learning rates: literature defaults, checked by the adaptive-lr sweep.",
    swept_fields=("optimizer", "hparams", "seed"),
)
