"""The report (`optimlab report`) built from a synthetic log directory.

The log directory is written by ``experiments.report.synthetic``: every study of
the assignment with three seeds, real summary/index/study JSON files and real
TensorBoard event files, plus one diverged lr, one failed run, one missing run and
one unfinished run folder. The report is built once per session and each test
checks one promise of the issue against it.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from experiments.report import build_report, main, parse_formats
from experiments.report.runs import KNOWN_STUDIES, ReportError
from experiments.report.synthetic import make_logdir

SEEDS = 3


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    logdir = make_logdir(root / "logs", scale="small", seeds=SEEDS)
    written = build_report(logdir, root / "out")
    return logdir, written, written.markdown.read_text(encoding="utf-8")


def _section(markdown: str, study: str) -> str:
    """The markdown of one study, from its heading to the next level-2 heading."""
    match = re.search(rf"^## .*\({re.escape(study)}\)$", markdown, re.M)
    assert match, f"no section for {study}"
    rest = markdown[match.end():]
    end = re.search(r"^## ", rest, re.M)
    return rest[: end.start()] if end else rest


def _between(text: str, start: str, stop: str) -> str:
    return text.split(start, 1)[1].split(stop, 1)[0]


@pytest.mark.parametrize("study", KNOWN_STUDIES)
def test_every_study_has_findings_tables_and_figures(built, study):
    _, _, markdown = built
    section = _section(markdown, study)
    for heading in (f"### Findings: {study}", f"### Tables: {study}",
                    f"### Figures: {study}"):
        assert heading in section
    findings = _between(section, "### Findings", "### Tables")
    assert findings.count("\n- ") >= 2, findings
    assert "results per setting" in section
    assert "![" in section


EXPECTED_FIGURES = {
    "batch-size": ["fixed-lr-curves", "scaled-lr-curves", "efficiency", "per-class"],
    "momentum": ["main-curves", "main-grad-update", "main-grad-cosine", "per-class"],
    "sgd-lr": ["main-curves", "main-sensitivity"],
    "adaptive": ["main-curves", "main-effective-lr", "main-grad-update", "per-class"],
    "adaptive-lr": ["main-curves", "main-sensitivity", "main-effective-lr"],
    "adam-hparams": ["beta1-sensitivity", "beta2-effective-lr", "eps-sensitivity",
                     "grid-heatmap"],
}


@pytest.mark.parametrize("study", KNOWN_STUDIES)
def test_expected_figures_are_drawn_and_linked(built, study):
    _, written, markdown = built
    section = _section(markdown, study)
    for kind in EXPECTED_FIGURES[study]:
        png = written.markdown.parent / "figures" / f"{study}-{kind}.png"
        assert png.is_file() and png.stat().st_size > 5000, png
        assert f"(figures/{study}-{kind}.png)" in section


def test_every_linked_figure_exists_and_legends_state_n(built):
    _, written, markdown = built
    links = re.findall(r"!\[[^\]]*\]\((figures/[^)]+)\)", markdown)
    assert len(links) == len(written.figures) >= 30
    for link in links:
        assert (written.markdown.parent / link).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_definitions_are_stated_once(built):
    _, _, markdown = built
    for name in ("Stability", "Acceptable range", "Generalization gap",
                 "To target", "Ranking", "Critical batch size"):
        assert markdown.count(f"**{name}**:") == 1, name


_NUM = r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?"
NUMBER = re.compile(
    rf"> {_NUM} \(censored \d+/\d+\)"  # censored cost to target
    rf"|{_NUM} ± {_NUM}(?: %(?: \(n=\d+\))?| pts)?"  # mean ± std
    rf"|{_NUM} % \(n=\d+\)"  # a single-seed accuracy
    rf"|{_NUM} %(?= \()"  # a per-class accuracy followed by its setting
)


@pytest.mark.parametrize("study", KNOWN_STUDIES)
def test_numbers_in_findings_equal_numbers_in_tables(built, study):
    _, _, markdown = built
    section = _section(markdown, study)
    findings = _between(section, "### Findings", "### Tables")
    tables = _between(section, "### Tables", "### Figures")
    quoted = NUMBER.findall(findings)
    assert len(quoted) >= 3, findings
    cells = {cell.strip() for line in tables.splitlines() if line.startswith("|")
             for cell in line.split("|")}
    for number in quoted:
        assert any(number in cell for cell in cells), (number, study)


def _table_row(section: str, setting: str) -> list[str]:
    for line in section.splitlines():
        cells = [c.strip() for c in line.split("|")]
        if len(cells) > 3 and cells[2] == setting:
            return cells[1:-1]
    raise AssertionError(f"no row {setting}")


def test_table_values_equal_the_summaries(built):
    logdir, _, markdown = built
    section = _section(markdown, "adaptive")
    index = json.loads((logdir / "adaptive" / "index.json").read_text())
    runs = [r for r in index["runs"] if r["series"] == "adam"]
    finals = [r["result"]["final_val_acc"] for r in runs]
    row = _table_row(section, "adam")
    assert row[2] == str(SEEDS)
    expected = f"{100 * np.mean(finals):.1f} ± {100 * np.std(finals, ddof=1):.1f} %"
    assert row[3] == f"{expected} (n={SEEDS})"
    steps = [r["steps_to_target"] for r in runs]
    assert row[6].startswith(f"{np.mean(steps):.0f}")


def test_failed_missing_diverged_and_censored_runs_are_reported(built):
    logdir, _, markdown = built
    missing = _between(markdown, "## Missing, failed and damaged runs", "\n## ") \
        if "\n## " in markdown.split("## Missing, failed and damaged runs")[1] else \
        markdown.split("## Missing, failed and damaged runs")[1]
    assert "failed: RuntimeError: synthetic failure" in missing
    assert "planned runs have no summary" in missing
    assert "unfinished-run" in missing
    adaptive = _section(markdown, "adaptive")
    assert "(n=2)" in _table_row(adaptive, "adagrad")[3]  # the failed seed is out
    assert "(1 failed)" in _table_row(adaptive, "adagrad")[-1]
    sgd = _section(markdown, "sgd-lr")
    assert _table_row(sgd, "momentum lr=1")[-1] == f"{SEEDS}/{SEEDS}"
    assert "diverged at 1" in sgd
    momentum = _section(markdown, "momentum")
    assert "(censored 3/3)" in _table_row(momentum, "momentum momentum=0.99")[6]


def test_findings_refuse_to_rank_overlapping_or_single_seed(tmp_path):
    logdir = make_logdir(tmp_path / "logs", seeds=1, plant_problems=False,
                         studies=("adaptive",))
    written = build_report(logdir, tmp_path / "out", studies=["adaptive"])
    text = written.markdown.read_text()
    assert "The data cannot separate" in text
    assert "one of them has a single seed" in text
    assert "is ahead of" not in text


def test_missing_study_and_partial_logdir_render_the_rest(tmp_path):
    logdir = make_logdir(tmp_path / "logs", seeds=2, plant_problems=False,
                         studies=("adaptive",))
    written = build_report(logdir, tmp_path / "out")
    text = written.markdown.read_text()
    assert ("Missing studies: batch-size, momentum, sgd-lr, adaptive-lr, "
            "adam-hparams") in text
    assert "### Findings: adaptive" in text and "![" in text
    written = build_report(logdir, tmp_path / "out2", studies=["adaptive", "sgd-lr"])
    text = written.markdown.read_text()
    assert "Study `sgd-lr`: not found in the log directory." in text


def test_damaged_index_and_summary_are_reported_and_the_rest_rendered(tmp_path,
                                                                      caplog):
    logdir = make_logdir(tmp_path / "logs", seeds=2, plant_problems=False,
                         studies=("adaptive",))
    (logdir / "adaptive" / "index.json").write_text("{not json")
    damaged = sorted((logdir / "adaptive").glob("*/summary.json"))[0]
    run_id = damaged.parent.name  # a planned run, so the report reads it
    damaged.write_text(json.dumps({"run_id": run_id, "status": "exploded"}))
    for name, content in (("no-id", '{"status": "done"}'), ("cut", '{"run_')):
        (logdir / "adaptive" / name).mkdir()
        (logdir / "adaptive" / name / "summary.json").write_text(content)
    events = sorted((logdir / "adaptive").rglob("events.out.tfevents.*"))
    garbage = events[-1].with_name("events.out.tfevents.garbage")
    garbage.write_bytes(b"this is not an event file\n" * 40)
    truncated = events[-2]
    truncated.write_bytes(truncated.read_bytes()[:-7])
    with caplog.at_level("WARNING"):
        text = build_report(logdir, tmp_path / "out").markdown.read_text()
    damage = _between(text, "## Missing, failed and damaged runs", "\n## ") + "\n"
    no_id = logdir / "adaptive" / "no-id" / "summary.json"
    assert f"damaged run summary {no_id}: it has no 'run_id'" in damage
    assert f"unreadable {logdir / 'adaptive' / 'cut' / 'summary.json'}" in damage
    for path, what in ((garbage, "is not a TensorBoard event file"),
                       (truncated, "ends inside a record")):
        assert f"{path} {what}" in damage and f"{path} {what}" in caplog.text
    assert "unreadable" in text and "index.json" in text
    assert "status 'exploded' is not done, diverged or failed" in text
    rows = [line for line in _section(text, "adaptive").splitlines()
            if line.startswith("| main |")]
    assert any("(n=1)" in row for row in rows)  # the damaged run is left out


@pytest.mark.parametrize("case", ["absent", "empty", "unrelated", "file", "study"])
def test_bad_logdir_is_a_clear_error_naming_it(tmp_path, capsys, case):
    logdir = tmp_path / "logs"
    if case != "absent":
        logdir.mkdir()
    if case == "unrelated":
        (logdir / "notes").mkdir()
        (logdir / "notes" / "x.txt").write_text("hello")
    if case == "file":
        logdir.rmdir()
        logdir.write_text("not a folder")
    if case == "study":
        (logdir / "study.json").write_text("{}")
    args = _args(logdir, tmp_path / "out")
    assert main(args) == 2
    error = capsys.readouterr().err
    assert f"'{logdir}'" in error and "Traceback" not in error


def test_format_option_writes_svg_and_pdf_and_refuses_others(tmp_path, capsys):
    assert parse_formats("svg, pdf") == ("png", "svg", "pdf")
    with pytest.raises(ReportError, match="'gif' is not one of png, svg, pdf"):
        parse_formats("png,gif")
    logdir = make_logdir(tmp_path / "logs", seeds=2, plant_problems=False,
                         studies=("adaptive",))
    from experiments.cli import main as optimlab

    assert optimlab(["report", "--logdir", str(logdir), "--out", str(tmp_path / "out"),
                     "--studies", "adaptive", "--format", "svg,pdf"]) == 0
    figures = tmp_path / "out" / "figures"
    for suffix in ("png", "svg", "pdf"):
        assert list(figures.glob(f"adaptive-main-curves.{suffix}"))
    assert main(_args(logdir, tmp_path / "out", fmt="gif")) == 2
    assert "'gif'" in capsys.readouterr().err


def _args(logdir: Path, out: Path, fmt: str = "png"):
    import argparse

    return argparse.Namespace(logdir=str(logdir), out=str(out), studies=None,
                              format=fmt)


def test_event_reader_agrees_with_tensorboard_and_survives_truncation(built, tmp_path):
    from tensorboard.backend.event_processing.event_file_loader import (
        LegacyEventFileLoader,
    )
    from tensorboard.compat.proto.event_pb2 import Event

    from experiments.report.tfrecord import event_records

    logdir, _, _ = built
    path = next((logdir / "adaptive").rglob("events.out.tfevents.*"))
    reference = [e.SerializeToString() for e in LegacyEventFileLoader(str(path)).Load()]
    data = path.read_bytes()
    ours = [Event.FromString(r).SerializeToString() for r in event_records(data)]
    assert ours == reference and len(ours) > 20
    cut = list(event_records(data[: len(data) * 2 // 3]))
    assert 0 < len(cut) < len(ours) and cut == [bytes(r) for r in
                                                event_records(data)][: len(cut)]


def test_html_is_self_contained(built):
    _, written, _ = built
    page = written.html.read_text(encoding="utf-8")
    assert "<script" not in page and "<link" not in page and "@import" not in page
    assert not re.search(r"(src|href)=\"(https?:|//|file:)", page)
    images = re.findall(r'<img src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == len(written.figures)
    for data in images:
        assert base64.b64decode(data)[:8] == b"\x89PNG\r\n\x1a\n"



CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--virtual-time-budget=10000"]

# Appended to a copy of the report: once the page has loaded, the title says how
# many images decoded, and the page shrinks every figure into one grid so that a
# single screenshot shows all of them.
PROBE = """<script>
window.addEventListener('load', function () {
  var images = Array.prototype.slice.call(document.images);
  var ok = images.filter(function (i) { return i.complete && i.naturalWidth > 0; });
  document.title = 'loaded ' + ok.length + ' of ' + images.length;
  var grid = document.createElement('div');
  images.forEach(function (i) { i.style.width = '180px'; grid.appendChild(i); });
  document.body.innerHTML = '';
  document.body.style.margin = '0';
  document.body.style.maxWidth = 'none';
  document.body.appendChild(grid);
});
</script>"""


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        message = "chromium is not installed (make browser installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def test_report_opens_in_headless_chromium_with_every_figure(built, tmp_path):
    chromium = _chromium()
    _, written, _ = built
    probe = tmp_path / "probe.html"
    probe.write_text(written.html.read_text(encoding="utf-8").replace(
        "</body>", PROBE + "</body>"), encoding="utf-8")
    base = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    env = {**os.environ, "HOME": str(tmp_path)}
    dom = subprocess.run([*base, "--dump-dom", probe.as_uri()], capture_output=True,
                         text=True, timeout=90, env=env)
    count = len(written.figures)
    assert f"<title>loaded {count} of {count}</title>" in dom.stdout, dom.stderr[-2000:]

    shot = tmp_path / "shot.png"
    subprocess.run([*base, f"--screenshot={shot}", "--window-size=1400,1600",
                    probe.as_uri()], capture_output=True, timeout=90, env=env)
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)[..., :3]
    # figures are drawn in colour; an empty or broken page is white or grey
    colour = (pixels.max(-1) - pixels.min(-1)) > 0.25
    rows_with_colour = colour.any(1).sum()
    assert colour.mean() > 0.01 and rows_with_colour > 200, colour.mean()




def test_report_of_a_real_smoke_sweep(real_data_dir, tmp_path):
    """The real sweep and training path (adaptive study, smoke preset) feed the
    report: the contract between what they write and what it reads holds."""
    import sys

    logdir = tmp_path / "logs"
    env = {**os.environ, "OPTIMLAB_DATA": str(real_data_dir)}
    done = subprocess.run(
        [sys.executable, "-m", "experiments.cli", "run", "adaptive", "--preset",
         "smoke", "--workers", "1", "--logdir", str(logdir)],
        capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    written = build_report(logdir, tmp_path / "out")
    markdown = written.markdown.read_text()
    section = _section(markdown, "adaptive")
    index = json.loads((logdir / "adaptive" / "index.json").read_text())
    assert len(index["runs"]) == 3
    for summary in index["runs"]:
        label = f"{summary['series']} lr={summary['x']:g}"
        row = _table_row(section, label)
        assert row[3] == f"{100 * summary['result']['final_val_acc']:.1f} % (n=1)"
    instruments = _between(section, "instruments from the TensorBoard", "###")
    for label in ("adagrad lr=0.01", "rmsprop lr=0.001", "adam lr=0.001"):
        row = _table_row(instruments, label)
        assert "n/a" not in row, row  # grad, update, cosine and effective lr read
    for kind in ("main-curves", "main-effective-lr", "main-grad-update", "per-class"):
        assert (written.markdown.parent / "figures" / f"adaptive-{kind}.png").is_file()
    assert "Missing studies: batch-size, momentum" in markdown


def test_adaptive_learning_rates_are_checked_against_the_lr_sweep(built):
    _, _, markdown = built
    findings = _between(_section(markdown, "adaptive"), "### Findings", "### Tables")
    line = next(x for x in findings.splitlines() if "checked against adaptive-lr" in x)
    for name in ("rmsprop", "adam"):  # adagrad's first seed failed, the rest ended
        assert re.search(rf"{name} used 0\.01, ((inside|outside) its acceptable "
                         r"range|(the|not the) only acceptable lr of the sweep)",
                         line), line


def _adaptive_logdir(tmp_path: Path, seeds: int = 2) -> Path:
    return make_logdir(tmp_path / "logs", seeds=seeds, plant_problems=False,
                       studies=("adaptive",))


def test_runs_outside_the_current_plan_are_listed_as_stale_never_pooled(tmp_path):
    logdir = _adaptive_logdir(tmp_path)
    folder = logdir / "adaptive"
    source = json.loads((folder / "index.json").read_text())["runs"][0]
    stale = {**source, "run_id": "stale-run", "log_dir": None,
             "config": {**source["config"], "epochs": 2}}
    (folder / "stale-run").mkdir()
    (folder / "stale-run" / "summary.json").write_text(json.dumps(stale))
    (folder / "old-unfinished").mkdir()  # a killed run of the earlier plan
    text = build_report(logdir, tmp_path / "out").markdown.read_text()
    row = _table_row(_section(text, "adaptive"), source["series"])
    assert row[2] == "2", row  # the stale run with the same seed is not pooled
    assert "2 runs not in the current plan (stale, ignored): old-unfinished, " \
           "stale-run." in text
    assert "Runs read from" in text and "16 summaries" not in text
    meta = json.loads((folder / "study.json").read_text())
    del meta["planned_runs"]
    (folder / "study.json").write_text(json.dumps(meta))
    text = build_report(logdir, tmp_path / "out").markdown.read_text()
    assert "study.json lists no planned runs" in text
    assert _table_row(_section(text, "adaptive"), source["series"])[2] == "3"


def test_bad_studies_and_out_are_clear_errors(tmp_path, capsys):
    from experiments.cli import main as optimlab

    logdir = tmp_path / "logs"
    (logdir / "adaptive").mkdir(parents=True)
    (logdir / "adaptive" / "study.json").write_text("{}")
    assert optimlab(["report", "--logdir", str(logdir), "--out",
                     str(tmp_path / "out"), "--studies", "nosuch"]) == 2
    error = capsys.readouterr().err
    assert "'nosuch'" in error and "valid studies: adam-hparams" in error
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    for out in (blocker, blocker / "below"):
        assert optimlab(["report", "--logdir", str(logdir), "--out", str(out)]) == 2
        error = capsys.readouterr().err
        assert f"--out '{out}'" in error and "Traceback" not in error


def test_full_batch_is_compared_at_equal_epochs_then_at_its_own_budget(built):
    _, _, markdown = built
    section = _section(markdown, "batch-size")
    budget_table = section.split("(fixed-lr): equal-budget comparison*", 1)[1]
    at_equal_epochs = _table_row(budget_table, "batch_size=full")[3]
    final = _table_row(section, "batch_size=full")[3]
    assert at_equal_epochs != final  # synthetic full batch trains twice the epochs
    claim = next(line for line in section.splitlines()
                 if line.startswith("- **fixed-lr, full batch vs mini-batch.**"))
    equal, own = claim.split("After its own budget", 1)
    assert "at equal epochs (4, read from the history)" in equal
    assert f"batch_size=full {at_equal_epochs}" in equal and final not in equal
    assert own.startswith(" (8 epochs, 8 optimizer steps), full batch ends at "
                          f"{final} final validation accuracy")
