"""The sweep runner's bookkeeping, driven by a fast fake trainer.

The fake stands in for ``experiments.train.train``: it returns a RunResult-shaped
dict whose outcome follows the learning rate (13 raises, >= 100 diverges, 7 kills
its worker process) and appends one line per call to ``calls.log`` so the tests can
count how often each run was trained. The real trainer is exercised in
``test_sweep_acceptance.py``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import pytest

from experiments import runstore, sweep

RAISES_LR = 13.0
DIES_LR = 7.0
DIVERGES_LR = 100.0

HISTORY = [  # val_acc first reaches 0.5 at the second epoch: step 20, 2.0 s
    {"epoch": 0, "step": 10, "time_s": 1.0, "train_loss": 1.5, "val_acc": 0.3},
    {"epoch": 1, "step": 20, "time_s": 2.0, "train_loss": 1.0, "val_acc": 0.6},
    {"epoch": 2, "step": 30, "time_s": 3.0, "train_loss": 0.8, "val_acc": 0.8},
]


def fake_trainer(config: dict) -> dict:
    import torch

    directory = Path(config["logdir"]) / config["name"] / config["version"]
    assert (directory / runstore.CONFIG).exists()
    assert not (directory / runstore.SUMMARY).exists()
    with open(Path(config["logdir"]) / "calls.log", "a") as handle:
        handle.write(f"{config['version']} {os.getpid()} {torch.get_num_threads()}\n")
    (directory / "events.out.tfevents.fake").write_text("events")
    time.sleep(float(os.environ.get("FAKE_SECONDS", "0")))
    lr = config["hparams"]["lr"]
    if lr == RAISES_LR:
        raise RuntimeError("unlucky learning rate")
    if lr == DIES_LR:
        os._exit(3)
    diverged = lr >= DIVERGES_LR
    return {
        "status": "diverged" if diverged else "done",
        "diverged_step": 3 if diverged else None,
        "final_val_acc": None if diverged else 0.8,
        "best_val_acc": None if diverged else 0.8,
        "final_train_loss": float("nan") if diverged else 0.8,
        "wall_time_s": 0.5,
        "history": [] if diverged else HISTORY,
        "log_dir": str(directory),
    }


def calls(logdir: Path) -> list[str]:
    path = logdir / "calls.log"
    return [line.split()[0] for line in path.read_text().splitlines()] \
        if path.exists() else []


def plan(lrs, study="adaptive-lr", **overrides):
    return sweep.plan_sweep(study, "smoke", {"lrs": lrs, "target_accuracy": 0.5,
                                             **overrides})


INLINE = sweep.Placement("cpu", workers=1, threads=1)


def test_sweep_records_every_run_once_and_skips_ended(tmp_path):
    plans = plan([1e-3, RAISES_LR, DIVERGES_LR])
    ids = [spec.run_id for spec in plans[0].runs]
    outcome = sweep.run_sweep(plans, tmp_path, INLINE, trainer=fake_trainer)
    assert (outcome.done, outcome.failed, outcome.diverged) == (3, 3, 3)
    assert sorted(calls(tmp_path)) == sorted(ids)

    index = json.loads((tmp_path / "adaptive-lr" / "index.json").read_text())
    assert index["study"] == "adaptive-lr" and index["preset"] == "smoke"
    runs = {run["run_id"]: run for run in index["runs"]}
    assert set(runs) == set(ids)
    study = json.loads((tmp_path / "adaptive-lr" / "study.json").read_text())
    assert study["planned_runs"] == ids
    assert study["fields"]["lrs"] == [1e-3, RAISES_LR, DIVERGES_LR]

    for run in runs.values():
        lr = run["config"]["hparams"]["lr"]
        assert run["x"] == lr and run["x_name"] == "lr"
        assert run["series"] == run["config"]["optimizer"]
        assert run["versions"]["torch"] and run["started_at"] <= run["ended_at"]
        assert run["log_dir"] == f"adaptive-lr/{run['run_id']}"
        assert run["cpu_time_s"] >= 0
        if lr == RAISES_LR:
            assert run["status"] == "failed"
            assert run["error"] == "RuntimeError: unlucky learning rate"
            assert "fake_trainer" in run["traceback"]
        elif lr == DIVERGES_LR:
            assert run["status"] == "diverged"
            assert run["result"]["final_train_loss"] is None  # NaN is not JSON
            assert run["steps_to_target"] is None
        else:
            assert run["status"] == "done"
            assert (run["steps_to_target"], run["epochs_to_target"],
                    run["seconds_to_target"]) == (20, 2, 2.0)
    assert not list(tmp_path.rglob("*.tmp"))

    # Done and diverged runs are skipped; failed ones are tried again.
    again = sweep.run_sweep(plans, tmp_path, INLINE, trainer=fake_trainer)
    assert (again.skipped, again.failed) == (6, 3)
    failed = [rid for rid in ids if runs[rid]["status"] == "failed"]
    assert sorted(calls(tmp_path)) == sorted(ids + failed)


def test_parallel_workers_split_threads_and_run_each_once(tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_SECONDS", "0.3")
    plans = plan([1e-3, 1e-2])
    placement = sweep.Placement("cpu", workers=2, threads=1)
    outcome = sweep.run_sweep(plans, tmp_path, placement, trainer=fake_trainer)
    assert outcome.done == 6
    lines = (tmp_path / "calls.log").read_text().splitlines()
    assert sorted(line.split()[0] for line in lines) == sorted(
        spec.run_id for spec in plans[0].runs)
    assert {line.split()[2] for line in lines} == {"1"}  # one torch thread each
    assert len({line.split()[1] for line in lines}) == 2  # two worker processes
    assert {p for p in map(int, (line.split()[1] for line in lines))} \
        .isdisjoint({os.getpid()})


def test_dead_worker_is_retried_then_recorded_failed(tmp_path):
    plans = sweep.plan_sweep("adaptive", "smoke", {
        "lrs": {"adam": DIES_LR, "rmsprop": 1e-3, "adagrad": 1e-3}})
    placement = sweep.Placement("cpu", workers=1, threads=1)
    specs = sweep._placed_all(plans, tmp_path, placement)[0].runs
    summaries = []
    sweep._run_pool(specs, placement, 1, fake_trainer,
                    lambda spec, summary: summaries.append(summary))
    assert sorted(s["status"] for s in summaries) == ["done", "done", "failed"]
    [dead] = [s for s in summaries if s["status"] == "failed"]
    assert "died twice" in dead["error"]
    assert dead["config"]["hparams"]["lr"] == DIES_LR
    assert calls(tmp_path).count(dead["run_id"]) == 2


def test_busy_run_is_left_to_its_owner(tmp_path):
    [spec] = sweep._placed_all(plan([1e-3]), tmp_path, INLINE)[0].runs[:1]
    with runstore.run_lock(spec.directory):
        assert sweep.execute_run(spec, fake_trainer)["status"] == "busy"
    assert calls(tmp_path) == []
    assert sweep.execute_run(spec, fake_trainer)["status"] == "done"


def test_interrupted_attempt_is_cleared_before_training_again(tmp_path):
    [spec] = sweep._placed_all(plan([1e-3]), tmp_path, INLINE)[0].runs[:1]
    spec.directory.mkdir(parents=True)
    stale = spec.directory / "events.out.tfevents.stale"
    stale.write_text("half a run")
    (spec.directory / "checkpoints").mkdir()
    summary = sweep.execute_run(spec, fake_trainer)
    assert summary["status"] == "done"
    assert not stale.exists() and not (spec.directory / "checkpoints").exists()
    assert runstore.read_summary(spec.directory) == summary


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    path = tmp_path / "summary.json"
    runstore.atomic_write_json(path, {"status": "done"})
    with pytest.raises(TypeError):
        runstore.atomic_write_json(path, {"status": object()})
    assert json.loads(path.read_text()) == {"status": "done"}
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


TARGET_CASES = [
    (HISTORY, 0.5, (20, 2, 2.0)),
    (HISTORY, 0.3, (10, 1, 1.0)),
    (HISTORY, 0.9, (None, None, None)),  # censored
    ([{"epoch": 0, "step": 5, "time_s": 1.0, "val_acc": None}], 0.1,
     (None, None, None)),
    ([], 0.1, (None, None, None)),
]


@pytest.mark.parametrize(("history", "target", "expected"), TARGET_CASES)
def test_time_to_target(history, target, expected):
    assert runstore.time_to_target(history, target) == expected


def test_eta_from_measured_rate():
    specs = plan([1e-3, 1e-2])[0].runs
    progress = sweep.Progress(len(specs), 0, specs, workers=2)
    assert progress.eta_seconds() is None
    progress.update(specs[0], {"status": "done", "result": {"wall_time_s": 10.0}})
    rate = 10.0 / specs[0].cost
    remaining = sum(s.cost for s in specs[1:])
    assert progress.eta_seconds() == pytest.approx(remaining * rate / 2)
    assert sweep._clock(3725) == "1:02:05" and sweep._clock(65) == "01:05"


def test_placement_splits_cores(monkeypatch):
    monkeypatch.setattr(sweep, "usable_cpus", lambda: 16)
    monkeypatch.setattr(sweep, "gpu_count", lambda: 0)
    assert sweep.choose_placement("cpu", None) == sweep.Placement("cpu", 8, 2)
    assert sweep.choose_placement("auto", 4) == sweep.Placement("cpu", 4, 4)
    with pytest.raises(RuntimeError, match="no CUDA GPU"):
        sweep.choose_placement("gpu", None)
    monkeypatch.setattr(sweep, "gpu_count", lambda: 2)
    assert sweep.choose_placement("auto", None) == sweep.Placement("gpu", 2, 8, (0, 1))


MAIN_ERRORS = [
    (["nope"], "unknown study 'nope'; valid studies: batch-size, momentum"),
    (["momentum", "--preset", "big"], "valid presets: smoke, quick, full"),
    (["momentum", "--set", "lrr=1"], "unknown setting 'lrr'.*valid: .*lr, "),
    (["momentum", "--set", "epochs"], "expected key=value"),
    (["momentum", "--workers", "0"], "--workers must be at least 1"),
]


@pytest.mark.parametrize(("argv", "message"), MAIN_ERRORS)
def test_main_rejects_bad_input_with_exit_2(argv, message, caplog, tmp_path):
    from experiments.cli import build_parser

    parser = build_parser("run")
    args = parser.parse_args(["run", *argv, "--logdir", str(tmp_path)])
    with caplog.at_level(logging.ERROR, logger="optimlab.sweep"):
        assert sweep.main(args) == 2
    assert any(__import__("re").search(message, r.getMessage())
               for r in caplog.records), caplog.text
    assert not any(tmp_path.iterdir())


def run_main(argv, tmp_logdir):
    from experiments.cli import build_parser

    args = build_parser("run").parse_args(["run", *argv, "--logdir", str(tmp_logdir)])
    return sweep.main(args)


def test_logdir_that_is_a_file_is_refused_with_exit_2(tmp_path, caplog):
    afile = tmp_path / "somefile"
    afile.write_text("not a folder")
    for logdir in (afile, afile / "below"):
        with caplog.at_level(logging.ERROR, logger="optimlab.sweep"):
            assert run_main(["sgd-lr", "--preset", "smoke"], logdir) == 2
        assert f"--logdir {logdir}: " in caplog.text and "a file" in caplog.text
        caplog.clear()
    assert afile.read_text() == "not a folder"


def test_summary_of_another_run_is_set_aside_and_the_run_trained(tmp_path, caplog):
    plans = plan([1e-3])
    first, second = plans[0].runs[:2]
    sweep.run_sweep(plans, tmp_path, INLINE, trainer=fake_trainer)
    folder = tmp_path / "adaptive-lr"
    stray = (folder / first.run_id / "summary.json").read_text()
    (folder / second.run_id / "summary.json").write_text(stray)
    with caplog.at_level(logging.WARNING, logger="optimlab.sweep"):
        outcome = sweep.run_sweep(plans, tmp_path, INLINE, trainer=fake_trainer)
    assert (outcome.done, outcome.skipped) == (1, 2)
    assert calls(tmp_path).count(second.run_id) == 2
    [aside] = (folder / second.run_id).glob("summary.json.invalid-*")
    assert aside.read_text() == stray  # kept, not deleted
    assert str(folder / second.run_id / "summary.json") in caplog.text
    index = json.loads((folder / "index.json").read_text())
    ids = [run["run_id"] for run in index["runs"]]
    assert sorted(ids) == sorted(spec.run_id for spec in plans[0].runs)


def test_dry_run_writes_nothing(tmp_path, capsys):
    plans = plan([1e-3])
    sweep.run_sweep(plans, tmp_path, INLINE, trainer=fake_trainer)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    argv = ["adaptive-lr", "--preset", "smoke", "--set", "lrs=0.5", "--dry-run"]
    assert run_main(argv, tmp_path) == 0
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
    assert len(capsys.readouterr().out.splitlines()) == 3
    assert run_main(argv, tmp_path / "new") == 0
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("like_lightning", [False, True])
def test_ctrl_c_prints_one_line_and_exits_130(
    tmp_path, monkeypatch, capsys, like_lightning, real_data_dir
):
    import signal

    monkeypatch.setenv("OPTIMLAB_DATA", str(real_data_dir))  # checked before runs

    def interrupted_on_second_run(config):
        if calls(tmp_path):
            try:
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(5)  # the handler raises KeyboardInterrupt here
            except KeyboardInterrupt:
                if like_lightning:  # fit() ends a Ctrl-C with sys.exit(1)
                    raise SystemExit(1) from None
                raise
        return fake_trainer(config)

    monkeypatch.setattr(sweep, "train_with_lightning", interrupted_on_second_run)
    argv = ["adaptive-lr", "--preset", "smoke", "--set", "lrs=1e-3", "--workers", "1",
            "--accelerator", "cpu"]
    assert run_main(argv, tmp_path) == 130
    err = capsys.readouterr().err
    assert "interrupted: 1 runs ended, 2 left; re-run the same command to resume" \
        in err
    assert "Traceback" not in err
    assert len(list(tmp_path.rglob("summary.json"))) == 1


def test_run_ended_by_another_sweep_counts_as_skipped(tmp_path, monkeypatch):
    plans = plan([1e-3])
    sweep.run_sweep(plans, tmp_path, INLINE, trainer=fake_trainer)
    # The other sweep ends each run between this one's planning and its training.
    monkeypatch.setattr(runstore, "has_ended", lambda directory: False)
    outcome = sweep.run_sweep(plans, tmp_path, INLINE, trainer=fake_trainer)
    assert (outcome.done, outcome.skipped, outcome.failed) == (0, 3, 0)
    assert len(calls(tmp_path)) == 3


def test_summary_with_another_config_is_set_aside(tmp_path):
    plans = plan([1e-3])
    sweep.run_sweep(plans, tmp_path, INLINE, trainer=fake_trainer)
    spec = plans[0].runs[0]
    path = tmp_path / "adaptive-lr" / spec.run_id / "summary.json"
    edited = json.loads(path.read_text())
    edited["config"]["hparams"]["lr"] = 0.5
    path.write_text(json.dumps(edited))
    assert runstore.planned_summary(path.parent, spec.run_id) is None
    assert not path.exists()
    assert len(list(path.parent.glob("summary.json.invalid-*"))) == 1
