"""Every figure of the report, drawn with matplotlib's Agg backend.

Each function draws one figure from a study's conditions, saves it as PNG (and
the extra formats asked for) under ``figures/`` and returns a :class:`Drawn`
record, or ``None`` when the runs hold nothing to draw. Curves show the mean
over seeds with a band of +- one std; every legend states n.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter  # noqa: E402
from PIL import Image  # noqa: E402

from experiments.report.runs import _finite  # noqa: E402
from experiments.report.stats import Condition, fmt_x  # noqa: E402

log = logging.getLogger(__name__)

MAX_LINES = 8
DPI = 90


@dataclass(frozen=True)
class Drawn:
    png: Path  # relative to the report folder
    caption: str
    alt: str


class Canvas:
    """Where figures go and in which formats."""

    def __init__(self, folder: Path, formats: tuple[str, ...],
                 owned: frozenset[str] = frozenset()) -> None:
        self.folder = folder
        self.formats = formats
        self.owned = owned  # figures/<file> an earlier report wrote (its manifest)
        self.written: list[str] = []  # figures/<file> this report wrote
        (folder / "figures").mkdir(parents=True, exist_ok=True)

    def _claim(self, relative: Path) -> None:
        """Record a file this report writes; warn before replacing a file that no
        earlier report recorded writing (a user's own file of the same name)."""
        key = relative.as_posix()
        if (self.folder / relative).exists() and key not in self.owned:
            log.warning("replacing %s: a file of a figure's name that no earlier "
                        "report recorded writing", self.folder / relative)
        self.written.append(key)

    def save(self, fig, name: str, caption: str, alt: str) -> Drawn:
        relative = Path("figures") / f"{name}.png"
        for extra in dict.fromkeys(("png", *self.formats)):
            self._claim(Path("figures") / f"{name}.{extra}")
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=DPI)
        buffer.seek(0)
        # a 256-colour palette keeps the figures sharp at a third of the bytes,
        # which matters for report.html, where every figure is embedded
        with Image.open(buffer) as image:
            image.convert("RGB").quantize(256, method=Image.Quantize.FASTOCTREE).save(
                self.folder / relative, format="PNG")
        for extra in self.formats:
            if extra != "png":
                fig.savefig(self.folder / "figures" / f"{name}.{extra}")
        plt.close(fig)
        return Drawn(relative, caption, alt)


def representative(conds: list[Condition]) -> list[Condition]:
    """All conditions when they are few; else the best (final accuracy) per series."""
    if len(conds) <= MAX_LINES:
        return conds
    best: dict[str, Condition] = {}
    for c in conds:
        mean = c.stats["final"].mean
        held = best.get(c.series)
        if mean is not None and (held is None or mean > held.stats["final"].mean):
            best[c.series] = c
    return list(best.values())[:MAX_LINES]


def curves(canvas: Canvas, name: str, conds: list[Condition],
           note: str) -> Drawn | None:
    axes_x = (("epochs_done", "epochs"), ("step", "optimizer steps"),
              ("time_s", "seconds"))
    axes_y = (("train_loss", "training loss"), ("val_acc", "validation accuracy"))
    fig, axes = plt.subplots(2, 3, figsize=(13, 6.5), squeeze=False)
    drawn = False
    for i, c in enumerate(conds):
        histories = [r.result.get("history") or [] for r in c.runs
                     if r.status == "done"]
        histories = [h for h in histories if h]
        if not histories:
            continue
        length = min(len(h) for h in histories)
        for row, (ykey, _) in enumerate(axes_y):
            for col, (xkey, _) in enumerate(axes_x):
                xs = _matrix(histories, xkey, length)
                ys = _matrix(histories, ykey, length)
                if xs is None or ys is None:
                    continue
                label = c.legend() if (row, col) == (0, 0) else None
                _band(axes[row][col], np.nanmean(xs, 0), ys, f"C{i % 10}", label)
                drawn = True
    if not drawn:
        plt.close(fig)
        return None
    for row, (_, ylabel) in enumerate(axes_y):
        for col, (_, xlabel) in enumerate(axes_x):
            axes[row][col].set_xlabel(xlabel)
            axes[row][col].set_ylabel(ylabel)
            axes[row][col].grid(alpha=0.3)
        _log_y(axes[0][col])
    fig.legend(loc="lower center", ncol=min(4, len(conds)), fontsize=8)
    fig.subplots_adjust(left=0.06, right=0.99, top=0.98, bottom=0.17, wspace=0.25,
                        hspace=0.3)
    caption = ("Training loss (top, log scale) and validation accuracy (bottom) "
               "against epochs, optimizer steps and seconds; mean over seeds with a "
               "± 1 std band; diverged runs are left out of the curves and counted "
               "in the legend. " + note)
    return canvas.save(fig, name, caption, f"learning curves {name}")


