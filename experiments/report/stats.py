"""Numbers over seeds: one :class:`Condition` per setting of a study.

A *condition* is the set of runs that differ only in their seed: same part,
series, x and y. Every number the report prints is computed here once and
formatted by the ``fmt_*`` helpers, so the findings quote exactly what the
tables show.

Definitions (also printed once in the report, see ``DEFINITIONS``):

1. mean and std are over the seeds of a condition (sample std, ddof = 1);
   ``n`` counts the runs that ended (done or diverged); failed runs are left out.
2. A diverged run counts at its recorded accuracy, or at chance level
   (1 / number of classes) when none was recorded.
3. Generalization gap = final training accuracy - final validation accuracy.
4. Stability = loss fluctuation: the std of successive differences of
   log(training loss) over the second half of the logged steps (from the
   per-epoch history when a run's event file lacks them: marked, never pooled
   with or ranked against the step-based values).
5. Two conditions are ranked only when both have n >= 2 and their
   mean ± std intervals do not overlap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from experiments.report.runs import Run, Study, _finite, _sort_key

STABILITY_MARK = "†"  # a stability value read from the per-epoch history
ACCEPT_MARGIN = 0.03  # acceptable range: within 3 accuracy points of the best mean

DEFINITIONS: tuple[tuple[str, str], ...] = (
    ("Seeds", "mean ± std are over the seeds of one setting (sample std); n counts "
              "the runs that ended (done or diverged). Failed runs are left out of "
              "every statistic and listed under 'Missing, failed and damaged runs'."),
    ("Final / best accuracy", "validation accuracy after the last epoch / the best "
                              "validation accuracy seen during the run. A diverged "
                              "run counts at its recorded accuracy, or at chance "
                              "level when none was recorded."),
    ("To target", "optimizer steps, epochs and seconds until the validation accuracy "
                  "first reached the study's target accuracy. A run that never "
                  "reached it is censored: the table shows '> L (censored k/n)', "
                  "where L is a lower bound on the mean that counts each censored "
                  "run at its full length."),
    ("Generalization gap", "final training accuracy minus final validation "
                           "accuracy (positive = overfitting)."),
    ("Stability", "loss fluctuation: the std of successive differences of "
                  "log(training loss) over the second half of the logged steps "
                  "(lower is steadier). Computed from the `train/loss` scalars; "
                  "when a run's event file lacks them, from its per-epoch history, "
                  f"marked {STABILITY_MARK} and never ranked against the "
                  "others."),
    ("Acceptable range", f"the learning rates whose mean final validation accuracy "
                         f"is within {100 * ACCEPT_MARGIN:.0f} accuracy points of the "
                         f"best learning rate of the same optimizer, with no "
                         f"diverged seed."),
    ("Sensitivity", "the width of the acceptable range in decades "
                    "(log10 of its largest over its smallest learning rate); a "
                    "narrower range means a more sensitive optimizer."),
    ("Ranking", "a setting is called better than another only when both have at "
                "least 2 seeds and their mean ± std intervals do not overlap; "
                "otherwise the report says the data cannot separate them."),
    ("Critical batch size", "the gradient noise scale B_simple = tr(Sigma) / |G|^2 "
                            "(McCandlish et al. 2018), estimated during training; "
                            "compared with the empirical knee, the smallest batch "
                            "size whose steps to target are at most twice the "
                            "fewest steps of any batch size."),
)


@dataclass(frozen=True)
class Stat:
    """Mean and std over ``n`` values (std is ``None`` below two values)."""

    mean: float | None
    std: float | None
    n: int

    @staticmethod
    def of(values: list[float | None]) -> Stat:
        finite = [v for v in values if v is not None and math.isfinite(v)]
        if not finite:
            return Stat(None, None, 0)
        std = float(np.std(finite, ddof=1)) if len(finite) > 1 else None
        return Stat(float(np.mean(finite)), std, len(finite))

    def interval(self) -> tuple[float, float] | None:
        if self.mean is None:
            return None
        spread = self.std or 0.0
        return (self.mean - spread, self.mean + spread)


@dataclass(frozen=True)
class TargetStat:
    """Cost to reach the target over seeds, with censored runs counted."""

    mean: float | None  # over all runs; a lower bound when censored > 0
    std: float | None
    n: int
    censored: int

    @property
    def complete(self) -> bool:
        return self.n > 0 and self.censored == 0

    def interval(self) -> tuple[float, float] | None:
        return Stat(self.mean, self.std, self.n).interval()


@dataclass
class Condition:
    """The runs of one setting (all seeds) and their statistics."""

    part: str
    series: str
    x_name: str | None
    x: Any
    y_name: str | None
    y: Any
    runs: list[Run]  # ended runs (done or diverged)
    failed: list[Run]
    chance: float
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.runs)

    @property
    def diverged(self) -> int:
        return sum(run.status == "diverged" for run in self.runs)

    @property
    def label(self) -> str:
        """``series x_name=x, y_name=y``; the series is left out when it only
        repeats the part or a swept value (``beta1 beta1=0.9`` reads ``beta1=0.9``)."""
        swept = [f"{name}={fmt_x(value)}" for name, value in
                 ((self.x_name, self.x), (self.y_name, self.y))
                 if name and value is not None]
        redundant = self.series == self.part or any(
            self.series.startswith(f"{name}=") for name in (self.x_name, self.y_name)
            if name)
        if not swept:
            return self.series
        return ", ".join(swept) if redundant else f"{self.series} {', '.join(swept)}"

    def legend(self) -> str:
        extra = f", {self.diverged} diverged" if self.diverged else ""
        return f"{self.label} (n={self.n}{extra})"

    def accuracy(self, run: Run, key: str) -> float:
        value = run.value(key)
        if value is None and run.status == "diverged":
            return self.chance
        return value if value is not None else float("nan")


def conditions(study: Study) -> list[Condition]:
    """Group the study's runs by setting and compute every statistic."""
    chance = 1.0 / max(len(study.classes), 1) if study.classes else 0.1
    groups: dict[tuple, Condition] = {}
    for run in study.runs:
        key = (run.part, run.series, _sort_key(run.x), _sort_key(run.y))
        if key not in groups:
            groups[key] = Condition(run.part, run.series, run.x_name, run.x,
                                    run.y_name, run.y, [], [], chance)
        target = groups[key].failed if run.status == "failed" else groups[key].runs
        target.append(run)
    ordered = [groups[key] for key in sorted(groups, key=_group_order(study))]
    for condition in ordered:
        _fill(condition)
    return ordered


