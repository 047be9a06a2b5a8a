"""The rest of the torch.optim contract, the identities, convergence, bad input."""

from __future__ import annotations

import math

import pytest
import torch
from optimizer_cases import (
    ALGORITHMS,
    CASES,
    INVALID,
    PROBLEMS,
    QUADRATIC,
    ROSENBROCK,
    clone_params,
    max_rel_err,
    through_a_file,
)

import optimizers

F64 = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")


# --------------------------------------------------------------------------------------
# One step from a hand-set state, against the equations worked out in plain floats

THETA = [0.5, -1.0, 2.0]
GRAD = [0.1, -0.2, 0.3]


def _one_step(name, hparams, state):
    p = torch.tensor(THETA, dtype=F64, requires_grad=True)
    p.grad = torch.tensor(GRAD, dtype=F64)
    opt = optimizers.build(name, [p], **hparams)
    opt.state[p].update({k: torch.tensor(v, dtype=F64) if isinstance(v, list) else v
                         for k, v in state.items()})
    opt.step()
    return p.detach().tolist(), opt.state[p]


def _close(actual, expected):
    assert actual == pytest.approx(expected, rel=1e-14, abs=1e-15)


@pytest.mark.parametrize("nesterov", [False, True])
def test_one_step_sgd_momentum(nesterov):
    lr, mu, tau, lam = 0.1, 0.9, 0.0 if nesterov else 0.2, 0.01
    b0 = [0.2, 0.0, -0.1]
    new, state = _one_step("sgd", dict(lr=lr, momentum=mu, dampening=tau,
                                       weight_decay=lam, nesterov=nesterov),
                           {"momentum_buffer": b0})
    expected, buffer = [], []
    for th, g, b in zip(THETA, GRAD, b0, strict=True):
        g = g + lam * th
        b = mu * b + (1 - tau) * g
        d = g + mu * b if nesterov else b
        expected.append(th - lr * d)
        buffer.append(b)
    _close(new, expected)
    _close(state["momentum_buffer"].tolist(), buffer)


def test_first_momentum_step_starts_the_buffer_at_the_gradient():
    new, state = _one_step("sgd", dict(lr=0.1, momentum=0.9, dampening=0.5), {})
    _close(state["momentum_buffer"].tolist(), GRAD)  # no dampening on step 1
    _close(new, [th - 0.1 * g for th, g in zip(THETA, GRAD, strict=True)])


def test_one_step_adagrad():
    lr, eta, lam, eps = 0.1, 0.05, 0.01, 1e-3
    v0 = [0.3, 0.1, 0.2]
    new, state = _one_step("adagrad", dict(lr=lr, lr_decay=eta, weight_decay=lam,
                                           eps=eps), {"step": 4, "v": v0})
    lr_t = lr / (1 + 4 * eta)  # t = 5
    expected, acc = [], []
    for th, g, v in zip(THETA, GRAD, v0, strict=True):
        g = g + lam * th
        v = v + g * g
        expected.append(th - lr_t * g / (math.sqrt(v) + eps))
        acc.append(v)
    _close(new, expected)
    _close(state["v"].tolist(), acc)
    assert state["step"] == 5


@pytest.mark.parametrize("centered", [False, True])
def test_one_step_rmsprop(centered):
    lr, alpha, eps, lam, mu = 0.01, 0.9, 1e-4, 0.01, 0.5
    v0, m0, b0 = [0.3, 0.1, 0.2], [0.05, -0.1, 0.02], [0.01, 0.0, -0.03]
    state0 = {"step": 7, "v": v0, "momentum_buffer": b0}
    if centered:
        state0["m"] = m0
    new, state = _one_step("rmsprop", dict(lr=lr, alpha=alpha, eps=eps,
                                           weight_decay=lam, momentum=mu,
                                           centered=centered), state0)
    expected = []
    for th, g, v, m, b in zip(THETA, GRAD, v0, m0, b0, strict=True):
        g = g + lam * th
        v = alpha * v + (1 - alpha) * g * g
        m = alpha * m + (1 - alpha) * g
        v_hat = v - m * m if centered else v
        b = mu * b + g / (math.sqrt(v_hat) + eps)
        expected.append(th - lr * b)
    _close(new, expected)
    assert state["step"] == 8


