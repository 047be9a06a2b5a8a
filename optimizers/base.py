"""What every optimlab optimizer shares: validation, the step loop, the instruments.

A subclass states its hyperparameter rules (``rules``) and writes one method,
``_update_group``, that applies its update rule to the parameters of one param
group with multi-tensor (``torch._foreach_*``) operations. Everything else, the
closure, skipping parameters without a gradient, refusing sparse gradients,
re-checking hyperparameters that were changed between steps and recording
statistics, lives here once.

Instruments: ``opt.request_stats()`` makes the next ``step()`` fill ``opt.last_stats``
with a :class:`StepStats`. A step that was not requested computes nothing extra. A
requested one keeps every statistic as a tensor on the parameters' device and never
synchronises with the host; the reader converts them once (``.tolist()``).
"""

from __future__ import annotations

import difflib
import math
import numbers
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeAlias

import torch
from torch import Tensor

Params: TypeAlias = Iterable[Tensor] | Iterable[dict[str, Any]]
Closure: TypeAlias = Callable[[], Tensor | float]
Betas: TypeAlias = tuple[float, float]

# Quantiles of the element-wise effective learning rate come from a fixed strided
# sample of at most this many elements per parameter tensor (exact below it); the
# mean, min and max are always exact. See ``NOTE(sampled-quantiles)`` below. (512:
# on CPU, sorting rows longer than that takes a path about 30 times slower.)
QUANTILE_SAMPLE = 512

_SUMMARY_KEYS = ("mean", "median", "p5", "p95", "min", "max")


# --------------------------------------------------------------------------------------
# Validation


@dataclass(frozen=True)
class Interval:
    """A range of real numbers, printed the way the error messages show it."""

    low: float
    high: float = math.inf
    low_closed: bool = True
    high_closed: bool = False

    def __contains__(self, value: float) -> bool:
        above = value >= self.low if self.low_closed else value > self.low
        below = value <= self.high if self.high_closed else value < self.high
        return above and below  # False for NaN

    def __str__(self) -> str:
        left = "[" if self.low_closed else "("
        right = "]" if self.high_closed and math.isfinite(self.high) else ")"
        high = "inf" if math.isinf(self.high) else f"{self.high:g}"
        return f"{left}{self.low:g}, {high}{right}"


NON_NEGATIVE = Interval(0.0)
UNIT = Interval(0.0, 1.0)  # [0, 1)
CLOSED_UNIT = Interval(0.0, 1.0, high_closed=True)  # [0, 1]
FLAG = "flag"  # rule for a bool hyperparameter


def hyperparameter_error(owner: str, name: str, value: Any, allowed: str) -> ValueError:
    """The one message shape for a bad hyperparameter: field, value, what is allowed."""
    return ValueError(f"{owner}: {name}={value!r} is invalid; allowed: {allowed}")


def check_hyperparameter(owner: str, name: str, value: Any, rule: Any) -> None:
    """Raise ``ValueError`` naming ``name``, ``value`` and the allowed range."""
    if rule == FLAG:
        if not isinstance(value, bool):
            raise hyperparameter_error(owner, name, value, "True or False")
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise hyperparameter_error(owner, name, value, f"a real number in {rule}")
    if value not in rule:
        raise hyperparameter_error(owner, name, value, f"a number in {rule}")


def reject_unknown(
    owner: str, unknown: Mapping[str, Any], known: Iterable[str]
) -> None:
    """Raise ``ValueError`` for keyword arguments the optimizer does not take."""
    if not unknown:
        return
    known = sorted(known)
    name = sorted(unknown)[0]
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ValueError(
        f"{owner}: unknown hyperparameter {name!r}{hint}; "
        f"accepted: {', '.join(known)}"
    )


# --------------------------------------------------------------------------------------
# Statistics


@dataclass(frozen=True)
class StepStats:
    """What one requested step recorded, one entry per updated parameter tensor.

    Every tensor lives on the parameters' device (the first parameter's when a
    model spans devices). See ``docs/architecture.md`` for the meaning of each field.
    """

    params: list[Tensor]
    group_index: list[int]
    grad_norm: Tensor
    update_norm: Tensor
    param_norm: Tensor
    momentum_norm: Tensor | None
    effective_lr: dict[str, Tensor]
    effective_lr_values: list[Tensor] | None


