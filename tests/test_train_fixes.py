"""Regressions from a tester's findings: precisions, user optimizers that fail in
step(), log folder names, config and flag messages, Ctrl-C, missing sweep data."""

from __future__ import annotations

import logging
import math
import os
import signal
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from experiments import cli, runstore, sweep
from experiments.train import (
    MAX_SEED,
    OptimizerStepError,
    TrainConfig,
    TrainInterrupted,
    config_from_args,
    load_yaml,
    train,
)


@pytest.fixture
def tiny(real_data_dir, tmp_path):
    """Two-step Fashion-MNIST runs that log every step."""

    def make(**changes) -> TrainConfig:
        base = dict(
            model="mlp", hidden=(8,), optimizer="sgd", hparams={"lr": 0.05},
            batch_size=32, epochs=1, max_steps=2, subset=128, val_size=64, seed=0,
            log_every=1, data_dir=str(real_data_dir), logdir=str(tmp_path / "logs"),
            progress_bar=False,
        )
        base.update(changes)
        return TrainConfig(**base)

    return make


def _run_cli(argv, capsys):
    try:
        code = cli.main(argv)
    except SystemExit as stop:  # argparse's own errors
        code = stop.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _tags(log_dir: str) -> tuple[set[str], set[str]]:
    from tensorboard.backend.event_processing.event_accumulator import (
        EventAccumulator,
    )

    events = EventAccumulator(log_dir, size_guidance={"scalars": 0, "histograms": 0})
    events.Reload()
    return set(events.Tags()["scalars"]), set(events.Tags()["histograms"])


# ------------------------------------------------- 1. every precision the CLI offers
PRECISION_CASES = [
    ("64-true", "adam", {"lr": 1e-3}),
    ("bf16-true", "adam", {"lr": 1e-3}),
    ("64-true", "sgd", {"lr": 0.05}),
    ("bf16-true", "sgd", {"lr": 0.05}),
    ("64-true", "rmsprop", {"lr": 1e-3}),
    ("16-true", "adagrad", {"lr": 1e-2}),  # its effective lr overflows to inf
]


@pytest.mark.parametrize(("precision", "optimizer", "hparams"), PRECISION_CASES)
def test_instruments_log_in_every_precision(tiny, precision, optimizer, hparams):
    result = train(tiny(precision=precision, optimizer=optimizer, hparams=hparams))
    assert result.status in ("done", "diverged")
    scalars, histograms = _tags(result.log_dir)
    assert "grad_norm/global" in scalars
    if optimizer != "sgd" and precision != "16-true":
        assert result.status == "done"
        assert "effective_lr/median" in scalars
        assert "effective_lr/log10" in histograms


# --------------------------------------------- 2. a user optimizer failing in step()
class _BrokenStep(torch.optim.SGD):
    def step(self, closure=None):
        raise ValueError("broken on purpose")


@pytest.mark.parametrize(
    ("optimizer", "match"),
    [
        ("torch.optim:LBFGS", "torch.optim:LBFGS failed in step\\(\\): TypeError"),
        ("torch.optim:SparseAdam", "SparseAdam failed in step\\(\\): RuntimeError"),
        (f"{__name__}:_BrokenStep", "_BrokenStep failed in step\\(\\): ValueError: "
         "broken on purpose"),
    ],
)
def test_user_optimizer_failing_in_step_is_named(tiny, optimizer, match):
    with pytest.raises(OptimizerStepError, match=match) as caught:
        train(tiny(optimizer=optimizer, hparams={"lr": 0.1}))
    assert caught.value.__cause__ is not None  # the original error is kept
    assert "\n" not in str(caught.value)


def test_optimlab_optimizer_errors_are_not_rewrapped(tiny, monkeypatch):
    import optimizers.registry as registry

    def buggy(self, closure=None):
        raise ZeroDivisionError("a bug in optimlab")

    monkeypatch.setattr(registry.SGD, "step", buggy)
    with pytest.raises(ZeroDivisionError, match="a bug in optimlab"):
        train(tiny(optimizer="sgd"))


def test_cli_user_optimizer_failure_is_one_line(real_data_dir, tmp_path, capsys):
    code, _, err = _run_cli(
        ["train", "--optimizer", "torch.optim:LBFGS", "--train-subset", "64",
         "--val-size", "32", "--max-steps", "2", "--hidden", "8",
         "--data-dir", str(real_data_dir), "--logdir", str(tmp_path),
         "--no-progress-bar"],
        capsys,
    )
    assert code == 1
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "torch.optim:LBFGS failed in step()" in lines[0]
    assert "closure" in lines[0]


