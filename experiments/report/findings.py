"""Findings written from the numbers, one function per study.

Each finding quotes numbers through the ``fmt_*`` helpers of
:mod:`experiments.report.stats`, the same ones that fill the tables, so what the
text says can be checked against the tables cell by cell. A claim that needs a
ranking goes through :func:`stats.separated`; when it returns 0 the finding says
the data cannot separate the settings instead of ranking them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from experiments.report.runs import Study, _finite
from experiments.report.stats import (
    ACCEPT_MARGIN,
    Condition,
    Stat,
    accuracy_at,
    fmt_acc,
    fmt_num,
    fmt_pts,
    fmt_stability,
    fmt_target,
    fmt_x,
    separated,
)


@dataclass
class LrRange:
    """The acceptable learning-rate range of one series (definition in stats).

    ``accepted`` is empty when every lr of the series had a diverged seed; it
    holds one condition when a single grid point was acceptable, and then the
    series has no measurable width (``decades`` is ``None``), not a zero-wide
    range.
    """

    series: str
    best: Condition
    accepted: list[Condition]
    diverged_lrs: list[float]
    gaps: list[float]  # grid lrs inside the range that are not acceptable

    @property
    def low(self) -> float | None:
        return float(self.accepted[0].x) if self.accepted else None

    @property
    def high(self) -> float | None:
        return float(self.accepted[-1].x) if self.accepted else None

    @property
    def points(self) -> int:
        """Acceptable grid points (0, 1 or more)."""
        return len(self.accepted)

    @property
    def decades(self) -> float | None:
        """Width in decades, rounded to 0.01 so that equal grid spans compare
        equal; ``None`` below two acceptable grid points."""
        if self.points < 2:
            return None
        return round(math.log10(self.high / self.low), 2)

    def contains(self, lr: float) -> bool:
        return (self.low is not None and self.low <= lr <= self.high
                and lr not in self.gaps)

    def text(self) -> str:
        """``0.001 to 0.1``, ``only lr=0.001`` or ``no lr`` (no grid range)."""
        if not self.accepted:
            return "no lr (every lr of the grid had a diverged seed)"
        if self.points == 1:
            return f"only lr={fmt_x(self.low)}"
        text = f"{fmt_x(self.low)} to {fmt_x(self.high)}"
        if self.gaps:
            text += " (not contiguous: " + ", ".join(fmt_x(x) for x in self.gaps) + \
                " inside it are not acceptable)"
        return text

    def sentence(self) -> str:
        """The acceptable lrs as a clause: a range with its width, the single grid
        point (a point is no range) or none."""
        if not self.accepted:
            return "no lr was acceptable (every lr of the grid had a diverged seed)"
        if self.points == 1:
            return (f"only lr={fmt_x(self.low)} was acceptable (one grid point: "
                    "no range, so no width can be measured)")
        return f"acceptable range {self.text()} ({fmt_decades(self)} decades)"


def lr_ranges(conds: list[Condition]) -> list[LrRange]:
    by_series: dict[str, list[Condition]] = {}
    for c in conds:
        if _finite(c.x) is not None and c.stats["final"].mean is not None:
            by_series.setdefault(c.series, []).append(c)
    ranges = []
    for series, group in by_series.items():
        group.sort(key=lambda c: float(c.x))
        best = max(group, key=lambda c: c.stats["final"].mean)
        accepted = [c for c in group if c.diverged == 0 and c.stats["final"].mean
                    >= best.stats["final"].mean - ACCEPT_MARGIN]
        diverged = [float(c.x) for c in group if c.diverged]
        gaps = []
        if accepted:
            low, high = float(accepted[0].x), float(accepted[-1].x)
            gaps = [float(c.x) for c in group
                    if low < float(c.x) < high and c not in accepted]
        ranges.append(LrRange(series, best, accepted, diverged, gaps))
    return ranges


def fmt_decades(r: LrRange) -> str:
    if r.decades is None:
        return "n/a (one grid point)" if r.points == 1 else "n/a (none)"
    return f"{r.decades:.1f}"


def range_rows(ranges: list[LrRange]) -> list[list[str]]:
    return [[r.series, fmt_x(r.best.x), fmt_acc(r.best.stats["final"]), r.text(),
             fmt_decades(r), ", ".join(fmt_x(x) for x in r.diverged_lrs) or "none"]
            for r in ranges]


RANGE_HEADER = ["Optimizer", "Best lr", "Final val acc at best lr",
                "Acceptable range", "Width (decades)", "lrs with a diverged seed"]


def best_claim(conds: list[Condition], key: str, what: str,
               higher: bool = True, fmt: Callable[[Stat], str] = fmt_acc) -> str:
    """'Best X: A (v). [separated from / cannot be separated from] B (w).'"""
    ranked = [c for c in conds if c.stats[key].mean is not None]
    if not ranked:
        return f"No setting recorded {what}."
    ranked.sort(key=lambda c: c.stats[key].mean, reverse=higher)
    first = ranked[0]
    text = f"Highest {what}" if higher else f"Lowest {what}"
    text += f": {first.label}, {fmt(first.stats[key])}."
    if len(ranked) == 1:
        return text[:-1] + " (the only setting with this measure)."
    tied = [c for c in ranked[1:] if c.stats[key].mean == first.stats[key].mean]
    if tied:
        return text[:-1] + (f", tied with {', '.join(c.label for c in tied)}: equal "
                            "means, so no setting is ahead.")
    second = ranked[1]
    verdict = separated(first.stats[key], second.stats[key], higher)
    if verdict > 0:
        return text + (f" It is ahead of the runner-up {second.label} "
                       f"({fmt(second.stats[key])}): the intervals do not overlap.")
    reason = ("one of them has a single seed" if min(first.stats[key].n,
              second.stats[key].n) < 2 else "their mean ± std intervals overlap")
    return text + (f" The data cannot separate it from {second.label} "
                   f"({fmt(second.stats[key])}): {reason}.")


def speed_claim(conds: list[Condition]) -> str:
    reached = [c for c in conds if c.stats["steps"].complete]
    never = [c for c in conds if c.stats["steps"].n and c.stats["steps"].censored ==
             c.stats["steps"].n]
    parts = []
    if reached:
        parts.append(best_claim(reached, "steps", "optimizer steps to the target",
                                higher=False, fmt=fmt_target))
        parts.append(best_claim(reached, "seconds", "seconds to the target",
                                higher=False, fmt=lambda s: fmt_target(s, "s")))
    else:
        parts.append("No setting reached the target in every seed, so convergence "
                     "speed is compared by final accuracy only.")
    if never:
        parts.append("Never reached the target: " + ", ".join(c.label for c in never)
                     + ".")
    return " ".join(parts)


def _pair(a: Condition, b: Condition, key: str, what: str, higher: bool = True,
          fmt: Callable[[Stat], str] = fmt_acc) -> str:
    verdict = separated(a.stats[key], b.stats[key], higher)
    values = f"{a.label} {fmt(a.stats[key])} vs {b.label} {fmt(b.stats[key])}"
    if verdict > 0:
        return f"{what}: {values}; {a.label} is better (intervals apart)."
    if verdict < 0:
        return f"{what}: {values}; {b.label} is better (intervals apart)."
    return f"{what}: {values}; the data cannot separate them."


def stability_claim(conds: list[Condition]) -> str:
    """best_claim on loss fluctuation among the settings whose value has one
    source: the logged steps when any has them; values from the per-epoch history
    are named as not comparable instead of ranked against them."""
    steps = [c for c in conds if c.stats.get("stability_source") == "steps"]
    history = [c for c in conds if c.stats.get("stability_source") == "history"]
    if not steps:
        text = best_claim(history, "stability", "loss fluctuation", higher=False,
                          fmt=fmt_loss)
        return ("Every value from the per-epoch history (the event files lack the "
                "`train/loss` steps). " if history else "") + text
    text = best_claim(steps, "stability", "loss fluctuation", higher=False,
                      fmt=fmt_loss)
    if history:
        text += (" Not ranked: " + ", ".join(c.label for c in history) + " (their "
                 "loss fluctuation comes from the per-epoch history because the "
                 "event file lacks the `train/loss` steps, which is not comparable).")
    return text


def _stability_pair(a: Condition, b: Condition, what: str) -> str:
    sources = {a.stats.get("stability_source"), b.stats.get("stability_source")}
    if sources == {"steps", "history"}:
        return (f"{what}: {a.label} {fmt_stability(a)} vs {b.label} "
                f"{fmt_stability(b)}; not comparable (one comes from the per-epoch "
                "history, the other from the logged steps).")
    return _pair(a, b, "stability", what, higher=False, fmt=lambda s: fmt_num(s, 3))


def by_part(conds: list[Condition]) -> dict[str, list[Condition]]:
    parts: dict[str, list[Condition]] = {}
    for c in conds:
        parts.setdefault(c.part, []).append(c)
    return parts




@dataclass
class Budgets:
    epochs: float | None
    steps: float | None
    seconds: float | None
    rows: dict[int, tuple[Stat, Stat, Stat]]  # id(condition) -> acc@E, loss@S, acc@T


def budgets(conds: list[Condition]) -> Budgets:
    """Equal-budget comparison points: the largest budget every setting reached."""

    def reach(c: Condition, key: str) -> float | None:
        ends = [_finite((r.result.get("history") or [{}])[-1].get(key))
                for r in c.runs if r.status == "done" and r.result.get("history")]
        ends = [e for e in ends if e is not None]
        return min(ends) if ends else None

    def common(key: str, skip_full: bool) -> float | None:
        ends = [reach(c, key) for c in conds if not (skip_full and _is_full(c))]
        ends = [e for e in ends if e is not None]
        return min(ends) if ends else None

    epochs, steps, seconds = common("epochs_done", False), common("step", True), \
        common("time_s", False)
    rows = {}
    for c in conds:
        done = [r for r in c.runs if r.status == "done"]
        acc_e = Stat.of([accuracy_at(r, "epochs_done", epochs) for r in done]
                        if epochs is not None else [])
        loss_s = Stat.of([_loss_at(r, steps) for r in done]
                         if steps is not None and not _is_full(c) else [])
        acc_t = Stat.of([accuracy_at(r, "time_s", seconds) for r in done]
                        if seconds is not None else [])
        rows[id(c)] = (acc_e, loss_s, acc_t)
    return Budgets(epochs, steps, seconds, rows)


def _loss_at(run, step: float) -> float | None:
    series = run.scalars.get("train/loss")
    if series is not None and len(series[0]) and series[0][0] <= step:
        steps, values = series
        window = values[(steps >= 0.8 * step) & (steps <= step)]
        return float(np.mean(window)) if len(window) else float(
            np.interp(step, steps, values))
    loss = None
    for entry in run.result.get("history") or []:
        if (_finite(entry.get("step")) or math.inf) <= step:
            loss = _finite(entry.get("train_loss"))
    return loss


def _is_full(c: Condition) -> bool:
    return str(c.x) == "full" or "full" in c.series.lower()


def fmt_loss(stat: Stat) -> str:
    return fmt_num(stat, 3)


def budget_rows(conds: list[Condition], b: Budgets) -> list[list[str]]:
    rows = []
    for c in conds:
        acc_e, loss_s, acc_t = b.rows[id(c)]
        rows.append([c.part, c.label, str(c.n), fmt_acc(acc_e), fmt_loss(loss_s),
                     fmt_acc(acc_t), fmt_num(c.stats["throughput"], 4),
                     fmt_num(c.stats["b_simple"], 3)])
    return rows


def budget_header(b: Budgets) -> list[str]:
    def show(v: float | None, unit: str) -> str:
        return "n/a" if v is None else f"{v:.4g}{unit}"

    return ["Part", "Setting", "n", f"Val acc at {show(b.epochs, ' epochs')}",
            f"Train loss at {show(b.steps, ' steps')}",
            f"Val acc at {show(b.seconds, ' s')}", "Samples/s", "B_simple"]


def batch_size(study: Study, conds: list[Condition]) -> list[str]:
    out = []
    for part, group in by_part(conds).items():
        b = budgets(group)
        wrap = [_Shadow(c, b.rows[id(c)]) for c in group]
        out.append(f"**{part}, convergence speed.** " + speed_claim(group))
        if b.epochs is not None:
            out.append(f"**{part}, equal epochs ({b.epochs:.4g}).** "
                       + best_claim(wrap, "acc_e", "validation accuracy"))
        if b.steps is not None:
            out.append(f"**{part}, equal optimizer steps ({b.steps:.4g}).** "
                       + best_claim([w for w in wrap if w.stats["loss_s"].n],
                                    "loss_s", "training loss", higher=False,
                                    fmt=fmt_loss))
        if b.seconds is not None:
            out.append(f"**{part}, equal wall-clock ({b.seconds:.4g} s).** "
                       + best_claim(wrap, "acc_t", "validation accuracy"))
        out.append(f"**{part}, efficiency.** " + best_claim(
            group, "throughput", "throughput (samples/s)",
            fmt=lambda s: fmt_num(s, 4)) + " " + best_claim(
            [c for c in group if c.stats["seconds"].complete], "seconds",
            "seconds to the target", higher=False,
            fmt=lambda s: fmt_target(s, "s")))
        stab = [c for c in group if c.stats["stability"].n]
        if len(stab) >= 2:
            small, large = stab[0], stab[-1]
            out.append(f"**{part}, stability.** " + _stability_pair(
                large, small, "Loss fluctuation, largest vs smallest batch"))
        full = [c for c in group if _is_full(c)]
        mini = [c for c in group if not _is_full(c)]
        if full and mini:
            out.append(f"**{part}, full batch vs mini-batch.** "
                       + _full_vs_mini(full[0], mini, b))
        elif not full:
            out.append(f"**{part}, full batch.** No full-batch run in this part.")
    out.append("**Critical batch size.** " + critical_claim(conds))
    return out


def _full_vs_mini(full: Condition, mini: list[Condition], b: Budgets) -> str:
    """Full batch against the best mini-batch setting at equal epochs (from the
    history), then each after its own budget: full-batch runs usually train more
    epochs (``full_batch_epochs``), so their final accuracy is no equal-epoch
    figure."""
    text = ""
    if b.epochs is not None and b.rows[id(full)][0].n:
        shadows = [_Shadow(c, b.rows[id(c)]) for c in mini]
        best = max(shadows, key=lambda w: w.stats["acc_e"].mean or -1)
        text += _pair(best, _Shadow(full, b.rows[id(full)]), "acc_e",
                      f"Validation accuracy at equal epochs ({b.epochs:.4g}, read "
                      "from the history), best mini-batch vs exact full-batch "
                      "gradient descent") + " "
    else:
        text += "No equal-epoch point: full batch has no evaluation within the "
        text += "mini-batch epochs. "
    best_mini = max(mini, key=lambda c: c.stats["final"].mean or -1)
    text += (f"After its own budget ({_budget_of(full)}), full batch ends at "
             f"{fmt_acc(full.stats['final'])} final validation accuracy; the best "
             f"mini-batch setting, {best_mini.label}, ends at "
             f"{fmt_acc(best_mini.stats['final'])} after {_budget_of(best_mini)}. ")
    return text + (
        f"Steps to the target: {fmt_target(full.stats['steps'])} for full batch vs "
        f"{fmt_target(best_mini.stats['steps'])} for {best_mini.label}.")


def _budget_of(c: Condition) -> str:
    """The epochs and optimizer steps the ended runs of ``c`` trained."""
    ends = [(r.result.get("history") or [{}])[-1] for r in c.runs
            if r.status == "done"]

    def span(key: str) -> str:
        values = sorted({v for v in (_finite(e.get(key)) for e in ends)
                         if v is not None})
        if not values:
            return "?"
        low, high = values[0], values[-1]
        return f"{low:.4g}" if low == high else f"{low:.4g}-{high:.4g}"

    return f"{span('epochs_done')} epochs, {span('step')} optimizer steps"


def critical_rows(conds: list[Condition]) -> list[list[str]]:
    pooled = Stat.of([r.value("b_simple") for c in conds for r in c.runs])
    rows = [["B_simple, pooled over all runs", fmt_num(pooled, 3), str(pooled.n)]]
    knee = _knee(conds)
    if knee is not None:
        rows.append([f"Empirical knee ({knee.part})", fmt_x(knee.x),
                     f"steps to target {fmt_target(knee.stats['steps'])}"])
    return rows


CRITICAL_HEADER = ["Estimate", "Batch size", "n / basis"]


def _knee(conds: list[Condition]) -> Condition | None:
    reached = [c for c in conds if c.stats["steps"].complete and _finite(c.x)]
    if not reached:
        return None
    fewest = min(c.stats["steps"].mean for c in reached)
    return min((c for c in reached if c.stats["steps"].mean <= 2 * fewest),
               key=lambda c: float(c.x))


def critical_claim(conds: list[Condition]) -> str:
    pooled = Stat.of([r.value("b_simple") for c in conds for r in c.runs])
    text = (f"B_simple over every run that estimated it: {fmt_num(pooled, 3)} "
            f"(n={pooled.n} runs)." if pooled.n else
            "No run estimated B_simple (the noise-scale instrument was off), so "
            "the critical batch size rests on the empirical knee only.")
    knee = _knee(conds)
    if knee is not None:
        fewest = min(c.stats["steps"].mean for c in conds
                     if c.stats["steps"].complete and _finite(c.x))
        text += (f" Empirical knee: batch size {fmt_x(knee.x)} ({knee.part}) is the "
                 f"smallest whose steps to target ({fmt_target(knee.stats['steps'])})"
                 f" are within twice the fewest ({fewest:.0f}).")
        if pooled.mean is not None:
            ratio = pooled.mean / float(knee.x)
            text += (f" The two estimates differ by a factor of {ratio:.2g}; "
                     + ("they agree within a factor of 4." if 0.25 <= ratio <= 4 else
                        "they disagree by more than a factor of 4, so treat either "
                        "as an order of magnitude."))
    else:
        text += " No batch size reached the target in every seed: no empirical knee."
    return text


class _Shadow:
    """A condition seen through extra per-condition statistics (for best_claim)."""

    def __init__(self, c: Condition, extra: tuple[Stat, Stat, Stat]) -> None:
        self.label = c.label
        self.stats = {"acc_e": extra[0], "loss_s": extra[1], "acc_t": extra[2]}




def momentum(study: Study, conds: list[Condition]) -> list[str]:
    out = ["**Convergence.** " + speed_claim(conds) + " "
           + best_claim(conds, "final", "final validation accuracy")]
    plain = [c for c in conds if _kind(c) == "sgd"]
    if plain:
        for c in conds:
            if c is plain[0]:
                continue
            out.append(_pair(c, plain[0], "final", f"vs plain SGD, {c.label}"))
    else:
        out.append("No plain SGD run: the effect of momentum cannot be measured "
                   "against a no-momentum baseline.")
    out.append("**Gradient behaviour.** " + _instrument_text(conds))
    out.append("**Per-class accuracy.** " + per_class_text(conds, study.classes))
    pairs = _momentum_pairs(conds)
    if pairs:
        out += ["**Momentum vs Nesterov at " + value + ".** " + _pair(
            heavy, nest, "final", "Final validation accuracy") + " " + _stability_pair(
            heavy, nest, "Loss fluctuation") for value, heavy, nest in pairs]
    else:
        out.append("**Momentum vs Nesterov.** No pair of heavy-ball and Nesterov "
                   "runs at the same momentum value.")
    return out


def _kind(c: Condition) -> str:
    name = (c.series + " " + str(c.runs[0].config.get("optimizer", "") if c.runs
                                 else "")).lower()
    if "nesterov" in name:
        return "nesterov"
    if "momentum" in name or "heavy" in name:
        return "momentum"
    return "sgd"


def _momentum_value(c: Condition) -> str:
    if c.x_name == "momentum" and c.x is not None:
        return fmt_x(c.x)
    hp = c.runs[0].config.get("hparams", {}) if c.runs else {}
    return fmt_x(hp.get("momentum", "?"))


def _momentum_pairs(conds: list[Condition]):
    heavy = {_momentum_value(c): c for c in conds if _kind(c) == "momentum"}
    nest = {_momentum_value(c): c for c in conds if _kind(c) == "nesterov"}
    return [(f"momentum {v}", heavy[v], nest[v]) for v in heavy if v in nest]


def _instrument_text(conds: list[Condition]) -> str:
    have = [c for c in conds if c.stats["grad_norm"].n]
    if not have:
        return ("The event files hold no `grad_norm/global` scalars, so gradient "
                "norms cannot be discussed.")
    text = best_claim(have, "grad_norm", "gradient norm (mean over the second half "
                      "of training)", higher=False, fmt=lambda s: fmt_num(s, 3))
    upd = [c for c in conds if c.stats["update"].n]
    if upd:
        text += " " + best_claim(upd, "update", "update norm (second half)",
                                 higher=False, fmt=lambda s: fmt_num(s, 3))
    cos = [c for c in conds if c.stats["cosine"].n]
    if cos:
        neg = [c for c in cos if c.stats["cosine"].mean < 0]
        text += " " + best_claim(cos, "cosine", "cosine of successive gradients "
                                 "(second half)", higher=False,
                                 fmt=lambda s: fmt_num(s, 2))
        text += (" A negative cosine means successive gradients point against each "
                 "other (oscillation across a valley): "
                 + (", ".join(c.label for c in neg) if neg else "no setting") + ".")
    return text


def per_class_text(conds: list[Condition], classes: list[str]) -> str:
    have = [c for c in conds if "per_class" in c.stats]
    if not have:
        return "No run recorded per-class test accuracy."
    count = len(have[0].stats["per_class"][0])
    names = classes if len(classes) == count else [f"class {k}" for k in range(count)]
    spread = np.stack([c.stats["per_class"][0] for c in have])

    def extremes(k: int) -> str:
        low, high = int(np.argmin(spread[:, k])), int(np.argmax(spread[:, k]))
        return (f"from {fmt_class(spread[low, k])} ({have[low].label}) to "
                f"{fmt_class(spread[high, k])} ({have[high].label})")

    hardest = int(np.argmin(spread.mean(0)))
    widest = int(np.argmax(spread.max(0) - spread.min(0)))
    if len(have) == 1:
        return (f"Only {have[0].label} recorded per-class accuracy; its hardest class "
                f"is {names[hardest]} ({fmt_class(spread[0, hardest])}).")
    text = (f"The hardest class, lowest on average over the settings, is "
            f"{names[hardest]}: {extremes(hardest)}.")
    if widest != hardest:
        text += (f" The settings differ most on {names[widest]}: "
                 f"{extremes(widest)}.")
    if any(n < 2 for _, _, n in (c.stats["per_class"] for c in have)):
        text += " Some settings have a single seed: the differences are indicative."
    return text


def fmt_class(value: float) -> str:
    return f"{100 * value:.1f} %"


def per_class_rows(conds: list[Condition], classes: list[str]):
    have = [c for c in conds if "per_class" in c.stats]
    if not have:
        return None, []
    count = len(have[0].stats["per_class"][0])
    names = classes if len(classes) == count else [f"class {k}" for k in range(count)]
    rows = [[c.part, c.label, str(c.stats["per_class"][2]),
             *(fmt_class(v) for v in c.stats["per_class"][0])] for c in have]
    return ["Part", "Setting", "n", *names], rows




def sgd_lr(study: Study, conds: list[Condition]) -> list[str]:
    return _lr_sweep(conds, extremes=False)


def adaptive_lr(study: Study, conds: list[Condition]) -> list[str]:
    return _lr_sweep(conds, extremes=True)


def _lr_sweep(conds: list[Condition], extremes: bool) -> list[str]:
    ranges = lr_ranges(conds)
    if not ranges:
        return ["No learning-rate setting ended, so sensitivity cannot be measured."]
    out = []
    for r in ranges:
        single = min((c.n for c in r.accepted), default=r.best.n) < 2
        out.append(
            f"**{r.series}.** Best lr {fmt_x(r.best.x)} "
            f"({fmt_acc(r.best.stats['final'])}); {r.sentence()}; diverged at "
            + (", ".join(fmt_x(x) for x in r.diverged_lrs) or "no lr of the grid")
            + "." + (" Some settings have a single seed, so which lrs are "
                     "acceptable is uncertain." if single else ""))
    if len(ranges) > 1:
        out.append("**Sensitivity.** " + _sensitivity_text(ranges, conds))
    if extremes:
        out += _extremes(conds)
        out.append("**Recommendation.** " + _recommendation(ranges))
    return out


def _width_groups(ranges: list[LrRange]) -> list[list[LrRange]]:
    """Series grouped by equal width, widest first; series with a single
    acceptable grid point (no width) and with none come last, in that order."""
    def key(r: LrRange) -> tuple:
        return (r.decades is not None, r.decades or 0.0, r.points)

    groups: dict[tuple, list[LrRange]] = {}
    for r in sorted(ranges, key=key, reverse=True):
        groups.setdefault(key(r), []).append(r)
    return list(groups.values())


def _names(ranges: list[LrRange]) -> str:
    return ", ".join(r.series for r in ranges)


def _sensitivity_text(ranges: list[LrRange], conds: list[Condition]) -> str:
    groups = _width_groups(ranges)
    if len(groups) == 1:
        r = groups[0][0]
        if r.decades is not None:
            return (f"All optimizers ({_names(ranges)}) have acceptable ranges of "
                    f"the same width on this grid ({fmt_decades(r)} decades); the "
                    "grid cannot rank them by sensitivity.")
        what = ("only one acceptable grid point" if r.points == 1 else
                "no acceptable grid point")
        return (f"Every optimizer ({_names(ranges)}) has {what}, so no acceptable "
                "range has a width and the grid cannot rank them by sensitivity; "
                "a finer lr grid is needed.")
    parts = []
    for group in groups:
        r = group[0]
        width = (f"{fmt_decades(r)} decades" if r.decades is not None else
                 "one grid point, no width" if r.points == 1 else "no acceptable lr")
        tie = " (tied)" if len(group) > 1 else ""
        parts.append(f"{_names(group)} ({width}){tie}")
    return ("From least to most sensitive (widest acceptable range first): "
            + "; ".join(parts) + ". The widths are measured on the lr grid, so a "
            "difference of less than one grid step is not meaningful"
            + ("; with a single seed per setting the order is indicative only."
               if min(c.n for c in conds) < 2 else "."))


def _recommendation(ranges: list[LrRange]) -> str:
    """The most forgiving optimizer only when one range is strictly the widest;
    on a tie the recommendation says so and ranks by accuracy, named as such."""
    if len(ranges) == 1:
        r = ranges[0]
        return (f"Only {r.series} was swept, so no optimizer can be called more "
                f"forgiving than another; for {r.series}, {r.sentence()}.")
    widest = _width_groups(ranges)[0]
    if len(widest) == 1 and widest[0].decades is not None:
        r = widest[0]
        middle = math.sqrt(r.low * r.high)
        single = min(c.n for c in r.accepted) < 2
        return (f"On this data {r.series} is the most forgiving (the widest "
                f"acceptable range): any lr in {r.text()} stays within "
                f"{100 * ACCEPT_MARGIN:.0f} points of its best; start near "
                f"{middle:.2g} (the geometric middle of that range) and tune "
                "within it." + (" With a single seed per setting this is "
                                "indicative only." if single else ""))
    r = widest[0]
    why = (f"tie at {fmt_decades(r)} decades" if r.decades is not None else
           "have only one acceptable grid point each" if r.points == 1 else
           "have no acceptable lr")
    best = [x.best for x in widest]
    return (f"No optimizer is the most forgiving on this grid: {_names(widest)} "
            f"{why}. Ranked instead by final validation accuracy at each one's best "
            "lr (accuracy, not forgiveness): "
            + best_claim(best, "final", "final validation accuracy at the best lr"))


def _extremes(conds: list[Condition]) -> list[str]:
    out = []
    series = dict.fromkeys(c.series for c in conds)
    for s in series:
        group = sorted([c for c in conds if c.series == s and _finite(c.x)],
                       key=lambda c: float(c.x))
        if len(group) < 2:
            continue
        low, high = group[0], group[-1]
        out.append(
            f"**{s} at the extremes.** Lowest lr {fmt_x(low.x)}: "
            f"{fmt_acc(low.stats['final'])}, steps to target "
            f"{fmt_target(low.stats['steps'])}, final training loss "
            f"{fmt_num(low.stats['final_loss'])}. Highest lr {fmt_x(high.x)}: "
            f"{fmt_acc(high.stats['final'])}, {high.diverged} of {high.n} diverged, "
            f"loss fluctuation {fmt_stability(high)}.")
    return out




def adaptive(study: Study, conds: list[Condition]) -> list[str]:
    out = ["**Convergence speed.** " + speed_claim(conds),
           "**Final accuracy.** " + best_claim(conds, "final",
                                               "final validation accuracy"),
           "**Stability.** " + stability_claim(conds)]
    chosen = study.notes
    out.append("**Learning rates used.** " + ", ".join(
        f"{c.series}: {fmt_x(c.runs[0].config.get('hparams', {}).get('lr', '?'))}"
        for c in conds if c.runs) + (" (how they were chosen: see the study notes "
                                     "above)." if chosen else "."))
    out.append("**Effective learning rate.** " + _elr_text(conds))
    out.append("**Gradient and update magnitudes.** " + _instrument_text(conds))
    out.append("**Per-class accuracy.** " + per_class_text(conds, study.classes))
    out += _pros_cons(conds)
    return out


def _elr_text(conds: list[Condition]) -> str:
    parts = []
    for c in conds:
        first, last = c.stats["elr_median_first"], c.stats["elr_median_last"]
        if first.mean is None or last.mean is None:
            continue
        p5, p95 = c.stats["elr_p5_last"], c.stats["elr_p95_last"]
        spread = (f"; 5-95 band at the end {fmt_num(p5)} to {fmt_num(p95)}"
                  if p5.mean and p95.mean else "")
        parts.append(f"{c.label}: median {fmt_num(first)} at the first logged step, "
                     f"{fmt_num(last)} at the last (x{last.mean / first.mean:.2g})"
                     + spread)
    if not parts:
        return ("The event files hold no `effective_lr/median` scalars, so the "
                "effective learning rate cannot be discussed.")
    return "; ".join(parts) + "."


def _pros_cons(conds: list[Condition]) -> list[str]:
    out = []
    for c in conds:
        name = c.series.lower()
        first, last = c.stats["elr_median_first"], c.stats["elr_median_last"]
        decay = (f"its median effective lr changed by x{last.mean / first.mean:.2g} "
                 f"over training" if first.mean and last.mean else
                 "its effective lr was not logged")
        facts = (f"final accuracy {fmt_acc(c.stats['final'])}, steps to target "
                 f"{fmt_target(c.stats['steps'])}, loss fluctuation "
                 f"{fmt_stability(c)}, {decay}")
        if "adagrad" in name:
            why = ("Adagrad divides by the root of the sum of all past squared "
                   "gradients, so its step can only shrink: no tuning of a decay, "
                   "but progress slows late in training")
        elif "rmsprop" in name:
            why = ("RMSProp forgets old gradients (moving average), so the step does "
                   "not vanish; without momentum or bias correction its first steps "
                   "can be large")
        elif "adam" in name:
            why = ("Adam adds momentum and bias correction to the RMSProp "
                   "denominator: fast and robust early, at the cost of two state "
                   "buffers and sometimes a larger generalization gap")
        else:
            why = "no prior expectation for this optimizer"
        out.append(f"**{c.series}: advantages and drawbacks.** Measured: {facts}. "
                   f"Mechanism: {why}. Generalization gap "
                   f"{fmt_pts(c.stats['gap'])}.")
    return out




def adam_hparams(study: Study, conds: list[Condition]) -> list[str]:
    parts = by_part(conds)
    out = []
    for part, group in parts.items():
        name = group[0].x_name or part
        if group[0].y_name:
            best = max((c for c in group if c.stats["final"].mean is not None),
                       key=lambda c: c.stats["final"].mean, default=None)
            worst = min((c for c in group if c.stats["final"].mean is not None),
                        key=lambda c: c.stats["final"].mean, default=None)
            if best is not None and best is worst:
                out.append(f"**Trade-offs ({name} x {group[0].y_name} grid).** "
                           f"Only one cell ended ({best.label}, "
                           f"{fmt_acc(best.stats['final'])}): no trade-off to "
                           "measure.")
            elif best is not None:
                spread = 100 * (best.stats["final"].mean - worst.stats["final"].mean)
                out.append(f"**Trade-offs ({name} x {group[0].y_name} grid).** "
                           + best_claim(group, "final", "final validation accuracy")
                           + f" Worst cell: {worst.label}, "
                           f"{fmt_acc(worst.stats['final'])}; spread {spread:.1f} "
                           "points across the grid.")
            continue
        text = (f"**{name}.** " + speed_claim(group) + " "
                + best_claim(group, "final", "final validation accuracy") + " "
                + stability_claim(group))
        if name in ("beta2", "eps"):
            text += " Effective learning rate: " + _elr_text(group)
        if name == "eps":
            text += (" A large eps dominates sqrt(v_hat), so Adam's step tends to "
                     "lr/eps x momentum (SGD-like); a tiny eps leaves the full "
                     "per-weight adaptation.")
        out.append(text)
    if not out:
        out.append("No Adam hyperparameter run ended.")
    return out


def generic(study: Study, conds: list[Condition]) -> list[str]:
    return ["**Convergence.** " + speed_claim(conds),
            "**Final accuracy.** " + best_claim(conds, "final",
                                                "final validation accuracy")]


FINDINGS: dict[str, Callable[[Study, list[Condition]], list[str]]] = {
    "batch-size": batch_size,
    "momentum": momentum,
    "sgd-lr": sgd_lr,
    "adaptive": adaptive,
    "adaptive-lr": adaptive_lr,
    "adam-hparams": adam_hparams,
}


def findings(study: Study, conds: list[Condition],
             others: dict[str, list[Condition]] | None = None) -> list[str]:
    """The findings of one study; ``others`` holds the conditions of the other
    studies for the claims that cross studies (adaptive's lrs vs adaptive-lr)."""
    if not conds or not any(c.n for c in conds):
        return ["No run of this study ended, so there is nothing to report yet."]
    out = FINDINGS.get(study.name, generic)(study, [c for c in conds if c.n])
    if study.name == "adaptive":
        out.append("**Learning rates checked against adaptive-lr.** "
                   + _lr_check(conds, (others or {}).get("adaptive-lr", [])))
    return out


def _lr_check(conds: list[Condition], sweep: list[Condition]) -> str:
    ranges = {r.series: r for r in lr_ranges([c for c in sweep if c.n])}
    if not ranges:
        return "The adaptive-lr study has no ended run, so the choice is unchecked."
    parts = []
    for c in conds:
        lr = _finite(c.runs[0].config.get("hparams", {}).get("lr")) if c.runs else None
        r = ranges.get(c.series)
        if lr is None or r is None:
            continue
        if r.points > 1:
            where = "inside" if r.contains(lr) else "outside"
            parts.append(f"{c.series} used {fmt_x(lr)}, {where} its acceptable "
                         f"range {r.text()} (best grid lr {fmt_x(r.best.x)})")
        else:
            where = "the" if r.contains(lr) else "not the"
            parts.append(f"{c.series} used {fmt_x(lr)}, {where} only acceptable "
                         f"lr of the sweep ({fmt_x(r.low)}; one grid point, no "
                         "range)" if r.points else
                         f"{c.series} used {fmt_x(lr)}; in the sweep "
                         f"{r.sentence()}")
    return ("; ".join(parts) + ".") if parts else (
        "No optimizer of this study appears in the adaptive-lr sweep.")

