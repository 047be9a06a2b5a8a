"""Regression tests for the report fixes found by the breaker: consistent lr
sensitivity claims, figures of earlier reports only, summary field damage named by
file and field, marked stability source, absent requested studies, escaped
markdown and the image counts behind the accuracies."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest

from experiments.report import MAIN_HEADER, build_report, main
from experiments.report.findings import adaptive_lr, lr_ranges, range_rows
from experiments.report.runs import Run, Study
from experiments.report.stats import conditions
from experiments.report.synthetic import make_logdir

MAIN_STABILITY = MAIN_HEADER.index("Stability")


def _run(series: str, lr: float, acc: float, status: str = "done") -> Run:
    result = {"final_val_acc": acc, "best_val_acc": acc, "test_acc": acc,
              "history": []}
    return Run(run_id=f"{series}-{lr}", study="adaptive-lr", part="main",
               series=series, x_name="lr", x=lr, y_name=None, y=None, seed=0,
               status=status, error=None, result=result, config={},
               steps_to_target=None, epochs_to_target=None, seconds_to_target=None,
               event_dir=None)


def _lr_study(table: dict[str, dict[float, float]]) -> Study:
    """An adaptive-lr study from {series: {lr: final accuracy}}; accuracy None
    marks a diverged run."""
    runs = [_run(series, lr, acc if acc is not None else 0.1,
                 "done" if acc is not None else "diverged")
            for series, row in table.items() for lr, acc in row.items()]
    return Study(name="adaptive-lr", folder=None, title="adaptive-lr",
                 questions=[], model="mlp", preset="smoke", target_accuracy=0.5,
                 classes=[], fields={}, notes="", runs=runs, planned=[],
                 missing=[], unfinished=[], problems=[])


def _lr_findings(table) -> str:
    study = _lr_study(table)
    return "\n".join(adaptive_lr(study, conditions(study)))


# (case, grid, phrases that must appear, phrases that must not)
LR_CASES = [
    ("every series one point (the smoke sweep)",
     {"adagrad": {1e-3: 0.652, 1.0: None}, "rmsprop": {1e-3: 0.562, 1.0: None},
      "adam": {1e-3: 0.645, 1.0: None}},
     ["only lr=0.001 was acceptable", "has only one acceptable grid point",
      "No optimizer is the most forgiving", "accuracy, not forgiveness",
      "Highest final validation accuracy at the best lr: adagrad"],
     ["0.001 to 0.001", "most forgiving (the widest", "same width"]),
    ("equal widths tie",
     {"sgdlike": {1e-3: 0.80, 1e-2: 0.81, 1e-1: 0.3},
      "adam": {1e-4: 0.85, 1e-3: 0.86, 1e-2: 0.2}},
     ["same width on this grid (1.0 decades)", "tie at 1.0 decades",
      "accuracy, not forgiveness", "Highest final validation accuracy at the best "
      "lr: adam"],
     ["most forgiving (the widest"]),
    ("one strictly widest",
     {"a": {1e-4: 0.80, 1e-3: 0.81, 1e-2: 0.80, 1e-1: 0.2},
      "b": {1e-4: 0.5, 1e-3: 0.9, 1e-2: 0.5}},
     ["a (2.0 decades); b (one grid point, no width)",
      "a is the most forgiving (the widest acceptable range): any lr in 0.0001 "
      "to 0.01"],
     ["accuracy, not forgiveness"]),
    ("every lr diverged",
     {"a": {1e-3: None, 1e-2: None}, "b": {1e-3: 0.7, 1e-2: 0.71}},
     ["no lr was acceptable (every lr of the grid had a diverged seed)",
      "b is the most forgiving"], []),
]


@pytest.mark.parametrize("case, grid, present, absent", LR_CASES,
                         ids=[c[0] for c in LR_CASES])
def test_lr_sensitivity_and_recommendation_agree(case, grid, present, absent):
    text = _lr_findings(grid)
    for phrase in present:
        assert phrase in text, (phrase, text)
    for phrase in absent:
        assert phrase not in text, (phrase, text)


def test_a_single_acceptable_lr_is_no_range_in_the_table():
    study = _lr_study({"adam": {1e-3: 0.64, 1.0: None}, "sgd": {1e-3: 0.6,
                                                               1e-2: 0.61}})
    rows = {row[0]: row for row in range_rows(lr_ranges(conditions(study)))}
    assert rows["adam"][3:5] == ["only lr=0.001", "n/a (one grid point)"]
    assert rows["sgd"][3:5] == ["0.001 to 0.01", "1.0"]


def _adaptive(tmp_path: Path, seeds: int = 1) -> Path:
    return make_logdir(tmp_path / "logs", seeds=seeds, plant_problems=False,
                       studies=("adaptive",))


def test_a_report_removes_only_the_figures_an_earlier_report_wrote(tmp_path,
                                                                   caplog):
    logdir = _adaptive(tmp_path)
    out = tmp_path / "out"
    (out / "figures").mkdir(parents=True)
    mine = [out / "figures" / name for name in ("mine.png", "plot.svg", "a.pdf")]
    for path in mine:
        path.write_bytes(b"the user's own file")
    build_report(logdir, out, formats=("png", "svg"))
    svgs = sorted((out / "figures").glob("adaptive-*.svg"))
    assert svgs
    manifest = out / ".optimlab-report-manifest.json"
    listed = json.loads(manifest.read_text())["figures"]
    assert "figures/adaptive-main-curves.svg" in listed
    assert not any(Path(e).name in ("mine.png", "plot.svg", "a.pdf") for e in listed)
    # a tampered manifest may not reach outside figures/ or name a user's file
    manifest.write_text(json.dumps({"figures": [*listed, "figures/../report.md",
                                                "report.html", "figures/"]}))
    build_report(logdir, out, formats=("png",))
    assert not any(p.exists() for p in svgs)  # the earlier report's svgs went
    assert (out / "figures" / "adaptive-main-curves.png").is_file()
    assert all(p.read_bytes() == b"the user's own file" for p in mine)
    assert (out / "report.md").is_file() and (out / "report.html").is_file()
    # a figure-named file that no report wrote is replaced only with a warning
    manifest.unlink()
    with caplog.at_level(logging.WARNING):
        build_report(logdir, out, formats=("png",))
    assert "no earlier report recorded writing" in caplog.text
    assert all(p.read_bytes() == b"the user's own file" for p in mine)


def _damage(summary: dict, field: str, value) -> None:
    if field.startswith("result."):
        summary["result"][field.split(".", 1)[1]] = value
    else:
        summary[field] = value


# (field, wrong value, what the line says, the run is still in the table)
FIELD_DAMAGE = [
    ("result.final_val_acc", "high", "is a string ('high'), expected a number", True),
    ("result.history", 5, "is an int (5), expected a list; the per-epoch history is "
                          "left out", True),
    ("result.best_val_acc", float("nan"), "is not finite (nan), expected a number",
     True),
    ("memberships", "main", "is a string ('main'), expected a list", True),
    ("result", [1, 2], "is a list, expected an object; the run is left out", False),
]


@pytest.mark.parametrize("with_index", [True, False], ids=["index", "no-index"])
def test_wrong_typed_summary_fields_are_named_with_their_file(tmp_path, caplog,
                                                              with_index):
    logdir = make_logdir(tmp_path / "logs", seeds=2, plant_problems=False,
                         studies=("adaptive",))
    folder = logdir / "adaptive"
    index = json.loads((folder / "index.json").read_text())
    runs = index["runs"][: len(FIELD_DAMAGE)]
    for summary, (field, value, _, _) in zip(runs, FIELD_DAMAGE, strict=True):
        _damage(summary, field, value)
        (folder / summary["run_id"] / "summary.json").write_text(json.dumps(summary))
    if with_index:
        (folder / "index.json").write_text(json.dumps(index))
    else:
        (folder / "index.json").unlink()
    with caplog.at_level(logging.WARNING):
        text = build_report(logdir, tmp_path / "out").markdown.read_text()
    damage = text.split("## Missing, failed and damaged runs", 1)[1]
    for summary, (field, _, says, _) in zip(runs, FIELD_DAMAGE, strict=True):
        source = (f"{folder / 'index.json'} (run {summary['run_id']})" if with_index
                  else str(folder / summary["run_id"] / "summary.json"))
        line = f"{source}: field {field} {says}"
        assert line in damage, (line, damage)
        assert line in caplog.text  # on the console too
        assert summary["run_id"] not in damage.split(line, 1)[1].split("\n", 1)[1]
    assert "have no summary" not in damage  # no run is listed twice
    assert "bad summary" not in damage
    results = text.split("results per setting", 1)[1].split("\n\n", 2)[1]
    table = [row for row in results.splitlines() if row.startswith("| main | ")]
    ended = sum(int(row.split(" | ")[2]) for row in table)
    assert ended == len(index["runs"]) - 1  # only the run with no result object


def test_a_damaged_index_entry_falls_back_to_the_intact_summary_file(tmp_path):
    logdir = make_logdir(tmp_path / "logs", seeds=2, plant_problems=False,
                         studies=("adaptive",))
    folder = logdir / "adaptive"
    index = json.loads((folder / "index.json").read_text())
    index["runs"][0]["result"]["history"] = 5
    (folder / "index.json").write_text(json.dumps(index))
    text = build_report(logdir, tmp_path / "out").markdown.read_text()
    own = folder / index["runs"][0]["run_id"] / "summary.json"
    assert f"field result.history is an int (5), expected a list; the per-epoch " \
           f"history is left out (used {own} instead, which is intact)" in text


def test_an_unreadable_summary_is_listed_once(tmp_path):
    logdir = make_logdir(tmp_path / "logs", seeds=1, plant_problems=False,
                         studies=("adaptive",))
    folder = logdir / "adaptive"
    (folder / "index.json").unlink()
    run_id = json.loads((folder / "study.json").read_text())["planned_runs"][0]
    (folder / run_id / "summary.json").write_text('{"run_')
    text = build_report(logdir, tmp_path / "out").markdown.read_text()
    damage = text.split("## Missing, failed and damaged runs", 1)[1]
    assert f"unreadable {folder / run_id / 'summary.json'}" in damage
    assert damage.count(run_id) == 1, damage


def _events(folder: Path, series: str) -> list[Path]:
    return sorted(p for p in folder.rglob("events.out.tfevents.*")
                  if p.relative_to(folder).parts[0].startswith(series))


def _results_row(text: str, label: str) -> list[str]:
    results = text.split("results per setting", 1)[1].split("\n\n", 2)[1]
    row = next(r for r in results.splitlines() if r.startswith(f"| main | {label} |"))
    return [cell.strip() for cell in row.strip("|").split("|")]


def test_stability_from_the_per_epoch_history_is_marked_and_never_ranked(tmp_path):
    logdir = _adaptive(tmp_path, seeds=2)
    folder = logdir / "adaptive"
    for path in _events(folder, "adagrad"):  # every seed: history only
        path.write_bytes(path.read_bytes()[:60])
    rmsprop = _events(folder, "rmsprop")
    rmsprop[0].write_bytes(rmsprop[0].read_bytes()[:60])  # one seed of two
    index = json.loads((folder / "index.json").read_text())
    for summary in index["runs"]:  # eight epochs, enough for a per-epoch value
        summary["result"]["history"] = [
            {"epoch": k, "step": 10 * (k + 1), "train_loss": 2 / (k + 1) + 0.05 * (
                k % 2), "val_acc": 0.5} for k in range(8)]
        (folder / summary["run_id"] / "summary.json").write_text(json.dumps(summary))
    (folder / "index.json").write_text(json.dumps(index))
    text = build_report(logdir, tmp_path / "out").markdown.read_text()
    adagrad, rms, adam = "adagrad", "rmsprop", "adam"  # the settings' labels
    stability = MAIN_STABILITY
    assert _results_row(text, adagrad)[stability].endswith(" †")
    assert _results_row(text, rms)[stability].endswith(" (n=1) †")
    assert "†" not in _results_row(text, adam)[stability]
    assert "† Stability from the per-epoch training loss in summary.json" in text
    claim = next(line for line in text.splitlines()
                 if line.startswith("- **Stability.**"))
    assert f"Not ranked: {adagrad} (their loss fluctuation comes from the " \
           "per-epoch history" in claim
    ranked = claim.split("Not ranked", 1)[0]
    assert adagrad not in ranked and (rms in ranked or adam in ranked)


def test_requested_studies_that_are_absent_never_pass_silently(tmp_path, capsys,
                                                               caplog):
    import argparse

    logdir = _adaptive(tmp_path)
    args = argparse.Namespace(logdir=str(logdir), out=str(tmp_path / "out"),
                              studies=["adaptive-lr"], format="png")
    assert main(args) == 2
    error = capsys.readouterr().err
    assert "'adaptive-lr' not found in log directory" in error
    assert "studies found there: adaptive" in error
    assert not (tmp_path / "out" / "report.md").exists()
    args.studies = ["adaptive", "sgd-lr"]  # one present: rendered, loudly
    with caplog.at_level(logging.WARNING):
        assert main(args) == 0
    assert "requested studies not found" in caplog.text and "sgd-lr" in caplog.text


HOSTILE = ("<img src=x onerror=alert(1)>", "``<script>alert(2)`",
           "[click](javascript:alert(3))")


def test_untrusted_text_cannot_become_html_or_links_in_report_md(tmp_path):
    import markdown  # TensorBoard's dependency; renders what a reader would see

    logdir = _adaptive(tmp_path)
    for name in HOSTILE:  # run folders whose summary.json is damaged
        (logdir / "adaptive" / name).mkdir()
        (logdir / "adaptive" / name / "summary.json").write_text("{broken")
    written = build_report(logdir, tmp_path / "out")
    text = written.markdown.read_text()
    assert "&lt;img src=x onerror=alert(1)>" in text
    rendered = markdown.markdown(text)
    for page in (rendered, written.html.read_text()):
        assert not re.search(r"<img[^>]*onerror", page)
        assert "<script" not in page and 'href="javascript:' not in page
    assert "&lt;img src=x onerror=alert(1)" in rendered  # shown as text


def test_the_images_behind_the_accuracies_are_stated(tmp_path):
    logdir = _adaptive(tmp_path)
    folder = logdir / "adaptive"
    index = json.loads((folder / "index.json").read_text())
    for summary in index["runs"]:
        summary["config"]["val_size"] = 256
    (folder / "index.json").write_text(json.dumps(index))
    text = build_report(logdir, tmp_path / "out").markdown.read_text()
    assert ("Images behind the accuracies: validation 256 images (the config's "
            "val_size); test not recorded: summary.json holds no test-set size") in text
    assert "`result.num_test`" in text
    assert "validation accuracy on 256 images, test accuracy on an unrecorded " \
           "number of images" in text
    assert "per-class figure; test-set size not recorded)" in text
    for summary in index["runs"]:  # what training would write
        summary["result"].update(num_val=5000, num_test=1000)
    (folder / "index.json").write_text(json.dumps(index))
    text = build_report(logdir, tmp_path / "out").markdown.read_text()
    assert ("validation 5,000 images; test 1,000 images (about 100 per class, so "
            "one image is about 1 % of a class's accuracy)") in text
    assert "validation accuracy on 5,000 images, test accuracy on 1,000 images" in text
    assert "per-class figure; 1,000 test images in all)" in text
