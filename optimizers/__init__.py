"""Optimizers written from scratch, equal to torch.optim, with instruments.

``build(name, params, **hparams)`` constructs one by name; ``available()`` lists the
names; ``register(name, cls, **defaults)`` adds one. Every class derives from
:class:`optimizers.base.Optimizer`: ``opt.request_stats()`` before a step makes
``opt.last_stats`` a :class:`optimizers.base.StepStats` after it.
"""

from optimizers.adagrad import Adagrad
from optimizers.adam import Adam
from optimizers.base import Optimizer, StepStats
from optimizers.registry import (
    available,
    build,
    load_class,
    register,
    resolve,
    unregister,
)
from optimizers.rmsprop import RMSProp, RMSprop
from optimizers.sgd import SGD

__all__ = [
    "SGD",
    "Adagrad",
    "Adam",
    "Optimizer",
    "RMSProp",
    "RMSprop",
    "StepStats",
    "available",
    "build",
    "load_class",
    "register",
    "resolve",
    "unregister",
]