def sensitivity(canvas: Canvas, name: str, conds: list[Condition],
                x_name: str) -> Drawn | None:
    by_series: dict[str, list[Condition]] = {}
    for c in conds:
        if _finite(c.x) is not None:
            by_series.setdefault(c.series, []).append(c)
    if not by_series or max(len(v) for v in by_series.values()) < 2:
        return None
    xs_all = [float(c.x) for group in by_series.values() for c in group]
    log_x = min(xs_all) > 0 and max(xs_all) / min(xs_all) >= 20
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    marked = False
    for i, (series, group) in enumerate(by_series.items()):
        color = f"C{i % 10}"
        x = np.array([float(c.x) for c in group])
        for ax, key in ((axes[0], "final"), (axes[1], "final_loss")):
            mean = np.array([_nan(c.stats[key].mean) for c in group])
            std = np.array([c.stats[key].std or 0.0 for c in group])
            n = sum(c.n for c in group)
            ax.plot(x, mean, "o-", color=color, label=f"{series} (n={n} runs)")
            ax.fill_between(x, mean - std, mean + std, color=color, alpha=0.2)
        for c in group:
            for run in c.runs:
                if run.status == "diverged":
                    marked = True
                    axes[0].plot(float(c.x), c.accuracy(run, "final_val_acc"), "x",
                                 color="red", markersize=10, mew=2)
    if marked:
        axes[0].plot([], [], "x", color="red", mew=2, label="diverged run")
    for ax, ylabel in ((axes[0], "final validation accuracy"),
                       (axes[1], "final training loss")):
        ax.set_xlabel(x_name)
        ax.set_ylabel(ylabel)
        if log_x:
            ax.set_xscale("log")
        ax.grid(alpha=0.3)
    _log_y(axes[1])
    axes[0].legend(fontsize=8)
    _layout(fig)
    caption = (f"Sensitivity to {x_name}: final validation accuracy and training loss "
               "per setting, mean over seeds with a ± 1 std band; each diverged run "
               "is marked with a red cross at the accuracy it counts at (its "
               "training loss is not finite and is not drawn).")
    return canvas.save(fig, name, caption, f"sensitivity to {x_name}")


def heatmap(canvas: Canvas, name: str, conds: list[Condition]) -> Drawn | None:
    cells = [c for c in conds if _finite(c.x) is not None and _finite(c.y) is not None]
    if not cells:
        return None
    xs = sorted({float(c.x) for c in cells})
    ys = sorted({float(c.y) for c in cells})
    grid = np.full((len(ys), len(xs)), np.nan)
    counts = np.zeros_like(grid, dtype=int)
    for c in cells:
        j, i = xs.index(float(c.x)), ys.index(float(c.y))
        grid[i, j] = _nan(c.stats["final"].mean)
        counts[i, j] = c.n
    fig, ax = plt.subplots(figsize=(1.3 * len(xs) + 2.5, 0.9 * len(ys) + 2))
    image = ax.imshow(grid, cmap="viridis", origin="lower", aspect="auto")
    for i in range(len(ys)):
        for j in range(len(xs)):
            text = "missing" if counts[i, j] == 0 else (
                f"{100 * grid[i, j]:.1f}\nn={counts[i, j]}")
            ax.text(j, i, text, ha="center", va="center", fontsize=8,
                    color="white" if np.isnan(grid[i, j]) or grid[i, j] < np.nanmean(
                        grid) else "black")
    ax.set_xticks(range(len(xs)), [fmt_x(v) for v in xs])
    ax.set_yticks(range(len(ys)), [fmt_x(v) for v in ys])
    ax.set_xlabel(cells[0].x_name or "x")
    ax.set_ylabel(cells[0].y_name or "y")
    fig.colorbar(image, ax=ax, label="mean final validation accuracy")
    _layout(fig)
    caption = (f"Mean final validation accuracy (%) over the {cells[0].x_name} x "
               f"{cells[0].y_name} grid; n = seeds per cell.")
    return canvas.save(fig, name, caption, "hyperparameter grid heatmap")


