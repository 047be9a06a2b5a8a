"""The instruments: off unless requested, exact when requested, never a host sync."""

from __future__ import annotations

import math

import pytest
import torch
from optimizer_cases import CASES, PROBLEMS, Case, clone_params

import optimizers
from optimizers import base
from optimizers import stats as instruments

F64 = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")


def _setup(case: Case):
    problem = PROBLEMS["mlp"](F64)
    if case.hparams.get("maximize"):
        problem = problem.negated()
    return problem, optimizers.build(case.name, problem.params, **case.hparams)


def test_stats_are_off_by_default_and_cost_nothing(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("statistics computed for a step that did not ask")

    monkeypatch.setattr(base, "GroupStats", forbidden)
    monkeypatch.setattr(instruments, "summarise", forbidden)
    for case in CASES:
        problem, opt = _setup(case)
        for _ in range(3):
            problem.set_grads(problem.params)
            opt.step()
        assert opt.last_stats is None


def test_a_request_covers_the_next_step_only():
    problem, opt = _setup(CASES[0])
    problem.set_grads(problem.params)
    opt.request_stats()
    opt.step()
    first = opt.last_stats
    assert first is not None
    opt.step()
    assert opt.last_stats is first  # unrequested: kept, not recomputed


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_stats_do_not_change_the_trajectory(case):
    problem, opt = _setup(case)
    twin = clone_params(problem.params)
    quiet = optimizers.build(case.name, twin, **case.hparams)
    for t in range(20):
        problem.set_grads(problem.params)
        problem.set_grads(twin)
        if t % 2:
            opt.request_stats()
        opt.step()
        quiet.step()
    assert all(torch.equal(a, b) for a, b in zip(problem.params, twin, strict=True))


def _expected_effective_lr(case: Case, group: dict, state: dict) -> torch.Tensor:
    lr, eps, t = group["lr"], group["eps"], state["step"]
    if case.name == "adagrad":
        return lr / (1 + (t - 1) * group["lr_decay"]) / (state["v"].sqrt() + eps)
    if case.name == "rmsprop":
        v = state["v"] - state["m"] ** 2 if group["centered"] else state["v"]
        return lr / (v.sqrt() + eps)
    beta1, beta2 = group["betas"]
    v = state["v_max"] if group["amsgrad"] else state["v"]
    return lr / (1 - beta1**t) / ((v / (1 - beta2**t)).sqrt() + eps)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_stats_equal_what_the_step_did(case):
    problem, opt = _setup(case)
    params = problem.params
    for _ in range(10):
        problem.set_grads(params)
        opt.step()
    problem.set_grads(params)
    before = [p.detach().clone() for p in params]
    group = opt.param_groups[0]
    lam = group["weight_decay"]
    l2 = lam != 0 and not group.get("decoupled_weight_decay", False)
    sign = -1.0 if group["maximize"] else 1.0
    used = [sign * p.grad + (lam * b if l2 else 0.0)
            for p, b in zip(params, before, strict=True)]
    opt.request_stats()
    opt.step()
    stats = opt.last_stats

    def norms(tensors):
        return torch.stack([t.norm() for t in tensors])

    assert all(a is b for a, b in zip(stats.params, params, strict=True))
    assert stats.group_index == [0] * len(params)
    torch.testing.assert_close(stats.param_norm, norms(before), rtol=1e-12, atol=0)
    torch.testing.assert_close(stats.grad_norm, norms(used), rtol=1e-12, atol=0)
    change = [p.detach() - b for p, b in zip(params, before, strict=True)]
    torch.testing.assert_close(stats.update_norm, norms(change), rtol=1e-9, atol=0)
    buffer_key = {"sgd": None, "momentum": "momentum_buffer",
                  "nesterov": "momentum_buffer", "adagrad": None,
                  "rmsprop": "momentum_buffer" if group.get("momentum") else None,
                  "adam": "m", "adamw": "m"}[case.name]
    if case.name in ("sgd", "momentum") and group["momentum"] == 0:
        buffer_key = None
    if buffer_key is None:
        assert stats.momentum_norm is None
    else:
        expected = norms([opt.state[p][buffer_key] for p in params])
        torch.testing.assert_close(stats.momentum_norm, expected, rtol=1e-12, atol=0)

    if not case.adaptive:
        lr, mu, tau = group["lr"], group["momentum"], group["dampening"]
        steady = lr * (1 - tau) / (1 - mu) if mu else lr
        assert stats.effective_lr["lr"].tolist() == [lr] * len(params)
        assert stats.effective_lr["steady_state"].tolist() == pytest.approx(
            [steady] * len(params), rel=1e-15)
        assert stats.effective_lr_values is None
        return
    values = stats.effective_lr_values
    for p, v in zip(params, values, strict=True):
        expected = _expected_effective_lr(case, group, opt.state[p])
        torch.testing.assert_close(v, expected, rtol=1e-12, atol=0)
    summary = stats.effective_lr
    torch.testing.assert_close(summary["mean"], torch.stack([v.mean() for v in values]))
    assert torch.equal(summary["min"], torch.stack([v.min() for v in values]))
    assert torch.equal(summary["max"], torch.stack([v.max() for v in values]))
    for key, q in (("median", 0.5), ("p5", 0.05), ("p95", 0.95)):
        exact = torch.stack([v.flatten().quantile(q) for v in values])
        torch.testing.assert_close(summary[key], exact, rtol=1e-12, atol=0)


def test_stats_span_param_groups_and_skip_params_without_grad():
    problem = PROBLEMS["mlp"](F64)
    w1, b1, w2, b2 = problem.params
    opt = optimizers.build("momentum", [{"params": [w1, b1], "lr": 0.1},
                                        {"params": [w2, b2], "momentum": 0.0}])
    problem.set_grads(problem.params)
    b1.grad = None
    opt.request_stats()
    opt.step()
    stats = opt.last_stats
    assert [id(p) for p in stats.params] == [id(w1), id(w2), id(b2)]
    assert stats.group_index == [0, 1, 1]
    assert stats.effective_lr["lr"].tolist() == [0.1, 1e-3, 1e-3]
    assert stats.effective_lr["steady_state"].tolist() == pytest.approx([1.0, 1e-3,
                                                                         1e-3])
    # The second group has no momentum buffer: its entries are NaN.
    assert not math.isnan(stats.momentum_norm[0].item())
    assert all(math.isnan(x) for x in stats.momentum_norm[1:].tolist())


def test_quantiles_of_large_tensors_come_from_a_representative_sample():
    torch.manual_seed(0)
    p = torch.zeros(64, 32, 3, 3, requires_grad=True)  # 18432 elements > sample
    opt = optimizers.build("adam", [p])
    p.grad = torch.randn_like(p) * torch.logspace(-3, 1, 9).reshape(3, 3)
    opt.request_stats()
    opt.step()
    stats = opt.last_stats
    values = stats.effective_lr_values[0].flatten()
    assert values.numel() > instruments.QUANTILE_SAMPLE
    for key, q in (("median", 0.5), ("p5", 0.05), ("p95", 0.95)):
        rank = (values <= stats.effective_lr[key][0]).double().mean().item()
        assert abs(rank - q) <= 0.02, (key, rank)


@pytest.mark.parametrize("name", optimizers.available())
def test_requested_steps_never_synchronise_with_the_host(name):
    # On the meta device every value is unknown, so .item(), .tolist() or a
    # Python branch on a tensor would raise: a requested step must not need one.
    with pytest.raises(RuntimeError):
        torch.zeros(1, device="meta").item()
    p = torch.zeros(5000, 3, device="meta", requires_grad=True)
    q = torch.zeros(7, device="meta", requires_grad=True)
    opt = optimizers.build(name, [{"params": [p]}, {"params": [q], "lr": 0.5}],
                           weight_decay=0.1)
    for _ in range(2):
        p.grad, q.grad = torch.ones_like(p), torch.ones_like(q)
        opt.request_stats()
        opt.step()
    stats = opt.last_stats
    tensors = [stats.grad_norm, stats.update_norm, stats.param_norm,
               *stats.effective_lr.values()]
    assert all(t.device.type == "meta" and t.shape == (2,) for t in tensors)


@pytest.mark.parametrize("name", optimizers.available())
def test_empty_parameters_are_left_out(name):
    empty = torch.zeros(0, 4, requires_grad=True)
    full = torch.ones(3, requires_grad=True)
    opt = optimizers.build(name, [empty, full])
    empty.grad, full.grad = torch.zeros(0, 4), torch.ones(3)
    opt.request_stats()
    opt.step()
    assert [id(p) for p in opt.last_stats.params] == [id(full)]
