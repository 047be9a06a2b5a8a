"""What every optimlab optimizer shares: validation, the step loop, the instruments.

A subclass states its hyperparameter rules (``rules``) and writes one method,
``_update_group``, that applies its update rule to the parameters of one param
group with multi-tensor (``torch._foreach_*``) operations. Everything else, the
closure, skipping parameters without a gradient, refusing sparse gradients,
re-checking hyperparameters that were changed between steps and recording
statistics, lives here once.

Instruments: ``opt.request_stats()`` makes the next ``step()`` fill ``opt.last_stats``
with a :class:`StepStats` (computed by :mod:`optimizers.stats`). A step that was not
requested computes nothing extra. A requested one keeps every statistic as a tensor
on the parameters' device and never synchronises with the host; the reader
converts them once (``.tolist()``).
"""

from __future__ import annotations

import difflib
import inspect
import math
import numbers
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeAlias

import torch
from torch import Tensor

from optimizers.stats import GroupStats, StepStats, assemble

Params: TypeAlias = Iterable[Tensor] | Iterable[dict[str, Any]]
Closure: TypeAlias = Callable[[], Tensor | float]
Betas: TypeAlias = tuple[float, float]

# Elements per tile of :meth:`Optimizer.tiles`: a tile of each operand list plus its
# work buffer stays in the CPU's cache between the operations applied to it. A
# multiple of every vector width, so a tile boundary is never a kernel's tail.
TILE = 1 << 19

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
    if rule is FLAG:
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