@pytest.mark.parametrize("variant", ["l2", "decoupled", "amsgrad"])
def test_one_step_adam(variant):
    lr, b1, b2, eps, lam = 0.01, 0.8, 0.95, 1e-3, 0.1
    m0, v0, vmax0 = [0.05, -0.1, 0.02], [0.01, 0.04, 0.002], [0.02, 0.01, 0.003]
    hp = dict(lr=lr, betas=(b1, b2), eps=eps, weight_decay=lam,
              amsgrad=variant == "amsgrad",
              decoupled_weight_decay=variant == "decoupled")
    state0 = {"step": 9, "m": m0, "v": v0, "v_max": vmax0}
    new, state = _one_step("adam", hp, state0)
    t = 10
    expected = []
    for th, g, m, v, vmax in zip(THETA, GRAD, m0, v0, vmax0, strict=True):
        if variant == "decoupled":
            th = th * (1 - lr * lam)
        else:
            g = g + lam * th
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        if variant == "amsgrad":
            v = max(vmax, v)
        m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
        expected.append(th - lr * m_hat / (math.sqrt(v_hat) + eps))
    _close(new, expected)
    assert state["step"] == t


# --------------------------------------------------------------------------------------
# Identities


@pytest.mark.parametrize("dampening", [0.0, 0.3])
def test_momentum_zero_is_plain_sgd(dampening):
    problem = PROBLEMS["mlp"](F64)
    params, twin = problem.params, clone_params(problem.params)
    plain = optimizers.build("sgd", twin, lr=0.05, weight_decay=1e-2)
    zero = optimizers.build("momentum", params, lr=0.05, weight_decay=1e-2,
                            momentum=0.0, dampening=dampening)
    for _ in range(200):
        for opt, p in ((zero, params), (plain, twin)):
            problem.set_grads(p)
            opt.step()
    assert all(torch.equal(a, b) for a, b in zip(params, twin, strict=True))
    assert all("momentum_buffer" not in zero.state[p] for p in params)


def test_adam_with_beta1_zero_is_rmsprop_with_bias_corrected_lr_and_eps():
    """Adam(β₁ = 0, β₂ = α) and RMSProp(α) agree exactly when RMSProp's step t uses
    lr γ c_t and eps ε c_t with c_t = √(1 − αᵗ): Adam's step is
    γ g / (√v / c_t + ε) = γ c_t g / (√v + ε c_t), with the same v (m_t = g_t when
    β₁ = 0, and 1 − β₁ᵗ = 1). They never agree with constant lr and eps (t ≥ 1 gives
    c_t < 1), but the gap vanishes as t grows because c_t → 1.

    ε is chosen comparable to √v so that the dynamics contract: with a tiny ε both
    methods take sign-like steps near the minimum, and their (different) rounding
    would be amplified until the two trajectories part.
    """
    lr, alpha, eps = 0.01, 0.9, 0.1
    problem = PROBLEMS["least_squares"](F64)
    params, twin, plain_twin = (problem.params, clone_params(problem.params),
                                clone_params(problem.params))
    adam = optimizers.build("adam", params, lr=lr, betas=(0.0, alpha), eps=eps,
                            weight_decay=1e-2)
    rms = optimizers.build("rmsprop", twin, lr=lr, alpha=alpha, eps=eps,
                           weight_decay=1e-2)
    plain = optimizers.build("rmsprop", plain_twin, lr=lr, alpha=alpha, eps=eps,
                             weight_decay=1e-2)
    first_gap, errors = None, []
    for t in range(1, 301):
        c_t = math.sqrt(1 - alpha**t)
        rms.param_groups[0]["lr"] = lr * c_t
        rms.param_groups[0]["eps"] = eps * c_t
        for opt, p in ((adam, params), (rms, twin), (plain, plain_twin)):
            problem.set_grads(p)
            opt.step()
        errors.append(max_rel_err(twin, params))
        if first_gap is None:
            first_gap = max_rel_err(plain_twin, params)
    assert max(errors) <= 1e-12
    assert first_gap > 1e-3  # constant lr and eps really do differ


# --------------------------------------------------------------------------------------
# Convergence