def per_class(canvas: Canvas, name: str, conds: list[Condition],
              classes: list[str]) -> Drawn | None:
    conds = [c for c in conds if "per_class" in c.stats]
    if not conds:
        return None
    width = 0.8 / len(conds)
    count = len(conds[0].stats["per_class"][0])
    labels = classes if len(classes) == count else [f"class {k}" for k in range(count)]
    fig, ax = plt.subplots(figsize=(12, 4.5))
    for i, c in enumerate(conds):
        mean, std, n = c.stats["per_class"]
        ax.bar(np.arange(count) + (i - (len(conds) - 1) / 2) * width, mean, width,
               yerr=std, capsize=2, color=f"C{i % 10}", label=f"{c.label} (n={n})")
    ax.set_xticks(range(count), labels, rotation=20)
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8, ncol=2)
    ax.grid(alpha=0.3, axis="y")
    _layout(fig)
    caption = ("Per-class test accuracy, mean over seeds with ± 1 std error bars.")
    return canvas.save(fig, name, caption, "per-class accuracy")


def tag_curves(canvas: Canvas, name: str, conds: list[Condition],
               panels: tuple[tuple[str, str, bool], ...], caption: str) -> Drawn | None:
    """One panel per (tag, y label, log scale): mean over seeds with a std band."""
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.3),
                             squeeze=False)
    drawn = False
    for k, (tag, ylabel, log_y) in enumerate(panels):
        ax = axes[0][k]
        panel = False
        for i, c in enumerate(conds):
            steps, matrix = _aligned(c, tag)
            if steps is None:
                continue
            _band(ax, steps, matrix, f"C{i % 10}", c.legend())
            panel = drawn = True
        ax.set_xlabel("optimizer step")
        ax.set_ylabel(ylabel)
        if not panel:
            ax.text(0.5, 0.5, f"no `{tag}` scalars in the event files",
                    ha="center", va="center", transform=ax.transAxes)
        elif log_y:
            _log_y(ax)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    if not drawn:
        plt.close(fig)
        return None
    _layout(fig)
    return canvas.save(fig, name, caption, caption.split(":")[0])


def effective_lr(canvas: Canvas, name: str, conds: list[Condition]) -> Drawn | None:
    fig, ax = plt.subplots(figsize=(9, 4.8))
    drawn = False
    for i, c in enumerate(conds):
        color = f"C{i % 10}"
        steps, median = _aligned(c, "effective_lr/median")
        if steps is not None:
            _, low = _aligned(c, "effective_lr/p5", steps)
            _, high = _aligned(c, "effective_lr/p95", steps)
            ax.plot(steps, np.nanmedian(median, 0), color=color,
                    label=f"{c.legend()} median")
            if low is not None and high is not None:
                ax.fill_between(steps, np.nanmean(low, 0), np.nanmean(high, 0),
                                color=color, alpha=0.2)
            drawn = True
            continue
        steps, steady = _aligned(c, "effective_lr/steady_state")
        if steps is not None:
            ax.plot(steps, np.nanmedian(steady, 0), "--", color=color,
                    label=f"{c.legend()} lr/(1-momentum)")
            drawn = True
    if not drawn:
        plt.close(fig)
        return None
    _log_y(ax)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("effective learning rate")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    _layout(fig)
    caption = ("Effective learning rate lr_t / (sqrt(v_hat) + eps) over training: "
               "median over all weights (line, median over seeds) and the 5-95 "
               "percentile band over weights (mean over seeds); SGD-family runs "
               "show lr / (1 - momentum) dashed.")
    return canvas.save(fig, name, caption, "effective learning rate")


