"""train(): config checks, full-batch exactness, reproducibility, divergence, CLI."""

from __future__ import annotations

import json
import math

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F

from datamodules import FashionMNISTDataModule
from experiments import cli
from experiments.train import RunResult, TrainConfig, load_yaml, train
from models import MLP, GradientProbe
from models.divergence import DivergenceGuard


@pytest.fixture
def tiny(real_data_dir, tmp_path):
    """A factory of small, fast Fashion-MNIST configs."""

    def make(**changes) -> TrainConfig:
        base = dict(
            model="mlp", hidden=(32,), optimizer="sgd", hparams={"lr": 0.1},
            batch_size=64, epochs=1, subset=256, val_size=200, seed=0,
            log_every=2, data_dir=str(real_data_dir), logdir=str(tmp_path / "logs"),
            progress_bar=False,
        )
        base.update(changes)
        return TrainConfig(**base)

    return make


# ------------------------------------------------------------------ TrainConfig
BAD_FIELDS = [
    ("model", "resnet", "model='resnet'"),
    ("arch", "cifar10_3c3d", "arch='cifar10_3c3d'"),
    ("hidden", (0, 4), "hidden"),
    ("schedule", "linear", "schedule='linear'"),
    ("warmup_steps", -1, "warmup_steps=-1"),
    ("batch_size", 0, "batch_size=0"),
    ("batch_size", "half", "batch_size='half'"),
    ("epochs", 0, "epochs=0"),
    ("max_steps", 0, "max_steps=0"),
    ("subset", 1.5, "subset=1.5"),
    ("subset", 0, "subset=0"),
    ("val_size", -5, "val_size=-5"),
    ("augment", True, "augment=True"),  # mlp: no augmentation
    ("seed", -1, "seed=-1"),
    ("log_every", 0, "log_every=0"),
    ("val_every", 1.5, "val_every=1.5"),
    ("val_every", 0, "val_every=0"),
    ("accelerator", "abacus", "accelerator='abacus'"),
    ("devices", 0, "devices=0"),
    ("precision", "8-bit", "precision='8-bit'"),
    ("name", "a/b", "name='a/b'"),
    ("noise_scale", "yes", "noise_scale='yes'"),
    ("hidden", 256, "hidden=256"),  # a YAML scalar, not a list
    ("hparams", 5, "hparams=5"),
    ("devices", 2, "devices=2"),  # multi-device (DDP) is refused
    ("accelerator", "tpu", "accelerator='tpu'"),
    ("precision", "transformer-engine", "precision='transformer-engine'"),
]


@pytest.mark.parametrize(("field", "value", "match"), BAD_FIELDS)
def test_bad_config_value_names_field_and_value(field, value, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**{field: value})


def test_noise_scale_refuses_loss_scaled_precision():
    with pytest.raises(ValueError, match="precision='16-mixed'"):
        TrainConfig(noise_scale=True, precision="16-mixed")


def test_from_dict_refuses_unknown_keys_by_name():
    with pytest.raises(ValueError, match="'learning_rate'"):
        TrainConfig.from_dict({"model": "mlp", "learning_rate": 0.1})


def test_to_dict_round_trips_through_json():
    config = TrainConfig(model="mlp", hidden=(64, 32), hparams={"lr": 0.1,
                         "betas": (0.9, 0.99)}, optimizer="adam", batch_size="full")
    data = json.loads(json.dumps(config.to_dict()))
    assert data["hidden"] == [64, 32]
    again = TrainConfig.from_dict(data)
    assert again.hidden == (64, 32)
    assert again.batch_size == "full"


def test_bad_hyperparameter_fails_before_training(tiny):
    with pytest.raises(ValueError, match="momentm"):
        train(tiny(hparams={"lr": 0.1, "momentm": 0.9}))
    with pytest.raises(ValueError, match="no_such_optimizer"):
        train(tiny(optimizer="no_such_optimizer"))


# ------------------------------------------------------- full-batch exactness
class GradientCapture(pl.Callback, GradientProbe):
    """Keeps the initial parameters, the step's gradient and the chunk sizes."""

    def __init__(self) -> None:
        self.initial: dict[str, torch.Tensor] = {}
        self.gradients: list[dict[str, torch.Tensor]] = []
        self.batch_sizes: list[int] = []

    def on_train_start(self, trainer, pl_module):
        self.initial = {k: v.detach().clone() for k, v in pl_module.state_dict().items()
                        if "confusion" not in k}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.batch_sizes.append(int(batch[1].shape[0]))

    def on_gradient(self, module, optimizer, total):
        self.gradients.append({n: p.grad.detach().clone()
                               for n, p in module.named_parameters()})


