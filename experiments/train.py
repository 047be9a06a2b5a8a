"""Train one model with one optimizer: ``TrainConfig`` -> ``train()`` -> ``RunResult``.

``optimlab train`` and the sweep runner both end up in :func:`train`. The data set
follows the model: ``cnn`` trains on CIFAR-10, ``mlp`` on Fashion-MNIST.

Command line (flags, a YAML file, or both; flags win over the file)::

    optimlab train --model mlp --optimizer momentum --lr 0.05 --momentum 0.9 \\
        --batch-size 128 --epochs 2 --train-subset 0.1 --seed 1
    optimlab train --config run.yaml --epochs 3

Any ``--key value`` that is not a training flag is passed to the optimizer as a
hyperparameter (``--momentum 0.9``, ``--betas 0.9,0.99``, ``--nesterov true``); an
optimizer that does not take it makes the command fail with an error naming it.
The YAML file holds :class:`TrainConfig` fields (``hparams`` as a mapping; ``lr``
and ``train_subset`` are accepted as shortcuts).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import math
import os
import sys
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from experiments.runstore import atomic_write_json

log = logging.getLogger(__name__)

MODELS = ("cnn", "mlp")
ARCHS = {"cnn": ("default", "cifar10_3c3d"), "mlp": ("default", "fmnist_mlp")}
SCHEDULES = ("constant", "step", "cosine")
# TPUs and Transformer Engine need packages this project does not install
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")
PRECISIONS = (
    "64-true", "64", "32-true", "32", "16-mixed", "bf16-mixed", "16-true",
    "bf16-true",
)  # fmt: skip


# numpy's seeds (Lightning seeds numpy with it too) are 32-bit unsigned
MAX_SEED = 2**32 - 1


def config_error(name: str, value: Any, allowed: str) -> ValueError:
    """The one message shape for a bad training field: field, value, what is allowed."""
    return ValueError(f"TrainConfig: {name}={value!r} is invalid; allowed: {allowed}")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines one training run (see docs/architecture.md)."""

    model: str = "mlp"  # cnn (CIFAR-10) or mlp (Fashion-MNIST)
    arch: str = "default"  # default, cifar10_3c3d (cnn) or fmnist_mlp (mlp)
    hidden: tuple[int, ...] | None = None  # MLP hidden widths; None: the arch's
    optimizer: str = "sgd"  # registry name or package.module:Class
    hparams: dict[str, Any] = field(default_factory=dict)  # lr included
    schedule: str = "constant"  # constant, step or cosine over the run
    warmup_steps: int = 0  # optimizer steps of linear warm-up
    batch_size: int | str = 128  # samples per step, or "full" (full-batch GD)
    epochs: int = 1  # passes over the training split
    max_steps: int | None = None  # optimizer steps; None: no limit
    subset: float | int | None = None  # fraction or count of the training split
    val_size: int = 5000  # images held out of the training set
    augment: bool = False  # CIFAR-10 crop + flip
    data_dir: str | None = None  # else $OPTIMLAB_DATA, else ./data
    seed: int = 0
    log_every: int = 25  # optimizer steps between instrument logs
    val_every: float | int = 1.0  # float: fraction of an epoch; int: steps
    noise_scale: bool = False  # estimate B_simple during training
    accelerator: str = "auto"
    devices: int | str = 1
    precision: str = "32-true"
    deterministic: bool = False
    logdir: str = "lightning_logs"
    name: str = "default"
    version: int | str | None = None
    progress_bar: bool = True

    def __post_init__(self) -> None:
        if self.hidden is not None:
            if not isinstance(self.hidden, list | tuple):
                raise config_error("hidden", self.hidden,
                                   "a list of one or more positive integers")
            object.__setattr__(self, "hidden", tuple(self.hidden))
        if not isinstance(self.hparams, Mapping):
            raise config_error("hparams", self.hparams, "a mapping of name: value")
        object.__setattr__(self, "hparams", dict(self.hparams))
        _validate(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """Build from a mapping; unknown keys raise a ``ValueError`` naming them."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"TrainConfig: unknown field(s) {', '.join(map(repr, unknown))}; "
                f"known fields: {', '.join(sorted(known))}"
            )
        return cls(**dict(data))

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dictionary (tuples become lists)."""
        data = dataclasses.asdict(self)
        data["hidden"] = list(self.hidden) if self.hidden is not None else None
        data["hparams"] = _json_safe(self.hparams)
        return data

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)


