"""What a study is: presets written as plain dicts, and a plan that expands them.

A study module defines one :class:`Study`. Its presets are dicts that a reader can
edit: each key is either a field of ``experiments.train.TrainConfig`` (shared by
every run of the preset, e.g. ``epochs`` or ``subset``) or a knob of the study itself
(the grid it sweeps, e.g. ``lrs`` or ``seeds``, and ``target_accuracy``). The plan reads
the resolved settings and yields one :class:`PlannedRun` per training run; a planned
run sets the few TrainConfig fields it varies (optimizer, hparams, batch size, seed).

Overrides from the command line (``--set key=value``) replace preset values before
the plan runs; :func:`parse_override` turns the text into a value and
:meth:`Study.resolve` refuses keys the preset and TrainConfig do not know.
"""

from __future__ import annotations

import ast
import json
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

PRESETS: tuple[str, ...] = ("smoke", "quick", "full")

# Knobs every preset must define (the rest is study specific).
REQUIRED_KNOBS: tuple[str, ...] = ("seeds", "target_accuracy")

# Settings that take a number or a word: batch_size=full, devices=auto.
WORD_OR_NUMBER = frozenset({"batch_size", "devices"})

# TrainConfig fields that hold a tuple of integers (``hidden=256,128``).
INT_TUPLE_FIELDS = frozenset({"hidden"})


@dataclass(frozen=True)
class PlannedRun:
    """One training run of a study, before ids and paths are attached.

    ``part`` names the sub-sweep (``main``, ``fixed-lr``, ``beta1``...), ``series``
    the legend label of the curve the run belongs to, ``x``/``y`` the swept values
    (named by ``x_name``/``y_name``) and ``config`` the TrainConfig fields the run
    sets on top of the preset (``seed`` included).
    """

    part: str
    series: str
    x_name: str | None
    x: Any
    config: Mapping[str, Any]
    y_name: str | None = None
    y: Any = None


class Settings(Mapping[str, Any]):
    """The resolved preset: read knobs as attributes (``s.lrs``) or keys."""

    def __init__(self, values: Mapping[str, Any], train_fields: frozenset[str]):
        self._values = dict(values)
        self._train_fields = train_fields

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __getattr__(self, key: str) -> Any:
        try:
            return self._values[key]
        except KeyError:
            raise AttributeError(
                f"preset has no setting {key!r}; it has: {', '.join(sorted(self))}"
            ) from None

    @property
    def train(self) -> dict[str, Any]:
        """The settings that are TrainConfig fields, shared by every run."""
        return {k: v for k, v in self._values.items() if k in self._train_fields}

    @property
    def knobs(self) -> dict[str, Any]:
        """The study's own settings (grids, seeds, target accuracy)."""
        return {k: v for k, v in self._values.items() if k not in self._train_fields}


Plan = Callable[[Settings], Iterator[PlannedRun]]


@dataclass(frozen=True)
class Study:
    """A named set of runs that answers some questions, at three scales."""

    name: str
    title: str
    model: str
    questions: tuple[str, ...]
    presets: Mapping[str, Mapping[str, Any]]
    plan: Plan
    notes: str = ""
    # TrainConfig fields whose run-level value comes from the plan; a --set of one
    # would be overwritten, so the sweep refuses it by name.
    swept_fields: tuple[str, ...] = field(default=())

    def resolve(
        self,
        preset: str,
        overrides: Mapping[str, Any],
        train_defaults: Mapping[str, Any],
    ) -> Settings:
        """Preset ``preset`` with ``overrides`` applied, checked key by key.

        ``train_defaults`` maps every TrainConfig field to its default; an override
        may name a preset key or any TrainConfig field.
        """
        if preset not in self.presets:
            raise ValueError(
                f"study {self.name!r} has no preset {preset!r}; "
                f"valid presets: {', '.join(self.presets)}"
            )
        values = dict(self.presets[preset])
        missing = [k for k in REQUIRED_KNOBS if k not in values]
        if missing:
            raise ValueError(
                f"study {self.name!r} preset {preset!r} lacks {', '.join(missing)}"
            )
        for key, value in overrides.items():
            if key in values:
                values[key] = coerce_like(key, value, values[key])
            elif key in train_defaults:
                values[key] = coerce_like(key, value, train_defaults[key])
            else:
                raise ValueError(
                    f"unknown setting {key!r} for study {self.name!r}; valid: "
                    f"{', '.join(valid_keys(self, preset, train_defaults))}"
                )
        return Settings(values, frozenset(train_defaults))

    def expand(self, settings: Settings) -> list[PlannedRun]:
        return list(self.plan(settings))


