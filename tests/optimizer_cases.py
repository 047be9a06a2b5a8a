"""The one table of optimizer cases that drives the parametrized optimizer tests.

``CASES``: each of our optimizers over a grid of its hyperparameters, every flag on
and off, paired with the ``torch.optim`` configuration that must give the same
trajectory. ``INVALID``: bad hyperparameters with the field the error must name.
``ALGORITHMS``: one representative case per registry name. Problems are tiny so
that hundreds of steps cost milliseconds.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

STEPS = 500  # steps of every equality run


@dataclass(frozen=True)
class Case:
    """Our optimizer (registry name + hyperparameters) and its torch twin."""

    name: str
    hparams: dict[str, Any]
    reference: type[torch.optim.Optimizer]
    reference_hparams: dict[str, Any]
    tags: frozenset[str] = field(default_factory=frozenset)

    @property
    def id(self) -> str:
        flags = ",".join(f"{k}={v}" for k, v in self.hparams.items())
        return f"{self.name}[{flags}]"

    @property
    def adaptive(self) -> bool:
        return self.reference is not torch.optim.SGD


def _sgd_cases() -> list[Case]:
    cases = []
    for wd, (mu, tau, nesterov), maximize in itertools.product(
        (0.0, 1e-2),
        ((0.0, 0.0, False), (0.9, 0.0, False), (0.9, 0.0, True), (0.9, 0.1, False)),
        (False, True),
    ):
        if maximize and (wd or tau):
            continue  # maximize is checked on a subset; the others cover the rest
        hp = dict(lr=0.05, momentum=mu, dampening=tau, weight_decay=wd,
                  nesterov=nesterov, maximize=maximize)
        name = "nesterov" if nesterov else "momentum" if mu else "sgd"
        cases.append(Case(name, hp, torch.optim.SGD, dict(hp)))
    return cases


def _adagrad_cases() -> list[Case]:
    cases = []
    for lr_decay, wd, init in itertools.product((0.0, 1e-2), (0.0, 1e-2), (0.0, 0.1)):
        hp = dict(lr=0.1, lr_decay=lr_decay, weight_decay=wd,
                  initial_accumulator_value=init)
        cases.append(Case("adagrad", hp, torch.optim.Adagrad, dict(hp)))
    hp = dict(lr=0.1, eps=1e-3, maximize=True)
    cases.append(Case("adagrad", hp, torch.optim.Adagrad, dict(hp)))
    return cases


def _rmsprop_cases() -> list[Case]:
    cases = []
    for centered, mu, wd in itertools.product((False, True), (0.0, 0.5), (0.0, 1e-2)):
        hp = dict(lr=0.01, centered=centered, momentum=mu, weight_decay=wd)
        cases.append(Case("rmsprop", hp, torch.optim.RMSprop, dict(hp)))
    hp = dict(lr=0.01, alpha=0.9, eps=1e-4, maximize=True)
    cases.append(Case("rmsprop", hp, torch.optim.RMSprop, dict(hp)))
    return cases


def _adam_cases() -> list[Case]:
    cases = []
    for amsgrad, (wd, decoupled) in itertools.product(
        (False, True), ((0.0, False), (1e-2, False), (1e-1, True))
    ):
        hp = dict(lr=0.01, amsgrad=amsgrad, weight_decay=wd)
        name = "adamw" if decoupled else "adam"
        reference = torch.optim.AdamW if decoupled else torch.optim.Adam
        cases.append(Case(name, hp, reference, dict(hp)))
    hp = dict(lr=0.01, betas=(0.5, 0.9), eps=1e-6, maximize=True)
    cases.append(Case("adam", hp, torch.optim.Adam, dict(hp)))
    hp = dict(lr=0.01, betas=(0.0, 0.99))
    cases.append(Case("adam", hp, torch.optim.Adam, dict(hp)))
    return cases


CASES: list[Case] = _sgd_cases() + _adagrad_cases() + _rmsprop_cases() + _adam_cases()

# One representative per registry name, with its flags on, for the heavier scenarios.
ALGORITHMS: dict[str, Case] = {
    "sgd": Case("sgd", dict(lr=0.05, weight_decay=1e-2), torch.optim.SGD,
                dict(lr=0.05, weight_decay=1e-2)),
    "momentum": Case("momentum", dict(lr=0.05, dampening=0.1), torch.optim.SGD,
                     dict(lr=0.05, momentum=0.9, dampening=0.1)),
    "nesterov": Case("nesterov", dict(lr=0.05, weight_decay=1e-2), torch.optim.SGD,
                     dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-2)),
    "adagrad": Case("adagrad", dict(lr=0.1, lr_decay=1e-2, weight_decay=1e-2,
                                    initial_accumulator_value=0.1),
                    torch.optim.Adagrad, dict(lr=0.1, lr_decay=1e-2, weight_decay=1e-2,
                                              initial_accumulator_value=0.1)),
    "rmsprop": Case("rmsprop", dict(lr=0.01, centered=True, momentum=0.5,
                                    weight_decay=1e-2),
                    torch.optim.RMSprop, dict(lr=0.01, centered=True, momentum=0.5,
                                              weight_decay=1e-2)),
    "adam": Case("adam", dict(lr=0.01, amsgrad=True, weight_decay=1e-2),
                 torch.optim.Adam, dict(lr=0.01, amsgrad=True, weight_decay=1e-2)),
    "adamw": Case("adamw", dict(lr=0.01, amsgrad=True), torch.optim.AdamW,
                  dict(lr=0.01, amsgrad=True)),
}


@dataclass(frozen=True)
class Invalid:
    """A bad constructor call: ``build(name, params, **hparams)`` must raise."""

    name: str
    hparams: dict[str, Any]
    field: str  # the message must name it
    kind: str = "range"  # "range": shows field=value; "rule"; "unknown" keyword

    @property
    def id(self) -> str:
        return f"{self.name}-{self.field}-{list(self.hparams.values())[0]!r}"


_NEGATIVE = -1e-3
INVALID: list[Invalid] = [
    *(Invalid(name, dict(lr=_NEGATIVE), "lr") for name in
      ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw")),
    *(Invalid(name, dict(lr=float("nan")), "lr") for name in ("sgd", "adam")),
    *(Invalid(name, dict(lr="0.1"), "lr") for name in ("sgd", "rmsprop")),
    Invalid("momentum", dict(momentum=1.0), "momentum"),
    Invalid("momentum", dict(momentum=-0.1), "momentum"),
    Invalid("rmsprop", dict(momentum=1.5), "momentum"),
    Invalid("rmsprop", dict(alpha=1.0), "alpha"),
    Invalid("rmsprop", dict(alpha=-0.5), "alpha"),
    Invalid("adam", dict(betas=(1.0, 0.999)), "betas[0]"),
    Invalid("adam", dict(betas=(0.9, 1.0)), "betas[1]"),
    Invalid("adam", dict(betas=(-0.1, 0.999)), "betas[0]"),
    Invalid("adamw", dict(betas=(0.9, 1.5)), "betas[1]"),
    Invalid("adam", dict(betas=0.9), "betas"),
    Invalid("adam", dict(betas=(0.9, 0.99, 0.999)), "betas", "rule"),
    *(Invalid(name, dict(eps=-1e-8), "eps") for name in ("adagrad", "rmsprop", "adam")),
    Invalid("sgd", dict(nesterov=True), "nesterov", "rule"),  # no momentum
    Invalid("nesterov", dict(dampening=0.1), "nesterov", "rule"),  # with dampening
    Invalid("sgd", dict(dampening=1.5), "dampening"),
    *(Invalid(name, dict(weight_decay=_NEGATIVE), "weight_decay") for name in
      ("sgd", "momentum", "adagrad", "rmsprop", "adam", "adamw")),
    Invalid("adagrad", dict(lr_decay=_NEGATIVE), "lr_decay"),
    Invalid("adagrad", dict(initial_accumulator_value=_NEGATIVE),
            "initial_accumulator_value"),
    Invalid("adam", dict(amsgrad="yes"), "amsgrad"),
    Invalid("rmsprop", dict(centered=1), "centered"),
    *(Invalid(name, dict(learning_rate=0.1), "learning_rate", "unknown") for name in
      ("sgd", "adagrad", "rmsprop", "adam")),
    Invalid("adam", dict(beta1=0.9), "beta1", "unknown"),
    Invalid("sgd", dict(foreach=True), "foreach", "unknown"),
]


# --------------------------------------------------------------------------------------
# Problems: parameters, a loss, and its gradient by hand (autograd costs more than
# the optimizer on tensors this small; a test checks the hand gradients)


@dataclass
class Problem:
    """Parameters plus ``loss(params)`` and ``grads(params)`` (no autograd)."""

    params: list[torch.Tensor]
    loss: Callable[[list[torch.Tensor]], torch.Tensor]
    grads: Callable[[list[torch.Tensor]], list[torch.Tensor]]
    sign: float = 1.0

    def negated(self) -> Problem:
        """The same problem for maximisation: f becomes −f."""
        return Problem(self.params, self.loss, self.grads, -self.sign)

    def value(self, params: list[torch.Tensor]) -> torch.Tensor:
        return self.sign * self.loss(params)

    def set_grads(self, params: list[torch.Tensor]) -> None:
        with torch.no_grad():
            for p, g in zip(params, self.grads(params), strict=True):
                p.grad = g if self.sign == 1.0 else -g


def least_squares(dtype: torch.dtype, seed: int = 0) -> Problem:
    """min ||A w + b − y||² / n over a random, well-scaled 32 x 6 system."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(32, 6, generator=g, dtype=dtype) / 6**0.5
    y = torch.randn(32, generator=g, dtype=dtype)
    w = torch.randn(6, generator=g, dtype=dtype).requires_grad_()
    b = torch.zeros(1, dtype=dtype).requires_grad_()

    def loss(params):
        w, b = params
        return ((a @ w + b - y) ** 2).mean()

    def grads(params):
        w, b = params
        r = (a @ w + b - y) * (2 / len(y))
        return [a.T @ r, r.sum().reshape(1)]

    return Problem([w, b], loss, grads)


