"""Lightning callbacks that write the optimizer's instruments to TensorBoard.

:class:`InstrumentCallback` works every ``log_every`` optimizer steps (an
"instrument step") and does nothing that touches the device on the other steps
except one gradient copy on the step just before an instrument step (for the
gradient cosine). On an instrument step it asks the optimizer for statistics
(``opt.request_stats()``), gathers every number it logs into one tensor and reads
it back with a single ``.tolist()``. Tags, at ``step`` = the optimizer step index:

==============================  ========================================================
``train/loss``, ``train/acc``   loss and accuracy of the step's batch (all its chunks)
``train/lr``                    learning rate of the first param group
``grad_norm/global``, ``/<p>``  ||g||: whole model and per parameter tensor ``<p>``
``update/global``, ``/<p>``     ||delta theta||, the change the step applied
``update/ratio``, ``/ratio/<p>``  ||delta theta|| / ||theta|| (theta before the step)
``effective_lr/lr``,            SGD family: the lr and the steady-state lr / (1 - mu)
``effective_lr/steady_state``
``effective_lr/{mean,median,    adaptive: over all elements of the model (median and
p5,p95}``                       percentiles from a fixed strided sample), and per
``effective_lr/<p>/...``        parameter from the optimizer's own summary; histograms
                                of log10 of the element-wise values (global; per
                                parameter every 10th instrument step)
``momentum/norm``, ``/norm/<p>``  norm of the momentum buffer (Adam: first moment)
``momentum/grad_cosine``,       cosine between this step's gradient ``p.grad`` (before
``/grad_cosine/<p>``            weight decay) and the previous optimizer step's
``perf/samples_per_s``,         throughput and mean wall time per optimizer step since
``perf/step_time_ms``           the previous instrument step (validation excluded)
==============================  ========================================================

Optimizers without instruments (``torch.optim`` classes plugged in as
``module:Class``) get the norms computed here from ``p.grad`` and a snapshot of the
parameters, and the effective lr of the SGD family from ``lr`` and ``momentum``.

:class:`NoiseScaleCallback` estimates the gradient noise scale
``B_simple = tr(Sigma) / |G|^2`` (McCandlish, Kaplan, Amodei et al. 2018, "An
Empirical Model of Large-Batch Training", arXiv:1812.06162, appendix A.1).
"""

from __future__ import annotations

import math
import time
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor

from models.probes import GradientProbe

# Elements of the concatenated element-wise effective lr that the model-wide
# quantiles and histograms use (a fixed strided sample; exact below this size).
GLOBAL_SAMPLE = 16384
# Histograms are drawn from smaller samples (numpy's binning dominates their cost);
# the per-parameter ones only at every LAYER_HISTOGRAM_EVERY-th instrument step.
HISTOGRAM_SAMPLE = 8192
HISTOGRAM_BINS = 64
LAYER_HISTOGRAM_EVERY = 10


def write_scalars(writer, scalars: dict[str, float], step: int) -> None:
    """Write many scalars as one TensorBoard event (ten times cheaper than one each).

    Falls back to ``add_scalar`` per tag for writers without torch's file writer.
    """
    file_writer = getattr(writer, "_get_file_writer", None)
    if file_writer is None:
        for tag, value in scalars.items():
            writer.add_scalar(tag, value, step)
        return
    from tensorboard.compat.proto.summary_pb2 import Summary

    summary = Summary(value=[Summary.Value(tag=tag, simple_value=float(value))
                             for tag, value in scalars.items()])
    file_writer().add_summary(summary, step)


def _wide(device: torch.device) -> torch.dtype:
    """float64 for sums of squares, except on MPS, which has no float64."""
    return torch.float32 if device.type == "mps" else torch.float64


def _writer(trainer: pl.Trainer):
    logger = trainer.logger
    experiment = getattr(logger, "experiment", None) if logger else None
    return experiment if hasattr(experiment, "add_scalar") else None


def _strided_sample(flat: Tensor, size: int) -> Tensor:
    if flat.numel() <= size:
        return flat
    stride = flat.numel() // size
    return flat[::stride][:size]


