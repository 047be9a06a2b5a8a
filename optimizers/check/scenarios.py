"""The small problems and the scenarios every submission is put through.

The same code runs the submission (in the child process), the reference and every
catalogue entry (in the parent), so all three see bit-identical inputs. A scenario
is plain data (JSON-safe) so the parent can hand it to the child; running it gives
a JSON-safe record of float64 parameter positions, never an object to unpickle.

Problems (all float64, fixed data):

- ``mlp``: ``loss = mean((tanh(X W1^T + b1) W2^T + b2 - Y)^2)`` with ``W1, W2`` of
  the same shape and ``b1, b2`` of the same shape (so that state wrongly shared
  between parameters of one shape runs instead of crashing), plus ``unused``, a
  parameter that never receives a gradient.
- ``quadratic``: a convex separable quadratic plus a coupling term; its minimum is
  known, so the loss must fall.
- ``handset``: one tensor whose gradients and values are set by hand: a short
  hand-chosen gradient history fixes the optimizer state, then the parameter and
  its gradient are overwritten with hand-set values spanning eight orders of
  magnitude (zeros and sign changes included) and one step is taken.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import cache
from typing import Any

import torch

Settings = dict[str, Any]
OptimizerFactory = Callable[[list[dict[str, Any]], Settings], torch.optim.Optimizer]

#: Parameter names of each problem, in the order they are flattened.
PARAM_NAMES: dict[str, tuple[str, ...]] = {
    "mlp": ("W1", "b1", "W2", "b2", "unused"),
    "quadratic": ("x", "y"),
    "handset": ("p",),
}

# Group layouts: which parameters go to which param group.
_GROUPS: dict[str, dict[int, tuple[tuple[str, ...], ...]]] = {
    "mlp": {
        1: (("W1", "b1", "W2", "b2", "unused"),),
        2: (("W1", "b1", "unused"), ("W2", "b2")),
    },
    "quadratic": {1: (("x", "y"),), 2: (("x",), ("y",))},
    "handset": {1: (("p",),)},
}

# Hand-set gradient history, then the hand-set value and gradient of the last step.
_HANDSET_HISTORY = (
    (1e-6, -2e-3, 0.5, -3.0, 0.0, 40.0),
    (-1e-6, 1e-3, 0.25, 3.0, 0.0, -20.0),
    (2e-6, -4e-3, -0.5, 1.0, 1e-8, 10.0),
)
_HANDSET_VALUE = (0.3, -1.2, 2.0, 0.0, -0.7, 5.0)
_HANDSET_GRAD = (5e-7, 3e-3, -1.0, 2.0, -1e-8, 8.0)


@dataclass(frozen=True)
class Scenario:
    """One run of an optimizer on a problem.

    ``settings`` holds one hyperparameter dict per param group: the first is passed
    as the constructor's keyword arguments, the others are set on their group.
    """

    name: str
    prop: str  # the property whose reference comparison this run feeds
    problem: str  # "mlp" | "quadratic" | "handset"
    settings: tuple[Settings, ...]
    steps: int
    lr_factor: float | None = None  # multiply every group's lr by this after a step
    change_at: int | None = None  # after this many steps, set ``change`` on groups
    change: Settings = field(default_factory=dict)
    intermittent: bool = False  # b2 gets no gradient on odd steps
    reload_at: int | None = None  # state_dict round trip after this many steps
    notes: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Scenario:
        data = dict(data)
        data["settings"] = tuple(tuples(s) for s in data["settings"])
        data["change"] = tuples(data.get("change", {}))
        return cls(**data)


def tuples(settings: Settings) -> Settings:
    """JSON turns tuples (betas) into lists; turn them back."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in settings.items()}


def param_layout(problem: str) -> list[tuple[str, tuple[int, ...]]]:
    """(name, shape) of every parameter of ``problem`` in flattening order."""
    params = _initial_params(problem)
    return [(name, tuple(params[name].shape)) for name in PARAM_NAMES[problem]]


