"""Speed of the datamodules against the issue's three targets.

Run ``python -m benchmarks.data`` (``--help`` for options). It measures, on the
real data (``--data-dir``, else ``$OPTIMLAB_DATA``, else ``../shared/data``):

1. ``read``: decoding all CIFAR-10 binary batches into uint8 tensors, with the
   in-process memo bypassed (target <= 2 s);
2. ``epoch``: one epoch of CIFAR-10 training batches of 128, normalised and
   augmented (crop with 4-pixel padding + flip), from
   :class:`~datamodules.loader.BatchLoader` versus the classic per-sample pipeline
   (a ``Dataset`` of PIL images through torchvision's ``RandomCrop(32, padding=4)``,
   ``RandomHorizontalFlip``, ``ToTensor`` and ``Normalize``, batched by a
   ``DataLoader`` with 2 workers); target speed-up >= 20x. Wall time and CPU
   time (the worker processes' included) are both reported;
3. ``fit``: one epoch of a 784-256-128-10 MLP on Fashion-MNIST at batch 128 with
   SGD, as a Lightning ``fit`` (callbacks, logging, checkpointing, progress bar
   and model summary off) versus a plain PyTorch loop over the same batches, the
   two alternated ``--rounds`` times in one process (target ratio <= 1.15). The
   Lightning model trains the way ``models.ImageClassifier`` does: manual
   optimisation (``zero_grad``, ``manual_backward``, ``LightningOptimizer.step``)
   on the same :class:`~models.base.PlainAttributeMixin` base; the plain loop runs
   ``zero_grad``, ``backward`` and ``step`` of the raw optimizer on the same
   batches. For reference, a Lightning fit over a ``TensorDataset``
   ``DataLoader`` is timed too, and both loops over one ready batch repeated (no
   data work at all: the floor that Lightning's own per-step machinery sets).
   Lightning's overhead is a fixed ~0.15-0.2 ms of Python per step, so the
   ratio depends on the step time: compare ``--threads 1`` with the default.

Timings on a shared machine are noisy; ratios come from alternated runs, and the
median over rounds is reported. For ``fit`` both wall-clock and process CPU time
are reported: with ``--threads 1`` and no worker processes the CPU time is the
work done, unaffected by other processes competing for the cores.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import statistics
import time
import warnings
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch import nn

from datamodules import CIFAR10DataModule, FashionMNISTDataModule
from models.base import PlainAttributeMixin

log = logging.getLogger("benchmarks.data")

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


def default_data_dir() -> Path:
    if os.environ.get("OPTIMLAB_DATA"):
        return Path(os.environ["OPTIMLAB_DATA"])
    return Path(__file__).resolve().parents[2] / "shared" / "data"


# -- 1. reading CIFAR-10 -----------------------------------------------------------


def bench_read(data_dir: Path, repeats: int) -> dict[str, float]:
    dm = CIFAR10DataModule(data_dir)
    located = dm.find_files()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        arrays = dm.decode(located)
        tensors = {k: torch.from_numpy(v) for k, v in arrays.items()}
        times.append(time.perf_counter() - start)
        n = len(tensors["train_y"]) + len(tensors["test_y"])
        del arrays, tensors
    log.info("read    all CIFAR-10 binaries (%d images): first %.3f s, best %.3f s, "
             "median %.3f s (target <= 2 s)", n, times[0], min(times),
             statistics.median(times))
    return {"read_first_s": times[0], "read_best_s": min(times),
            "read_median_s": statistics.median(times)}


# -- 2. one augmented CIFAR-10 epoch -------------------------------------------------


class _PilDataset(torch.utils.data.Dataset):
    """The classic pipeline: one PIL image at a time through torchvision transforms."""

    def __init__(self, images_hwc: np.ndarray, labels: np.ndarray) -> None:
        from torchvision import transforms

        self.images, self.labels = images_hwc, labels
        self.transform = transforms.Compose([
            transforms.RandomCrop(32, padding=4),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(CIFAR_MEAN, CIFAR_STD),
        ])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


def _cpu_seconds() -> float:
    """CPU time of this process plus its finished (joined) child processes."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def _time_epoch(loader) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds incl. worker processes, batches) of one epoch."""
    start, cpu_start = time.perf_counter(), _cpu_seconds()
    batches = sum(1 for _ in loader)
    return time.perf_counter() - start, _cpu_seconds() - cpu_start, batches


