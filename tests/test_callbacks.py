"""Instrument callback (tags, values, interval, no reads between) and noise scale."""

from __future__ import annotations

import math

import lightning.pytorch as pl
import pytest
import torch
from torch import nn

from experiments.callbacks import NoiseScaleCallback
from experiments.train import TrainConfig, train
from models import ImageClassifier


def _events(log_dir: str):
    from tensorboard.backend.event_processing.event_accumulator import (
        EventAccumulator,
    )

    events = EventAccumulator(
        log_dir, size_guidance={"scalars": 0, "histograms": 0, "images": 0}
    )
    events.Reload()
    return events


def _series(events, tag: str) -> dict[int, float]:
    return {e.step: e.value for e in events.Scalars(tag)}


@pytest.fixture
def tiny(real_data_dir, tmp_path):
    def make(**changes) -> TrainConfig:
        base = dict(
            model="mlp", hidden=(16,), optimizer="sgd", hparams={"lr": 0.05},
            batch_size=32, epochs=1, subset=256, val_size=100, seed=0, log_every=3,
            data_dir=str(real_data_dir), logdir=str(tmp_path / "logs"),
            progress_bar=False,
        )
        base.update(changes)
        return TrainConfig(**base)

    return make


PARAMS = ["fc1.weight", "fc1.bias", "out.weight", "out.bias"]

# (optimizer, hparams, tags that must be present, tags that must be absent)
FAMILIES = [
    ("sgd", {"lr": 0.05}, ["effective_lr/lr", "effective_lr/steady_state"],
     ["effective_lr/median", "momentum/norm"]),
    ("momentum", {"lr": 0.05, "momentum": 0.9},
     ["effective_lr/steady_state", "momentum/norm", "momentum/norm/fc1.weight"],
     ["effective_lr/median"]),
    ("adam", {"lr": 1e-3},
     ["effective_lr/median", "effective_lr/p5", "effective_lr/p95",
      "effective_lr/mean", "effective_lr/fc1.weight/median",
      "effective_lr/out.bias/p95", "momentum/norm"],
     ["effective_lr/lr"]),
    ("torch.optim:SGD", {"lr": 0.05, "momentum": 0.5},  # no instruments: fallback
     ["effective_lr/lr", "momentum/norm"], ["effective_lr/median"]),
]
COMMON = [
    "train/loss", "train/acc", "train/lr", "grad_norm/global", "update/global",
    "update/ratio", "momentum/grad_cosine", "perf/samples_per_s",
    "perf/step_time_ms", "val/loss", "val/acc", "test/acc",
    *[f"grad_norm/{p}" for p in PARAMS], *[f"update/{p}" for p in PARAMS],
    *[f"update/ratio/{p}" for p in PARAMS],
    *[f"momentum/grad_cosine/{p}" for p in PARAMS],
]
CLASSES = ["T-shirt-top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
           "Sneaker", "Bag", "Ankle boot"]


@pytest.mark.parametrize(("optimizer", "hparams", "present", "absent"), FAMILIES)
def test_instrument_tags_per_optimizer_family(tiny, optimizer, hparams, present,
                                              absent):
    result = train(tiny(optimizer=optimizer, hparams=hparams))
    events = _events(result.log_dir)
    tags = set(events.Tags()["scalars"])
    missing = [t for t in [*COMMON, *present] if t not in tags]
    assert not missing
    assert not [t for t in absent if t in tags]
    assert {f"per_class_acc/val/{c}" for c in CLASSES} <= tags
    assert {f"per_class_acc/test/{c}" for c in CLASSES} <= tags
    assert "val/confusion_matrix" in events.Tags()["images"]
    if optimizer == "adam":
        assert "effective_lr/log10" in events.Tags()["histograms"]
    # instrument steps only: 8 steps, log_every 3 -> steps 0, 3, 6
    assert sorted(_series(events, "grad_norm/global")) == [0, 3, 6]
    # whole-model norm is the norm of the per-parameter norms
    for step, total in _series(events, "grad_norm/global").items():
        parts = [_series(events, f"grad_norm/{p}")[step] for p in PARAMS]
        assert total == pytest.approx(math.sqrt(sum(v * v for v in parts)), rel=1e-5)


def test_plain_sgd_update_is_lr_times_gradient(tiny):
    result = train(tiny(optimizer="sgd", hparams={"lr": 0.05}))
    events = _events(result.log_dir)
    grad = _series(events, "grad_norm/global")
    update = _series(events, "update/global")
    for step in grad:
        assert update[step] == pytest.approx(0.05 * grad[step], rel=1e-5)
    lrs = _series(events, "effective_lr/lr").values()
    assert all(lr == pytest.approx(0.05) for lr in lrs)


def test_full_batch_gradients_of_successive_steps_are_aligned(tiny):
    # tiny steps of full-batch GD barely change the gradient: cosine ~ 1
    result = train(tiny(batch_size="full", epochs=7, hparams={"lr": 1e-4},
                        log_every=2, val_every=7))
    cosines = _series(_events(result.log_dir), "momentum/grad_cosine")
    assert sorted(cosines) == [2, 4, 6]  # step 0 has no previous gradient
    assert all(c > 0.999 for c in cosines.values())