def _initial_params(problem: str) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(1234)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen, dtype=torch.float64)

    if problem == "mlp":
        return {
            "W1": randn(4, 4) * 0.7,
            "b1": randn(4) * 0.1,
            "W2": randn(4, 4) * 0.7,
            "b2": randn(4) * 0.1,
            "unused": randn(3),
        }
    if problem == "quadratic":
        return {"x": randn(5) * 2.0, "y": randn(5) * 2.0}
    if problem == "handset":
        return {
            "p": torch.tensor([1.0, -1.0, 0.5, 2.0, -0.25, 3.0], dtype=torch.float64)
        }
    raise ValueError(
        f"problem: unknown value {problem!r}; allowed: {sorted(PARAM_NAMES)}"
    )


def _loss_fn(problem: str) -> Callable[[dict[str, torch.Tensor], bool], torch.Tensor]:
    gen = torch.Generator().manual_seed(99)
    if problem == "mlp":
        x = torch.randn(16, 4, generator=gen, dtype=torch.float64)
        y = torch.randn(16, 4, generator=gen, dtype=torch.float64)

        def mlp(p: dict[str, torch.Tensor], with_b2: bool) -> torch.Tensor:
            out = torch.tanh(x @ p["W1"].T + p["b1"]) @ p["W2"].T
            if with_b2:
                out = out + p["b2"]
            return ((out - y) ** 2).mean()

        return mlp
    if problem == "quadratic":
        h = torch.linspace(0.5, 3.0, 5, dtype=torch.float64)
        c = torch.randn(5, generator=gen, dtype=torch.float64)

        def quadratic(p: dict[str, torch.Tensor], with_b2: bool) -> torch.Tensor:
            x, y = p["x"], p["y"]
            coupling = 0.25 * ((x + y) ** 2).sum()
            return 0.5 * (h * x**2).sum() + 0.5 * (h * (y - c) ** 2).sum() + coupling

        return quadratic
    raise ValueError(f"problem: no loss for {problem!r}")


def _flat(params: dict[str, torch.Tensor], problem: str) -> list[float]:
    """The parameters as one float64 list; raises ``InvalidRun`` when the optimizer
    left one of them sparse, on another device, of another dtype or shape."""
    with torch.no_grad():
        parts = []
        for name, shape in _layout(problem):
            tensor = params[name].detach()
            kind = tensor_kind(tensor, shape)
            if kind is not None:
                raise InvalidRun(f"step() turned parameter {name} into {kind}")
            parts.append(tensor.reshape(-1))
        return torch.cat(parts).tolist()


@cache
def _layout(problem: str) -> tuple[tuple[str, tuple[int, ...]], ...]:
    return tuple(param_layout(problem))


def tensor_kind(
    tensor: torch.Tensor, shape: tuple[int, ...], dtype: torch.dtype = torch.float64
) -> str | None:
    """How ``tensor`` differs from a dense CPU tensor of ``shape`` and ``dtype``
    (``"a sparse tensor"``, ``"a float32 tensor"``...); ``None`` when it does not.
    The grader compares only tensors for which this is ``None``."""
    if tensor.layout != torch.strided:
        layout = str(tensor.layout).removeprefix("torch.")
        return "a sparse tensor" if "sparse" in layout else f"a {layout} tensor"
    if tensor.device.type != "cpu":
        return f"a tensor on {tensor.device}"
    if tensor.dtype != dtype:
        return f"a {str(tensor.dtype).removeprefix('torch.')} tensor"
    if tuple(tensor.shape) != tuple(shape):
        return f"a tensor of shape {tuple(tensor.shape)} instead of {tuple(shape)}"
    return None