class GroupStats:
    """Collects one param group's statistics while its step runs.

    The update code hands over what it already has: the gradient it used, the
    momentum buffer, the direction it moved in, and either the scalar learning rate
    (SGD family) or the denominator ``sqrt(v_hat) + eps`` (adaptive methods). Each
    list's norms are taken once, even when one list plays two parts.
    """

    def __init__(self, index: int, params: list[Tensor]) -> None:
        self.index = index
        self.params = params
        self.param_norm = _stacked_norms(params)  # before the update
        self.grad_norm: Tensor | None = None
        self.update_norm: Tensor | None = None
        self.momentum_norm: Tensor | None = None
        self.effective_lr: dict[str, Tensor] = {}
        self.effective_lr_values: list[Tensor] | None = None
        self._norms_of: dict[int, tuple[list[Tensor], Tensor]] = {}

    def gradient(self, grads: list[Tensor]) -> None:
        """The gradient the step used, after weight decay."""
        self.grad_norm = self._norms(grads)

    def momentum(self, buffers: list[Tensor]) -> None:
        """The momentum buffer (first moment for Adam) after this step's update."""
        self.momentum_norm = self._norms(buffers)

    def update(self, direction: list[Tensor], scale: float) -> None:
        """The applied change is ``scale * direction``."""
        self.update_norm = self._norms(direction) * scale

    def scalar_lr(self, lr: float, steady_state: float) -> None:
        """SGD family: ``lr`` and its steady-state value under momentum."""
        n, device, dtype = len(self.params), self.params[0].device, _dtype(self.params)
        self.effective_lr = {
            "lr": torch.full((n,), lr, device=device, dtype=dtype),
            "steady_state": torch.full((n,), steady_state, device=device, dtype=dtype),
        }

    def elementwise_lr(
        self, lr_t: float | list[float], denom: list[Tensor]
    ) -> list[Tensor]:
        """Adaptive methods: record and return the element-wise ``lr_t / denom``.

        ``denom`` is the step's own ``sqrt(v_hat) + eps``, which the step no longer
        needs: it becomes the effective learning rate in place (no new memory).
        ``lr_t`` is one number per tensor where it differs between tensors.
        """
        torch._foreach_reciprocal_(denom)
        torch._foreach_mul_(denom, lr_t)
        self.effective_lr_values = denom
        self.effective_lr = summarise(denom)
        return denom

    def elementwise_update(self, direction: list[Tensor], lr: list[Tensor]) -> None:
        """The applied change is ``lr * direction`` element by element."""
        self.update_norm = self._norms(torch._foreach_mul(direction, lr))

    def snapshot(self) -> None:
        """Keep a copy of the parameters, for an update that is not one product."""
        self._before = torch._foreach_clone(self.params)

    def update_from_snapshot(self) -> None:
        """The update norm as ``||θ_t − θ_{t-1}||``, after :meth:`snapshot`."""
        self.update_norm = self._norms(torch._foreach_sub(self.params, self._before))
        del self._before

    def _norms(self, tensors: list[Tensor]) -> Tensor:
        # The same list is often two things at once (heavy ball: the buffer is the
        # direction), so each list's norms are taken once. The cache holds the list
        # itself, so its id cannot be reused while the cache lives.
        key = id(tensors)
        if key not in self._norms_of:
            self._norms_of[key] = (tensors, _stacked_norms(tensors))
        return self._norms_of[key][1]


def _stacked_norms(tensors: list[Tensor]) -> Tensor:
    norms = torch._foreach_norm(tensors)
    device = norms[0].device
    return torch.stack([n if n.device == device else n.to(device) for n in norms])


def _dtype(tensors: Sequence[Tensor]) -> torch.dtype:
    return tensors[0].dtype if tensors[0].is_floating_point() else torch.float32


