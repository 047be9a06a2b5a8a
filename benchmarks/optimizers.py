"""Step time of optimlab's optimizers against torch.optim's implementations.

    python -m benchmarks.optimizers [--sets cnn,10m] [--rounds 15] [--threads 1]

For each algorithm and parameter set it prints the mean step time of ours and of
torch.optim's for-loop, foreach and (where torch has one on the device) fused
implementations, measured alternately in one run: every round times a block of
steps of each implementation in turn (the order rotating from round to round), and
the figures are medians over rounds; ratios are medians of the per-round ratios, so
load from other processes affects both sides of a ratio alike.

It also prints the achieved memory bandwidth, the bytes a step must read and write
(one pass over each tensor the update touches) over the step time, against a plain
tensor copy of the same number of elements, and the cost of the instruments: a step
with ``request_stats()`` (all statistics computed, then read once with ``.tolist()``
as a logger would) over a plain step.

Parameter sets: ``cnn`` has the shapes of the CIFAR-10 CNN (conv 3->32->64->128 with
3x3 kernels, fc 2048->256->10: 0.62 M parameters in 10 tensors); ``10m`` is a 10 M
parameter set (two large fc layers and a smaller one, 9.97 M in 6 tensors).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

import optimizers

log = logging.getLogger("benchmarks.optimizers")

PARAMETER_SETS: dict[str, list[tuple[int, ...]]] = {
    "cnn": [(32, 3, 3, 3), (32,), (64, 32, 3, 3), (64,), (128, 64, 3, 3), (128,),
            (256, 2048), (256,), (10, 256), (10,)],
    "10m": [(4096, 2048), (4096,), (2048, 768), (2048,), (10, 2048), (10,)],
}


@dataclass(frozen=True)
class Algorithm:
    """Our registry name + hyperparameters, torch's twin, and its memory traffic."""

    name: str
    hparams: dict[str, Any]
    torch_cls: type[torch.optim.Optimizer]
    torch_hparams: dict[str, Any]
    passes: int  # tensors of parameter size read + written by a minimal step
    fused: bool  # torch has a fused implementation


ALGORITHMS = [
    # p, g read; p written
    Algorithm("sgd", dict(lr=1e-3), torch.optim.SGD, dict(lr=1e-3), 3, True),
    # p, g, b read; b, p written
    Algorithm("momentum", dict(lr=1e-3), torch.optim.SGD,
              dict(lr=1e-3, momentum=0.9), 5, True),
    Algorithm("nesterov", dict(lr=1e-3), torch.optim.SGD,
              dict(lr=1e-3, momentum=0.9, nesterov=True), 5, True),
    # p, g, v read; v, p written
    Algorithm("adagrad", dict(lr=1e-2), torch.optim.Adagrad, dict(lr=1e-2), 5, True),
    Algorithm("rmsprop", dict(lr=1e-3), torch.optim.RMSprop, dict(lr=1e-3), 5, False),
    # p, g, m, v read; m, v, p written
    Algorithm("adam", dict(lr=1e-3), torch.optim.Adam, dict(lr=1e-3), 7, True),
    Algorithm("adamw", dict(lr=1e-3), torch.optim.AdamW, dict(lr=1e-3), 7, True),
]


def make_params(shapes: list[tuple[int, ...]], device: str) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    params = []
    for shape in shapes:
        p = torch.randn(shape, generator=generator).to(device).requires_grad_()
        p.grad = torch.randn(shape, generator=generator).to(device) * 1e-2
        params.append(p)
    return params


def _synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _time(step: Callable[[], Any], steps: int, device: str) -> float:
    """Seconds per call of ``step``, over ``steps`` calls."""
    _synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _synchronize(device)
    return (time.perf_counter() - start) / steps


def alternate(contenders: dict[str, Callable[[], Any]], rounds: int, steps: int,
              device: str) -> dict[str, list[float]]:
    """Per-round step times of each contender, measured in turn every round."""
    for step in contenders.values():  # warm up: state allocation, caches
        _time(step, 3, device)
    names = list(contenders)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            times[name].append(_time(contenders[name], steps, device))
    return times


def _median_ratio(a: list[float], b: list[float]) -> float:
    return statistics.median(x / y for x, y in zip(a, b, strict=True))


def _stepper(opt: torch.optim.Optimizer) -> Callable[[], Any]:
    return opt.step


def _instrumented(opt: optimizers.Optimizer) -> Callable[[], Any]:
    def step():
        opt.request_stats()
        opt.step()
        stats = opt.last_stats
        # What a logger reads: one conversion per field.
        for value in (stats.grad_norm, stats.update_norm, stats.param_norm,
                      stats.momentum_norm, *stats.effective_lr.values()):
            if value is not None:
                value.tolist()
    return step