def bench_epoch(data_dir: Path, rounds: int) -> dict[str, float]:
    dm = CIFAR10DataModule(data_dir, batch_size=128, val_size=0, augment=True)
    dm.setup()
    loader = dm.train_dataloader()
    data = dm._splits()
    images = data["train_x"].permute(0, 2, 3, 1).contiguous().numpy()
    classic_loader = torch.utils.data.DataLoader(
        _PilDataset(images, data["train_y"].numpy()), batch_size=128, shuffle=True,
        num_workers=2,
    )
    _time_epoch(loader)  # warm-up
    ours, classic = [], []
    for _ in range(rounds):
        ours.append(_time_epoch(loader))
        classic.append(_time_epoch(classic_loader))
    result: dict[str, float] = {}
    for clock, k in (("wall", 0), ("cpu", 1)):
        mine = statistics.median(r[k] for r in ours)
        theirs = statistics.median(r[k] for r in classic)
        result |= {f"epoch_{clock}_batchloader_s": mine,
                   f"epoch_{clock}_classic_s": theirs,
                   f"epoch_{clock}_speedup": theirs / mine}
        log.info("epoch   CIFAR-10, batch 128, normalised + augmented, %s time "
                 "(median of %d alternated rounds): BatchLoader %.3f s (%d batches), "
                 "classic per-sample DataLoader(2 workers) %.2f s (%d batches): "
                 "%.1fx faster (target >= 20x)", clock, rounds, mine, ours[0][2],
                 theirs, classic[0][2], theirs / mine)
    return result


# -- 3. Lightning fit vs a plain loop ----------------------------------------------


class BenchMLP(PlainAttributeMixin, L.LightningModule):
    """784-256-128-10 ReLU MLP trained with plain SGD, by manual optimisation.

    It trains the way :class:`models.base.ImageClassifier` does: manual
    optimisation (``automatic_optimization = False``), each training step zeroes
    the gradients, runs ``manual_backward`` and steps the ``LightningOptimizer``
    from ``self.optimizers()``, and the same
    :class:`~models.base.PlainAttributeMixin` base. The plain loop does the same
    math through :meth:`loss` with the raw optimizer.
    """

    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(784, 256), nn.ReLU(),
            nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10),
        )

    def loss(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x, y = batch
        return nn.functional.cross_entropy(self.net(x), y)

    def training_step(self, batch, batch_idx):
        optimizer = self.optimizers()
        loss = self.loss(batch)
        optimizer.zero_grad()
        self.manual_backward(loss)
        optimizer.step()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05)


def _trainer() -> L.Trainer:
    return L.Trainer(
        max_epochs=1, accelerator="cpu", devices=1, logger=False, callbacks=[],
        enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0,
    )


def _plain_loop(loader) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one epoch of a plain loop."""
    torch.manual_seed(0)
    model = BenchMLP()
    optimizer = model.configure_optimizers()
    start, cpu_start = time.perf_counter(), time.process_time()
    for batch in loader:
        loss = model.loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start, time.process_time() - cpu_start


def _lightning_fit(data) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of ``Trainer.fit`` for one epoch.

    ``data`` is a datamodule or a training dataloader.
    """
    torch.manual_seed(0)
    model, trainer = BenchMLP(), _trainer()
    if isinstance(data, L.LightningDataModule):
        kwargs = {"datamodule": data}
    else:
        kwargs = {"train_dataloaders": data}
    start, cpu_start = time.perf_counter(), time.process_time()
    trainer.fit(model, **kwargs)
    return time.perf_counter() - start, time.process_time() - cpu_start