class InstrumentCallback(pl.Callback, GradientProbe):
    """Logs gradient, update, effective-lr, momentum and speed statistics.

    Args:
        log_every: optimizer steps between instrument steps (step 0 is one).
        histograms: also write effective-lr histograms for adaptive optimizers.
    """

    def __init__(self, log_every: int = 25, histograms: bool = True) -> None:
        if log_every < 1:
            raise ValueError(f"log_every={log_every!r} is invalid; allowed: >= 1")
        self.log_every = log_every
        self.histograms = histograms
        self._names: dict[int, str] = {}
        self._prev_grads: dict[int, Tensor] | None = None
        self._prev_step = -1
        self._pending: dict[str, Any] | None = None
        self._window_start: float | None = None
        self._window_steps = 0
        self._window_samples = 0
        self._paused_at: float | None = None

    # -------------------------------------------------------------- bookkeeping
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str):
        self._names = {id(p): name for name, p in pl_module.named_parameters()}

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule):
        self._window_start = time.perf_counter()

    def on_validation_start(self, trainer, pl_module) -> None:
        self._paused_at = time.perf_counter()

    def on_validation_end(self, trainer, pl_module) -> None:
        if self._paused_at is not None and self._window_start is not None:
            self._window_start += time.perf_counter() - self._paused_at
        self._paused_at = None

    def _is_instrument_step(self, step: int) -> bool:
        return step % self.log_every == 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._is_instrument_step(trainer.global_step) and trainer.optimizers:
            optimizer = trainer.optimizers[0]
            if hasattr(optimizer, "request_stats"):
                optimizer.request_stats()

    # ---------------------------------------------------------------- the step
    def on_gradient(self, module, optimizer, total: int) -> None:
        step = module.trainer.global_step
        instrumented = self._is_instrument_step(step)
        before_instrumented = self._is_instrument_step(step + 1)
        if not (instrumented or before_instrumented):
            return
        params = [p for g in optimizer.param_groups for p in g["params"]
                  if p.grad is not None]
        if instrumented:
            pending: dict[str, Any] = {"step": step, "params": params}
            grads = [p.grad for p in params]
            if self._prev_grads is not None and self._prev_step == step - 1:
                previous = [self._prev_grads.get(id(p)) for p in params]
                if all(g is not None for g in previous):
                    dots = torch.stack([(g * h).sum()
                                        for g, h in zip(grads, previous, strict=True)])
                    pending["cos_dot"] = dots
                    pending["cos_norm_now"] = torch.stack(torch._foreach_norm(grads))
                    pending["cos_norm_prev"] = torch.stack(
                        torch._foreach_norm(previous)
                    )
            self._prev_grads = None
            if not hasattr(optimizer, "request_stats"):
                pending["fallback_grad_norm"] = torch.stack(torch._foreach_norm(grads))
                pending["snapshot"] = [p.detach().clone() for p in params]
            self._pending = pending
        if before_instrumented:
            self._prev_grads = {id(p): p.grad.detach().clone() for p in params}
            self._prev_step = step

    def on_step_end(self, module, optimizer) -> None:
        self._window_steps += 1
        self._window_samples += int(getattr(module, "step_samples", 0))
        pending, self._pending = self._pending, None
        if pending is None:
            return
        writer = _writer(module.trainer)
        if writer is None:
            return
        self._log(writer, module, optimizer, pending)

    # ---------------------------------------------------------------- logging
    def _log(self, writer, module, optimizer, pending: dict[str, Any]) -> None:
        step = pending["step"]
        params: list[Tensor] = pending["params"]
        stats = getattr(optimizer, "last_stats", None)
        if stats is not None and "snapshot" not in pending:
            params = list(stats.params)
            grad_norm = stats.grad_norm
            update_norm = stats.update_norm
            param_norm = stats.param_norm
            momentum_norm = stats.momentum_norm
            effective = dict(stats.effective_lr)
            values = stats.effective_lr_values
        else:
            grad_norm, update_norm, param_norm, momentum_norm, effective = (
                _fallback_stats(optimizer, params, pending)
            )
            values = None
        names = [self._names.get(id(p), f"param{i}") for i, p in enumerate(params)]

        # Everything to read goes into one vector: one device -> host transfer.
        parts: dict[str, Tensor] = {
            "loss": _scalar(getattr(module, "step_loss", math.nan), grad_norm),
            "acc": _scalar(getattr(module, "step_acc", math.nan), grad_norm),
            "grad_norm": grad_norm,
            "update_norm": update_norm,
            "param_norm": param_norm,
        }
        if momentum_norm is not None:
            parts["momentum_norm"] = momentum_norm
        for key in ("cos_dot", "cos_norm_now", "cos_norm_prev"):
            if key in pending:
                parts[key] = pending[key]
        for key, vector in effective.items():
            parts[f"elr_{key}"] = vector
        sample = None
        if values:
            flat = torch.cat([v.detach().reshape(-1).float() for v in values])
            sample = _strided_sample(flat, GLOBAL_SAMPLE)
            # the sample's dtype: Lightning's *-true precisions change the default
            q = torch.tensor([0.5, 0.05, 0.95], device=sample.device,
                             dtype=sample.dtype)
            parts["elr_global"] = torch.cat(
                [flat.mean().reshape(1), torch.quantile(sample, q)]
            )
        layout = [(key, t.reshape(-1).numel()) for key, t in parts.items()]
        device = grad_norm.device
        host = torch.cat(
            [t.detach().reshape(-1).to(device=device, dtype=_wide(device))
             for t in parts.values()]
        ).tolist()
        got: dict[str, list[float]] = {}
        offset = 0
        for key, size in layout:
            got[key] = host[offset:offset + size]
            offset += size

        scalars: dict[str, float] = {
            "train/loss": got["loss"][0],
            "train/acc": got["acc"][0],
            "train/lr": float(optimizer.param_groups[0]["lr"]),
        }
        _add_norms(scalars, "grad_norm", "grad_norm", names, got["grad_norm"])
        _add_norms(scalars, "update", "update", names, got["update_norm"])
        ratio_global = _global_norm(got["update_norm"]) / max(
            _global_norm(got["param_norm"]), 1e-30
        )
        scalars["update/ratio"] = ratio_global
        for name, du, th in zip(names, got["update_norm"], got["param_norm"],
                                strict=True):
            scalars[f"update/ratio/{name}"] = du / th if th > 0 else math.nan
        if "momentum_norm" in got:
            _add_norms(scalars, "momentum/norm", "momentum/norm", names,
                       got["momentum_norm"], global_tag="momentum/norm")
        if "cos_dot" in got:
            dots, now, prev = got["cos_dot"], got["cos_norm_now"], got["cos_norm_prev"]
            denominator = _global_norm(now) * _global_norm(prev)
            scalars["momentum/grad_cosine"] = (
                sum(dots) / denominator if denominator > 0 else math.nan
            )
            for name, d, a, b in zip(names, dots, now, prev, strict=True):
                scalars[f"momentum/grad_cosine/{name}"] = (
                    d / (a * b) if a * b > 0 else math.nan
                )
        sgd_family = "elr_lr" in got
        if sgd_family:
            scalars["effective_lr/lr"] = got["elr_lr"][0]
            if "elr_steady_state" in got:
                scalars["effective_lr/steady_state"] = got["elr_steady_state"][0]
        for key in ("mean", "median", "p5", "p95"):
            if f"elr_{key}" in got:
                for name, value in zip(names, got[f"elr_{key}"], strict=True):
                    scalars[f"effective_lr/{name}/{key}"] = value
        if "elr_global" in got:
            mean, median, p5, p95 = got["elr_global"]
            scalars.update({
                "effective_lr/mean": mean, "effective_lr/median": median,
                "effective_lr/p5": p5, "effective_lr/p95": p95,
            })

        now_time = time.perf_counter()
        if self._window_start is not None and self._window_steps > 0:
            seconds = max(now_time - self._window_start, 1e-9)
            scalars["perf/step_time_ms"] = 1e3 * seconds / self._window_steps
            scalars["perf/samples_per_s"] = self._window_samples / seconds
        self._window_start = now_time
        self._window_steps = 0
        self._window_samples = 0

        write_scalars(writer, scalars, step)
        if self.histograms and sample is not None and values:
            whole = _log10(_strided_sample(sample, HISTOGRAM_SAMPLE))
            if whole.numel():
                writer.add_histogram("effective_lr/log10", whole, step,
                                     bins=HISTOGRAM_BINS)
            if step % (self.log_every * LAYER_HISTOGRAM_EVERY) != 0:
                return
            for name, v in zip(names, values, strict=True):
                layer = _strided_sample(v.detach().reshape(-1).float(),
                                        HISTOGRAM_SAMPLE // 4)
                layer = _log10(layer)
                if layer.numel():
                    writer.add_histogram(f"effective_lr/log10/{name}", layer,
                                         step, bins=HISTOGRAM_BINS)


def _log10(values: Tensor) -> Tensor:
    """log10 of the finite values, on the host, in float32.

    In 16-true precision an adaptive optimizer's effective lr can overflow to inf
    (its denominator underflows); a histogram cannot bin inf, so those are left out.
    """
    logged = values.float().clamp_min(1e-30).log10().cpu()
    return logged[torch.isfinite(logged)]


def _scalar(value: Any, like: Tensor) -> Tensor:
    if isinstance(value, Tensor):
        return value.detach().reshape(1)
    return torch.tensor([float(value)], device=like.device)


def _global_norm(norms: list[float]) -> float:
    return math.sqrt(sum(n * n for n in norms))


def _add_norms(scalars, group: str, prefix: str, names, norms, global_tag=None):
    scalars[global_tag or f"{group}/global"] = _global_norm(norms)
    for name, value in zip(names, norms, strict=True):
        scalars[f"{prefix}/{name}"] = value


def _fallback_stats(optimizer, params: list[Tensor], pending: dict[str, Any]):
    """Norms for an optimizer without instruments, from p.grad and a snapshot."""
    snapshot = pending.get("snapshot") or [p.detach().clone() for p in params]
    grad_norm = pending.get("fallback_grad_norm")
    if grad_norm is None:
        grad_norm = torch.stack(torch._foreach_norm([p.grad for p in params]))
    deltas = torch._foreach_sub([p.detach() for p in params], snapshot)
    update_norm = torch.stack(torch._foreach_norm(deltas))
    param_norm = torch.stack(torch._foreach_norm(snapshot))
    buffers = []
    for p in params:
        state = optimizer.state.get(p, {})
        buffer = state.get("momentum_buffer", state.get("exp_avg"))
        buffers.append(buffer)
    momentum_norm = None
    if buffers and all(b is not None for b in buffers):
        momentum_norm = torch.stack(torch._foreach_norm(buffers))
    effective: dict[str, Tensor] = {}
    group = optimizer.param_groups[0]
    if not any(k in group for k in ("betas", "alpha", "initial_accumulator_value")):
        lr = float(group["lr"])
        momentum = float(group.get("momentum", 0.0) or 0.0)
        n = len(params)
        effective["lr"] = torch.full((n,), lr, device=grad_norm.device)
        effective["steady_state"] = torch.full(
            (n,), lr / (1.0 - momentum) if momentum < 1 else math.inf,
            device=grad_norm.device,
        )
    return grad_norm, update_norm, param_norm, momentum_norm, effective


class NoiseScaleCallback(pl.Callback, GradientProbe):
    """Estimates the simple gradient noise scale ``B_simple = tr(Sigma) / |G|^2``.

    Each optimizer step yields the mean gradient ``G_big`` of its ``B_big`` samples
    and, from the same backward passes, the mean gradients ``g_c`` of smaller
    micro-batches of ``b_c`` samples: two halves of a minibatch (the classifier
    splits the batch when this probe asks), or the chunks of a full batch. With
    ``E|g_b|^2 = |G|^2 + tr(Sigma) / b`` for a batch of ``b`` samples:

    (1)  |G_small|^2 = mean_c |g_c|^2,    1 / B_small = mean_c 1 / b_c
    (2)  |G|^2_est   = (B_big |G_big|^2 - B_small |G_small|^2) / (B_big - B_small)
    (3)  S_est       = (|G_small|^2 - |G_big|^2) / (1 / B_small - 1 / B_big)

    (2) and (3) are unbiased estimates of ``|G|^2`` and ``tr(Sigma)`` (McCandlish et
    al. 2018, appendix A.1). Both are noisy, so, as the paper advises, they are
    averaged over steps before taking the ratio:

    (4)  B_simple = mean_t S_est / mean_t |G|^2_est

    TensorBoard gets ``noise_scale/b_simple`` (the ratio over the steps since the
    previous log), ``noise_scale/b_simple_run`` (over the whole run so far),
    ``noise_scale/trace_sigma`` and ``noise_scale/grad_sq`` every ``log_every``
    steps; :meth:`estimate` gives (4) over the run. Sums stay on the device
    between logs.

    With a full batch, ``G_big`` is the exact gradient of the training split of
    ``N`` samples and the chunks are drawn without replacement, so (3) estimates
    ``tr(Sigma) * N / (N - 1)``: negligible for any real split.

    Under ``precision="16-mixed"`` the gradients seen here would carry the
    GradScaler's loss scale, which changes between steps and would weight the sums
    in (4), so ``TrainConfig`` refuses that combination.
    """

    def __init__(self, log_every: int = 25) -> None:
        self.log_every = log_every
        self._reset_step()
        self._run: Tensor | None = None  # [sum S_est, sum |G|^2_est, steps]
        self._window: Tensor | None = None

    def _reset_step(self) -> None:
        self._before: list[Tensor] | None = None
        self._small_sq: Tensor | float = 0.0
        self._inverse_sizes = 0.0
        self._micro = 0

    def wants_micro_batches(self, step: int) -> int:
        return 2

    def on_micro_backward(self, module, size: int, divisor: float) -> None:
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        if self._before is None:
            deltas = grads
        else:
            deltas = torch._foreach_sub(grads, self._before)
        # mean gradient of this micro-batch: (sum_i grad l_i) / size
        norms = torch.stack(torch._foreach_norm(deltas))
        norms = norms.to(_wide(norms.device))
        self._small_sq = self._small_sq + (norms.square().sum() * (divisor / size) ** 2)
        self._inverse_sizes += 1.0 / size
        self._micro += 1
        self._before = [g.detach().clone() for g in grads]

    def on_gradient(self, module, optimizer, total: int) -> None:
        micro, inverse_sizes, small_sq = (
            self._micro, self._inverse_sizes, self._small_sq,
        )
        self._reset_step()
        if micro < 2:
            return
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        norms = torch.stack(torch._foreach_norm(grads))
        big_sq = norms.to(_wide(norms.device)).square().sum()
        small_sq = small_sq / micro
        b_small = micro / inverse_sizes
        b_big = float(total)
        if b_big <= b_small:
            return
        grad_sq = (b_big * big_sq - b_small * small_sq) / (b_big - b_small)
        trace = (small_sq - big_sq) / (1.0 / b_small - 1.0 / b_big)
        sample = torch.stack([trace, grad_sq, torch.ones_like(trace)])
        self._run = sample if self._run is None else self._run + sample
        self._window = sample if self._window is None else self._window + sample
        step = module.trainer.global_step
        if step % self.log_every == 0:
            self._log(module.trainer, step)

    def _log(self, trainer: pl.Trainer, step: int) -> None:
        writer = _writer(trainer)
        if writer is None or self._window is None or self._run is None:
            return
        window, run = torch.stack([self._window, self._run]).tolist()
        self._window = None
        trace, grad_sq, steps = window
        write_scalars(writer, {
            "noise_scale/trace_sigma": trace / steps,
            "noise_scale/grad_sq": grad_sq / steps,
            "noise_scale/b_simple": _ratio(trace, grad_sq),
            "noise_scale/b_simple_run": _ratio(run[0], run[1]),
        }, step)

    def estimate(self) -> float | None:
        """(4) over every step so far; None before two micro-batches were seen."""
        if self._run is None:
            return None
        trace, grad_sq, _ = self._run.tolist()
        value = _ratio(trace, grad_sq)
        return None if math.isnan(value) else value

    def components(self) -> tuple[float, float] | None:
        """Run means of ``tr(Sigma)`` and ``|G|^2`` estimates."""
        if self._run is None:
            return None
        trace, grad_sq, steps = self._run.tolist()
        return trace / steps, grad_sq / steps


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else math.nan