def test_full_batch_gradient_equals_one_batch_gradient_float64(tiny, real_data_dir):
    data = FashionMNISTDataModule(
        data_dir=real_data_dir, batch_size="full", subset=300, val_size=200,
        chunk_size=64,
    )
    capture = GradientCapture()
    config = tiny(batch_size="full", subset=300, max_steps=1, precision="64-true")
    result = train(config, callbacks=[capture], datamodule=data)
    assert result.global_step == 1
    assert capture.batch_sizes == [64, 64, 64, 64, 44]  # memory bounded by chunks

    x = torch.cat([xb for xb, _ in data.train_dataloader()]).double()
    y = torch.cat([yb for _, yb in data.train_dataloader()])
    reference = MLP(hidden=(32,)).double()
    reference.load_state_dict(capture.initial, strict=False)
    loss = F.cross_entropy(reference(x), y)  # mean over all 300 samples at once
    loss.backward()
    (chunked,) = capture.gradients
    for name, p in reference.named_parameters():
        assert chunked[name].dtype == torch.float64
        torch.testing.assert_close(chunked[name], p.grad, atol=1e-10, rtol=0)


def test_full_batch_takes_one_step_per_epoch(tiny):
    result = train(tiny(batch_size="full", epochs=3))
    assert result.global_step == 3
    assert [h["step"] for h in result.history] == [1, 2, 3]


# ------------------------------------------------------------ reproducibility
def _scalars(log_dir: str) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import (
        EventAccumulator,
    )

    events = EventAccumulator(log_dir, size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)]
            for tag in events.Tags()["scalars"] if not tag.startswith("perf/")}


def test_same_seed_gives_identical_metrics(tiny):
    config = tiny(optimizer="adam", hparams={"lr": 1e-3}, epochs=2)
    first = train(config.replace(name="a"))
    second = train(config.replace(name="b"))
    other = train(config.replace(name="c", seed=1))
    def metrics(result):  # everything but the wall-clock time
        return [{k: v for k, v in h.items() if k != "time_s"} for h in result.history]

    assert metrics(first) == metrics(second)  # exactly equal
    assert first.test_acc == second.test_acc
    logged_first, logged_second = _scalars(first.log_dir), _scalars(second.log_dir)
    assert "grad_norm/global" in logged_first
    assert logged_first == logged_second
    assert _scalars(other.log_dir)["train/loss"] != logged_first["train/loss"]


# ------------------------------------------------------------------ divergence
GUARD_CASES = [
    ([2.3, 2.0, 1.5], None),
    ([2.3, math.nan], 1),
    ([math.inf], 0),
    ([1.0, 999.0, 1000.5], 2),
    ([1.0, -math.inf], 1),
]


@pytest.mark.parametrize("path", ["host", "device"])
@pytest.mark.parametrize(("losses", "expected"), GUARD_CASES)
def test_divergence_guard(losses, expected, path):
    guard = DivergenceGuard()
    for step, value in enumerate(losses):
        loss = torch.tensor(value)
        if path == "host":
            guard.update(loss, step)
        else:  # the accelerator path's on-device bookkeeping, run on the CPU
            guard._update_device(loss, step)
    guard.finalize()
    assert guard.diverged_step == expected


@pytest.mark.parametrize("lr", [1e4, 1e30])
def test_diverging_run_stops_at_once_and_is_recorded(tiny, lr):
    result = train(tiny(hparams={"lr": lr}, batch_size=16, epochs=3))
    assert result.status == "diverged"
    assert result.diverged
    assert result.diverged_step is not None
    # stopped right there: the diverged step itself was refused
    assert result.global_step == result.diverged_step
    assert result.epochs_completed == result.diverged_step // 16  # 16 steps/epoch
    assert result.test_acc is None
    assert json.dumps(result.to_dict(), allow_nan=False)  # NaN loss becomes null


