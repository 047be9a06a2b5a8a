"""Acceptance checks of ``optimlab run`` on the real data with the real trainer.

* a smoke sweep killed with SIGKILL after some runs ended, then run again: every
  planned run ends exactly once and the index holds every summary;
* a sweep with a diverging learning rate records those runs as diverged and
  completes the others;
* unknown study, preset or key: exit code 2 and a message listing the valid ones.

The sweeps are the smoke preset made smaller still with --set, to stay fast.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from experiments import runstore, sweep
from experiments.cli import build_parser

REPO = Path(__file__).resolve().parents[1]

KILL_SWEEP = [
    "run", "momentum", "--preset", "smoke", "--set", "momenta=0.9",
    "--set", "seeds=0,1", "--set", "subset=192", "--set", "val_size=128",
]


def _cli(args, data_dir, **kwargs):
    env = {**os.environ, "OPTIMLAB_DATA": str(data_dir), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "experiments.cli", *args], cwd=REPO, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs,
    )


def _children(pid: int) -> set[int]:
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _summaries(study_dir: Path) -> dict[str, bytes]:
    return {p.parent.name: p.read_bytes() for p in study_dir.glob("*/summary.json")}


@pytest.mark.slow
def test_sigkill_then_rerun_ends_every_run_exactly_once(tmp_path, real_data_dir):
    logdir = tmp_path / "logs"
    study_dir = logdir / "momentum"
    args = [*KILL_SWEEP, "--logdir", str(logdir)]
    process = _cli([*args, "--workers", "2"], real_data_dir)
    deadline = time.monotonic() + 90
    workers: set[int] = set()
    while len(_summaries(study_dir)) < 2:
        assert process.poll() is None, process.stdout.read()
        assert time.monotonic() < deadline, "no run ended within 90 s"
        workers |= _children(process.pid)
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    process.stdout.close()
    before = _summaries(study_dir)
    planned = json.loads((study_dir / "study.json").read_text())["planned_runs"]
    assert len(planned) == 6
    assert 2 <= len(before) < len(planned), "the kill came after the sweep ended"

    # The workers die with the sweep (PDEATHSIG) instead of training on.
    workers.discard(process.pid)
    assert workers, "the sweep started no worker processes"
    give_up = time.monotonic() + 10
    while any(_alive(pid) for pid in workers) and time.monotonic() < give_up:
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in workers)

    rerun = _cli([*args, "--workers", "1"], real_data_dir)
    output, _ = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, output
    assert f"{len(before)} already ended" in output

    after = _summaries(study_dir)
    assert set(after) == set(planned)
    for rid, content in before.items():
        assert after[rid] == content, f"{rid} was trained again"
    index = json.loads((study_dir / "index.json").read_text())
    assert sorted(run["run_id"] for run in index["runs"]) == sorted(planned)
    for run in index["runs"]:
        assert run["status"] == "done", run["error"]
        assert run["result"]["history"], run["run_id"]
        events = list((study_dir / run["run_id"]).glob("events.out.tfevents.*"))
        assert events, run["run_id"]
        # One attempt only: every event file of the run comes from one process.
        assert len({name.name.split(".")[-2] for name in events}) == 1, events


@pytest.mark.slow
def test_diverging_lr_is_recorded_and_the_others_complete(tmp_path, real_data_dir,
                                                         monkeypatch):
    monkeypatch.setenv("OPTIMLAB_DATA", str(real_data_dir))
    args = build_parser("run").parse_args([
        "run", "adaptive", "--preset", "smoke", "--workers", "1",
        "--set", "lrs={'adam': 1e4, 'rmsprop': 1e-3, 'adagrad': 1e-2}",
        "--set", "subset=256", "--set", "val_size=128", "--logdir", str(tmp_path),
    ])
    assert sweep.main(args) == 0
    index = json.loads((tmp_path / "adaptive" / "index.json").read_text())
    runs = {run["series"]: run for run in index["runs"]}
    assert set(runs) == {"adam", "rmsprop", "adagrad"}
    diverged = runs.pop("adam")
    assert diverged["status"] == "diverged", diverged["error"]
    assert diverged["result"]["diverged_step"] is not None
    assert diverged["steps_to_target"] is None
    assert diverged["seconds_to_target"] is None
    for run in runs.values():
        assert run["status"] == "done", run["error"]
        assert run["result"]["final_val_acc"] > 0.3
        assert runstore.read_summary(tmp_path / run["log_dir"]) == run


CLI_ERRORS = [
    (["run", "nope"], "unknown study 'nope'; valid studies: batch-size, momentum, "
     "sgd-lr, adaptive, adaptive-lr, adam-hparams (or all)"),
    (["run", "all", "--preset", "tiny"], "valid presets: smoke, quick, full"),
    (["run", "sgd-lr", "--preset", "smoke", "--set", "lr=0.1"],
     "unknown setting 'lr' for study 'sgd-lr' at preset 'smoke'; valid: accelerator, "
     "arch, augment"),
]


@pytest.mark.parametrize(("argv", "message"), CLI_ERRORS)
def test_cli_refuses_unknown_names(argv, message, tmp_path, real_data_dir):
    process = _cli([*argv, "--logdir", str(tmp_path)], real_data_dir)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 2
    assert message in output
    assert "Traceback" not in output