def test_sweep_records_user_optimizer_failure(tiny, tmp_path):
    config = tiny(optimizer="torch.optim:LBFGS", hparams={"lr": 0.1},
                  name="study", version="run-1").to_dict()
    spec = sweep.RunSpec(
        study="study", preset="smoke", run_id="run-1", config=config,
        target_accuracy=0.5,
        memberships=({"part": "p", "series": "lbfgs", "x_name": "lr", "x": 0.1,
                      "y_name": None, "y": None},),
        logdir=str(tmp_path / "logs"), cost=1.0,
    )
    summary = sweep.execute_run(spec)
    assert summary["status"] == "failed"
    assert summary["error"].startswith(
        "OptimizerStepError: optimizer torch.optim:LBFGS failed in step(): TypeError")
    assert runstore.read_summary(spec.directory)["status"] == "failed"


# ------------------------------------------------------- 3. --version stays inside
@pytest.mark.parametrize("version", ["", ".", "..", "../../../tmp/x", "a/b", "a\\b"])
def test_version_must_be_one_folder_name(version):
    with pytest.raises(ValueError, match="version="):
        TrainConfig(version=version)


@pytest.mark.parametrize("name", ["", "..", "a/b"])
def test_name_follows_the_same_rule(name):
    with pytest.raises(ValueError, match="name="):
        TrainConfig(name=name)


def test_cli_version_outside_logdir_is_refused(real_data_dir, tmp_path, capsys):
    logdir = tmp_path / "deep" / "logs"
    code, _, err = _run_cli(
        ["train", "--version", "../../escaped", "--data-dir", str(real_data_dir),
         "--logdir", str(logdir), "--no-progress-bar"],
        capsys,
    )
    assert code == 2 and "version='../../escaped'" in err
    assert not (tmp_path / "escaped").exists() and not logdir.exists()


# ----------------------------------------------------------------- 4. messages
def test_seed_range_names_seed():
    TrainConfig(seed=MAX_SEED)
    with pytest.raises(ValueError, match=f"seed={MAX_SEED + 1} .*4294967295"):
        TrainConfig(seed=MAX_SEED + 1)


def test_cli_huge_seed_names_seed(capsys):
    code, _, err = _run_cli(["train", "--seed", "100000000000000000000000"], capsys)
    assert code == 2 and "seed=100000000000000000000000" in err


YAML_CASES = [
    (b"\x89PNG\r\n\x1a\n\x00\xff\xfe", "is not UTF-8 text"),
    (b"model: mlp\nseed: 1\nseed: 2\n", "key 'seed' is given twice .*line 3"),
    (b"hparams: {lr: 0.2, lr: 0.3}\n", "key 'lr' is given twice"),
    (b"lr: 0.1\nhparams: {lr: 0.2}\n", "lr: 0.1 and hparams: {lr: 0.2} conflict"),
    (b"model: [unclosed\n", "not valid YAML: .*line 2"),
]


@pytest.mark.parametrize(("content", "match"), YAML_CASES)
def test_bad_yaml_names_the_file_in_one_line(tmp_path, content, match):
    path = tmp_path / "run.yaml"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=match) as caught:
        load_yaml(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"base: &b {seed: 1}\n", None),  # anchors still load
        (b"lr: 0.1\nhparams: {lr: 0.1}\n", {"hparams": {"lr": 0.1}}),  # agreeing
    ],
)
def test_valid_yaml_still_loads(tmp_path, content, expected):
    path = tmp_path / "run.yaml"
    path.write_bytes(content)
    if expected is None:
        with pytest.raises(ValueError, match="unknown key 'base'"):
            load_yaml(path)  # loaded fine, then refused as an unknown field
    else:
        assert load_yaml(path) == expected


def _args(argv):
    return cli.build_parser("train").parse_args(["train", *argv])


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--optimizer", "adam", "--amsgrad"], {"amsgrad": True}),
        (["--optimizer", "adam", "--amsgrad", "--lr", "0.1"],
         {"amsgrad": True, "lr": 0.1}),
        (["--optimizer", "adam", "--amsgrad", "false"], {"amsgrad": False}),
        (["--optimizer", "adam", "--amsgrad=no"], {"amsgrad": False}),
    ],
)
def test_bare_boolean_hyperparameter_flag_means_true(argv, expected):
    assert config_from_args(_args(argv)).hparams == expected


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--hparams", "betas=(0.9,)"], "unknown option --hparams for optimlab train"),
        (["--hparams", "betas=(0.9,0.99),eps=1e-8"], "--betas (0.9,0.99) --eps 1e-8"),
        (["--subset", "0.1"], "use --train-subset"),
    ],
)
def test_flags_of_other_commands_are_refused_clearly(argv, match, capsys):
    code, _, err = _run_cli(["train", *argv], capsys)
    assert code == 2 and match in err
    assert "('betas" not in err


