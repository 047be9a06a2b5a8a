"""Loading state_dicts: torch.optim's own, foreign ones, and param group keys."""

from __future__ import annotations

import pytest
import torch
from optimizer_cases import CASES, PROBLEMS, clone_params, through_a_file

import optimizers


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_a_torch_optim_state_dict_resumes_bit_identically(case):
    """Train torch.optim's twin, load its state_dict into ours: both go on alike."""
    problem = PROBLEMS["mlp"](torch.float64)
    if case.hparams.get("maximize"):
        problem = problem.negated()
    theirs = problem.params
    ref = case.reference(theirs, foreach=True, **case.reference_hparams)
    for _ in range(20):
        problem.set_grads(theirs)
        ref.step()
    ours = clone_params(theirs)
    opt = optimizers.build(case.name, ours, lr=123.0)
    opt.load_state_dict(through_a_file(ref.state_dict()))
    for _ in range(20):
        for o, p in ((ref, theirs), (opt, ours)):
            problem.set_grads(p)
            o.step()
        assert all(torch.equal(a, b) for a, b in zip(theirs, ours, strict=True))
    assert all(isinstance(s.get("step", 0), int) for s in opt.state.values())


# (saved by, loaded into, key the message must name)
FOREIGN = [
    (lambda p: torch.optim.Adam(p), "rmsprop", "alpha"),
    (lambda p: optimizers.build("adam", p), "adagrad", "lr_decay"),
    (lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9), "adam", "betas"),
]


@pytest.mark.parametrize(("saver", "name", "key"), FOREIGN)
def test_a_foreign_state_dict_is_refused_naming_the_missing_key(saver, name, key):
    p = torch.ones(3, requires_grad=True)
    saved = saver([p])
    p.grad = torch.ones(3)
    saved.step()
    q = torch.ones(3, requires_grad=True)
    opt = optimizers.build(name, [q], lr=0.5)
    before = opt.state_dict()
    with pytest.raises(ValueError, match=rf"'{key}'.*another optimizer"):
        opt.load_state_dict(saved.state_dict())
    assert opt.state_dict() == before  # nothing changed


def test_state_with_foreign_names_is_refused_naming_the_key():
    p = torch.ones(3, requires_grad=True)
    opt = optimizers.build("adam", [p])
    saved = opt.state_dict()
    saved["state"] = {0: {"step": 1, "momentum_buffer": torch.zeros(3)}}
    with pytest.raises(ValueError, match=r"parameter 0 has no 'm'"):
        opt.load_state_dict(saved)


@pytest.mark.parametrize(("name", "key"), [("adam", "momentum"), ("sgd", "betas"),
                                           ("sgd", "moment"), ("adam", "weight_decy")])
def test_a_param_group_key_that_would_be_ignored_is_refused(name, key):
    opt = optimizers.build(name, [torch.ones(2, requires_grad=True)], lr=0.1)
    message = rf"param group: unknown hyperparameter '{key}'"
    with pytest.raises(ValueError, match=message):
        opt.add_param_group({"params": [torch.ones(2, requires_grad=True)], key: 0.9})


def test_other_param_group_keys_are_kept():
    opt = optimizers.build("adam", [torch.ones(2, requires_grad=True)])
    opt.add_param_group({"params": [torch.ones(2, requires_grad=True)],
                         "name": "head"})
    assert opt.param_groups[1]["name"] == "head"