class _RepeatedBatch:
    """One ready batch, ``count`` times: Lightning's per-step cost with no data work."""

    def __init__(self, batch, count: int) -> None:
        self.batch, self.count = batch, count

    def __len__(self) -> int:
        return self.count

    def __iter__(self):
        for _ in range(self.count):
            yield self.batch


def bench_fit(data_dir: Path, rounds: int) -> dict[str, float]:
    dm = FashionMNISTDataModule(data_dir, batch_size=128)
    dm.setup()
    data = dm._splits()
    rows = data["train"]
    tensor_set = torch.utils.data.TensorDataset(
        dm.train_dataloader().to_float(data["train_x"][rows]), data["train_y"][rows]
    )
    repeated = _RepeatedBatch(next(iter(dm.train_dataloader())), len(rows) // 128)
    plain, light, classic, floor = [], [], [], []
    _plain_loop(dm.train_dataloader())  # warm-up of both paths
    _lightning_fit(dm)
    for _ in range(rounds):
        # each fit calls dm.train_dataloader() once: the same seeded batches
        plain.append(_plain_loop(dm.train_dataloader()))
        light.append(_lightning_fit(dm))
        classic.append(_lightning_fit(torch.utils.data.DataLoader(
            tensor_set, batch_size=128, shuffle=True)))
        floor.append((_plain_loop(repeated), _lightning_fit(repeated)))
    result: dict[str, float] = {}
    for clock, k in (("wall", 0), ("cpu", 1)):
        ratios = [b[k] / a[k] for a, b in zip(plain, light, strict=True)]
        reference = [c[k] / a[k] for a, c in zip(plain, classic, strict=True)]
        floors = [f[1][k] / f[0][k] for f in floor]
        result |= {
            f"fit_{clock}_plain_median_s": statistics.median(a[k] for a in plain),
            f"fit_{clock}_lightning_median_s": statistics.median(b[k] for b in light),
            f"fit_{clock}_ratio_median": statistics.median(ratios),
            f"fit_{clock}_tensordataset_ratio_median": statistics.median(reference),
            f"fit_{clock}_repeated_batch_ratio_median": statistics.median(floors),
        }
        log.info(
            "fit     Fashion-MNIST MLP, batch 128, %d rounds alternated, %s time: "
            "plain loop median %.3f s, Lightning fit median %.3f s; Lightning/plain "
            "median %.3f (rounds: %s; target <= 1.15). Lightning over a "
            "TensorDataset DataLoader: %.2fx; with no data work at all (one ready "
            "batch repeated, both loops): %.3fx", rounds, clock,
            result[f"fit_{clock}_plain_median_s"],
            result[f"fit_{clock}_lightning_median_s"],
            result[f"fit_{clock}_ratio_median"],
            ", ".join(f"{r:.3f}" for r in ratios),
            result[f"fit_{clock}_tensordataset_ratio_median"],
            result[f"fit_{clock}_repeated_batch_ratio_median"],
        )
    return result


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=default_data_dir())
    parser.add_argument("--only", choices=["read", "epoch", "fit"], action="append",
                        help="run only these measurements (repeatable)")
    parser.add_argument("--read-repeats", type=int, default=3)
    parser.add_argument("--epoch-rounds", type=int, default=3,
                        help="alternated epochs of each pipeline")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    if args.threads:
        torch.set_num_threads(args.threads)
    log.info("torch %s, lightning %s, %d threads, %d CPUs, data %s", torch.__version__,
             L.__version__, torch.get_num_threads(), os.cpu_count(), args.data_dir)
    only = set(args.only or ["read", "epoch", "fit"])
    figures: dict[str, float] = {}
    if "read" in only:
        figures |= bench_read(args.data_dir, args.read_repeats)
    if "epoch" in only:
        figures |= bench_epoch(args.data_dir, args.epoch_rounds)
    if "fit" in only:
        figures |= bench_fit(args.data_dir, args.rounds)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    return figures


if __name__ == "__main__":
    main()