class Optimizer(torch.optim.Optimizer):
    """A ``torch.optim.Optimizer`` with validated hyperparameters and instruments.

    Subclasses set ``rules`` (hyperparameter name -> :class:`Interval` or ``FLAG``),
    optionally override :meth:`check_group` for rules that tie several
    hyperparameters together, and implement :meth:`_update_group`.
    """

    rules: ClassVar[dict[str, Any]] = {}
    # True where _update_group hands the parameters before the update to
    # GroupStats.tile itself (tile by tile) instead of GroupStats taking their norms.
    param_norm_in_update: ClassVar[bool] = False
    # Keys of a parameter's state that a step needs once the state exists, and
    # torch.optim's names for the same state (loaded from a torch.optim state_dict).
    state_keys: ClassVar[tuple[str, ...]] = ()
    torch_state_names: ClassVar[dict[str, str]] = {}

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
        """``torch.optim.Optimizer.add_param_group`` plus the hyperparameter checks.

        A key that is a hyperparameter of another optimlab optimizer, or a near miss
        of one of this optimizer's, is refused (it would be ignored); other keys,
        such as a ``name`` for one's own bookkeeping, are kept as torch keeps them.
        """
        owner = type(self).__name__
        foreign = {
            key: value for key, value in param_group.items()
            if key != "params" and key not in self.defaults
            and (key in _all_hyperparameters()
                 or difflib.get_close_matches(key, self.defaults, n=1, cutoff=0.8))
        }
        reject_unknown(f"{owner} param group", foreign, self.defaults)
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

    def scratch(self, params: list[Tensor], name: str = "update") -> list[Tensor]:
        """One work tensor per parameter, kept between steps (not part of the state).

        Its contents are undefined on entry; an update writes a temporary into it
        with ``out=`` instead of allocating a model-sized tensor every step (on a
        CPU, the fresh pages of a large allocation cost more than the arithmetic).
        ``name`` keeps apart buffers that one step uses for different purposes.
        """
        buffers = self.__dict__.setdefault("_scratch", {}).setdefault(name, {})
        work = []
        for p in params:
            buffer = buffers.get(p)
            if buffer is None or buffer.shape != p.shape or buffer.dtype != p.dtype:
                buffer = buffers[p] = torch.empty_like(p)
            work.append(buffer)
        return work

    def tiles(
        self, *lists: list[Tensor], work: bool = True, whole: bool = False,
        fresh: bool = False,
    ) -> Iterator[tuple[Any, ...]]:
        """Walk same-shaped tensor lists in cache-sized tiles, with a work buffer.

        Yields tuples ``(*pieces, work, owners)``: ``pieces`` are views of the same
        elements of each list (a large contiguous tensor is cut into flat runs of
        :data:`TILE` elements; a small or non-contiguous one comes whole), ``work``
        a matching view into one buffer reused by every tile (``None`` unless
        ``work``), ``owners`` the position in the lists of the tensor each piece
        belongs to. Element-wise operations applied tile by tile give the same bits
        as on whole tensors, but what one writes and the next reads stays in the
        cache, and a temporary written into ``work`` never leaves it.
        With ``whole``, and off the CPU (where a kernel launch costs more than the
        memory traffic), or when the lists hold at most two tiles' worth of
        elements (cache-sized already), the lists themselves are the one tile and
        ``work`` is :meth:`scratch`. With ``fresh``, the lists are the one tile and
        ``work`` is new memory, for a temporary that outlives the step.
        """
        first = lists[0]
        if (fresh or whole or not first or first[0].device.type != "cpu"
                or sum(t.numel() for t in first) <= 2 * TILE):
            if fresh:
                buffers = [torch.empty_like(t) for t in first]
            else:
                buffers = self.scratch(first) if work else None
            yield (*lists, buffers, list(range(len(first))))
            return
        pending: list[tuple[int, tuple[Tensor, ...]]] = []
        size = 0
        for owner, operands in enumerate(zip(*lists, strict=True)):
            n = operands[0].numel()
            if n <= TILE or not all(t.is_contiguous() for t in operands):
                pending.append((owner, operands))
                size += n
            else:
                flat = [t.view(-1) for t in operands]
                for start in range(0, n, TILE):
                    pending.append((owner, tuple(f[start:start + TILE] for f in flat)))
                    size += min(TILE, n - start)
                    if size >= TILE:
                        yield self._tile(pending, size, work)
                        pending, size = [], 0
                continue
            if size >= TILE:
                yield self._tile(pending, size, work)
                pending, size = [], 0
        if pending:
            yield self._tile(pending, size, work)

    def _tile(
        self, pending: list[tuple[int, tuple[Tensor, ...]]], size: int, work: bool
    ) -> tuple[Any, ...]:
        owners = [owner for owner, _ in pending]
        columns = [list(c) for c in zip(*(ops for _, ops in pending), strict=True)]
        if not work:
            return (*columns, None, owners)
        like = columns[0][0]
        buffers = self.__dict__.setdefault("_tile_work", {})
        key = (like.dtype, like.device)
        buffer, layouts = buffers.get(key, (None, {}))
        if buffer is None or buffer.numel() < size:
            buffer = torch.empty(max(size, 2 * TILE), dtype=like.dtype,
                                 device=like.device)
            buffers[key] = buffer, (layouts := {})
        layout = tuple(t.shape for t in columns[0])
        views = layouts.get(layout)
        if views is None:  # the same few layouts come back every step
            views, offset = [], 0
            for shape in layout:
                n = shape.numel()
                views.append(buffer[offset:offset + n].view(shape))
                offset += n
            layouts[layout] = views
        return (*columns, list(views), owners)

    # -- saving and loading ----------------------------------------------------------

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """``torch.optim.Optimizer.load_state_dict``, also from torch.optim's twin.

        A state_dict saved by the ``torch.optim`` class of the same algorithm loads
        too: its state names (``exp_avg``, ``sum``, ``square_avg`` …) become this
        class's symbols and its tensor step counts become integers. One saved by a
        different algorithm is refused with the missing key named, before anything
        is changed.
        """
        owner = type(self).__name__
        groups = state_dict.get("param_groups", [])
        for index, group in enumerate(groups):
            missing = [key for key in self.defaults if key not in group]
            if missing:
                raise ValueError(
                    f"{owner}.load_state_dict: param group {index} has no "
                    f"{missing[0]!r}; this state_dict was saved by another "
                    f"optimizer (its group keys: {', '.join(sorted(group))})"
                )
        names = self.torch_state_names
        state = {
            key: {names.get(name, name): value for name, value in saved.items()}
            for key, saved in state_dict.get("state", {}).items()
        }
        for key, saved in state.items():
            absent = [name for name in self.state_keys if name not in saved]
            if saved and absent:
                raise ValueError(
                    f"{owner}.load_state_dict: the state of parameter {key} has no "
                    f"{absent[0]!r} (it has {', '.join(sorted(saved))}); this "
                    "state_dict was saved by another optimizer"
                )
        super().load_state_dict({**state_dict, "state": state})
        for saved in self.state.values():
            if isinstance(saved.get("step"), Tensor):
                saved["step"] = int(saved["step"].item())

    # -- instruments -----------------------------------------------------------------

    def __setstate__(self, state: dict[str, Any]) -> None:
        # torch pickles (and deep-copies) only defaults, state and param groups.
        super().__setstate__(state)
        self.__dict__.setdefault("_stats_requested", False)
        self.__dict__.setdefault("last_stats", None)

    def _stats_work(self, params: list[Tensor]) -> list[Tensor]:
        return self.scratch(params, name="stats")

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
        if record:
            # Let the memory of the statistics this step replaces (the element-wise
            # effective lr, model-sized) be reused by this step's temporaries.
            self.last_stats = None
        recorded: list[GroupStats] = []
        for index, group in enumerate(self.param_groups):
            params, grads = self._with_grad(index, group)
            if not params:
                continue
            self.check_group(group)
            if group.get("maximize", False):
                grads = torch._foreach_neg(grads)
            stats = (GroupStats(index, params, self._stats_work,
                                param_norm=not self.param_norm_in_update)
                     if record else None)
            states = [self.state[p] for p in params]
            self._update_group(group, params, grads, states, stats)
            if stats is not None:
                recorded.append(stats)
        if record:
            self.last_stats = assemble(recorded)
        return loss

    def _with_grad(self, index: int, group: dict[str, Any]) -> tuple[list, list]:
        params, grads = [], []
        for position, p in enumerate(group["params"]):
            grad = p.grad
            if grad is None or p.numel() == 0:  # nothing to update
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