def _json_safe(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _validate(c: TrainConfig) -> None:
    if c.model not in MODELS:
        raise config_error("model", c.model, " or ".join(MODELS))
    if c.arch not in ARCHS[c.model]:
        raise config_error("arch", c.arch, f"for model {c.model!r}: "
                           + ", ".join(ARCHS[c.model]))
    if c.hidden is not None:
        if c.model != "mlp":
            raise config_error("hidden", c.hidden, "None for model 'cnn'")
        if not c.hidden or not all(_is_int(w) and w > 0 for w in c.hidden):
            raise config_error("hidden", c.hidden, "one or more positive integers")
    if not isinstance(c.optimizer, str) or not c.optimizer:
        raise config_error("optimizer", c.optimizer, "a registry name or module:Class")
    if not all(isinstance(k, str) for k in c.hparams):
        raise config_error("hparams", c.hparams, "a mapping with string keys")
    if c.schedule not in SCHEDULES:
        raise config_error("schedule", c.schedule, ", ".join(SCHEDULES))
    if not _is_int(c.warmup_steps) or c.warmup_steps < 0:
        raise config_error("warmup_steps", c.warmup_steps, "an integer >= 0")
    if c.batch_size != "full" and not (_is_int(c.batch_size) and c.batch_size > 0):
        raise config_error("batch_size", c.batch_size, "an integer >= 1 or 'full'")
    if not _is_int(c.epochs) or c.epochs < 1:
        raise config_error("epochs", c.epochs, "an integer >= 1")
    if c.max_steps is not None and not (_is_int(c.max_steps) and c.max_steps >= 1):
        raise config_error("max_steps", c.max_steps, "None or an integer >= 1")
    if c.subset is not None:
        fraction = isinstance(c.subset, float) and 0.0 < c.subset <= 1.0
        count = _is_int(c.subset) and c.subset >= 1
        if not (fraction or count):
            raise config_error("subset", c.subset,
                               "None, a fraction in (0, 1] or a count >= 1")
    if not _is_int(c.val_size) or c.val_size < 0:
        raise config_error("val_size", c.val_size, "an integer >= 0")
    for name in ("augment", "noise_scale", "deterministic", "progress_bar"):
        if not isinstance(getattr(c, name), bool):
            raise config_error(name, getattr(c, name), "true or false")
    if c.augment and c.model != "cnn":
        raise config_error("augment", c.augment, "false for model 'mlp'")
    if c.data_dir is not None and not isinstance(c.data_dir, str):
        raise config_error("data_dir", c.data_dir, "None or a path")
    if not _is_int(c.seed) or not 0 <= c.seed <= MAX_SEED:
        raise config_error("seed", c.seed, f"an integer in [0, {MAX_SEED}]")
    if not _is_int(c.log_every) or c.log_every < 1:
        raise config_error("log_every", c.log_every, "an integer >= 1")
    if isinstance(c.val_every, float):
        if not 0.0 < c.val_every <= 1.0:
            raise config_error("val_every", c.val_every,
                               "a fraction of an epoch in (0, 1] or steps >= 1")
    elif not (_is_int(c.val_every) and c.val_every >= 1):
        raise config_error("val_every", c.val_every,
                           "a fraction of an epoch in (0, 1] or steps >= 1")
    if c.accelerator not in ACCELERATORS:
        raise config_error("accelerator", c.accelerator, ", ".join(ACCELERATORS))
    if c.devices != 1 or not _is_int(c.devices):
        # one process per run: the sweep gives each worker its own device
        raise config_error("devices", c.devices, "1 (multi-device training is not "
                           "supported; run a sweep with one worker per device)")
    if str(c.precision) not in PRECISIONS:
        raise config_error("precision", c.precision, ", ".join(PRECISIONS))
    if c.noise_scale and str(c.precision) == "16-mixed":
        # the GradScaler's changing loss scale would weight the estimate's sums
        raise config_error("precision", c.precision,
                           "32-true, 64-true or bf16-mixed when noise_scale is on")
    if not isinstance(c.logdir, str) or not c.logdir:
        raise config_error("logdir", c.logdir, "a folder path")
    if not _is_folder_name(c.name):
        raise config_error("name", c.name, FOLDER_NAME_RULE)
    if c.version is not None and not (
        _is_int(c.version) or _is_folder_name(c.version)
    ):
        raise config_error("version", c.version,
                           f"None, an integer or {FOLDER_NAME_RULE}")


FOLDER_NAME_RULE = "a single folder name (not empty, '.' or '..'; no '/' or '\\')"


def _is_folder_name(value: Any) -> bool:
    """A single folder name: ``name`` and ``version`` must stay inside ``logdir``."""
    return (
        isinstance(value, str) and value not in ("", ".", "..")
        and "/" not in value and "\\" not in value and os.sep not in value
        and "\0" not in value
    )


@dataclass
class RunResult:
    """What one run produced; ``to_dict()`` is summary.json's ``result`` object."""

    status: str  # done or diverged
    diverged_step: int | None
    final_val_acc: float | None
    best_val_acc: float | None
    test_acc: float | None
    test_loss: float | None
    final_train_loss: float | None
    final_train_acc: float | None
    final_val_loss: float | None
    global_step: int
    epochs_completed: int
    wall_time_s: float
    samples_per_s: float | None
    per_class_test_acc: list[float] | None
    b_simple: float | None
    history: list[dict[str, Any]]
    log_dir: str | None
    # Images the accuracies come from (None when the datamodule does not say).
    num_train: int | None = None
    num_val: int | None = None
    num_test: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return _json_safe(dataclasses.asdict(self))

    @property
    def diverged(self) -> bool:
        return self.status == "diverged"


# ----------------------------------------------------------------------- training
def build_datamodule(config: TrainConfig):
    """The data module the model trains on (CIFAR-10 for cnn, Fashion-MNIST for mlp)."""
    import datamodules

    kwargs: dict[str, Any] = {
        "data_dir": config.data_dir,
        "batch_size": config.batch_size,
        "val_size": config.val_size,
        "subset": config.subset,
        "seed": config.seed,
    }
    if config.model == "cnn":
        return datamodules.CIFAR10DataModule(augment=config.augment, **kwargs)
    return datamodules.FashionMNISTDataModule(**kwargs)


def check_data(
    config: TrainConfig, setting: str = "--data-dir DIR", given_by: str = "--data-dir"
) -> None:
    """Find the files of ``config``'s data set, without reading them.

    Raises a one-line ``ValueError`` naming the folder searched, where that folder
    came from, and how to point optimlab elsewhere (``setting``: the command-line
    way to give ``data_dir``, e.g. ``--data-dir DIR`` or ``--set data_dir=DIR``;
    ``given_by``: what set ``config.data_dir`` when it is not None).
    """
    import datamodules
    from datamodules.base import resolve_data_dir

    datamodule = build_datamodule(config)
    root = resolve_data_dir(config.data_dir)
    flag = setting.split()[0].split("=")[0]
    if config.data_dir is not None:
        source = f"given by {given_by}"
    elif os.environ.get("OPTIMLAB_DATA"):
        source = "given by OPTIMLAB_DATA"
    else:
        source = f"the default; neither {flag} nor OPTIMLAB_DATA is set"
    where = f"data directory {str(root)!r} ({source})"
    fix = (f"put the files there, or pass {setting} (or set OPTIMLAB_DATA=DIR) "
           "naming the folder that holds them")
    try:
        located = datamodule.locate(root) if root.is_dir() else None
    except datamodules.DataNotFoundError as error:  # some files, not all
        raise ValueError(f"{error} ({where}); {fix}") from None
    except (OSError, ValueError) as error:  # e.g. an archive that cannot unpack
        raise ValueError(f"{datamodule.name}: {error} ({where})") from None
    if located is not None:
        return
    state = ("does not exist" if not root.exists()
             else "is not a folder" if not root.is_dir() else "holds none of them")
    expected = datamodule.expected_files()
    raise ValueError(
        f"{datamodule.name} not found: {where} {state}; expected"
        f"{' one of' if len(expected) > 1 else ''}: {'; '.join(expected)}. "
        f"To fix: {fix}"
    )


def build_model(config: TrainConfig, class_names: Sequence[str] | None = None):
    """The LightningModule of ``config`` (optimizer built lazily by Lightning)."""
    import models

    common: dict[str, Any] = {
        "optimizer": config.optimizer,
        "hparams": dict(config.hparams),
        "schedule": config.schedule,
        "warmup_steps": config.warmup_steps,
        "class_names": list(class_names) if class_names is not None else None,
    }
    if config.model == "cnn":
        return models.CNN(arch=config.arch, **common)
    return models.MLP(arch=config.arch, hidden=config.hidden, **common)


def check_optimizer(config: TrainConfig) -> None:
    """Build the optimizer on a dummy tensor so bad names or hyperparameters fail now.

    Raises ``ValueError`` naming the optimizer and the offending hyperparameter.
    """
    import torch

    import optimizers

    dummy = [torch.zeros(2, 2, requires_grad=True)]
    try:
        optimizers.build(config.optimizer, dummy, **config.hparams)
    except (TypeError, ValueError, KeyError, ImportError, AttributeError) as error:
        message = error.args[0] if error.args else str(error)
        raise ValueError(
            f"optimizer {config.optimizer!r} with hparams {config.hparams}: {message}"
        ) from error


class OptimizerStepError(RuntimeError):
    """A user optimizer (``module:Class``) raised inside its ``step()``."""


class TrainInterrupted(KeyboardInterrupt):
    """Ctrl-C ended :func:`train`; ``log_dir`` holds what was logged, or None."""

    def __init__(self, log_dir: str | None):
        super().__init__(log_dir)
        self.log_dir = log_dir


def _guard_user_step(optimizer, name: str) -> None:
    """Make a failure inside ``optimizer.step()`` an :class:`OptimizerStepError`.

    Only the step of an optimizer named ``module:Class`` is wrapped: an error in
    optimlab's own optimizers or code keeps its traceback.
    """
    import types

    original = optimizer.step

    def step(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return original(*args, **kwargs)
        except Exception as error:
            raise OptimizerStepError(
                f"optimizer {name} failed in step(): {type(error).__name__}: "
                f"{' '.join(str(error).split())}; optimlab calls step() without a "
                "closure on dense gradients, so optimizers that need a closure "
                "(LBFGS) or sparse gradients (SparseAdam) are not supported"
            ) from error

    optimizer.step = types.MethodType(step, optimizer)


def _user_step_guard(name: str):
    """A callback that guards the step of the user optimizer once it is built."""
    import lightning.pytorch as pl

    class UserStepGuard(pl.Callback):
        def on_train_start(self, trainer, pl_module) -> None:
            for optimizer in trainer.optimizers:
                _guard_user_step(optimizer, name)

    return UserStepGuard()


@contextlib.contextmanager
def _restored_sigint() -> Iterator[None]:
    """Put back the Ctrl-C handler that Lightning sets to 'ignore' on an interrupt."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    handler = signal.getsignal(signal.SIGINT)
    try:
        yield
    finally:
        if handler is not None:
            signal.signal(signal.SIGINT, handler)


@contextlib.contextmanager
def _quiet_lightning() -> Iterator[None]:
    """Silence Lightning's banner lines and its dataloader-worker hints."""
    names = ("lightning.pytorch", "lightning.fabric", "lightning")
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*number of training batches.*")
        warnings.filterwarnings("ignore", message=".*`isinstance.*treespec.*")
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels, strict=True):
                lg.setLevel(level)


def train(
    config: TrainConfig, *, callbacks: Sequence[Any] = (), datamodule: Any = None
) -> RunResult:
    """Train one run; a diverged run returns ``status="diverged"``.

    ``callbacks`` are extra Lightning callbacks; ``datamodule`` replaces the data
    module ``config`` would build (tests use tiny synthetic ones).
    """
    import lightning.pytorch as pl
    import torch
    from lightning.pytorch.loggers import TensorBoardLogger

    from experiments.callbacks import InstrumentCallback, NoiseScaleCallback

    started = time.perf_counter()
    check_optimizer(config)
    check_accelerator(config)
    with _quiet_lightning():
        pl.seed_everything(config.seed, workers=True, verbose=False)
        if datamodule is None:
            datamodule = build_datamodule(config)
        check_sizes = getattr(datamodule, "check_sizes", None)
        if callable(check_sizes):
            check_sizes()  # val_size and subset against the data set, before Lightning
        model = build_model(config, getattr(datamodule, "classes", None))
        logger = TensorBoardLogger(
            save_dir=config.logdir,
            name=config.name,
            version=config.version,
            default_hp_metric=False,
        )
        instruments = InstrumentCallback(log_every=config.log_every)
        extra: list[Any] = [instruments]
        if ":" in config.optimizer:
            extra.append(_user_step_guard(config.optimizer))
        noise = None
        if config.noise_scale:
            noise = NoiseScaleCallback(log_every=config.log_every)
            extra.append(noise)
        full_batch = config.batch_size == "full"
        val_kwargs: dict[str, Any]
        if full_batch:
            every_epochs = config.val_every if _is_int(config.val_every) else 1
            val_kwargs = {"check_val_every_n_epoch": every_epochs}
        elif _is_int(config.val_every):
            val_kwargs = {
                "val_check_interval": config.val_every,
                "check_val_every_n_epoch": None,
            }
        else:
            val_kwargs = {"val_check_interval": float(config.val_every)}
        trainer = pl.Trainer(
            max_epochs=config.epochs,
            max_steps=config.max_steps or -1,
            accelerator=config.accelerator,
            devices=config.devices,
            precision=config.precision,
            deterministic=config.deterministic,
            logger=logger,
            callbacks=[*extra, *callbacks],
            enable_checkpointing=False,
            enable_model_summary=False,
            enable_progress_bar=config.progress_bar,
            num_sanity_val_steps=0,
            log_every_n_steps=config.log_every,
            benchmark=False,
            **val_kwargs,
        )
        if config.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=False)
        log_dir = Path(logger.log_dir)
        existed = log_dir.exists()
        try:
            with _restored_sigint():
                trainer.fit(model, datamodule=datamodule)
                diverged_step = model.divergence.diverged_step
                if (
                    diverged_step is None
                    and config.val_size > 0
                    and _needs_final_validation(model, trainer)
                ):
                    # the final validation accuracy is that of the final parameters
                    trainer.validate(model, datamodule=datamodule, verbose=False)
                    _patch_last_history(model)
                if diverged_step is None:
                    trainer.test(model, datamodule=datamodule, verbose=False)
                if trainer.interrupted:  # Ctrl-C that Lightning did not re-raise
                    raise KeyboardInterrupt
        except BaseException as error:
            kept = existed or trainer.global_step > 0
            if not kept:
                _remove_unused_log_dir(logger, log_dir)
            if isinstance(error, KeyboardInterrupt) or (
                isinstance(error, SystemExit) and trainer.interrupted
            ):
                # Lightning turns Ctrl-C into sys.exit(1); say what it was
                if kept:
                    with contextlib.suppress(Exception):
                        logger.finalize("interrupted")
                raise TrainInterrupted(str(log_dir) if kept else None) from None
            raise
        finally:
            if config.deterministic:
                torch.use_deterministic_algorithms(False)
        logger.finalize("success")

    history = model.history
    last = history[-1] if history else {}
    val = model.final_val or {}
    test = model.test_result or {}
    seconds = model.train_seconds
    return RunResult(
        status="diverged" if diverged_step is not None else "done",
        diverged_step=diverged_step,
        final_val_acc=val.get("acc"),
        best_val_acc=model.best_val_acc,
        test_acc=test.get("acc"),
        test_loss=test.get("loss"),
        final_train_loss=last.get("train_loss"),
        final_train_acc=last.get("train_acc"),
        final_val_loss=val.get("loss"),
        global_step=trainer.global_step,
        # a diverged run's last history row is the epoch it broke off
        epochs_completed=len(history) - (1 if diverged_step is not None else 0),
        wall_time_s=time.perf_counter() - started,
        samples_per_s=model.train_samples / seconds if seconds > 0 else None,
        per_class_test_acc=test.get("per_class_acc"),
        b_simple=noise.estimate() if noise is not None else None,
        history=history,
        log_dir=logger.log_dir,
        num_train=_count(datamodule, "num_train"),
        num_val=_count(datamodule, "num_val"),
        num_test=_count(datamodule, "num_test"),
    )