def valid_keys(
    study: Study, preset: str, train_defaults: Mapping[str, Any]
) -> list[str]:
    """Every key ``--set`` accepts for ``study`` at ``preset``, sorted."""
    return sorted(set(study.presets.get(preset, {})) | set(train_defaults))


def parse_override(text: str) -> tuple[str, Any]:
    """``"key=value"`` -> ``(key, value)``; the value is read as a Python/JSON literal.

    ``lr=0.1`` gives a float, ``seeds=0,1`` a tuple, ``batch_size=full`` and
    ``schedule=cosine`` strings, ``hidden=null`` or ``hidden=None`` None.
    """
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ValueError(f"--set {text!r}: expected key=value, e.g. --set epochs=2")
    raw = raw.strip()
    lowered = raw.lower()
    if lowered in ("null", "none"):
        return key, None
    if lowered in ("true", "false"):
        return key, lowered == "true"
    value = _literal(raw)
    if isinstance(value, str) and "," in raw and raw[0] not in "[({'\"":
        # "-1,abc": read each item alone, so a message can name the bad one.
        return key, tuple(_literal(item.strip()) for item in raw.split(","))
    return key, value


def _literal(raw: str) -> Any:
    """``raw`` read as JSON or a Python literal; the text itself otherwise."""
    for reader in (json.loads, ast.literal_eval):
        try:
            return reader(raw)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
    return raw


def coerce_like(key: str, value: Any, like: Any) -> Any:
    """Check that ``value`` fits the type of the existing ``like``; convert lists.

    Numbers may widen (an int where a float is expected), a scalar where a list is
    expected becomes a one-element list, and ``like=None`` accepts anything.
    """
    if key in INT_TUPLE_FIELDS and value is not None:
        items = list(value) if isinstance(value, (list, tuple)) else [value]
        bad = [v for v in items if not (_is_number(v) and float(v).is_integer())]
        if bad or not items:
            shown = bad[0] if bad else value
            raise ValueError(
                f"--set {key}: {shown!r} is not an integer; expected one or more "
                f"integers, e.g. --set {key}=256,128"
            )
        return [int(v) for v in items]
    if like is None or value is None:
        return value
    if isinstance(like, (list, tuple)):
        items = list(value) if isinstance(value, (list, tuple)) else [value]
        if like and all(_is_number(v) for v in like):
            bad = [v for v in items if not _is_number(v)]
            if bad:
                raise ValueError(f"--set {key}: {bad[0]!r} is not a number")
        return items
    if isinstance(like, bool):
        if isinstance(value, bool):
            return value
        raise ValueError(f"--set {key}={value!r}: expected true or false")
    if isinstance(like, (int, float)) and isinstance(value, (int, float)):
        if isinstance(value, bool):
            raise ValueError(f"--set {key}={value!r}: expected a number")
        if isinstance(like, float):
            value = float(value)
            if not math.isfinite(value):
                raise ValueError(f"--set {key}={value!r}: expected a finite number")
        return value
    if isinstance(like, (int, float)) and isinstance(value, str):
        if key in WORD_OR_NUMBER:
            return value
        raise ValueError(f"--set {key}={value!r}: expected a number")
    if isinstance(like, str) and isinstance(value, (int, float)):
        return value
    if isinstance(like, dict) and not isinstance(value, dict):
        # the example is the first entry of the value it replaces, so it is valid
        example = dict(list(like.items())[:1]) or {"lr": 0.1}
        raise ValueError(
            f"--set {key}={value!r}: expected a dict, e.g. --set \"{key}={example}\""
        )
    if isinstance(like, str) and not isinstance(value, str):
        raise ValueError(f"--set {key}={value!r}: expected a string")
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def log_grid(low: float, high: float, per_decade: int) -> list[float]:
    """Log-spaced values from ``low`` to ``high`` inclusive, rounded to 3 digits."""
    decades = math.log10(high / low)
    count = round(decades * per_decade)
    return [float(f"{low * 10 ** (i / per_decade):.3g}") for i in range(count + 1)]
