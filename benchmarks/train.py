"""Training-path speed: instrument overhead, and CNN FLOP rate against a matmul.

Run ``python -m benchmarks.train`` (real CIFAR-10 / Fashion-MNIST from
``$OPTIMLAB_DATA``). Two figures, each measured as a ratio inside one run with the
compared cases alternated, because the machine is shared and absolute timings
drift:

1. **Instrument overhead**: seconds per optimizer step of the same Lightning
   training (model, data, logger, manual optimisation) with the instrument
   callback at its default interval, divided by the same without it. Target
   <= 1.10.
2. **CNN FLOP rate**: images/s of ``experiments.train.train`` on the default CNN at
   batch 128, times the training FLOPs per image counted below, divided by the
   FLOP rate of a 2048 x 2048 float32 matmul (``2 * 2048**3`` FLOPs). Target
   >= 0.75.

FLOPs per image (multiply-adds count 2): convolutions ``2 * H_out * W_out * C_out
* C_in * k * k`` and linear layers ``2 * fan_in * fan_out`` forward; backward
computes the weight gradient (same count) and, except for the first layer, whose
input needs no gradient, the input gradient (same count). Bias, ReLU and pooling
are left out (under 1 %).

Step times are taken between ``on_train_batch_start`` of the first timed step and
``on_train_batch_end`` of the last, skipping warm-up steps, so they include
Lightning's per-step work, the data loader and the callbacks.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn

log = logging.getLogger("benchmarks.train")

MATMUL_N = 2048


class StepTimer(pl.Callback):
    """Wall time of optimizer steps ``skip`` .. end, and the samples they used."""

    def __init__(self, skip: int = 3) -> None:
        self.skip = skip
        self.start: float | None = None
        self.end: float | None = None
        self.steps = 0
        self.samples = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.skip and self.start is None:
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.start is not None:
            self.end = time.perf_counter()
            self.steps += 1
            self.samples += int(batch[1].shape[0])

    @property
    def seconds_per_step(self) -> float:
        return (self.end - self.start) / self.steps

    @property
    def samples_per_s(self) -> float:
        return self.samples / (self.end - self.start)


class PerStepTimer(pl.Callback):
    """Wall time of every training batch, keyed by the step it ran."""

    def __init__(self) -> None:
        self.times: dict[int, float] = {}
        self._start = 0.0
        self._step = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._step = trainer.global_step
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.times[self._step] = time.perf_counter() - self._start


def within_run_overhead(times: dict[int, float], log_every: int) -> float:
    """Overhead ratio from one instrumented run: extra time of the instrument step
    and of the step before it (gradient copy), spread over ``log_every`` steps,
    relative to the median plain step. Robust to slow drifts of the machine."""
    steps = sorted(s for s in times if s >= log_every)
    instrument = [times[s] for s in steps if s % log_every == 0]
    before = [times[s] for s in steps if (s + 1) % log_every == 0]
    plain = [times[s] for s in steps
             if s % log_every != 0 and (s + 1) % log_every != 0]
    base = statistics.median(plain)
    extra = statistics.median(instrument) + statistics.median(before) - 2 * base
    return 1.0 + extra / log_every / base


def matmul_flops_per_s(repeats: int = 10) -> float:
    """Best FLOP rate of a ``MATMUL_N`` square float32 matmul over ``repeats``."""
    a = torch.randn(MATMUL_N, MATMUL_N)
    b = torch.randn(MATMUL_N, MATMUL_N)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * MATMUL_N**3 / best


def training_flops_per_image(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Forward + backward FLOPs of one image through conv and linear layers."""
    counts: list[tuple[int, bool]] = []  # (forward FLOPs, is first layer)

    def hook(module, inputs, output):
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1]
            per_out = module.in_channels // module.groups * k
            flops = 2 * output[0].numel() * per_out
        else:
            flops = 2 * module.in_features * module.out_features
        counts.append((flops, not counts))

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, nn.Conv2d | nn.Linear)]
    with torch.no_grad():
        model(torch.zeros(1, *input_shape))
    for handle in handles:
        handle.remove()
    total = 0
    for flops, first in counts:
        total += flops * (2 if first else 3)  # forward, weight grad, input grad
    return total


def plain_loop_images_per_s(steps: int) -> float:
    """Images/s of a bare PyTorch loop on the same CNN and batch (reference only)."""
    import torch.nn.functional as F

    from models import CNN

    torch.manual_seed(0)
    model = CNN()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(128, 3, 32, 32)
    y = torch.randint(0, 10, (128,))
    start = 0.0
    for index in range(steps + 3):
        if index == 3:
            start = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return 128 * steps / (time.perf_counter() - start)


def _timed_fit(config, datamodule, with_instruments: bool, steps: int) -> StepTimer:
    """The Lightning fit of ``train()`` with or without the instrument callback."""
    from lightning.pytorch.loggers import TensorBoardLogger

    from experiments.callbacks import InstrumentCallback
    from experiments.train import _quiet_lightning, build_model

    timer = StepTimer()
    timer.per_step = PerStepTimer()
    callbacks: list[Any] = [timer, timer.per_step]
    if with_instruments:
        callbacks.insert(0, InstrumentCallback(log_every=config.log_every))
    with _quiet_lightning():
        pl.seed_everything(config.seed, verbose=False)
        model = build_model(config, datamodule.classes)
        trainer = pl.Trainer(
            max_epochs=1000, max_steps=steps, accelerator="cpu", logger=(
                TensorBoardLogger(config.logdir, name=config.name,
                                  default_hp_metric=False)),
            callbacks=callbacks, enable_checkpointing=False,
            enable_model_summary=False, enable_progress_bar=False,
            num_sanity_val_steps=0, limit_val_batches=0,
        )
        trainer.fit(model, datamodule=datamodule)
    return timer