class HostReads(pl.Callback):
    """Counts Tensor.tolist / Tensor.item calls inside each training batch."""

    def __init__(self, monkeypatch) -> None:
        self.step = None
        self.reads: dict[int, int] = {}
        self.requests: list[int] = []
        for name in ("tolist", "item"):
            original = getattr(torch.Tensor, name)
            monkeypatch.setattr(torch.Tensor, name, self._counting(original))

    def _counting(self, original):
        def wrapper(tensor, *args, **kwargs):
            if self.step is not None:
                self.reads[self.step] = self.reads.get(self.step, 0) + 1
            return original(tensor, *args, **kwargs)

        return wrapper

    def on_train_start(self, trainer, pl_module):
        optimizer = trainer.optimizers[0]
        original = optimizer.request_stats

        def request():
            self.requests.append(trainer.global_step)
            original()

        optimizer.request_stats = request

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.step = trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.step = None


def test_nothing_is_read_back_between_instrument_steps(tiny, monkeypatch):
    probe = HostReads(monkeypatch)
    config = tiny(optimizer="adam", hparams={"lr": 1e-3}, log_every=4, epochs=2)
    result = train(config, callbacks=[probe])
    assert result.global_step == 16
    assert probe.requests == [0, 4, 8, 12]
    read_steps = sorted(probe.reads)
    # one read per instrument step; epoch ends (steps 7 and 15) read the epoch sums
    assert set(read_steps) <= {0, 4, 8, 12, 7, 15}
    assert {0, 4, 8, 12} <= set(read_steps)
    assert all(probe.reads[s] == 1 for s in (0, 4, 8, 12))


# ----------------------------------------------------------- gradient noise scale
class Quadratic(ImageClassifier):
    """l_i(w) = |w - x_i|^2 / 2, so G = w - mean(x) and Sigma = cov(x)."""

    def __init__(self, dim: int) -> None:
        super().__init__(optimizer="sgd", hparams={"lr": 0.0}, num_classes=2)
        self.w = nn.Parameter(torch.zeros(dim, dtype=torch.float64))

    def forward(self, x):
        return x

    def batch_loss(self, x, y):
        loss_sum = 0.5 * (self.w - x).square().sum()
        return loss_sum, torch.zeros((), dtype=torch.long)


class Points(pl.LightningDataModule):
    def __init__(self, x: torch.Tensor, batch: int, full_batch: bool) -> None:
        super().__init__()
        self.x, self.batch, self.full_batch = x, batch, full_batch
        self.num_train = len(x)

    def train_dataloader(self):
        return _Batches(self.x, self.batch, shuffle=not self.full_batch)


class _Batches:
    def __init__(self, x: torch.Tensor, batch: int, shuffle: bool) -> None:
        self.x, self.batch, self.shuffle = x, batch, shuffle

    def __len__(self) -> int:
        return math.ceil(len(self.x) / self.batch)

    def __iter__(self):
        n = len(self.x)
        order = torch.randperm(n) if self.shuffle else torch.arange(n)
        for rows in order.split(self.batch):
            yield self.x[rows], torch.zeros(len(rows), dtype=torch.long)


@pytest.mark.parametrize(
    ("batch", "full_batch", "epochs", "tolerance"),
    [
        (64, False, 2, 0.1),  # halves of 32 against the batch of 64
        (128, True, 1, 0.1),  # 32 chunks of 128 against all 4096 points
    ],
)
def test_noise_scale_recovers_the_known_value(batch, full_batch, epochs, tolerance):
    torch.manual_seed(0)
    dim, n = 64, 4096
    x = 0.25 + torch.randn(n, dim, dtype=torch.float64)  # Sigma = I, G = -0.25
    # true values on this finite set: tr(Sigma) = mean |x_i - mean|^2, |G|^2
    mean = x.mean(0)
    trace = (x - mean).square().sum(1).mean().item()
    grad_sq = mean.square().sum().item()
    true_b_simple = trace / grad_sq  # about 64 / 4 = 16

    noise = NoiseScaleCallback(log_every=10)
    trainer = pl.Trainer(
        max_epochs=epochs, accelerator="cpu", logger=False, callbacks=[noise],
        enable_checkpointing=False, enable_model_summary=False,
        enable_progress_bar=False, num_sanity_val_steps=0, limit_val_batches=0,
    )
    trainer.fit(Quadratic(dim), datamodule=Points(x, batch, full_batch))
    estimate = noise.estimate()
    mean_trace, mean_grad_sq = noise.components()
    assert estimate == pytest.approx(true_b_simple, rel=tolerance)
    assert mean_trace == pytest.approx(trace, rel=tolerance)
    assert mean_grad_sq == pytest.approx(grad_sq, rel=tolerance)
