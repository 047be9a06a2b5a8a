"""Optimizers by name: ``build``, ``available``, ``register``.

A name is either one registered here (``sgd``, ``momentum``, ``nesterov``,
``adagrad``, ``rmsprop``, ``adam``, ``adamw`` and whatever ``register`` added) or
``package.module:ClassName``, which imports a user's own ``torch.optim.Optimizer``
subclass.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass, field
from typing import Any

import torch

from optimizers.adagrad import Adagrad
from optimizers.adam import Adam
from optimizers.base import Params, reject_unknown
from optimizers.rmsprop import RMSProp
from optimizers.sgd import SGD


@dataclass(frozen=True)
class Entry:
    """A registered name: the class and the hyperparameters the name implies."""

    cls: type[torch.optim.Optimizer]
    defaults: dict[str, Any] = field(default_factory=dict)


_REGISTRY: dict[str, Entry] = {}


def register(name: str, cls: type[torch.optim.Optimizer], **defaults: Any) -> None:
    """Make ``build(name, ...)`` construct ``cls(params, **defaults, **hparams)``.

    Registering a name again with the same class and defaults does nothing; with
    anything else it raises ``ValueError`` (use :func:`unregister` first).
    """
    if not isinstance(name, str) or not name or ":" in name:
        raise ValueError(
            f"optimizer name {name!r} is invalid; use a non-empty string without ':'"
        )
    if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)):
        raise ValueError(
            f"optimizer {name!r}: {cls!r} is not a torch.optim.Optimizer subclass"
        )
    entry = Entry(cls, dict(defaults))
    if name in _REGISTRY and _REGISTRY[name] != entry:
        raise ValueError(
            f"optimizer name {name!r} is already registered to "
            f"{_REGISTRY[name].cls.__qualname__}; unregister it first"
        )
    _REGISTRY[name] = entry


def unregister(name: str) -> None:
    """Remove a registered name (``KeyError``-free: unknown names are ignored)."""
    _REGISTRY.pop(name, None)


def available() -> list[str]:
    """The registered names, sorted."""
    return sorted(_REGISTRY)


def resolve(name: str) -> Entry:
    """The class and implied hyperparameters of a name (see :func:`build`)."""
    if not isinstance(name, str):
        raise ValueError(f"optimizer name must be a string, got {name!r}")
    if ":" in name:
        return Entry(load_class(name))
    if name not in _REGISTRY:
        raise ValueError(
            f"unknown optimizer {name!r}; available: {', '.join(available())}, "
            "or 'package.module:ClassName' for your own torch.optim.Optimizer"
        )
    return _REGISTRY[name]


def build(name: str, params: Params, **hparams: Any) -> torch.optim.Optimizer:
    """Construct the optimizer called ``name`` over ``params``.

    ``hparams`` override the defaults the name implies (``momentum`` is SGD with
    momentum 0.9, so ``build("momentum", p, momentum=0.5)`` is SGD with 0.5).
    Unknown hyperparameters raise ``ValueError`` naming them.
    """
    entry = resolve(name)
    merged = {**entry.defaults, **hparams}
    _check_keywords(entry.cls, merged)
    return entry.cls(params, **merged)


def load_class(spec: str) -> type[torch.optim.Optimizer]:
    """Import ``package.module:ClassName`` and check it is an optimizer class."""
    module_name, _, class_name = spec.partition(":")
    if not module_name or not class_name or ":" in class_name:
        raise ValueError(
            f"optimizer {spec!r} is not of the form 'package.module:ClassName'"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(
            f"optimizer {spec!r}: cannot import module {module_name!r} ({error}); "
            "is it on PYTHONPATH?"
        ) from error
    cls = getattr(module, class_name, None)
    if cls is None:
        raise ValueError(
            f"optimizer {spec!r}: module {module_name!r} has no {class_name!r}"
        )
    if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)):
        raise ValueError(
            f"optimizer {spec!r}: {class_name} is not a torch.optim.Optimizer subclass"
        )
    return cls


def _check_keywords(cls: type, hparams: dict[str, Any]) -> None:
    """Refuse keywords the constructor does not name (unless it takes ``**kwargs``
    for a reason of its own; optimlab classes check those themselves)."""
    signature = inspect.signature(cls.__init__)
    parameters = list(signature.parameters.values())[2:]  # self, params
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return
    known = [p.name for p in parameters if p.kind is not p.VAR_POSITIONAL]
    reject_unknown(cls.__name__, {k: v for k, v in hparams.items() if k not in known},
                   known)


register("sgd", SGD)
register("momentum", SGD, momentum=0.9)
register("nesterov", SGD, momentum=0.9, nesterov=True)
register("adagrad", Adagrad)
register("rmsprop", RMSProp)
register("adam", Adam)
register("adamw", Adam, decoupled_weight_decay=True, weight_decay=1e-2)