def _count(datamodule: Any, name: str) -> int | None:
    """``datamodule.<name>`` as an int, or None when it has no such count."""
    value = getattr(datamodule, name, None)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def check_accelerator(config: TrainConfig) -> None:
    """Refuse an accelerator this machine lacks, before Lightning starts."""
    import torch

    if config.accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise config_error("accelerator", config.accelerator,
                           "cpu or auto: no CUDA GPU is visible on this machine")
    if config.accelerator == "mps" and not torch.backends.mps.is_available():
        raise config_error("accelerator", config.accelerator,
                           "cpu or auto: no Apple MPS device on this machine")


def _remove_unused_log_dir(logger, log_dir: Path) -> None:
    """Delete the log folder a run that failed before its first step created.

    It holds at most TensorBoard's empty event file and the hyperparameters, and
    left in place it would only take the next ``version_N`` number.
    """
    import shutil

    writer = getattr(logger, "_experiment", None)
    if writer is not None:
        with contextlib.suppress(Exception):
            writer.close()
    shutil.rmtree(log_dir, ignore_errors=True)


def _needs_final_validation(model, trainer) -> bool:
    return model.final_val is None or model.final_val.get("step") != trainer.global_step


def _patch_last_history(model) -> None:
    if not model.history:
        return
    val = model.final_val or {}
    record = model.history[-1]
    record["val_loss"] = val.get("loss")
    record["val_acc"] = val.get("acc")
    record["per_class_val_acc"] = val.get("per_class_acc")