def _all_hyperparameters() -> set[str]:
    """Every hyperparameter name of every optimlab optimizer class defined so far:
    the keyword arguments of their constructors."""
    names: set[str] = set()
    pending = list(Optimizer.__subclasses__())
    while pending:
        cls = pending.pop()
        parameters = inspect.signature(cls.__init__).parameters.values()
        names.update(
            p.name for p in parameters if p.name not in ("self", "params")
            and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        )
        pending.extend(cls.__subclasses__())
    return names


def zeros_like(p: Tensor) -> Tensor:
    """A zero state tensor shaped, strided and placed like ``p``."""
    return torch.zeros_like(p, memory_format=torch.preserve_format)


def write_into(
    out: list[Tensor],
    op: str,
    first: list[Tensor],
    *rest: list[Tensor],
    per_tensor: bool | None = None,
    **kwargs: Any,
) -> list[Tensor]:
    """``out[i] = torch.<op>(first[i], *rest[i], **kwargs)``, into existing memory.

    On the CPU (``per_tensor``, by default) one kernel per tensor writes straight
    into ``out``. Elsewhere, where a kernel launch per tensor costs more than one
    more pass over memory, ``first`` is copied into ``out`` and the multi-tensor
    ``torch._foreach_<op>_`` applies the rest in place. Both give the same bits.
    """
    if not out:
        return out
    if per_tensor is None:
        per_tensor = out[0].device.type == "cpu"
    if per_tensor:
        kernel = getattr(torch, op)
        for i, target in enumerate(out):
            kernel(first[i], *(r[i] for r in rest), out=target, **kwargs)
    else:
        torch._foreach_copy_(out, first)
        getattr(torch, f"_foreach_{op}_")(out, *rest, **kwargs)
    return out