def bench_set(set_name: str, algorithms: list[Algorithm], rounds: int, steps: int,
              device: str) -> list[dict[str, Any]]:
    shapes = PARAMETER_SETS[set_name]
    numel = sum(torch.Size(s).numel() for s in shapes)
    element = torch.finfo(torch.float32).bits // 8
    src = torch.randn(numel, device=device)
    dst = torch.empty_like(src)
    copy_s = statistics.median(
        alternate({"copy": lambda: dst.copy_(src)}, rounds, steps, device)["copy"]
    )
    copy_bandwidth = 2 * numel * element / copy_s
    log.info("%s: %.2f M parameters, copy %.1f GB/s", set_name, numel / 1e6,
             copy_bandwidth / 1e9)
    rows = []
    for algo in algorithms:
        contenders: dict[str, Callable[[], Any]] = {}
        ours = optimizers.build(algo.name, make_params(shapes, device), **algo.hparams)
        contenders["ours"] = _stepper(ours)
        implementations = {"for-loop": dict(foreach=False),
                           "foreach": dict(foreach=True)}
        if algo.fused:
            implementations["fused"] = dict(fused=True)
        for label, flags in implementations.items():
            try:
                opt = algo.torch_cls(make_params(shapes, device), **algo.torch_hparams,
                                     **flags)
                opt.step()
            except (RuntimeError, TypeError) as error:
                log.info("%s %s unavailable on %s: %s", algo.name, label, device, error)
                continue
            contenders[label] = _stepper(opt)
        stats_opt = optimizers.build(algo.name, make_params(shapes, device),
                                     **algo.hparams)
        contenders["ours+stats"] = _instrumented(stats_opt)
        times = alternate(contenders, rounds, steps, device)
        row = {"set": set_name, "algorithm": algo.name,
               "ms": {k: statistics.median(v) * 1e3 for k, v in times.items()},
               "vs": {k: _median_ratio(times["ours"], v) for k, v in times.items()
                      if k not in ("ours", "ours+stats")},
               "stats_cost": _median_ratio(times["ours+stats"], times["ours"]),
               "bandwidth": algo.passes * numel * element
               / statistics.median(times["ours"]),
               "copy_bandwidth": copy_bandwidth}
        rows.append(row)
        log.info("%s %s done", set_name, algo.name)
    return rows


def format_rows(rows: list[dict[str, Any]]) -> str:
    header = (f"{'set':<4} {'algorithm':<9} {'ours ms':>8} {'loop ms':>8} "
              f"{'foreach':>8} {'fused':>8} {'/loop':>6} {'/foreach':>8} {'/fused':>7} "
              f"{'GB/s':>6} {'%copy':>6} {'stats x':>7} {'@25':>5}")
    lines = [header, "-" * len(header)]
    for row in rows:
        ms, vs = row["ms"], row["vs"]

        def cell(table, key, width, fmt):
            return f"{table[key]:{width}{fmt}}" if key in table else f"{'-':>{width}}"

        lines.append(
            f"{row['set']:<4} {row['algorithm']:<9} {ms['ours']:8.3f} "
            f"{cell(ms, 'for-loop', 8, '.3f')} {cell(ms, 'foreach', 8, '.3f')} "
            f"{cell(ms, 'fused', 8, '.3f')} {cell(vs, 'for-loop', 6, '.2f')} "
            f"{cell(vs, 'foreach', 8, '.2f')} {cell(vs, 'fused', 7, '.2f')} "
            f"{row['bandwidth'] / 1e9:6.1f} "
            f"{100 * row['bandwidth'] / row['copy_bandwidth']:5.0f}% "
            f"{row['stats_cost']:7.2f} {1 + (row['stats_cost'] - 1) / 25:5.2f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", default="cnn,10m",
                        help="comma-separated parameter sets: cnn, 10m")
    parser.add_argument("--algorithms", default=",".join(a.name for a in ALGORITHMS))
    parser.add_argument("--rounds", type=int, default=15, help="alternation rounds")
    parser.add_argument("--steps", type=int, default=0,
                        help="steps per timed block (0: 20 for cnn, 3 for 10m)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    by_name = {a.name: a for a in ALGORITHMS}
    wanted = args.algorithms.split(",")
    unknown = [w for w in wanted if w not in by_name]
    if unknown:
        parser.error(f"unknown algorithm(s) {unknown}; choose from {list(by_name)}")
    sets = args.sets.split(",")
    for s in sets:
        if s not in PARAMETER_SETS:
            parser.error(f"unknown set {s!r}; choose from {list(PARAMETER_SETS)}")
    rows = []
    for s in sets:
        steps = args.steps or (20 if s == "cnn" else 3)
        rows += bench_set(s, [by_name[w] for w in wanted], args.rounds, steps,
                          args.device)
    print(f"torch {torch.__version__}, device {args.device}, threads "
          f"{torch.get_num_threads()}, {args.rounds} alternating rounds; "
          "times are medians, ratios are ours / torch (medians of per-round ratios); "
          "'stats x' = step with request_stats() and one read / plain step; "
          "'@25' = mean step cost when stats are requested every 25th step "
          "(TrainConfig.log_every's default)")
    print(format_rows(rows))


if __name__ == "__main__":
    main()