# ---------------------------------------------------------------- 5. Ctrl-C
class _CtrlC(pl.Callback):
    """Sends this process SIGINT, as Ctrl-C does, after ``at`` steps."""

    def __init__(self, at: int = 2):
        self.at = at

    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step == self.at:
            os.kill(os.getpid(), signal.SIGINT)


def test_interrupted_train_keeps_its_logs_and_the_handler(tiny):
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(TrainInterrupted) as caught:
        train(tiny(max_steps=6), callbacks=[_CtrlC(2)])
    assert signal.getsignal(signal.SIGINT) is before
    log_dir = caught.value.log_dir
    assert log_dir and list(Path(log_dir).glob("events.out.tfevents.*"))


def test_cli_ctrl_c_exits_130_naming_the_logs(real_data_dir, tmp_path, capsys,
                                              monkeypatch):
    import experiments.callbacks as callbacks

    original = callbacks.InstrumentCallback

    class Interrupting(original, _CtrlC):
        def __init__(self, *args, **kwargs):
            original.__init__(self, *args, **kwargs)
            _CtrlC.__init__(self, 2)

    monkeypatch.setattr(callbacks, "InstrumentCallback", Interrupting)
    code, out, err = _run_cli(
        ["train", "--train-subset", "256", "--val-size", "64", "--hidden", "8",
         "--batch-size", "32", "--max-steps", "6", "--data-dir", str(real_data_dir),
         "--logdir", str(tmp_path), "--no-progress-bar"],
        capsys,
    )
    assert code == 130
    lines = err.strip().splitlines()
    assert lines == [f"optimlab train: interrupted; logs so far are in "
                     f"{tmp_path / 'default' / 'version_0'}"]
    assert "status:" not in out


def test_fake_tensor_cache_stats_are_not_shown(caplog, capsys):
    _run_cli(["train", "--epochs", "0"], capsys)
    with caplog.at_level(logging.INFO, logger="torch._subclasses.fake_tensor"):
        logging.getLogger("torch._subclasses.fake_tensor").info("FakeTensor cache")
    assert "FakeTensor" not in caplog.text


# ------------------------------------------------------ 6. a sweep without its data
@pytest.mark.parametrize("source", ["set", "env"])
def test_sweep_without_data_stops_before_any_run(tmp_path, caplog, monkeypatch,
                                                 source):
    missing = tmp_path / "no-data"
    logdir = tmp_path / "logs"
    argv = ["run", "adaptive", "--preset", "smoke", "--logdir", str(logdir)]
    if source == "set":
        monkeypatch.setenv("OPTIMLAB_DATA", str(tmp_path))
        argv += ["--set", f"data_dir={missing}"]
        given = "given by --set data_dir"
    else:
        monkeypatch.setenv("OPTIMLAB_DATA", str(missing))
        given = "given by OPTIMLAB_DATA"
    args = cli.build_parser("run").parse_args(argv)
    with caplog.at_level(logging.ERROR, logger="optimlab.sweep"):
        assert sweep.main(args) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert f"data directory {str(missing)!r} ({given}) does not exist" in errors[0]
    assert "--set data_dir=DIR" in errors[0] and "download=True" not in errors[0]
    assert "itself/" not in errors[0]
    assert not logdir.exists()  # no run was started


# ----------------------------------------------------------- 7. and 8. minor
def test_dict_setting_example_is_itself_accepted():
    from experiments.studies import parse_override

    with pytest.raises(ValueError, match="expected a dict") as caught:
        sweep.plan_sweep("adaptive", "smoke", {"lrs": "abc"})
    example = str(caught.value).split("--set ")[-1].strip('"')
    key, value = parse_override(example)
    assert key == "lrs"
    assert sweep.plan_sweep("adaptive", "smoke", {key: value})


def test_progress_line_of_a_run_without_accuracy(caplog, tmp_path):
    spec = sweep.RunSpec(
        study="study", preset="smoke", run_id="run-1", config={},
        target_accuracy=0.5, memberships=(), logdir=str(tmp_path), cost=1.0,
    )
    progress = sweep.Progress(total=1, skipped=0, pending=[], workers=1)
    with caplog.at_level(logging.INFO, logger="optimlab.sweep"):
        progress.update(spec, {"status": "skipped"})
    assert "val_acc - " in caplog.text and "None" not in caplog.text
    assert not math.isnan(progress.remaining_cost)