def _group_order(study: Study):
    parts = list(dict.fromkeys(run.part for run in study.runs))
    series = list(dict.fromkeys(run.series for run in study.runs))
    return lambda key: (parts.index(key[0]), series.index(key[1]), key[2], key[3])


def _fill(c: Condition) -> None:
    runs = c.runs
    s = c.stats
    s["final"] = Stat.of([c.accuracy(r, "final_val_acc") for r in runs])
    s["best"] = Stat.of([c.accuracy(r, "best_val_acc") for r in runs])
    s["test"] = Stat.of([c.accuracy(r, "test_acc") for r in runs])
    s["final_loss"] = Stat.of([r.value("final_train_loss") for r in runs])
    s["gap"] = Stat.of([_gap(r) for r in runs])
    _fill_stability(s, [stability_of(r) for r in runs])
    s["throughput"] = Stat.of([r.value("samples_per_s") for r in runs])
    s["b_simple"] = Stat.of([r.value("b_simple") for r in runs])
    s["steps"] = _target(runs, "steps_to_target", "global_step")
    s["epochs"] = _target(runs, "epochs_to_target", "epochs_completed")
    s["seconds"] = _target(runs, "seconds_to_target", "wall_time_s")
    classes = [r.result.get("per_class_test_acc") for r in runs]
    classes = [np.asarray(v, dtype=float) for v in classes if isinstance(v, list) and v]
    if classes and len({len(v) for v in classes}) == 1:
        stack = np.stack(classes)
        s["per_class"] = (stack.mean(0), stack.std(0, ddof=1) if len(stack) > 1
                          else np.zeros(stack.shape[1]), len(stack))
    for tag, name in (("grad_norm/global", "grad_norm"), ("update/global", "update"),
                      ("momentum/grad_cosine", "cosine"),
                      ("effective_lr/median", "elr_median"),
                      ("effective_lr/p5", "elr_p5"), ("effective_lr/p95", "elr_p95"),
                      ("effective_lr/steady_state", "elr_steady")):
        s[name] = Stat.of([_second_half_mean(r, tag) for r in runs])
        s[name + "_first"] = Stat.of([_edge(r, tag, 0) for r in runs])
        s[name + "_last"] = Stat.of([_edge(r, tag, -1) for r in runs])