def summarise(values: list[Tensor]) -> dict[str, Tensor]:
    """Mean, median, 5th/95th percentile, min and max of each tensor, as vectors.

    NOTE(sampled-quantiles): mean, min and max are exact. The three quantiles are
    exact (linear interpolation, as ``torch.quantile``) for tensors of at most
    ``QUANTILE_SAMPLE`` elements; larger tensors use a fixed sample of that many
    elements taken with a prime stride (prime, so that it does not line up with the
    tensor's inner dimensions), because sorting every element would cost many times
    the step itself.
    """
    # (Separate amin and amax: on CPU they are vectorised and aminmax is not.)
    mean = torch.stack([v.mean() for v in values])
    low = torch.stack([v.amin() for v in values])
    high = torch.stack([v.amax() for v in values])
    samples = [_sample(v.reshape(-1)) for v in values]
    # Pad every sample to one width with +inf (sorted last, never selected), sort
    # all rows at once, then interpolate at positions fixed by the sample sizes.
    padded = torch.nn.utils.rnn.pad_sequence(samples, batch_first=True,
                                             padding_value=math.inf)
    ordered = padded.sort(dim=1).values
    lower, upper, weight = _quantile_positions(
        tuple(s.numel() for s in samples), padded.device, padded.dtype
    )
    below = ordered.gather(1, lower)
    median, p5, p95 = (below + (ordered.gather(1, upper) - below) * weight).T
    return {"mean": mean, "median": median, "p5": p5, "p95": p95, "min": low,
            "max": high}


_QUANTILE_LEVELS = (0.5, 0.05, 0.95)
_POSITIONS: dict[tuple, tuple[Tensor, Tensor, Tensor]] = {}


def _quantile_positions(
    sizes: tuple[int, ...], device: torch.device, dtype: torch.dtype
) -> tuple[Tensor, Tensor, Tensor]:
    """Gather indices and weights of the quantile levels for rows of these sizes.

    Cached per layout, so the copy to the device happens once, not every step.
    """
    key = (sizes, device, dtype)
    if key not in _POSITIONS:
        lower, upper, weight = [], [], []
        for n in sizes:
            rows = [(n - 1) * q for q in _QUANTILE_LEVELS]
            lower.append([math.floor(r) for r in rows])
            upper.append([math.ceil(r) for r in rows])
            weight.append([r - math.floor(r) for r in rows])
        _POSITIONS[key] = (
            torch.tensor(lower, device=device),
            torch.tensor(upper, device=device),
            torch.tensor(weight, device=device, dtype=dtype),
        )
    return _POSITIONS[key]


def _sample(flat: Tensor) -> Tensor:
    n = flat.numel()
    if n <= QUANTILE_SAMPLE:
        return flat
    return flat[:: _prime_stride(n)][:QUANTILE_SAMPLE]


_STRIDES: dict[int, int] = {}