# ------------------------------------------------------------------- command line
# flag -> TrainConfig field, for the flags whose names differ
_FLAG_FIELDS = {"train_subset": "subset"}
_YAML_ALIASES = {"train_subset": "subset"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the flags of ``optimlab train``."""
    parser.add_argument("--config", metavar="YAML",
                        help="YAML file of TrainConfig fields; flags override it")
    parser.add_argument("--model", choices=MODELS,
                        help="cnn (CIFAR-10) or mlp (Fashion-MNIST); default mlp")
    parser.add_argument("--arch", help="default, cifar10_3c3d (cnn), fmnist_mlp (mlp)")
    parser.add_argument("--hidden", type=_int_tuple, metavar="W1,W2,...",
                        help="MLP hidden widths, e.g. 256,128")
    parser.add_argument("--optimizer", metavar="NAME",
                        help="registry name or package.module:Class; default sgd")
    parser.add_argument("--lr", type=float, help="learning rate")
    parser.add_argument("--schedule", choices=SCHEDULES)
    parser.add_argument("--warmup-steps", type=int, dest="warmup_steps")
    parser.add_argument("--batch-size", type=_batch_size, dest="batch_size",
                        metavar="N|full")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--max-steps", type=int, dest="max_steps")
    parser.add_argument("--train-subset", type=_subset, dest="train_subset",
                        metavar="F|N", help="fraction (0, 1] or count of training set")
    parser.add_argument("--val-size", type=int, dest="val_size")
    parser.add_argument("--augment", action="store_const", const=True)
    parser.add_argument("--data-dir", dest="data_dir")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--log-every", type=int, dest="log_every", metavar="N",
                        help="optimizer steps between instrument logs (default 25)")
    parser.add_argument("--val-every", type=_number, dest="val_every",
                        metavar="F|N", help="fraction of an epoch, or steps")
    parser.add_argument("--noise-scale", action="store_const", const=True,
                        dest="noise_scale", help="estimate the gradient noise scale")
    parser.add_argument("--accelerator", choices=ACCELERATORS)
    parser.add_argument("--devices", type=_devices)
    parser.add_argument("--precision", choices=PRECISIONS)
    parser.add_argument("--deterministic", action="store_const", const=True)
    parser.add_argument("--logdir")
    parser.add_argument("--name")
    parser.add_argument("--version", type=_version,
                        help="log folder: integer k gives version_<k>, a name itself")
    parser.add_argument("--no-progress-bar", action="store_const", const=False,
                        dest="progress_bar")
    parser.set_defaults(hparam_flags={})
    _accept_hyperparameter_flags(parser)


def _accept_hyperparameter_flags(parser: argparse.ArgumentParser) -> None:
    """Make ``--key value`` pairs the parser does not know into optimizer hparams.

    argparse hands unknown arguments of a subcommand back to the top-level parser,
    which refuses them; wrapping this parser's ``parse_known_args`` collects them
    first. Whether the optimizer takes them is checked when the config is built.
    """
    original = parser.parse_known_args

    def parse_known_args(args=None, namespace=None):
        namespace, rest = original(args, namespace)
        hparams: dict[str, Any] = dict(getattr(namespace, "hparam_flags", {}) or {})
        leftover: list[str] = []
        index = 0
        while index < len(rest):
            token = rest[index]
            if token.startswith("--") and len(token) > 2:
                key, eq, value = token[2:].partition("=")
                if not eq:
                    following = rest[index + 1] if index + 1 < len(rest) else None
                    if following is None or following.startswith("--"):
                        value = "true"  # a bare flag: --amsgrad means true
                    else:
                        value = following
                        index += 1
                misplaced = _misplaced_flag(key, value)
                if misplaced:
                    parser.error(misplaced)
                hparams[key.replace("-", "_")] = parse_value(value)
            else:
                leftover.append(token)
            index += 1
        namespace.hparam_flags = hparams
        return namespace, leftover

    parser.parse_known_args = parse_known_args  # type: ignore[method-assign]


# flags of other commands, or TrainConfig fields spelt differently here
_NOT_TRAIN_FLAGS = {
    "hparams": "it belongs to optimlab check",
    "subset": "use --train-subset",
    "progress_bar": "use --no-progress-bar",
    "progress-bar": "use --no-progress-bar",
}


def _misplaced_flag(key: str, value: str) -> str | None:
    """Why ``--key value`` is not a hyperparameter of train, or None."""
    reason = _NOT_TRAIN_FLAGS.get(key)
    if reason is None:
        return None
    message = f"unknown option --{key} for optimlab train ({reason})"
    if key == "hparams":
        pairs = [part.partition("=") for part in _split_pairs(value)]
        shown = " ".join(f"--{k.strip()} {v.strip()}" for k, eq, v in pairs if eq)
        example = shown or "--momentum 0.9"
        message += f"; pass each hyperparameter as its own flag, e.g. {example}"
    return message


def _split_pairs(text: str) -> list[str]:
    """``'a=1,b=(2,3)'`` -> ``['a=1', 'b=(2,3)']``: commas inside brackets stay."""
    parts, depth, start = [], 0, 0
    for position, char in enumerate(text):
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth = max(0, depth - 1)
        elif char == "," and depth == 0:
            parts.append(text[start:position])
            start = position + 1
    parts.append(text[start:])
    return [part for part in parts if part.strip()]


def parse_value(text: str) -> Any:
    """A hyperparameter flag's value, read as a Python literal where it is one.

    ``'0.9'`` -> 0.9, ``'true'`` -> True, ``'none'`` -> None, and ``'0.9,0.99'``,
    ``'(0.9,0.99)'`` and ``'[0.9, 0.99]'`` all -> (0.9, 0.99). Literals are read
    by ``optimizers.literals.read_literal`` (``ast.literal_eval``: no code runs);
    anything else stays a string.
    """
    # Imported here: ``optimizers`` loads torch, which this module defers.
    from optimizers.literals import read_literal

    text = text.strip()
    lowered = text.lower()
    if lowered in ("true", "yes", "on"):
        return True
    if lowered in ("false", "no", "off"):
        return False
    if lowered in ("none", "null"):
        return None
    try:
        return read_literal(text)
    except ValueError:
        pass
    if "," in text:  # a list of words, e.g. a,b
        return tuple(parse_value(part) for part in text.strip("()[]").split(",")
                     if part.strip())
    return text


def _int_tuple(text: str) -> tuple[int, ...]:
    try:
        widths = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma-separated list of integers"
        ) from None
    return widths


def _batch_size(text: str) -> int | str:
    if text == "full":
        return "full"
    try:
        return int(text)
    except ValueError:
        message = f"{text!r} is not an integer or 'full'"
        raise argparse.ArgumentTypeError(message) from None


def _subset(text: str) -> float | int:
    return _number(text)


def _version(text: str) -> int | str:
    return int(text) if text.isdigit() else text


def _number(text: str) -> float | int:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def _devices(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        message = f"{text!r} is not an integer or 'auto'"
        raise argparse.ArgumentTypeError(message) from None


def load_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """TrainConfig fields from a YAML file (``lr`` and ``train_subset`` allowed)."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ValueError(f"config file {str(path)!r}: {error.strerror}") from None
    except UnicodeDecodeError as error:
        raise ValueError(
            f"config file {str(path)!r} is not UTF-8 text (byte {error.start}); "
            "pass a YAML file"
        ) from None
    try:
        data = yaml.load(text, Loader=_unique_key_loader())  # a SafeLoader
    except _DuplicateKey as error:
        raise ValueError(f"config file {str(path)!r}: {error}") from None
    except yaml.YAMLError as error:
        message = f"config file {str(path)!r} is not valid YAML: {_one_line(error)}"
        raise ValueError(message) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"config file {str(path)!r} must hold a mapping of fields")
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    result: dict[str, Any] = {}
    hparams = data.pop("hparams", None) or {}
    if not isinstance(hparams, Mapping):
        raise ValueError(
            f"config file {str(path)!r}: hparams={hparams!r} is invalid; allowed: "
            "a mapping of name: value (e.g. 'hparams: {momentum: 0.9}')"
        )
    hparams = dict(hparams)
    if "lr" in data:
        if "lr" in hparams and hparams["lr"] != data["lr"]:
            raise ValueError(
                f"config file {str(path)!r}: lr: {data['lr']!r} and hparams: "
                f"{{lr: {hparams['lr']!r}}} conflict; keep one of them"
            )
        hparams["lr"] = data.pop("lr")
    for key, value in data.items():
        key = _YAML_ALIASES.get(key, key)
        if key not in fields:
            raise ValueError(
                f"config file {str(path)!r}: unknown key {key!r}; known keys: "
                f"{', '.join(sorted(fields | {'lr', 'train_subset'}))}"
            )
        result[key] = value
    if hparams:
        result["hparams"] = hparams
    if isinstance(result.get("hidden"), list):
        result["hidden"] = tuple(result["hidden"])
    return result