def _rosenbrock_grad(x):
    a, b = x[0], x[1]
    return torch.stack([-2 * (1 - a) - 400 * a * (b - a * a), 200 * (b - a * a)])


_H = torch.linspace(1, 10, 10, dtype=F64)
_C = torch.linspace(-1, 1, 10, dtype=F64)


@pytest.mark.parametrize(
    "function", ["rosenbrock", "quadratic"]
)
@pytest.mark.parametrize("name", list(ROSENBROCK))
def test_converges(name, function):
    if function == "rosenbrock":
        setting, start, minimum, tol = ROSENBROCK[name], [-1.2, 1.0], [1.0, 1.0], 1e-2
        grad = _rosenbrock_grad
    else:
        setting, start, minimum, tol = QUADRATIC[name], [1.0] * 10, (_C / _H), 1e-6
        grad = lambda x: _H * x - _C  # noqa: E731
    x = torch.tensor(start, dtype=F64, requires_grad=True)
    opt = optimizers.build(name, [x], **setting.hparams)
    schedule = (torch.optim.lr_scheduler.CosineAnnealingLR(opt, setting.steps)
                if setting.cosine else None)
    for _ in range(setting.steps):
        x.grad = grad(x.detach())
        opt.step()
        if schedule:
            schedule.step()
    distance = (x.detach() - torch.as_tensor(minimum, dtype=F64)).norm().item()
    assert distance <= tol


# --------------------------------------------------------------------------------------
# state_dict


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_state_dict_round_trip_continues_bit_identically(case):
    problem = PROBLEMS["mlp"](F64)
    if case.hparams.get("maximize"):
        problem = problem.negated()
    params = problem.params
    opt = optimizers.build(case.name, params, **case.hparams)
    for _ in range(30):
        problem.set_grads(params)
        opt.step()
    restored_params = clone_params(params)
    restored = optimizers.build(case.name, restored_params, lr=123.0)
    restored.load_state_dict(through_a_file(opt.state_dict()))
    for _ in range(30):
        for o, p in ((opt, params), (restored, restored_params)):
            problem.set_grads(p)
            o.step()
        assert all(torch.equal(a, b) for a, b in
                   zip(params, restored_params, strict=True))
    # The restored state is a copy: it does not alias the original's tensors.
    for p, q in zip(params, restored_params, strict=True):
        for key, value in opt.state[p].items():
            if isinstance(value, torch.Tensor):
                assert value.data_ptr() != restored.state[q][key].data_ptr()


def test_state_dict_uses_symbol_names_and_an_int_step():
    p = torch.zeros(3, requires_grad=True)
    opt = optimizers.build("adam", [p], amsgrad=True)
    p.grad = torch.ones(3)
    opt.step()
    state = opt.state_dict()["state"][0]
    assert set(state) == {"step", "m", "v", "v_max"}
    assert state["step"] == 1 and isinstance(state["step"], int)


# --------------------------------------------------------------------------------------
# What steps skip and refuse


@pytest.mark.parametrize("name", list(ALGORITHMS))
def test_params_without_grad_are_skipped(name):
    case = ALGORITHMS[name]
    problem = PROBLEMS["mlp"](F64)
    params = problem.params
    opt = optimizers.build(case.name, params, **case.hparams)
    frozen = params[1].detach().clone()
    for _ in range(5):
        problem.set_grads(params)
        params[1].grad = None
        opt.step()
    assert torch.equal(params[1].detach(), frozen)
    assert len(opt.state[params[1]]) == 0
    assert len(opt.state[params[0]]) > 0 or case.name == "sgd"
    if "step" in opt.state[params[0]]:
        assert opt.state[params[0]]["step"] == 5


@pytest.mark.parametrize("name", list(ALGORITHMS))
def test_zero_grad_clears_gradients(name):
    p = torch.ones(3, requires_grad=True)
    opt = optimizers.build(name, [p])
    p.grad = torch.ones(3)
    opt.zero_grad()
    assert p.grad is None


@pytest.mark.parametrize("name", list(ALGORITHMS))
def test_sparse_gradients_raise_a_clear_error(name):
    embedding = torch.nn.Embedding(10, 3, sparse=True)
    opt = optimizers.build(name, embedding.parameters())
    embedding(torch.tensor([1, 2])).sum().backward()
    before = embedding.weight.detach().clone()
    with pytest.raises(RuntimeError, match="sparse gradients"):
        opt.step()
    assert torch.equal(embedding.weight.detach(), before)