def _mlp(x, y, params) -> Problem:
    def loss(params):
        w1, b1, w2, b2 = params
        return ((torch.tanh(x @ w1.T + b1) @ w2.T + b2 - y) ** 2).mean()

    def grads(params):
        w1, b1, w2, b2 = params
        h = torch.tanh(x @ w1.T + b1)
        d_out = (h @ w2.T + b2 - y) * (2 / y.numel())
        d_pre = (d_out @ w2) * (1 - h * h)
        return [d_pre.T @ x, d_pre.sum(0), d_out.T @ h, d_out.sum(0)]

    return Problem(params, loss, grads)


def mlp(dtype: torch.dtype, seed: int = 0) -> Problem:
    """A 5-8-3 tanh MLP regressing a fixed random batch of 16."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(16, 5, generator=g, dtype=dtype)
    y = torch.randn(16, 3, generator=g, dtype=dtype)
    shapes = [(8, 5), (8,), (3, 8), (3,)]
    params = [(torch.randn(*s, generator=g, dtype=dtype) / s[-1] ** 0.5)
              .requires_grad_() for s in shapes]
    return _mlp(x, y, params)


def non_contiguous(dtype: torch.dtype, seed: int = 0) -> Problem:
    """The MLP with a transposed weight and a strided (gapped) weight."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(16, 5, generator=g, dtype=dtype)
    y = torch.randn(16, 3, generator=g, dtype=dtype)
    w1 = (torch.randn(5, 8, generator=g, dtype=dtype) / 5**0.5).T
    w2 = (torch.randn(3, 16, generator=g, dtype=dtype) / 8**0.5)[:, ::2]
    b1 = torch.zeros(8, dtype=dtype)
    b2 = torch.zeros(3, dtype=dtype)
    params = [t.detach().requires_grad_() for t in (w1, b1, w2, b2)]
    return _mlp(x, y, params)