def _one_line(error) -> str:
    """A YAML error as one line: what is wrong, and where."""
    problem = getattr(error, "problem", None)
    mark = getattr(error, "problem_mark", None)
    if not problem:
        return " ".join(str(error).split())
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
    return f"{problem}{where}"


class _DuplicateKey(Exception):
    pass


def _unique_key_loader():
    """A ``yaml.SafeLoader`` that refuses a key given twice in one mapping."""
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            seen: set[Any] = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # '<<: *base' entries may be overridden
                key = self.construct_object(key_node, deep=True)
                try:
                    repeated = key in seen
                    seen.add(key)
                except TypeError:  # an unhashable key: SafeLoader words that
                    continue
                if repeated:
                    line = key_node.start_mark.line + 1
                    raise _DuplicateKey(
                        f"key {key!r} is given twice (again on line {line}); "
                        "keep one of them"
                    )
            return super().construct_mapping(node, deep=deep)

    return UniqueKeyLoader


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Defaults, then the YAML file, then the flags."""
    data: dict[str, Any] = load_yaml(args.config) if args.config else {}
    hparams = dict(data.get("hparams", {}))
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    for key, value in vars(args).items():
        if value is None or key in ("config", "command", "hparam_flags", "verbose"):
            continue
        if key == "lr":
            hparams["lr"] = value
            continue
        key = _FLAG_FIELDS.get(key, key)
        if key in fields:
            data[key] = value
    flags = dict(getattr(args, "hparam_flags", {}) or {})
    hparams.update(flags)
    data["hparams"] = hparams
    config = TrainConfig.from_dict(data)
    try:
        check_optimizer(config)
    except ValueError as error:
        if flags:
            shown = " ".join(f"--{k}" for k in flags)
            raise ValueError(
                f"{error} (flags passed on as hyperparameters: {shown}; "
                "not a training flag either, see optimlab train --help)"
            ) from None
        raise
    return config


def main(args: argparse.Namespace) -> int:
    """Run ``optimlab train``: 0 when it ran, 2 on a bad flag, config or data, 1 when
    the optimizer failed, 130 on Ctrl-C."""
    try:
        return _main(args)
    except KeyboardInterrupt as stop:
        log_dir = getattr(stop, "log_dir", None)
        where = (f"logs so far are in {log_dir}" if log_dir
                 else "no step was taken, so no logs were kept")
        print(f"optimlab train: interrupted; {where}", file=sys.stderr)
        return 130


def _main(args: argparse.Namespace) -> int:
    try:
        config = config_from_args(args)
    except ValueError as error:
        print(f"optimlab train: error: {error}", file=sys.stderr)
        return 2
    try:
        check_data(config, given_by="--data-dir" if args.data_dir is not None
                   else f"data_dir in {args.config}")
    except ValueError as error:
        print(f"optimlab train: error: {error}", file=sys.stderr)
        return 2
    log.info("training %s/%s with %s %s", config.model, config.arch,
             config.optimizer, config.hparams)
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    from datamodules.errors import DownloadError

    try:
        result = train(config)
    except (ValueError, DownloadError, MisconfigurationException) as error:
        # bad sizes, data or settings Lightning refuses: one line, no traceback
        print(f"optimlab train: error: {error}", file=sys.stderr)
        return 2
    except OptimizerStepError as error:
        print(f"optimlab train: error: {error}", file=sys.stderr)
        return 1
    lines = [
        f"status:          {result.status}"
        + (f" at step {result.diverged_step}" if result.diverged else ""),
        f"steps:           {result.global_step} ({result.epochs_completed} epochs)",
        f"final val acc:   {_fmt(result.final_val_acc)}",
        f"best val acc:    {_fmt(result.best_val_acc)}",
        f"test acc:        {_fmt(result.test_acc)}",
        f"samples/s:       {_fmt(result.samples_per_s, '.1f')}",
    ]
    if result.b_simple is not None:
        lines.append(f"B_simple:        {result.b_simple:.1f}")
    lines.append(f"logs:            {result.log_dir}")
    lines.append(f"(tensorboard --logdir {config.logdir})")
    print("\n".join(lines))
    if result.log_dir:
        atomic_write_json(
            Path(result.log_dir) / "result.json",
            {"config": config.to_dict(), "result": result.to_dict()},
        )
    return 0


def _fmt(value: float | None, spec: str = ".4f") -> str:
    return "n/a" if value is None else format(value, spec)