def test_complex_parameters_are_refused():
    with pytest.raises(ValueError, match="complex"):
        optimizers.build("adam", [torch.zeros(2, dtype=torch.complex64)])


# --------------------------------------------------------------------------------------
# Invalid hyperparameters


@pytest.mark.parametrize("bad", INVALID, ids=[b.id for b in INVALID])
def test_invalid_hyperparameters_raise_naming_the_field(bad):
    p = torch.zeros(2, requires_grad=True)
    with pytest.raises(ValueError) as error:
        optimizers.build(bad.name, [p], **bad.hparams)
    message = str(error.value)
    assert bad.field in message
    if bad.kind == "range":
        value = list(bad.hparams.values())[0]
        if bad.field.endswith("]"):  # betas[i]: the message shows that element
            value = value[int(bad.field[-2])]
        assert f"{bad.field}={value!r}" in message
    elif bad.kind == "unknown":
        assert "unknown hyperparameter" in message


@pytest.mark.parametrize("bad", INVALID[:12], ids=[b.id for b in INVALID[:12]])
def test_invalid_hyperparameters_in_a_param_group_raise(bad):
    p, q = torch.zeros(2, requires_grad=True), torch.zeros(2, requires_grad=True)
    opt = optimizers.build(bad.name, [p])
    with pytest.raises(ValueError, match=bad.field.replace("[", r"\[")):
        opt.add_param_group({"params": [q], **bad.hparams})
    assert len(opt.param_groups) == 1


def test_out_of_range_values_set_by_hand_raise_at_the_next_step():
    p = torch.zeros(2, requires_grad=True)
    opt = optimizers.build("momentum", [p])
    p.grad = torch.ones(2)
    opt.step()
    opt.param_groups[0]["momentum"] = 1.2
    with pytest.raises(ValueError, match="momentum=1.2"):
        opt.step()


def test_error_messages_state_the_allowed_range():
    p = torch.zeros(2, requires_grad=True)
    with pytest.raises(ValueError, match=r"momentum=1\.5.*\[0, 1\)"):
        optimizers.build("momentum", [p], momentum=1.5)
    with pytest.raises(ValueError, match=r"lr=-1.*\[0, inf\)"):
        optimizers.build("adam", [p], lr=-1)
    with pytest.raises(ValueError, match="did you mean 'weight_decay'"):
        optimizers.build("adam", [p], weight_decai=0.1)


def test_direct_construction_validates_too():
    with pytest.raises(ValueError, match="alpha"):
        optimizers.RMSProp([torch.zeros(1, requires_grad=True)], alpha=1.5)
    with pytest.raises(ValueError, match="nesterov"):
        optimizers.SGD([torch.zeros(1, requires_grad=True)], nesterov=True)


def test_numpy_and_integer_hyperparameters_are_accepted():
    import numpy as np

    p = torch.zeros(2, requires_grad=True)
    opt = optimizers.build("adam", [p], lr=np.float32(0.01), betas=[0.9, 0.999],
                           weight_decay=0)
    p.grad = torch.ones(2)
    opt.step()
    assert p.detach().tolist() == pytest.approx([-0.01, -0.01], rel=1e-6)


@pytest.mark.parametrize("name", list(ALGORITHMS))
def test_a_deep_copy_steps_and_records_like_the_original(name):
    import copy

    case = ALGORITHMS[name]
    problem = PROBLEMS["mlp"](F64)
    opt = optimizers.build(case.name, problem.params, **case.hparams)
    for _ in range(3):
        problem.set_grads(problem.params)
        opt.step()
    twin = copy.deepcopy(opt)
    twin_params = [p for g in twin.param_groups for p in g["params"]]
    for o, params in ((opt, problem.params), (twin, twin_params)):
        problem.set_grads(params)
        o.request_stats()
        o.step()
    assert all(torch.equal(a, b) for a, b in
               zip(problem.params, twin_params, strict=True))
    assert torch.equal(opt.last_stats.update_norm, twin.last_stats.update_norm)