def batch_efficiency(canvas: Canvas, name: str, conds: list[Condition],
                     b_simple: float | None, full_size: float | None) -> Drawn | None:
    points = [(c, _batch_value(c.x, full_size)) for c in conds]
    points = [(c, b) for c, b in points if b is not None]
    if len(points) < 2:
        return None
    panels = (("throughput", "samples per second"), ("seconds", "seconds to target"),
              ("steps", "optimizer steps to target"))
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    parts = list(dict.fromkeys(c.part for c, _ in points))
    for i, part in enumerate(parts):
        group = sorted([(b, c) for c, b in points if c.part == part],
                       key=lambda t: t[0])
        bs = np.array([b for b, _ in group])
        n = sum(c.n for _, c in group)
        for ax, (key, ylabel) in zip(axes, panels, strict=True):
            stats = [c.stats[key] for _, c in group]
            mean = np.array([_nan(s.mean) for s in stats])
            std = np.array([(s.std or 0.0) for s in stats])
            ax.plot(bs, mean, "o-", color=f"C{i}", label=f"{part} (n={n} runs)")
            ax.fill_between(bs, mean - std, mean + std, color=f"C{i}", alpha=0.2)
            censored = [j for j, s in enumerate(stats) if getattr(s, "censored", 0)]
            if censored:
                ax.plot(bs[censored], mean[censored], "^", color=f"C{i}",
                        markersize=9, markerfacecolor="none")
            ax.set_ylabel(ylabel)
    ticks = sorted({b for _, b in points})
    names = {b: ("full" if str(c.x) == "full" else fmt_x(c.x)) for c, b in points}
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xticks(ticks, [names[b] for b in ticks])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("batch size")
        ax.grid(alpha=0.3)
        if b_simple is not None:
            ax.axvline(b_simple, color="black", linestyle=":",
                       label=f"B_simple = {b_simple:.0f}")
    for ax in axes[1:]:
        _log_y(ax)
    axes[0].legend(fontsize=8)
    _layout(fig)
    caption = ("Throughput, seconds and optimizer steps to the target accuracy "
               "against batch size (full batch drawn at the training-set size, or "
               "at twice the largest batch size when that size is not recorded), "
               "mean over seeds with a ± 1 std band; hollow triangles mark "
               "censored settings (a lower bound); the dotted line is the critical "
               "batch size estimate B_simple.")
    return canvas.save(fig, name, caption, "batch size efficiency")


def _log_y(ax) -> None:
    """Log y axis with plain numbers; 2 and 5 labelled when under three decades."""
    ax.set_yscale("log")
    low, high = ax.get_ylim()
    ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    if high < 1000 * low:
        ax.yaxis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
        ax.yaxis.set_minor_formatter(FormatStrFormatter("%g"))
    else:
        ax.yaxis.set_minor_formatter(NullFormatter())


def _layout(fig) -> None:
    """Fixed margins that fit the labels of these figures: ``tight_layout`` would
    measure every tick label and doubles the drawing time."""
    width, height = fig.get_size_inches()
    fig.subplots_adjust(left=0.75 / width, right=1 - 0.2 / width,
                        bottom=0.6 / height, top=1 - 0.15 / height, wspace=0.3)


def _batch_value(x, full_size: float | None) -> float | None:
    number = _finite(x)
    if number is not None:
        return number
    return full_size if str(x) == "full" else None


def _matrix(histories: list[list[dict]], key: str, length: int) -> np.ndarray | None:
    rows = [[_nan(_finite(h[k].get(key))) for k in range(length)] for h in histories]
    matrix = np.array(rows, dtype=float)
    return None if np.all(np.isnan(matrix)) else matrix


def _aligned(c: Condition, tag: str, steps: np.ndarray | None = None):
    """The tag of every ended, non-diverged seed interpolated onto one step grid."""
    series = [r.scalars[tag] for r in c.runs
              if tag in r.scalars and len(r.scalars[tag][0]) and r.status == "done"]
    if not series:
        return None, None
    if steps is None:
        steps = min((s for s, _ in series), key=lambda s: s[-1])
    matrix = np.stack([np.interp(steps, s, v) for s, v in series])
    return steps, matrix


def _band(ax, x: np.ndarray, ys: np.ndarray, color: str, label: str | None) -> None:
    mean = np.nanmean(ys, 0)
    few = len(x) <= 12  # a short history: show its points, a single one included
    ax.plot(x, mean, color=color, label=label, marker="o" if few else None,
            markersize=4)
    if len(ys) > 1:
        std = np.nanstd(ys, 0, ddof=1)
        ax.fill_between(x, mean - std, mean + std, color=color, alpha=0.2)


def _nan(value: float | None) -> float:
    return float("nan") if value is None else float(value)