def _make(
    factory: OptimizerFactory, scenario: Scenario, params: dict[str, torch.Tensor]
) -> torch.optim.Optimizer:
    layout = _GROUPS[scenario.problem][len(scenario.settings)]
    for extra in scenario.settings[1:]:
        # torch.optim keeps any key of a param group, so a setting the class does
        # not know would be silently ignored there: ask its constructor first.
        probe = torch.zeros(1, dtype=torch.float64, requires_grad=True)
        factory([{"params": [probe]}], {**scenario.settings[0], **extra})
    groups: list[dict[str, Any]] = []
    for index, names in enumerate(layout):
        group: dict[str, Any] = {"params": [params[n] for n in names]}
        if index > 0:
            group.update(scenario.settings[index])
        groups.append(group)
    return factory(groups, dict(scenario.settings[0]))


class ConstructionError(Exception):
    """The optimizer could not be built with a scenario's hyperparameters."""


class InvalidRun(Exception):
    """The optimizer left a parameter the grader cannot read as a float64 tensor of
    its shape (said how): the submission's finding, not the grader's error."""


def run_scenario(factory: OptimizerFactory, scenario: Scenario) -> dict[str, Any]:
    """Run ``scenario``; return a JSON-safe record.

    Record keys: ``positions`` (flattened parameters before the first step and after
    every step), ``losses`` (before each step), ``grad_modified`` (largest change a
    step made to any ``.grad``), ``nograd_moved`` (largest change a step made to a
    parameter that had no gradient) and, for a round trip, ``reloaded`` (positions
    of the restored optimizer's run after ``reload_at``).
    Raises ``ConstructionError`` when the optimizer cannot be built.
    """
    if scenario.problem == "handset":
        return _run_handset(factory, scenario)
    params = {
        n: t.clone().requires_grad_(True)
        for n, t in _initial_params(scenario.problem).items()
    }
    loss_fn = _loss_fn(scenario.problem)
    try:
        opt = _make(factory, scenario, params)
    except Exception as error:  # noqa: BLE001 - reported, not hidden
        raise ConstructionError(f"{type(error).__name__}: {error}") from error

    record: dict[str, Any] = {
        "positions": [_flat(params, scenario.problem)],
        "losses": [],
        "grad_modified": 0.0,
        "nograd_moved": 0.0,
    }
    runs = [(opt, params, record["positions"])]
    for step in range(scenario.steps):
        if scenario.reload_at is not None and step == scenario.reload_at:
            runs.append(_reloaded(factory, scenario, opt, params, record))
        for index, (optimizer, p, positions) in enumerate(runs):
            with_b2 = not (scenario.intermittent and step % 2 == 1)
            loss = _step(optimizer, p, loss_fn, with_b2, record)
            positions.append(_flat(p, scenario.problem))
            if index == 0:
                record["losses"].append(loss)
            if scenario.lr_factor is not None:
                for group in optimizer.param_groups:
                    group["lr"] = group["lr"] * scenario.lr_factor
            if scenario.change_at is not None and step + 1 == scenario.change_at:
                for group in optimizer.param_groups:
                    group.update(scenario.change)
    return record


def _reloaded(
    factory: OptimizerFactory,
    scenario: Scenario,
    opt: torch.optim.Optimizer,
    params: dict[str, torch.Tensor],
    record: dict[str, Any],
) -> tuple[torch.optim.Optimizer, dict[str, torch.Tensor], list[list[float]]]:
    """A fresh optimizer on copies of the parameters, restored from ``opt``."""
    saved = copy.deepcopy(opt.state_dict())
    twin = {n: t.detach().clone().requires_grad_(True) for n, t in params.items()}
    restored = _make(factory, scenario, twin)
    restored.load_state_dict(saved)
    record["reloaded"] = []
    return restored, twin, record["reloaded"]


def _step(
    opt: torch.optim.Optimizer,
    params: dict[str, torch.Tensor],
    loss_fn: Callable[[dict[str, torch.Tensor], bool], torch.Tensor],
    with_b2: bool,
    record: dict[str, Any],
) -> float:
    for p in params.values():
        p.grad = None
    loss = loss_fn(params, with_b2)
    loss.backward()
    grads_before = {
        n: (p.grad, p.grad.clone()) for n, p in params.items() if p.grad is not None
    }
    nograd_before = {n: p.detach().clone() for n, p in params.items() if p.grad is None}
    opt.step()
    _note_changes(params, grads_before, nograd_before, record)
    return float(loss.detach())