def _fill_stability(s: dict[str, Any], pairs: list[tuple[float | None, str]]
                    ) -> None:
    """``stability`` from the logged steps when any seed has them (seeds with only
    a per-epoch value are left out, counted in ``stability_left_out``), else from
    the per-epoch history; ``stability_source`` says which, ``None`` for neither."""
    steps = [v for v, source in pairs if source == "steps" and v is not None]
    history = [v for v, source in pairs if source == "history" and v is not None]
    chosen, source = (steps, "steps") if steps else (history, "history")
    s["stability"] = Stat.of(chosen)
    s["stability_source"] = source if chosen else None
    s["stability_left_out"] = len(history) if steps else 0


def fmt_stability(c: Condition) -> str:
    """The stability cell: marked with STABILITY_MARK when it comes from the
    per-epoch history, with its own n when seeds were left out."""
    s = c.stats
    text = fmt_num(s["stability"], 3)
    if s["stability"].mean is None:
        return text
    if s["stability_source"] == "history":
        return f"{text} {STABILITY_MARK}"
    if s["stability_left_out"]:
        return f"{text} (n={s['stability'].n}) {STABILITY_MARK}"
    return text


def stability_note(conds: list[Condition]) -> str | None:
    """The note under a table whose Stability column holds marked cells."""
    if not any(c.stats.get("stability_source") == "history"
               or c.stats.get("stability_left_out") for c in conds):
        return None
    return (f"{STABILITY_MARK} Stability from the per-epoch training loss in "
            "summary.json, because the event file of the run lacks the "
            "`train/loss` steps or is damaged: a fluctuation between epochs, not "
            "between logged steps, so it is not comparable with the unmarked "
            "values and no finding ranks it against them. A cell with its own n "
            "uses only the seeds whose logged steps were read; the other seeds "
            "are left out, not mixed in.")


def _gap(run: Run) -> float | None:
    train, val = run.value("final_train_acc"), run.value("final_val_acc")
    return train - val if train is not None and val is not None else None


def _target(runs: list[Run], key: str, length_key: str) -> TargetStat:
    values, censored = [], 0
    for run in runs:
        reached = getattr(run, key)
        if reached is not None and run.status == "done":
            values.append(reached)
            continue
        censored += 1
        length = run.value(length_key)
        if length is None and key == "epochs_to_target":
            length = float(len(run.result.get("history") or []))
        values.append(length)
    finite = [v for v in values if v is not None]
    if not finite:
        return TargetStat(None, None, len(runs), censored)
    std = float(np.std(finite, ddof=1)) if len(finite) > 1 and not censored else None
    return TargetStat(float(np.mean(finite)), std, len(runs), censored)


def loss_fluctuation(run: Run) -> float | None:
    """Std of successive differences of log(loss) over the second half of training."""
    return stability_of(run)[0]


def stability_of(run: Run) -> tuple[float | None, str]:
    """The loss fluctuation of ``run`` and where it comes from: ``"steps"`` (the
    ``train/loss`` scalars, every ``log_every`` steps) or ``"history"`` (the
    per-epoch training loss of ``summary.json``, used when the event file lacks
    the scalars or is damaged). The two measure fluctuation on different time
    scales and are never pooled or ranked together."""
    series = run.scalars.get("train/loss")
    if series is not None and len(series[1]) >= 6:
        return _fluctuation(series[1]), "steps"
    history = run.result.get("history") or []
    return _fluctuation(np.array([_finite(h.get("train_loss")) or np.nan
                                  for h in history])), "history"