def test_healthy_run_is_done(tiny):
    result = train(tiny(hparams={"lr": 0.05}, epochs=2, schedule="cosine",
                        warmup_steps=2))
    assert isinstance(result, RunResult)
    assert result.status == "done" and result.diverged_step is None
    assert result.global_step == 8
    assert len(result.history) == 2
    assert 0.0 <= result.final_val_acc <= 1.0
    assert result.best_val_acc >= result.final_val_acc
    assert len(result.per_class_test_acc) == 10
    assert result.b_simple is None
    summary = result.to_dict()
    for key in ("final_val_acc", "best_val_acc", "test_acc", "test_loss",
                "final_train_loss", "final_train_acc", "final_val_loss",
                "diverged_step", "global_step", "epochs_completed", "wall_time_s",
                "samples_per_s", "per_class_test_acc", "b_simple", "history"):
        assert key in summary
    assert set(summary["history"][0]) == {
        "epoch", "step", "time_s", "train_loss", "train_acc", "val_loss",
        "val_acc", "per_class_val_acc",
    }
    # the images the accuracies come from: the subset, val_size, the whole test set
    assert (summary["num_train"], summary["num_val"], summary["num_test"]) == (
        256, 200, 10_000)


def test_val_every_in_steps_still_reports_final_validation(tiny):
    result = train(tiny(val_every=3, epochs=1))  # 4 steps; validates at step 3
    assert result.global_step == 4
    assert result.final_val_acc is not None
    assert result.history[-1]["val_acc"] == result.final_val_acc


def test_noise_scale_is_stored_when_asked(tiny):
    result = train(tiny(noise_scale=True, epochs=2))
    assert result.b_simple is not None and result.b_simple > 0


# ------------------------------------------------------------------------- CLI
def _run_cli(argv, capsys):
    code = cli.main(["train", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_trains_and_reports(real_data_dir, tmp_path, capsys):
    code, out, _ = _run_cli(
        ["--model", "mlp", "--hidden", "32", "--optimizer", "momentum",
         "--lr", "0.05", "--momentum", "0.9", "--batch-size", "64", "--epochs", "1",
         "--train-subset", "128", "--val-size", "100", "--max-steps", "2",
         "--data-dir", str(real_data_dir), "--logdir", str(tmp_path), "--name", "cli",
         "--no-progress-bar", "--seed", "3"],
        capsys,
    )
    assert code == 0
    assert "status:          done" in out
    assert "final val acc:" in out and "test acc:" in out
    saved = json.loads((tmp_path / "cli" / "version_0" / "result.json").read_text())
    assert saved["config"]["hparams"] == {"lr": 0.05, "momentum": 0.9}
    assert saved["config"]["subset"] == 128
    assert saved["result"]["global_step"] == 2


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--momentm", "0.9"], "momentm"),
        (["--batch-size", "lots"], "--batch-size"),
        (["--epochs", "0"], "epochs=0"),
        (["--model", "rnn"], "--model"),
        (["--optimizer", "sgd", "--betas", "0.9,0.99"], "betas"),
        (["--train-subset", "2.0"], "subset=2.0"),
        (["--lr", "-1"], "lr=-1"),
    ],
)
def test_cli_bad_flags_are_named(argv, match, capsys):
    try:
        code, _, err = _run_cli(argv, capsys)
    except SystemExit as stop:  # argparse's own errors
        code, err = stop.code, capsys.readouterr().err
    assert code == 2
    assert match in err


class _FailsAtStart(pl.Callback):
    def on_train_start(self, trainer, pl_module):
        raise RuntimeError("boom at the start")


def test_failed_run_leaves_no_empty_log_folder(tiny, tmp_path):
    with pytest.raises(RuntimeError, match="boom"):
        train(tiny(), callbacks=[_FailsAtStart()])
    assert not list((tmp_path / "logs").glob("*/version_*"))