PROBLEMS: dict[str, Callable[..., Problem]] = {
    "least_squares": least_squares,
    "mlp": mlp,
}


def clone_params(params: list[torch.Tensor]) -> list[torch.Tensor]:
    """Independent copies with the same values and strides."""
    copies = []
    for p in params:
        c = torch.empty_strided(p.shape, p.stride(), dtype=p.dtype)
        c.copy_(p.detach())
        copies.append(c.requires_grad_())
    return copies


def max_rel_err(ours: list[torch.Tensor], theirs: list[torch.Tensor]) -> float:
    """Largest element-wise |a − b| / max(|b|, 1e-8) over all tensors."""
    worst = 0.0
    for a, b in zip(ours, theirs, strict=True):
        err = (a.detach() - b.detach()).abs() / b.detach().abs().clamp_min(1e-8)
        worst = max(worst, err.max().item())
    return worst


@dataclass(frozen=True)
class Convergence:
    """Sensible settings under which an optimizer must reach a minimum."""

    hparams: dict[str, Any]
    steps: int
    cosine: bool = False  # anneal lr to 0 over the run


# Rosenbrock f(a, b) = (1 − a)² + 100 (b − a²)² from (−1.2, 1); minimum at (1, 1).
ROSENBROCK: dict[str, Convergence] = {
    "sgd": Convergence(dict(lr=1.9e-3), 6000),
    "momentum": Convergence(dict(lr=1e-3), 3000),
    "nesterov": Convergence(dict(lr=1e-3), 3000),
    "adagrad": Convergence(dict(lr=0.5), 6000),
    "rmsprop": Convergence(dict(lr=1e-3, momentum=0.9), 3000),
    "adam": Convergence(dict(lr=5e-2), 3000, cosine=True),
    "adamw": Convergence(dict(lr=5e-2, weight_decay=0.0), 3000, cosine=True),
}

# Quadratic f(x) = ½ xᵀ H x − cᵀ x with H = diag(1 … 10) in 10 dimensions from 1.
QUADRATIC: dict[str, Convergence] = {
    "sgd": Convergence(dict(lr=0.15), 1000),
    "momentum": Convergence(dict(lr=0.05), 1000),
    "nesterov": Convergence(dict(lr=0.05), 1000),
    "adagrad": Convergence(dict(lr=0.5), 1000),
    "rmsprop": Convergence(dict(lr=1e-2), 1000, cosine=True),
    "adam": Convergence(dict(lr=5e-2), 1000),
    "adamw": Convergence(dict(lr=5e-2, weight_decay=0.0), 1000),
}


def through_a_file(state_dict: dict[str, Any]) -> dict[str, Any]:
    """``state_dict`` saved and loaded as a checkpoint would be: a copy of every
    tensor (torch's load_state_dict keeps the very tensors it is given)."""
    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)