def _note_changes(
    params: dict[str, torch.Tensor],
    grads_before: dict[str, tuple[torch.Tensor, torch.Tensor]],
    nograd_before: dict[str, torch.Tensor],
    record: dict[str, Any],
) -> None:
    """Record what ``step()`` did to the gradients (``grads_before``: the tensor
    that was ``.grad`` and a copy of it) and to the parameters without one.

    A ``.grad`` changed in place adds to ``grad_modified``; one replaced by another
    object (``None``, a sparse tensor, other values) is described, once, in
    ``grad_replaced``; a replacement equal in kind and value is harmless.
    """
    for name, (original, before) in grads_before.items():
        after = params[name].grad
        if after is original:
            change = _max_change(before, after)
            record["grad_modified"] = max(record["grad_modified"], change)
            continue
        how = _replacement(before, after)
        if how is not None and not record.get("grad_replaced"):
            record["grad_replaced"] = f"{name}: {how}"
    for name, before in nograd_before.items():
        change = _max_change(before, params[name].detach())
        record["nograd_moved"] = max(record["nograd_moved"], change)


def _replacement(before: torch.Tensor, after: torch.Tensor | None) -> str | None:
    """How a new ``.grad`` differs from the old one; ``None`` when it does not."""
    if after is None:
        return "with None"
    kind = tensor_kind(after, tuple(before.shape), before.dtype)
    if kind is not None:
        return f"with {kind}"
    change = _max_change(before, after)
    return None if change == 0.0 else f"with other values (by up to {change:.3g})"


def _max_change(before: torch.Tensor, after: torch.Tensor) -> float:
    """Largest change from ``before`` to ``after`` (``inf`` when they cannot be
    compared: another shape, layout or device)."""
    if tensor_kind(after, tuple(before.shape), after.dtype) is not None:
        return math.inf
    diff = (after.detach().to(torch.float64) - before.to(torch.float64)).abs()
    same = (after.detach() == before) | (after.detach().isnan() & before.isnan())
    diff = torch.where(same, torch.zeros_like(diff), diff)
    value = float(diff.max()) if diff.numel() else 0.0
    return math.inf if math.isnan(value) else value


def _run_handset(factory: OptimizerFactory, scenario: Scenario) -> dict[str, Any]:
    """A hand-chosen gradient history, then one step from hand-set values.

    With ``notes["set_state"]`` the optimizer state itself is set by hand before
    the last step: the reference optimizer of ``notes["algorithm"]`` runs the same
    history, each of its state entries is paired with the submission's entry that
    holds the same value (whatever its key), and both are overwritten with the
    same hand-chosen values. Raises ``NotApplicable`` when the pairing fails.
    """
    p = _initial_params("handset")["p"].clone().requires_grad_(True)
    params = {"p": p}
    try:
        opt = _make(factory, scenario, params)
    except Exception as error:  # noqa: BLE001 - reported, not hidden
        raise ConstructionError(f"{type(error).__name__}: {error}") from error
    twin = None
    if scenario.notes.get("set_state"):
        from optimizers.check.reference import reference_factory

        twin_p = _initial_params("handset")["p"].clone().requires_grad_(True)
        reference = reference_factory(scenario.notes["algorithm"])
        twin = (_make(reference, scenario, {"p": twin_p}), twin_p)
    record: dict[str, Any] = {
        "positions": [_flat(params, "handset")],
        "losses": [],
        "grad_modified": 0.0,
        "nograd_moved": 0.0,
    }
    grads = [*_HANDSET_HISTORY, _HANDSET_GRAD]
    for step, grad in enumerate(grads):
        if step == len(grads) - 1:
            if twin is not None:
                record["state_keys"] = _hand_set_state(opt, p, *twin)
            with torch.no_grad():
                p.copy_(torch.tensor(_HANDSET_VALUE, dtype=torch.float64))
            record["positions"].append(_flat(params, "handset"))
        elif twin is not None:
            twin[1].grad = torch.tensor(grad, dtype=torch.float64)
            twin[0].step()
        p.grad = torch.tensor(grad, dtype=torch.float64)
        before = {"p": (p.grad, p.grad.clone())}
        opt.step()
        _note_changes(params, before, {}, record)
        record["positions"].append(_flat(params, "handset"))
    return record


