"""The instruments: what a requested step records, and how it is summarised.

:class:`GroupStats` collects one param group's statistics while its step runs, from
what the step already has in hand; :func:`assemble` joins the groups into the
:class:`StepStats` that ``opt.last_stats`` holds (fields as in
``docs/architecture.md``). Nothing here reads a value back to the host.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

# Quantiles of the element-wise effective learning rate come from a fixed strided
# sample of at most this many elements per parameter tensor (exact below it); the
# mean, min and max are always exact. See ``NOTE(sampled-quantiles)`` below. (512:
# on CPU, sorting rows longer than that takes a path about 30 times slower.)
QUANTILE_SAMPLE = 512


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

    def __init__(
        self,
        index: int,
        params: list[Tensor],
        work: Callable[[list[Tensor]], list[Tensor]] | None = None,
        *,
        param_norm: bool = True,
    ) -> None:
        self.index = index
        self.params = params
        # One work tensor per parameter for a temporary of its size (the
        # optimizer's buffers kept between steps); else fresh tensors.
        self._work = work or (lambda ts: [torch.empty_like(t) for t in ts])
        # Before the update; else the update hands the parameters to tile().
        self.param_norm = _stacked_norms(params) if param_norm else None
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
        change = self._work(self.params)
        for c, d, a in zip(change, direction, lr, strict=True):
            torch.mul(d, a, out=c)
        self.update_norm = self._norms(change)

    def snapshot(self) -> None:
        """Keep a copy of the parameters, for an update that is not one product."""
        self._before = self._work(self.params)
        torch._foreach_copy_(self._before, self.params)

    def update_from_snapshot(self) -> None:
        """The update norm as ``||θ_t − θ_{t-1}||``, after :meth:`snapshot`."""
        torch._foreach_sub_(self._before, self.params)  # θ_{t-1} − θ_t, same norm
        self.update_norm = self._norms(self._before)
        del self._before

    def tile(
        self,
        owners: list[int],
        params: list[Tensor],
        grads: list[Tensor],
        momentum: list[Tensor] | None,
        direction: list[Tensor],
    ) -> None:
        """One tile of an update applied tile by tile (``Optimizer.tiles``).

        Pieces of the parameters before the update, the gradient, the momentum
        buffer and the direction; ``owners[k]`` is the tensor piece k belongs to.
        Their norms are taken while the tile is in the cache; :meth:`finish_tiles`
        joins the pieces of each tensor.
        """
        pieces = self.__dict__.setdefault("_pieces", {})
        self.__dict__.setdefault("_owners", []).extend(owners)
        taken: dict[int, list[Tensor]] = {}
        roles = {"param": params, "grad": grads, "momentum": momentum,
                 "direction": direction}
        for role, tensors in roles.items():
            if tensors is None:
                continue
            if id(tensors) not in taken:
                taken[id(tensors)] = list(torch._foreach_norm(tensors))
            pieces.setdefault(role, []).extend(taken[id(tensors)])

    def finish_tiles(self, lr: float) -> None:
        """Per-tensor norms from the tiles' pieces; the applied change is lr * d."""
        owners = self.__dict__.pop("_owners")
        pieces = self.__dict__.pop("_pieces")
        n = len(self.params)
        split = owners != list(range(n))
        index = torch.tensor(owners, device=self.params[0].device) if split else None

        def join(parts: list[Tensor]) -> Tensor:
            norms = _stack_on_first_device(parts)
            if not split:
                return norms
            wide = norms.double() if norms.device.type == "cpu" else norms
            total = torch.zeros(n, dtype=wide.dtype, device=wide.device)
            return total.index_add_(0, index, wide * wide).sqrt().to(norms.dtype)

        # Roles that shared a piece list (heavy ball: b is d) share the norms.
        cache: dict[tuple[int, ...], Tensor] = {}

        def norms_of(role: str) -> Tensor:
            key = tuple(id(t) for t in pieces[role])
            if key not in cache:
                cache[key] = join(pieces[role])
            return cache[key]

        self.param_norm = norms_of("param")
        self.grad_norm = norms_of("grad")
        if "momentum" in pieces:
            self.momentum_norm = norms_of("momentum")
        self.update_norm = norms_of("direction") * lr

    def _norms(self, tensors: list[Tensor]) -> Tensor:
        # The same list is often two things at once (heavy ball: the buffer is the
        # direction), so each list's norms are taken once. The cache holds the list
        # itself, so its id cannot be reused while the cache lives.
        key = id(tensors)
        if key not in self._norms_of:
            self._norms_of[key] = (tensors, _stacked_norms(tensors))
        return self._norms_of[key][1]


def _stacked_norms(tensors: list[Tensor]) -> Tensor:
    return _stack_on_first_device(torch._foreach_norm(tensors))


def _stack_on_first_device(norms: Sequence[Tensor]) -> Tensor:
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


def assemble(groups: list[GroupStats]) -> StepStats | None:
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