def _prime_stride(n: int) -> int:
    """Largest prime p with p * (QUANTILE_SAMPLE - 1) < n (so the sample is full)."""
    if n not in _STRIDES:
        p = max(2, (n - 1) // (QUANTILE_SAMPLE - 1))
        while p > 2 and any(p % d == 0 for d in range(2, math.isqrt(p) + 1)):
            p -= 1
        _STRIDES[n] = p
    return _STRIDES[n]


def _assemble(groups: list[GroupStats]) -> StepStats | None:
    if not groups:
        return None
    device = groups[0].params[0].device

    def cat(parts: list[Tensor | None]) -> Tensor:
        if len(parts) == 1 and parts[0] is not None:
            return parts[0]
        return torch.cat([
            torch.full((len(g.params),), math.nan, device=device) if part is None
            else part.to(device)
            for part, g in zip(parts, groups, strict=True)
        ])

    keys = list(dict.fromkeys(k for g in groups for k in g.effective_lr))
    has_momentum = any(g.momentum_norm is not None for g in groups)
    values = [v for g in groups for v in (g.effective_lr_values or [])]
    return StepStats(
        params=[p for g in groups for p in g.params],
        group_index=[g.index for g in groups for _ in g.params],
        grad_norm=cat([g.grad_norm for g in groups]),
        update_norm=cat([g.update_norm for g in groups]),
        param_norm=cat([g.param_norm for g in groups]),
        momentum_norm=cat([g.momentum_norm for g in groups]) if has_momentum else None,
        effective_lr={k: cat([g.effective_lr.get(k) for g in groups]) for k in keys},
        effective_lr_values=values or None,
    )


# --------------------------------------------------------------------------------------
# The base class


class Optimizer(torch.optim.Optimizer):
    """A ``torch.optim.Optimizer`` with validated hyperparameters and instruments.

    Subclasses set ``rules`` (hyperparameter name -> :class:`Interval` or ``FLAG``),
    optionally override :meth:`check_group` for rules that tie several
    hyperparameters together, and implement :meth:`_update_group`.
    """

    rules: ClassVar[dict[str, Any]] = {}

    def __init__(self, params: Params, defaults: dict[str, Any]) -> None:
        self._stats_requested = False
        self.last_stats: StepStats | None = None
        super().__init__(params, defaults)

    # -- hyperparameters -------------------------------------------------------------

    def check_group(self, group: Mapping[str, Any]) -> None:
        """Raise ``ValueError`` if a hyperparameter of ``group`` is out of range."""
        owner = type(self).__name__
        for name, rule in self.rules.items():
            check_hyperparameter(owner, name, group[name], rule)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """``torch.optim.Optimizer.add_param_group`` plus the hyperparameter checks."""
        self.check_group({**self.defaults, **param_group})
        params = param_group["params"]
        params = [params] if isinstance(params, Tensor) else list(params)
        for p in params:
            if isinstance(p, Tensor) and p.is_complex():
                raise ValueError(
                    f"{type(self).__name__}: complex parameters are not supported "
                    f"(got a {p.dtype} tensor of shape {tuple(p.shape)})"
                )
        super().add_param_group(param_group)

    def scratch(self, params: list[Tensor]) -> list[Tensor]:
        """One work tensor per parameter, kept between steps (not part of the state).

        Its contents are undefined on entry; an update writes a temporary into it
        with ``out=`` instead of allocating a model-sized tensor every step.
        """
        buffers = self.__dict__.setdefault("_scratch", {})
        work = []
        for p in params:
            buffer = buffers.get(p)
            if buffer is None or buffer.shape != p.shape or buffer.dtype != p.dtype:
                buffer = buffers[p] = torch.empty_like(p)
            work.append(buffer)
        return work

    # -- instruments -----------------------------------------------------------------

    def request_stats(self) -> None:
        """Make the next :meth:`step` record a :class:`StepStats` in ``last_stats``."""
        self._stats_requested = True

    # -- the step --------------------------------------------------------------------

    @torch.no_grad()
    def step(self, closure: Closure | None = None) -> Any:
        """Apply one update to every parameter that has a gradient.

        ``closure`` (optional) re-evaluates the model and returns the loss; it runs
        with gradients enabled before the update, and its loss is returned.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        record = self._stats_requested
        self._stats_requested = False
        recorded: list[GroupStats] = []
        for index, group in enumerate(self.param_groups):
            params, grads = self._with_grad(index, group)
            if not params:
                continue
            self.check_group(group)
            if group.get("maximize", False):
                grads = torch._foreach_neg(grads)
            stats = GroupStats(index, params) if record else None
            states = [self.state[p] for p in params]
            self._update_group(group, params, grads, states, stats)
            if stats is not None:
                recorded.append(stats)
        if record:
            self.last_stats = _assemble(recorded)
        return loss

    def _with_grad(self, index: int, group: dict[str, Any]) -> tuple[list, list]:
        params, grads = [], []
        for position, p in enumerate(group["params"]):
            grad = p.grad
            if grad is None:
                continue
            if grad.is_sparse:
                raise RuntimeError(
                    f"{type(self).__name__} does not support sparse gradients "
                    f"(param group {index}, parameter {position}, shape "
                    f"{tuple(p.shape)}); use dense gradients, e.g. "
                    "nn.Embedding(sparse=False), or torch.optim.SparseAdam"
                )
            params.append(p)
            grads.append(grad)
        return params, grads

    def _update_group(
        self,
        group: dict[str, Any],
        params: list[Tensor],
        grads: list[Tensor],
        states: list[dict[str, Any]],
        stats: GroupStats | None,
    ) -> None:
        """Apply the update rule to one group (``grads`` must not be modified)."""
        raise NotImplementedError


def zeros_like(p: Tensor) -> Tensor:
    """A zero state tensor shaped, strided and placed like ``p``."""
    return torch.zeros_like(p, memory_format=torch.preserve_format)