class NotApplicable(Exception):
    """A scenario that cannot be run on this submission (said why)."""


def _hand_set_state(
    opt: torch.optim.Optimizer,
    p: torch.Tensor,
    reference: torch.optim.Optimizer,
    reference_p: torch.Tensor,
) -> dict[str, str]:
    """Pair state entries by value, then set both sides by hand; key -> key.

    A reference counter without a partner is left alone on both sides (the
    submission may count steps elsewhere); a reference tensor without one makes
    the scenario not applicable.
    """
    mine = opt.state.get(p, {}) if isinstance(opt.state, dict) else {}
    if not isinstance(mine, dict):
        raise NotApplicable(
            f"the submission's state for this parameter is a "
            f"{type(mine).__name__}, not a dict; the state cannot be set by hand"
        )
    theirs = reference.state[reference_p]
    pairs: dict[str, str] = {}
    for key, value in theirs.items():
        if isinstance(value, torch.Tensor) and value.dim() > 0 and not value.any():
            continue  # an unused all-zero buffer: nothing to pair, nothing to set
        partner = next(
            (k for k, v in mine.items() if k not in pairs.values() and _same(v, value)),
            None,
        )
        scalar = not isinstance(value, torch.Tensor) or value.dim() == 0
        if partner is None and scalar:
            continue  # a step counter kept elsewhere: leave both counters as they are
        if partner is None:
            held = ", ".join(repr(k) for k in mine) or "nothing"
            raise NotApplicable(
                f"no entry of the submission's state for this parameter holds the "
                f"value of the reference's {key!r} after the same steps (it holds "
                f"{held}); the state cannot be set by hand"
            )
        pairs[str(key)] = partner
    with torch.no_grad():
        order = [str(k) for k in theirs]  # the reference's own order: stable
        for key, partner in pairs.items():
            hand = _hand_value(order.index(key), theirs[key])
            theirs[key] = _like(hand, theirs[key])
            mine[partner] = _like(hand, mine[partner])
    return {key: str(partner) for key, partner in pairs.items()}


def _same(a: Any, b: Any) -> bool:
    if isinstance(b, torch.Tensor) and b.dim() > 0:
        return (
            isinstance(a, torch.Tensor)
            and tensor_kind(a, tuple(b.shape), a.dtype) is None
            and torch.allclose(a.double(), b.double(), rtol=1e-9, atol=1e-300)
        )
    try:
        return not isinstance(a, bool) and float(a) == float(b)
    except (TypeError, ValueError, RuntimeError):
        return False


def _hand_value(index: int, value: Any) -> Any:
    """Hand-chosen state: 7 for a counter, a fixed pattern for a tensor.

    Tensors that are never negative (second moments, accumulators) get positive
    values; the others get values of both signs.
    """
    if not isinstance(value, torch.Tensor) or value.dim() == 0:
        return 7
    n = value.numel()
    pattern = torch.linspace(0.05, 2.0, n, dtype=torch.float64).roll(index)
    if bool((value < 0).any()):
        signs = torch.tensor([1.0, -1.0], dtype=torch.float64).repeat(n)[:n]
        pattern = pattern * signs
    return pattern.reshape(value.shape)


def _like(hand: Any, old: Any) -> Any:
    if isinstance(old, torch.Tensor):
        if isinstance(hand, torch.Tensor):
            old.copy_(hand.to(old.dtype))
        else:
            old.fill_(hand)
        return old
    return type(old)(hand) if isinstance(old, int | float) else hand