@pytest.mark.parametrize(
    ("argv", "yaml", "match"),
    [
        (["--train-subset", "100000"], None, "subset=100000"),
        (["--val-size", "100000"], None, "val_size=100000"),
        (["--accelerator", "gpu"], None, "accelerator='gpu'"),
        (["--devices", "2"], None, "devices=2"),
        ([], "hparams: 5\n", "hparams=5"),
        ([], "hidden: 256\n", "hidden=256"),
    ],
)
def test_cli_bad_settings_are_one_clean_line(
    argv, yaml, match, real_data_dir, tmp_path, capsys, monkeypatch
):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    if yaml is not None:
        (tmp_path / "run.yaml").write_text(yaml)
        argv = [*argv, "--config", str(tmp_path / "run.yaml")]
    code, _, err = _run_cli(
        [*argv, "--data-dir", str(real_data_dir), "--logdir", str(tmp_path / "logs"),
         "--no-progress-bar"],
        capsys,
    )
    assert code == 2, err
    assert match in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert not list((tmp_path / "logs").glob("*/version_*"))


@pytest.mark.parametrize("text", ["0.9,0.99", "(0.9,0.99)", "[0.9, 0.99]"])
def test_cli_tuple_hyperparameters_are_numbers(text):
    parser = cli.build_parser("train")
    args = parser.parse_args(["train", "--optimizer", "adam", "--betas", text])
    from experiments.train import config_from_args

    assert config_from_args(args).hparams["betas"] == (0.9, 0.99)


def test_cli_missing_data_is_a_clean_error(tmp_path, capsys):
    code, _, err = _run_cli(
        ["--data-dir", str(tmp_path / "nowhere"), "--logdir", str(tmp_path),
         "--no-progress-bar"],
        capsys,
    )
    assert code == 2
    assert "nowhere" in err and "Traceback" not in err


def test_yaml_config_replaces_flags_and_flags_win(tmp_path, real_data_dir):
    path = tmp_path / "run.yaml"
    path.write_text(
        "model: mlp\nhidden: [16, 8]\noptimizer: adam\nlr: 0.002\n"
        "hparams: {betas: [0.8, 0.9]}\nbatch_size: full\ntrain_subset: 0.01\n"
        f"data_dir: {real_data_dir}\nepochs: 4\n"
    )
    parser = cli.build_parser("train")
    args = parser.parse_args(["train", "--config", str(path), "--epochs", "2"])
    from experiments.train import config_from_args

    config = config_from_args(args)
    assert config.hidden == (16, 8)
    assert config.optimizer == "adam"
    assert config.hparams == {"lr": 0.002, "betas": [0.8, 0.9]}
    assert config.batch_size == "full"
    assert config.subset == 0.01
    assert config.epochs == 2  # the flag wins


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("model: mlp\nepoch: 3\n", "unknown key 'epoch'"),
        ("- a\n- b\n", "mapping"),
        ("model: [unclosed\n", "not valid YAML"),
    ],
)
def test_bad_yaml_is_named(tmp_path, text, match):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=match):
        load_yaml(path)


def test_missing_yaml_file_is_named(tmp_path):
    with pytest.raises(ValueError, match="nope.yaml"):
        load_yaml(tmp_path / "nope.yaml")


# --------------------------------------------------------------------- the CNN
class _FirstBatches:
    """The first ``count`` batches of a loader (keeps the CNN's test pass short)."""

    def __init__(self, loader, count: int) -> None:
        self.loader, self.count = loader, count

    def __len__(self) -> int:
        return min(self.count, len(self.loader))

    def __iter__(self):
        for index, batch in enumerate(self.loader):
            if index >= self.count:
                return
            yield batch


def test_cnn_trains_on_cifar10(real_data_dir, tmp_path):
    from datamodules import CIFAR10DataModule

    class ShortTest(CIFAR10DataModule):
        def test_dataloader(self):
            return _FirstBatches(super().test_dataloader(), 2)

    data = ShortTest(data_dir=real_data_dir, batch_size=32, subset=64, val_size=100,
                     chunk_size=100, augment=True)
    config = TrainConfig(
        model="cnn", optimizer="nesterov", hparams={"lr": 0.01, "momentum": 0.9},
        batch_size=32, subset=64, val_size=100, augment=True, epochs=1,
        log_every=1, logdir=str(tmp_path), progress_bar=False,
    )
    result = train(config, datamodule=data)
    assert result.status == "done"
    assert result.global_step == 2
    assert result.final_val_acc is not None
    assert len(result.per_class_test_acc) == 10
    assert math.isfinite(result.history[0]["train_loss"])


def test_deterministic_run_restores_the_global_flag(tiny):
    result = train(tiny(deterministic=True, max_steps=2))
    assert result.status == "done"
    assert not torch.are_deterministic_algorithms_enabled()
