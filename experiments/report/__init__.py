"""``optimlab report``: the analysis report of the six studies, from the runs.

Reads ``<logdir>/<study>/study.json``, ``index.json``, every ``summary.json`` and
the TensorBoard event files (``docs/architecture.md``), and writes into ``--out``:

- ``report.md`` with the figures beside it under ``figures/``;
- ``report.html``, the same report in one file with every figure embedded;
- ``figures/*.png`` (plus ``.svg`` / ``.pdf`` when asked with ``--format``);
- ``.optimlab-report-manifest.json``, the list of figures written: a later report
  into the same folder removes only the figures listed there that it does not
  write again, never any other file in ``figures/``.

A missing study, missing or failed runs are listed in the report and the rest is
rendered; an empty or wrong log directory is an error that names it.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from experiments.report import figures as fig
from experiments.report.document import Document, slug, to_html, to_markdown
from experiments.report.findings import (
    CRITICAL_HEADER,
    RANGE_HEADER,
    budget_header,
    budget_rows,
    budgets,
    critical_rows,
    findings,
    lr_ranges,
    per_class_rows,
    range_rows,
)
from experiments.report.runs import (
    KNOWN_STUDIES,
    ReportError,
    Run,
    Study,
    load_logdir,
    read_scalars,
)
from experiments.report.stats import (
    DEFINITIONS,
    Condition,
    conditions,
    fmt_acc,
    fmt_num,
    fmt_pts,
    fmt_stability,
    fmt_target,
    stability_note,
)
from experiments.runstore import atomic_write_json

log = logging.getLogger(__name__)

FORMATS = ("png", "svg", "pdf")
# in --out: the figures this report wrote; the next report deletes only those
MANIFEST = ".optimlab-report-manifest.json"
TAGS = frozenset({
    "train/loss", "grad_norm/global", "update/global", "momentum/grad_cosine",
    "effective_lr/median", "effective_lr/p5", "effective_lr/p95",
    "effective_lr/lr", "effective_lr/steady_state",
})

MAIN_HEADER = ["Part", "Setting", "n", "Final val acc", "Best val acc", "Test acc",
               "Steps to target", "Epochs to target", "Seconds to target",
               "Final train loss", "Gen. gap", "Stability", "Diverged"]
# (column, statistic, significant digits); a column shows when any setting has it
INSTRUMENT_COLUMNS = (
    ("Grad norm", "grad_norm", 3), ("Update norm", "update", 3),
    ("Grad cosine", "cosine", 2), ("lr/(1-momentum)", "elr_steady", 3),
    ("Eff. lr median (first)", "elr_median_first", 3),
    ("Eff. lr median (last)", "elr_median_last", 3),
    ("Eff. lr p5 (last)", "elr_p5_last", 3), ("Eff. lr p95 (last)", "elr_p95_last", 3),
)


@dataclass(frozen=True)
class Written:
    markdown: Path
    html: Path
    figures: tuple[Path, ...]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--logdir", default="lightning_logs",
                        help="folder that `optimlab run` wrote (default: %(default)s)")
    parser.add_argument("--out", default="reports",
                        help="folder for report.md, report.html and figures/ "
                             "(default: %(default)s)")
    parser.add_argument("--studies", nargs="+", metavar="STUDY",
                        help=f"studies to include (default: all found; known: "
                             f"{', '.join(KNOWN_STUDIES)})")
    parser.add_argument("--format", default="png",
                        help="figure formats, comma separated, from "
                             f"{', '.join(FORMATS)}; PNG is always written "
                             "(default: %(default)s)")


def main(args: argparse.Namespace) -> int:
    try:
        formats = parse_formats(args.format)
        started = time.perf_counter()
        written = build_report(args.logdir, args.out, args.studies, formats)
    except ReportError as error:
        print(f"optimlab report: error: {error}", file=sys.stderr)
        return 2
    log.info("wrote %s and %s (%d figures) in %.1f s", written.markdown,
             written.html, len(written.figures), time.perf_counter() - started)
    print(f"report: {written.markdown} and {written.html}")
    return 0


def parse_formats(text: str) -> tuple[str, ...]:
    chosen = [part.strip().lower() for part in text.split(",") if part.strip()]
    for name in chosen:
        if name not in FORMATS:
            raise ReportError(f"--format: '{name}' is not one of {', '.join(FORMATS)}")
    return tuple(dict.fromkeys(["png", *chosen]))


def build_report(logdir: str | Path, out: str | Path,
                 studies: list[str] | None = None,
                 formats: tuple[str, ...] = ("png",)) -> Written:
    """Write the report of the studies under ``logdir`` into ``out``."""
    loaded = load_logdir(logdir, studies)
    folder = _out_folder(out)
    owned = _earlier_figures(folder)
    canvas = fig.Canvas(folder, formats, frozenset(owned))
    doc = Document()
    doc.heading(1, "optimlab report")
    present = [s for s in loaded if s.folder is not None]
    absent = [s.name for s in loaded if s.folder is None]
    if not studies:
        absent += [name for name in KNOWN_STUDIES if name not in
                   {s.name for s in loaded}]
    doc.paragraph(
        f"Runs read from `{logdir}`: {sum(len(_unique(s)) for s in present)} "
        "summaries "
        f"in {len(present)} studies. "
        + (f"Missing studies: {', '.join(absent)}." if absent else
           "Every requested study is present."))
    doc.bullets([f"[{s.title}](#{_anchor(s)})" for s in present])
    doc.heading(2, "Definitions")
    doc.bullets([f"**{name}**: {text}" for name, text in DEFINITIONS])
    drawn: list[fig.Drawn] = []
    for study in present:
        for run in study.runs:
            study.problems += read_scalars(run, TAGS)
    by_study = {study.name: conditions(study) for study in present}
    for study in present:
        drawn += _study_section(doc, canvas, study, by_study)
    _missing_section(doc, loaded, absent)
    markdown = folder / "report.md"
    markdown.write_text(to_markdown(doc), encoding="utf-8")
    page = folder / "report.html"
    page.write_text(to_html(doc, folder, "optimlab report"), encoding="utf-8")
    _remove_earlier_figures(folder, owned, set(canvas.written))
    _write_manifest(folder, canvas.written)
    return Written(markdown, page, tuple(folder / d.png for d in drawn))


def _out_folder(out: str | Path) -> Path:
    """``out`` as a folder that exists, or a :class:`ReportError` naming it."""
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise ReportError(f"--out '{folder}' is a file, not a folder; pass a folder "
                          "for report.md, report.html and figures/")
    try:
        (folder / "figures").mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ReportError(f"--out '{folder}': cannot create the report folder "
                          f"({error.strerror or error}); pass a writable folder"
                          ) from None
    return folder


def _earlier_figures(folder: Path) -> list[str]:
    """The figures an earlier report wrote into ``folder``, from its manifest
    (``MANIFEST``): only these may ever be deleted. Entries that are not a plain
    ``figures/<name>.<png|svg|pdf>`` are ignored; a damaged manifest is a warning
    and removes nothing."""
    path = folder / MANIFEST
    if not path.is_file():
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        entries = data["figures"]
        if not isinstance(entries, list):
            raise TypeError("'figures' is not a list")
    except (OSError, ValueError, KeyError, TypeError) as error:
        log.warning("%s is damaged (%s); no figure of an earlier report is removed",
                    path, error)
        return []
    return [e for e in entries if isinstance(e, str) and _is_figure_entry(e)]


def _is_figure_entry(entry: str) -> bool:
    parts = entry.split("/")
    return (len(parts) == 2 and parts[0] == "figures" and parts[1] not in ("", ".",
            "..") and "\\" not in parts[1]
            and Path(parts[1]).suffix.lstrip(".") in FORMATS)


def _remove_earlier_figures(folder: Path, owned: list[str], kept: set[str]) -> None:
    """Delete the figures the earlier report wrote and this one did not."""
    for entry in owned:
        path = folder / entry
        if entry not in kept and path.is_file() and not path.is_symlink():
            path.unlink()


def _write_manifest(folder: Path, written: list[str]) -> None:
    atomic_write_json(folder / MANIFEST, {"written_by": "optimlab report",
                                          "figures": sorted(set(written))})


def _anchor(study: Study) -> str:
    return slug(_title(study))


def _unique(study: Study) -> list[Run]:
    """One entry per run (a run in several parts of a study appears in each)."""
    return list({run.run_id: run for run in study.runs}.values())


def _title(study: Study) -> str:
    return f"{study.title} ({study.name})" if study.title != study.name else study.name


def _study_section(doc: Document, canvas: fig.Canvas, study: Study,
                   by_study: dict[str, list[Condition]]) -> list[fig.Drawn]:
    conds = by_study[study.name]
    ended = [c for c in conds if c.n]
    doc.heading(2, _title(study))
    status = {k: sum(r.status == k for r in _unique(study))
              for k in ("done", "diverged", "failed")}
    target = (f"{100 * study.target_accuracy:.1f} %" if study.target_accuracy
              is not None else "not set")
    lost = len(set(study.missing) | set(study.unfinished))
    doc.paragraph(
        f"Model: {study.model or 'unknown'}; preset: {study.preset or 'unknown'}; "
        f"target validation accuracy: {target}. Runs: {status['done']} done, "
        f"{status['diverged']} diverged, {status['failed']} failed"
        + (f", {lost} planned runs missing or unfinished (listed at the end)"
           if lost else "") + ".")
    if study.stale:
        doc.paragraph(
            f"{len(study.stale)} runs on disk are not in the current plan (stale, "
            "ignored): they were planned by an earlier `optimlab run` of this "
            "study with other settings; no table, figure or finding uses them "
            "(listed at the end).")
    if not study.has_plan:
        doc.paragraph(
            "study.json lists no planned runs, so this section uses every summary "
            "found in the study folder; runs of earlier plans may be mixed in.")
    counts = image_counts(study)
    doc.paragraph(counts.sentence(len(study.classes)))
    if study.notes:
        doc.paragraph(f"Study notes: {study.notes}")
    if study.questions:
        doc.heading(3, f"Questions: {study.name}")
        doc.bullets(study.questions)
    doc.heading(3, f"Findings: {study.name}")
    doc.bullets(findings(study, conds, by_study))
    doc.heading(3, f"Tables: {study.name}")
    if ended:
        unknown = "an unrecorded number of"
        doc.table(f"{study.name}: results per setting (mean ± std over seeds; "
                  f"validation accuracy on {counts.val or unknown} images, test "
                  f"accuracy on {counts.test or unknown} images)", MAIN_HEADER,
                  [_main_row(c) for c in conds])
        note = stability_note(ended)
        if note:
            doc.paragraph(note)
    else:
        doc.paragraph("No run of this study ended: no table.")
    if study.name in ("sgd-lr", "adaptive-lr") and ended:
        doc.table(f"{study.name}: acceptable learning-rate ranges", RANGE_HEADER,
                  range_rows(lr_ranges(ended)))
    if study.name == "batch-size" and ended:
        for part, group in _parts(ended).items():
            b = budgets(group)
            doc.table(f"{study.name} ({part}): equal-budget comparison",
                      budget_header(b), budget_rows(group, b))
        doc.table(f"{study.name}: critical batch size estimates", CRITICAL_HEADER,
                  critical_rows(ended))
    first_part = next(iter(_parts(ended).values()), [])
    header, rows = per_class_rows(fig.representative(first_part), study.classes)
    if rows:
        doc.table(f"{study.name}: per-class test accuracy, mean over seeds (the "
                  "settings of the per-class figure; "
                  + (f"{counts.test} test images in all" if counts.test else
                     "test-set size not recorded") + ")",
                  header, rows)
    columns = [col for col in INSTRUMENT_COLUMNS
               if any(c.stats[col[1]].n for c in ended)]
    if columns:
        doc.table(f"{study.name}: instruments from the TensorBoard scalars, mean "
                  "over the second half of training (first / last logged value "
                  "where stated)", ["Part", "Setting", "n", *(c[0] for c in columns)],
                  [[c.part, c.label, str(c.n),
                    *(fmt_num(c.stats[key], digits) for _, key, digits in columns)]
                   for c in ended])
    doc.heading(3, f"Figures: {study.name}")
    drawn = _figures(canvas, study, ended)
    for d in drawn:
        doc.figure(d.caption, d.png, d.alt)
    if not drawn:
        doc.paragraph("No figure: no run of this study ended.")
    return drawn


@dataclass(frozen=True)
class ImageCounts:
    """The validation and test images behind a study's accuracies, as text
    ('256', '256-5,000' when runs differ); ``None`` when unknown."""

    val: str | None
    val_from_config: bool  # from the config's val_size, not result.num_val
    test: str | None
    test_low: int | None  # the smallest test-set size, for per-class resolution

    def sentence(self, classes: int) -> str:
        val = ("not recorded" if self.val is None else f"{self.val} images"
               + (" (the config's val_size)" if self.val_from_config else ""))
        if self.test is None:
            test = ("not recorded: summary.json holds no test-set size, and the "
                    "data directory's copy may hold fewer test images than the "
                    "official split (summaries written before optimlab train "
                    "recorded `result.num_test` lack it)")
        else:
            test = f"{self.test} images"
            if classes and self.test_low:
                per = self.test_low / classes
                test += (f" (about {per:.0f} per class, so one image is about "
                         f"{100 / per:.2g} % of a class's accuracy)")
        return f"Images behind the accuracies: validation {val}; test {test}."


def image_counts(study: Study) -> ImageCounts:
    """Validation: ``result.num_val``, else the config's ``val_size``. Test:
    ``result.num_test`` only; summary.json has no other test-set size, and a data
    directory may hold a reduced test split, so nothing is assumed."""
    def span(values: set[int]) -> str | None:
        if not values:
            return None
        low, high = min(values), max(values)
        return f"{low:,}" if low == high else f"{low:,}-{high:,}"

    runs = _unique(study)
    num_val = {int(v) for v in (r.value("num_val") for r in runs) if v is not None}
    val_size = {int(v) for v in (_finite_or_none(r.config.get("val_size"))
                                 for r in runs) if v is not None}
    num_test = {int(v) for v in (r.value("num_test") for r in runs) if v is not None}
    return ImageCounts(span(num_val) or span(val_size), not num_val and bool(val_size),
                       span(num_test), min(num_test) if num_test else None)


def _finite_or_none(value) -> float | None:
    return float(value) if _is_number(value) and value == value else None


def _parts(conds: list[Condition]) -> dict[str, list[Condition]]:
    parts: dict[str, list[Condition]] = {}
    for c in conds:
        parts.setdefault(c.part, []).append(c)
    return parts


def _main_row(c: Condition) -> list[str]:
    s = c.stats
    return [c.part, c.label, str(c.n), fmt_acc(s["final"]), fmt_acc(s["best"]),
            fmt_acc(s["test"]), fmt_target(s["steps"]), fmt_target(s["epochs"]),
            fmt_target(s["seconds"], "s"), fmt_num(s["final_loss"]), fmt_pts(s["gap"]),
            fmt_stability(c),
            f"{c.diverged}/{c.n}" + (f" ({len(c.failed)} failed)" if c.failed else "")]


def _figures(canvas: fig.Canvas, study: Study,
             conds: list[Condition]) -> list[fig.Drawn]:
    out: list[fig.Drawn | None] = []
    name = study.name
    for part, group in _parts(conds).items():
        shown = fig.representative(group)
        note = ("" if len(shown) == len(group) else
                "Only the best setting of each series is drawn.")
        out.append(fig.curves(canvas, f"{name}-{part}-curves", shown, note))
        if group[0].y_name:
            out.append(fig.heatmap(canvas, f"{name}-{part}-heatmap", group))
        elif group[0].x_name and name != "batch-size":
            out.append(fig.sensitivity(canvas, f"{name}-{part}-sensitivity", group,
                                       group[0].x_name))
        out.append(fig.effective_lr(canvas, f"{name}-{part}-effective-lr", shown))
        out.append(fig.tag_curves(
            canvas, f"{name}-{part}-grad-update", shown,
            (("grad_norm/global", "gradient norm", True),
             ("update/global", "update norm", True)),
            "Gradient norm and update magnitude over training: whole-model L2 "
            "norms, mean over seeds with a ± 1 std band."))
        if name != "momentum":
            continue  # the cosine of successive gradients is a momentum question
        out.append(fig.tag_curves(
            canvas, f"{name}-{part}-grad-cosine", shown,
            (("momentum/grad_cosine", "cosine of successive gradients", False),),
            "Cosine of successive gradients over training: near 1 the gradient "
            "keeps its direction, below 0 it oscillates; mean over seeds with a "
            "± 1 std band."))
    first = next(iter(_parts(conds).values()), [])
    out.append(fig.per_class(canvas, f"{name}-per-class",
                             fig.representative(first), study.classes))
    if name == "batch-size":
        pooled = [r.value("b_simple") for c in conds for r in c.runs]
        pooled = [v for v in pooled if v is not None]
        b_simple = sum(pooled) / len(pooled) if pooled else None
        full = study.fields.get("num_train") or _full_size(conds)
        out.append(fig.batch_efficiency(canvas, f"{name}-efficiency", conds,
                                        b_simple, full))
    return [d for d in out if d is not None]


def _full_size(conds: list[Condition]) -> float | None:
    """Samples in one full batch: the training-set size when a run records it
    (``num_train`` or an integer ``subset``), else twice the largest batch size."""
    for c in conds:
        for run in c.runs:
            size = run.value("num_train") or _int_subset(run.config.get("subset"))
            if size:
                return float(size)
    sizes = [float(c.x) for c in conds if _is_number(c.x)]
    return 2 * max(sizes) if sizes else None


def _int_subset(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _missing_section(doc: Document, loaded: list[Study], absent: list[str]) -> None:
    doc.heading(2, "Missing, failed and damaged runs")
    lines = [f"Study `{name}`: not found in the log directory." for name in absent]
    for study in loaded:
        lines += [f"Study `{study.name}`: {p}" for p in study.problems
                  if study.folder is not None]
        if study.missing:
            lines.append(f"Study `{study.name}`: {len(study.missing)} planned runs "
                         f"have no summary: {', '.join(study.missing)}.")
        if study.stale:
            lines.append(f"Study `{study.name}`: {len(study.stale)} runs not in the "
                         f"current plan (stale, ignored): {', '.join(study.stale)}.")
        if study.unfinished:
            lines.append(f"Study `{study.name}`: {len(study.unfinished)} run folders "
                         f"have no summary.json (started, not ended): "
                         f"{', '.join(study.unfinished)}.")
        for run in _unique(study):
            if run.status == "failed":
                error = (run.error or "no error recorded").strip().splitlines()
                lines.append(f"Study `{study.name}`: run {run.run_id} failed: "
                             f"{error[-1] if error else ''}")
    if lines:
        doc.bullets(lines)
    else:
        doc.paragraph("None: every planned run ended.")