def _fluctuation(losses) -> float | None:
    losses = np.asarray(losses, dtype=float)
    losses = losses[np.isfinite(losses) & (losses > 0)]
    half = losses[len(losses) // 2:]
    if len(half) < 3:
        return None
    return float(np.std(np.diff(np.log(half)), ddof=1))


def _second_half_mean(run: Run, tag: str) -> float | None:
    series = run.scalars.get(tag)
    if series is None or len(series[1]) == 0:
        return None
    values = series[1][len(series[1]) // 2:]
    values = values[np.isfinite(values)]
    return float(values.mean()) if len(values) else None


def _edge(run: Run, tag: str, index: int) -> float | None:
    series = run.scalars.get(tag)
    if series is None or len(series[1]) == 0:
        return None
    return _finite(series[1][index])


def accuracy_at(run: Run, axis: str, budget: float) -> float | None:
    """Validation accuracy of the last evaluation at or before ``budget``."""
    best = None
    for entry in run.result.get("history") or []:
        where, acc = _finite(entry.get(axis)), _finite(entry.get("val_acc"))
        if where is not None and acc is not None and where <= budget + 1e-9:
            best = acc
    return best


def separated(a: Stat, b: Stat, higher_is_better: bool = True) -> int:
    """+1 when ``a`` is better than ``b``, -1 when worse, 0 when they cannot be told
    apart (fewer than 2 seeds on either side or overlapping mean ± std)."""
    if a.n < 2 or b.n < 2 or a.mean is None or b.mean is None:
        return 0
    lo_a, hi_a = a.interval()
    lo_b, hi_b = b.interval()
    if lo_a > hi_b:
        return 1 if higher_is_better else -1
    if lo_b > hi_a:
        return -1 if higher_is_better else 1
    return 0


def fmt_x(value: Any) -> str:
    number = _finite(value)
    if number is None:
        return str(value)
    if number == int(number) and abs(number) < 1e6:
        return str(int(number))
    return f"{number:g}"


def fmt_acc(stat: Stat) -> str:
    """Accuracy in percent: ``81.2 ± 0.4 % (n=3)``."""
    if stat.mean is None:
        return "n/a"
    if stat.std is None:
        return f"{100 * stat.mean:.1f} % (n={stat.n})"
    return f"{100 * stat.mean:.1f} ± {100 * stat.std:.1f} % (n={stat.n})"


def fmt_pts(stat: Stat) -> str:
    """A difference of accuracies in percentage points."""
    if stat.mean is None:
        return "n/a"
    if stat.std is None:
        return f"{100 * stat.mean:+.1f} pts"
    return f"{100 * stat.mean:+.1f} ± {100 * stat.std:.1f} pts"


def fmt_num(stat: Stat, digits: int = 3) -> str:
    """A plain number: ``0.0342 ± 0.0042``; above 1000 without decimals."""
    if stat.mean is None:
        return "n/a"
    large = abs(stat.mean) >= 1000
    mean = f"{stat.mean:.0f}" if large else f"{stat.mean:.{digits}g}"
    if stat.std is None:
        return mean
    std = stat.std if stat.std > 1e-9 * abs(stat.mean) else 0.0
    return f"{mean} ± {std:.0f}" if large else f"{mean} ± {std:.2g}"


def fmt_target(stat: TargetStat, unit: str = "") -> str:
    if stat.mean is None:
        return "n/a"
    digits = ".1f" if unit == "s" else ".0f"
    value = f"{stat.mean:{digits}}"
    if stat.censored:
        return f"> {value} (censored {stat.censored}/{stat.n})"
    if stat.std is None:
        return value
    return f"{value} ± {stat.std:{digits}}"
