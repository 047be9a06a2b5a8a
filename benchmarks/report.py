"""How long `optimlab report` takes on a quick-preset-sized log directory.

    python -m benchmarks.report [--seeds 2] [--detail 10] [--keep DIR]

(``--keep DIR`` writes the log directory to DIR/logs, or reuses it when present.)

Writes a synthetic log directory (``experiments.report.synthetic``, quick scale:
every study, about 110 settings x seeds runs) with the event density of the real
instruments (per-parameter scalars for ``--detail`` tensors and one histogram per
logged step), then times loading + figures + writing, each phase separately.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

from experiments.report import TAGS, build_report
from experiments.report.runs import load_logdir, read_scalars
from experiments.report.synthetic import make_logdir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--detail", type=int, default=10)
    parser.add_argument("--steps-per-epoch", type=int, default=160)
    parser.add_argument("--keep", type=Path, default=None,
                        help="write the log directory here and keep it")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with tempfile.TemporaryDirectory() as scratch:
        root = args.keep or Path(scratch)
        started = time.perf_counter()
        logdir = root / "logs"
        if not (args.keep and logdir.is_dir()):  # --keep DIR reuses DIR/logs
            make_logdir(logdir, scale="quick", seeds=args.seeds, epochs=4,
                        steps_per_epoch=args.steps_per_epoch, detail=args.detail)
        made = time.perf_counter() - started
        size = sum(p.stat().st_size for p in logdir.rglob("events.out.*"))
        studies = load_logdir(logdir)
        runs = sum(len({r.run_id for r in s.runs}) for s in studies)
        started = time.perf_counter()
        for study in studies:
            for run in study.runs:
                read_scalars(run, TAGS)
        events = time.perf_counter() - started
        started = time.perf_counter()
        written = build_report(logdir, root / "out")
        total = time.perf_counter() - started
        print(f"runs: {runs}; event files: {size / 2**20:.1f} MiB "
              f"(written in {made:.1f} s)")
        print(f"reading the event files alone: {events:.1f} s")
        print(f"whole report (load + events + {len(written.figures)} figures + "
              f"md/html): {total:.1f} s")


if __name__ == "__main__":
    main()
