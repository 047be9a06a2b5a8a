"""Our optimizers follow torch.optim's trajectories element for element.

Every case of ``optimizer_cases.CASES`` runs 500 steps on a least-squares problem
and on a small MLP, in float64 (max relative error <= 1e-10) and float32 (<= 1e-5),
against torch's for-loop implementation on one problem and its foreach one on the
other. The representative of each algorithm also runs with two param groups of
different settings, an LR scheduler that changes lr every step, non-contiguous
parameters, hyperparameters changed by hand, a param group added mid-run, and
closures.
"""

from __future__ import annotations

import math

import pytest
import torch
from optimizer_cases import (
    ALGORITHMS,
    CASES,
    PROBLEMS,
    STEPS,
    Case,
    clone_params,
    max_rel_err,
    non_contiguous,
)

import optimizers

TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-5}


pytestmark = pytest.mark.usefixtures("one_thread")


def _step_both(pairs, problem, params_ours, params_ref):
    for opt, params in zip(pairs, (params_ours, params_ref), strict=True):
        problem.set_grads(params)
        opt.step()


def _run(case: Case, problem, dtype, *, foreach: bool, steps: int = STEPS,
         groups=None, scheduler=None, each_step=None) -> float:
    problem = problem(dtype)
    if case.hparams.get("maximize"):
        problem = problem.negated()  # maximise -f, which is bounded above
    params = problem.params
    twin = clone_params(params)
    if groups is None:
        ours = optimizers.build(case.name, params, **case.hparams)
        ref = case.reference(twin, foreach=foreach, **case.reference_hparams)
    else:
        ours = optimizers.build(case.name, groups(params), **case.hparams)
        ref = case.reference(groups(twin), foreach=foreach, **case.reference_hparams)
    schedulers = [scheduler(o) for o in (ours, ref)] if scheduler else []
    worst = 0.0
    for t in range(steps):
        if each_step is not None:
            each_step(t, ours, ref)
        _step_both((ours, ref), problem, params, twin)
        for s in schedulers:
            s.step()
        if t % 25 == 0 or t == steps - 1:
            worst = max(worst, max_rel_err(params, twin))
    assert all(math.isfinite(p.detach().abs().max().item()) for p in params)
    return worst


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("problem", list(PROBLEMS))
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_equals_torch(case, problem, dtype):
    foreach = problem == "least_squares"
    err = _run(case, PROBLEMS[problem], dtype, foreach=foreach)
    assert err <= TOLERANCE[dtype], f"max relative error {err:.3g}"


def _two_groups(params):
    # The first layer gets its own learning rate and no weight decay.
    return [{"params": params[:2], "lr": 0.02, "weight_decay": 0.0},
            {"params": params[2:]}]


def _wavy_lr(optimizer):
    # Changes lr every step (and not monotonically).
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda t: (1 + 0.5 * math.sin(t)) / (1 + 0.01 * t)
    )


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("name", list(ALGORITHMS))
def test_equals_torch_with_two_groups_and_a_scheduler(name, dtype):
    err = _run(ALGORITHMS[name], PROBLEMS["mlp"], dtype, foreach=False,
               groups=_two_groups, scheduler=_wavy_lr)
    assert err <= TOLERANCE[dtype], f"max relative error {err:.3g}"


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("name", list(ALGORITHMS))
def test_equals_torch_on_non_contiguous_params(name, dtype):
    err = _run(ALGORITHMS[name], non_contiguous, dtype, foreach=True,
               groups=_two_groups, scheduler=_wavy_lr)
    assert err <= TOLERANCE[dtype], f"max relative error {err:.3g}"


def _retune(t, *opts):
    # Hyperparameters changed by hand between steps, the same on both sides.
    for opt in opts:
        for group in opt.param_groups:
            group["lr"] *= 0.995
            if t == 100:
                group["weight_decay"] = 5e-3
            if t == 200 and group.get("momentum", 0) > 0:
                group["momentum"] = 0.6
            if t == 200 and "betas" in group:
                group["betas"] = (0.8, 0.99)
            if t == 300 and "eps" in group:
                group["eps"] = 1e-4


@pytest.mark.parametrize("name", list(ALGORITHMS))
def test_hyperparameters_changed_by_hand_are_honoured(name):
    err = _run(ALGORITHMS[name], PROBLEMS["mlp"], torch.float64, foreach=False,
               each_step=_retune)
    assert err <= TOLERANCE[torch.float64]


@pytest.mark.parametrize("name", list(ALGORITHMS))
def test_param_group_added_mid_run(name):
    case = ALGORITHMS[name]
    problem = PROBLEMS["mlp"](torch.float64)
    params = problem.params
    twin = clone_params(params)
    ours = optimizers.build(case.name, params[:2], **case.hparams)
    ref = case.reference(twin[:2], **case.reference_hparams)
    for t in range(120):
        if t == 40:
            ours.add_param_group({"params": params[2:], "lr": 0.003})
            ref.add_param_group({"params": twin[2:], "lr": 0.003})
        _step_both((ours, ref), problem, params, twin)
    assert max_rel_err(params, twin) <= TOLERANCE[torch.float64]


@pytest.mark.parametrize("problem", [*PROBLEMS.values(), non_contiguous])
def test_hand_gradients_equal_autograd(problem):
    problem = problem(torch.float64)
    problem.loss(problem.params).backward()
    for p, g in zip(problem.params, problem.grads(problem.params), strict=True):
        torch.testing.assert_close(g, p.grad, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", list(ALGORITHMS))
def test_closure_is_evaluated_once_and_its_loss_returned(name):
    case = ALGORITHMS[name]
    problem = PROBLEMS["least_squares"](torch.float64)
    params, loss_fn = problem.params, problem.loss
    twin = clone_params(params)
    ours = optimizers.build(case.name, params, **case.hparams)
    ref = case.reference(twin, **case.reference_hparams)
    calls = []

    def closure_for(opt, p):
        def closure():
            calls.append(opt)
            opt.zero_grad()
            loss = loss_fn(p)
            loss.backward()
            return loss
        return closure

    for _ in range(50):
        loss_ours = ours.step(closure_for(ours, params))
        loss_ref = ref.step(closure_for(ref, twin))
        assert loss_ours.item() == loss_ref.item()
    assert calls.count(ours) == 50
    assert max_rel_err(params, twin) <= TOLERANCE[torch.float64]
