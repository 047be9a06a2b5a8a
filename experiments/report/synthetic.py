"""A synthetic log directory in the exact layout of ``docs/architecture.md``.

Used by the report's tests and its benchmark: every study of the assignment with
several seeds, real ``summary.json`` / ``index.json`` / ``study.json`` files and
real TensorBoard event files written by ``torch.utils.tensorboard``. The numbers
follow simple closed-form curves (accuracy rises as ``a_inf - (a_inf - 0.1) *
exp(-rate * epoch)``), so they are plausible but say nothing about optimizers.

``make_logdir(root, scale="small")`` also plants one diverged run (high learning
rate), one failed run, one planned run with no folder and one run folder with no
summary, so the report's handling of all four can be checked.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Planned:
    study: str
    part: str
    series: str
    x_name: str | None
    x: Any
    y_name: str | None
    y: Any
    quality: float  # asymptotic accuracy
    rate: float  # per-epoch speed
    diverge: bool
    optimizer: str
    batch_size: Any = 128
    b_simple: float | None = None


def plan(scale: str) -> dict[str, list[Planned]]:
    small = scale == "small"
    lrs_sgd = [1e-4, 1e-3, 1e-2, 1e-1, 1.0] if small else list(np.logspace(-4, 0, 7))
    lrs_ada = [1e-5, 1e-3, 1e-2, 1e-1, 1.0] if small else list(np.logspace(-5, 0, 9))
    out: dict[str, list[Planned]] = {}

    def lr_quality(lr: float, best: float) -> float:
        return max(0.1, 0.82 - 0.06 * math.log10(lr / best) ** 2)

    batches: list[Any] = [16, 64, 256, "full"] if small else [16, 32, 64, 128, 256,
                                                             512, 1024, "full"]
    out["batch-size"] = [
        Planned("batch-size", part, part, "batch_size", b, None, None,
                0.7 - (0.05 if b == "full" else 0.0), 1.2 if b == "full" else
                2.0 - 0.2 * math.log2(float(b) / 16), False, "momentum", b, 180.0)
        for part in ("fixed-lr", "scaled-lr") for b in batches]
    out["momentum"] = [Planned("momentum", "main", "sgd", "momentum", 0.0, None, None,
                               0.62, 0.8, False, "sgd")]
    out["momentum"] += [
        Planned("momentum", "main", kind, "momentum", m, None, None,
                0.66 + 0.02 * (kind == "nesterov") - 0.1 * (m == 0.99), 1.0 + m,
                False, kind)
        for kind in ("momentum", "nesterov") for m in (0.5, 0.9, 0.99)]
    out["sgd-lr"] = [
        Planned("sgd-lr", "main", kind, "lr", float(lr), None, None,
                lr_quality(float(lr), best), 1.5, float(lr) >= limit, kind)
        for kind, best, limit in (("sgd", 0.1, 2.0), ("momentum", 0.01, 0.9),
                                  ("nesterov", 0.01, 0.9))
        for lr in lrs_sgd]
    out["adaptive"] = [
        Planned("adaptive", "main", kind, None, None, None, None, q, r, False, kind)
        for kind, q, r in (("adagrad", 0.84, 1.0), ("rmsprop", 0.86, 1.6),
                           ("adam", 0.87, 1.8))]
    out["adaptive-lr"] = [
        Planned("adaptive-lr", "main", kind, "lr", float(lr), None, None,
                lr_quality(float(lr), best), 1.5,
                float(lr) >= 1.0 and kind != "adagrad", kind)
        for kind, best in (("adagrad", 0.05), ("rmsprop", 1e-3), ("adam", 1e-3))
        for lr in lrs_ada]
    beta1 = [0.0, 0.9, 0.99] if small else [0.0, 0.5, 0.8, 0.9, 0.95, 0.99]
    beta2 = [0.9, 0.999] if small else [0.9, 0.99, 0.999, 0.9999]
    eps = [1e-8, 1e-4, 1.0] if small else [1e-10, 1e-8, 1e-6, 1e-4, 1e-2, 1.0]
    adam = [Planned("adam-hparams", "beta1", "adam", "beta1", b, None, None,
                    0.86 - 0.05 * (b == 0.99), 1.2 + b, False, "adam")
            for b in beta1]
    adam += [Planned("adam-hparams", "beta2", "adam", "beta2", b, None, None,
                     0.86 - 0.03 * (b == 0.9), 1.8, False, "adam") for b in beta2]
    adam += [Planned("adam-hparams", "eps", "adam", "eps", e, None, None,
                     0.86 - 0.08 * (e >= 1e-2), 1.8 - (e >= 1e-2), False, "adam")
             for e in eps]
    adam += [Planned("adam-hparams", "grid", "adam", "beta1", b1, "beta2", b2,
                     0.86 - 0.04 * (b1 == 0.99) * (b2 == 0.9), 1.5, False, "adam")
             for b1 in beta1 for b2 in beta2]
    out["adam-hparams"] = adam
    return out


def make_logdir(root: str | Path, scale: str = "small", seeds: int = 3,
                epochs: int = 4, steps_per_epoch: int = 40,
                plant_problems: bool = True,
                studies: tuple[str, ...] | None = None, detail: int = 0) -> Path:
    """Write every study (or those named) under ``root``; returns ``root``.

    ``detail`` > 0 adds, at each logged step, per-parameter scalars for that many
    parameter tensors and an effective-lr histogram, as the real instruments do
    (for the benchmark: the report must skip what it does not need quickly).
    """
    from torch.utils.tensorboard import SummaryWriter

    root = Path(root)
    for study, planned in plan(scale).items():
        if studies is not None and study not in studies:
            continue
        folder = root / study
        folder.mkdir(parents=True, exist_ok=True)
        summaries, ids = [], []
        for k, p in enumerate(planned):
            for seed in range(seeds):
                run_id = _run_id(p, seed)
                ids.append(run_id)
                last_seed = seed == seeds - 1
                if plant_problems and study == "sgd-lr" and k == 0 and last_seed:
                    continue  # a planned run that never started: missing
                run_dir = folder / run_id
                run_dir.mkdir(exist_ok=True)
                failed = plant_problems and study == "adaptive" and k == 0 and seed == 0
                # full batch trains longer, as full_batch_epochs does in the sweep
                trained = 2 * epochs if p.batch_size == "full" else epochs
                summary = _run(p, seed, trained, steps_per_epoch, run_id, failed)
                if not failed:
                    writer = SummaryWriter(log_dir=str(run_dir))
                    _events(writer, p, seed, trained, steps_per_epoch,
                            summary["result"]["history"], summary["status"], detail)
                    writer.close()
                summary["log_dir"] = f"{study}/{run_id}"
                (run_dir / "summary.json").write_text(json.dumps(summary, indent=1))
                summaries.append(summary)
        if plant_problems and study == "momentum":
            (folder / "unfinished-run").mkdir(exist_ok=True)
        meta = {"schema": 1, "study": study, "title": _TITLES[study],
                "questions": [f"What does {study} change? (synthetic)"],
                "model": "cnn" if study in ("batch-size", "momentum", "sgd-lr")
                else "mlp", "preset": scale, "fields": {"epochs": epochs},
                "target_accuracy": 0.6, "planned_runs": ids}
        (folder / "study.json").write_text(json.dumps(meta, indent=1))
        index = {"study": study, "preset": scale, "runs": summaries}
        (folder / "index.json").write_text(json.dumps(index, indent=1))
    return root


_TITLES = {
    "batch-size": "Batch size", "momentum": "Momentum", "sgd-lr": "SGD learning rate",
    "adaptive": "Adaptive optimizers", "adaptive-lr": "Adaptive learning rate",
    "adam-hparams": "Adam hyperparameters",
}


def _run_id(p: Planned, seed: int) -> str:
    text = json.dumps([p.study, p.part, p.series, p.x, p.y, seed], default=str)
    return f"{p.series}-{hashlib.sha1(text.encode()).hexdigest()[:10]}"


def _steps_per_epoch(p: Planned, steps_per_epoch: int) -> int:
    if p.batch_size == "full":
        return 1
    return max(1, int(steps_per_epoch * 64 / max(int(p.batch_size), 16)) // 2)


def _run(p: Planned, seed: int, epochs: int, steps_per_epoch: int, run_id: str,
         failed: bool) -> dict[str, Any]:
    rng = np.random.default_rng(abs(hash((p.study, p.part, str(p.x), seed))) % 2**32)
    per_epoch = _steps_per_epoch(p, steps_per_epoch)
    seconds_per_epoch = 2.0 + 0.5 * per_epoch / 10
    history = []
    diverged_at = 2 if p.diverge else None
    for epoch in range(1, epochs + 1):
        if diverged_at is not None and epoch >= diverged_at:
            break
        acc = p.quality - (p.quality - 0.1) * math.exp(-p.rate * epoch)
        acc = float(np.clip(acc + rng.normal(0, 0.008), 0.05, 0.99))
        history.append({
            "epoch": epoch - 1, "step": epoch * per_epoch,
            "time_s": epoch * seconds_per_epoch, "train_loss": 2.3 * (1.05 - acc),
            "train_acc": min(acc + 0.03, 1.0), "val_loss": 2.3 * (1.1 - acc),
            "val_acc": acc, "per_class_val_acc": [acc] * 10})
    status = "failed" if failed else ("diverged" if p.diverge else "done")
    reached = next((h for h in history if h["val_acc"] >= 0.6), None)
    if reached is not None:
        reached = {**reached, "epoch": reached["epoch"] + 1}
    last = history[-1] if history else None
    final = last["val_acc"] if last and status == "done" else None
    result: dict[str, Any] = {} if failed else {
        "final_val_acc": final,
        "best_val_acc": max((h["val_acc"] for h in history), default=None),
        "test_acc": final - 0.005 if final else None,
        "test_loss": last["val_loss"] if last else None,
        "final_train_loss": last["train_loss"] if last and final else None,
        "final_train_acc": last["train_acc"] if last else None,
        "final_val_loss": last["val_loss"] if last else None,
        "diverged_step": per_epoch * (diverged_at or 0) if p.diverge else None,
        "global_step": last["step"] if last else per_epoch,
        "epochs_completed": len(history),
        "wall_time_s": last["time_s"] if last else 1.0,
        "samples_per_s": 2000.0 * (1 + math.log2(_numeric_batch(p) / 16))
        + rng.normal(0, 20),
        "per_class_test_acc": [float(np.clip((final or 0.1) + 0.15 * math.sin(c)
                                             + rng.normal(0, 0.01), 0, 1))
                               for c in range(10)],
        "b_simple": p.b_simple * (1 + rng.normal(0, 0.1)) if p.b_simple else None,
        "history": history,
    }
    done = status == "done" and reached is not None
    return {
        "schema": 1, "run_id": run_id, "study": p.study, "part": p.part,
        "series": p.series, "x_name": p.x_name, "x": p.x, "y_name": p.y_name,
        "y": p.y, "seed": seed, "status": status,
        "error": "RuntimeError: synthetic failure for the report test" if failed
        else None,
        "config": {"model": "cnn", "optimizer": p.optimizer,
                   "hparams": {"lr": p.x if p.x_name == "lr" else 0.01},
                   "batch_size": p.batch_size, "epochs": epochs, "seed": seed},
        "target_accuracy": 0.6,
        "steps_to_target": reached["step"] if done else None,
        "epochs_to_target": reached["epoch"] if done else None,
        "seconds_to_target": reached["time_s"] if done else None,
        "result": result, "versions": {}, "git_commit": None,
        "started_at": "2026-01-01T00:00:00Z", "ended_at": "2026-01-01T00:01:00Z",
    }


def _numeric_batch(p: Planned) -> float:
    return 2048.0 if p.batch_size == "full" else float(p.batch_size)


def _events(writer, p: Planned, seed: int, epochs: int, steps_per_epoch: int,
            history: list[dict], status: str, detail: int = 0) -> None:
    rng = np.random.default_rng(seed)
    per_epoch = _steps_per_epoch(p, steps_per_epoch)
    total = max(len(history), 1) * per_epoch
    every = max(1, total // 40)
    lr = float(p.x) if p.x_name == "lr" else 1e-3
    mu = float(p.x) if p.x_name == "momentum" else 0.9
    for step in range(0, total, every):
        t = step / max(total, 1)
        for k in range(detail):
            for group in ("grad_norm", "update", "update/ratio", "momentum/norm",
                          "momentum/grad_cosine", "effective_lr/median"):
                writer.add_scalar(f"{group}/layer{k}.weight", rng.random(), step)
        if detail:
            writer.add_histogram("effective_lr/log10", rng.normal(-3, 1, 4096), step)
        loss = 2.3 * math.exp(-p.rate * 2 * t) + 0.2 + abs(rng.normal(0, 0.03))
        writer.add_scalar("train/loss", loss, step)
        writer.add_scalar("grad_norm/global", 2.0 * math.exp(-t) + rng.random() * .1,
                          step)
        writer.add_scalar("update/global", lr * (1 + t) + 1e-5, step)
        if p.optimizer in ("momentum", "nesterov", "sgd"):
            writer.add_scalar("momentum/grad_cosine",
                              0.3 - mu * 0.4 + rng.normal(0, 0.05), step)
            writer.add_scalar("effective_lr/steady_state", lr / (1 - mu), step)
        else:
            decay = 1 / (1 + 5 * t) if p.optimizer == "adagrad" else 1 + 0.5 * t
            writer.add_scalar("effective_lr/median", lr * 10 * decay, step)
            writer.add_scalar("effective_lr/p5", lr * 2 * decay, step)
            writer.add_scalar("effective_lr/p95", lr * 80 * decay, step)
    if status == "diverged":
        writer.add_scalar("train/loss", float("nan"), total)