def instrument_overhead(model: str, steps: int, rounds: int, logdir: str,
                        data_dir: str | None) -> dict[str, float]:
    from experiments.train import TrainConfig, build_datamodule

    config = TrainConfig(model=model, optimizer="adam", hparams={"lr": 1e-3},
                         batch_size=128, subset=128 * steps, val_size=1000,
                         logdir=logdir, name=f"overhead-{model}", data_dir=data_dir)
    datamodule = build_datamodule(config)
    datamodule.setup("fit")
    with_cb, without, within = [], [], []
    for index in range(rounds):
        order = (True, False) if index % 2 == 0 else (False, True)
        for flag in order:
            timer = _timed_fit(config, datamodule, flag, steps)
            (with_cb if flag else without).append(timer.seconds_per_step)
            if flag:
                within.append(within_run_overhead(timer.per_step.times,
                                                  config.log_every))
            log.info("%s instruments=%s: %.2f ms/step", model, flag,
                     1e3 * timer.seconds_per_step)
    ratios = [a / b for a, b in zip(with_cb, without, strict=True)]
    return {
        "with_ms": 1e3 * statistics.median(with_cb),
        "without_ms": 1e3 * statistics.median(without),
        "ratio_of_medians": statistics.median(with_cb) / statistics.median(without),
        "ratio_of_best": min(with_cb) / min(without),
        "ratios": ratios,
        "within_run": statistics.median(within),
    }


def cnn_flop_rate(steps: int, rounds: int, logdir: str,
                  data_dir: str | None) -> dict[str, Any]:
    from experiments.train import TrainConfig, train
    from models import CNN

    flops_per_image = training_flops_per_image(CNN(), (3, 32, 32))
    config = TrainConfig(model="cnn", optimizer="momentum",
                         hparams={"lr": 0.01, "momentum": 0.9}, batch_size=128,
                         subset=128 * (steps + 3), val_size=1000, epochs=1,
                         logdir=logdir, name="cnn-rate", progress_bar=False,
                         data_dir=data_dir)
    rows = []
    for _ in range(rounds):
        matmul_before = matmul_flops_per_s()
        timer = StepTimer()
        train(config, callbacks=[timer])
        matmul_after = matmul_flops_per_s()
        plain = plain_loop_images_per_s(steps)
        matmul = max(matmul_before, matmul_after)
        images = timer.samples_per_s
        rows.append({
            "plain_ratio": plain * flops_per_image / matmul,
            "images_per_s": images,
            "cnn_gflops": images * flops_per_image / 1e9,
            "matmul_gflops": matmul / 1e9,
            "ratio": images * flops_per_image / matmul,
        })
        log.info("CNN %.1f images/s = %.2f GFLOP/s; matmul %.2f GFLOP/s; ratio %.3f",
                 images, rows[-1]["cnn_gflops"], rows[-1]["matmul_gflops"],
                 rows[-1]["ratio"])
    return {"flops_per_image": flops_per_image, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--overhead-steps", type=int, default=150)
    parser.add_argument("--cnn-steps", type=int, default=30)
    parser.add_argument("--only", choices=("overhead", "flops"), action="append")
    parser.add_argument("--logdir", default="/tmp/optimlab-bench-train")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s",
                        datefmt="%H:%M:%S")
    if args.threads:
        torch.set_num_threads(args.threads)
    only = set(args.only or ("overhead", "flops"))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    if "overhead" in only:
        for model in ("mlp", "cnn"):
            steps = args.overhead_steps if model == "mlp" else args.cnn_steps * 2
            result = instrument_overhead(model, steps, args.rounds, args.logdir,
                                         args.data_dir)
            print(
                f"instrument overhead, {model} batch 128, log_every 25, {steps} "
                f"steps x {args.rounds} rounds: with {result['with_ms']:.2f} ms/step, "
                f"without {result['without_ms']:.2f} ms/step, ratio of medians "
                f"{result['ratio_of_medians']:.3f}, ratio of best "
                f"{result['ratio_of_best']:.3f} (target <= 1.10); per round "
                + ", ".join(f"{r:.3f}" for r in result["ratios"])
                + f"; within-run estimate {result['within_run']:.3f}"
            )
    if "flops" in only:
        result = cnn_flop_rate(args.cnn_steps, args.rounds, args.logdir,
                               args.data_dir)
        print(f"CNN training FLOPs per image (counted): {result['flops_per_image']:,}")
        for row in result["rows"]:
            print(
                f"CNN batch 128 via train(): {row['images_per_s']:.1f} images/s = "
                f"{row['cnn_gflops']:.2f} GFLOP/s; matmul 2048^2 f32 "
                f"{row['matmul_gflops']:.2f} GFLOP/s; ratio {row['ratio']:.3f} "
                f"(target >= 0.75); a bare PyTorch loop: {row['plain_ratio']:.3f}"
            )
        best = max(row["ratio"] for row in result["rows"])
        print(f"best ratio {best:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
