"""The cache-tiled update paths equal torch.optim bit for bit.

Real models rarely cross the tile threshold in tests, so the tile size is shrunk
here until every layout occurs: tensors cut into several tiles, small tensors
gathered into one tile, non-contiguous tensors taken whole.
"""

from __future__ import annotations

import math

import pytest
import torch

import optimizers
from optimizers import base

SHAPES = [(40, 30), (7,), (300,), (33, 5)]
# id: (our name, torch's class, hyperparameters, L2 weight decay in the gradient)
CASES = {
    "momentum": ("sgd", torch.optim.SGD, {"momentum": 0.9}, 0.0),
    "nesterov": ("sgd", torch.optim.SGD,
                 {"momentum": 0.9, "nesterov": True, "weight_decay": 1e-2}, 1e-2),
    "dampened": ("sgd", torch.optim.SGD,
                 {"momentum": 0.5, "dampening": 0.3, "weight_decay": 1e-3}, 1e-3),
    "adagrad": ("adagrad", torch.optim.Adagrad,
                {"lr_decay": 1e-3, "weight_decay": 1e-3,
                 "initial_accumulator_value": 0.1}, 1e-3),
    "rmsprop": ("rmsprop", torch.optim.RMSprop, {"weight_decay": 1e-3}, 1e-3),
    "rmsprop-centered-momentum": ("rmsprop", torch.optim.RMSprop,
                                  {"centered": True, "momentum": 0.5}, 0.0),
    "adam-amsgrad": ("adam", torch.optim.Adam,
                     {"amsgrad": True, "weight_decay": 1e-3}, 1e-3),
    "adamw": ("adamw", torch.optim.AdamW, {"weight_decay": 1e-2}, 0.0),
}


def _params(dtype: torch.dtype) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    params = [torch.randn(s, generator=gen, dtype=dtype) for s in SHAPES]
    # a transposed, non-contiguous tensor must be taken whole
    params.append(torch.randn(20, 50, generator=gen, dtype=dtype).t())
    return params


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("case", sorted(CASES))
def test_tiled_update_matches_torch_bit_for_bit(
    monkeypatch: pytest.MonkeyPatch, case: str, dtype: torch.dtype
) -> None:
    monkeypatch.setattr(base, "TILE", 64)
    name, reference, extra, wd = CASES[case]
    hparams = {"lr": 0.05 if name == "sgd" else 1e-2, **extra}
    ours = [p.clone().requires_grad_() for p in _params(dtype)]
    theirs = [p.clone().requires_grad_() for p in _params(dtype)]
    opt = optimizers.build(name, ours, **hparams)
    ref = reference(theirs, foreach=True, **hparams)
    gen = torch.Generator().manual_seed(1)
    for step in range(60):
        for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            g = torch.randn(a.shape, generator=gen, dtype=dtype)
            a.grad, b.grad = g.clone(), g.clone()
            if i == 2 and step % 3 == 1:  # its step count (bias correction) lags
                a.grad = b.grad = None
        grads_before = [None if a.grad is None else a.grad.clone() for a in ours]
        before = [a.detach().clone() for a in ours]
        if step % 7 == 3:
            opt.request_stats()
        opt.step()
        ref.step()
        for a, b, g in zip(ours, theirs, grads_before, strict=True):
            assert torch.equal(a, b), f"step {step}: parameters differ"
            assert g is None or torch.equal(a.grad, g), f"step {step}: .grad written"
        if step % 7 == 3:
            stats = opt.last_stats
            moved = [i for i, g in enumerate(grads_before) if g is not None]
            assert [id(ours[i]) for i in moved] == [id(p) for p in stats.params]
            used = [grads_before[i] + wd * before[i] for i in moved]
            want_grad = torch.stack([u.norm() for u in used]).to(torch.float64)
            want_update = torch.stack(
                [(ours[i].detach() - before[i]).norm() for i in moved]
            ).to(torch.float64)
            tol = 1e-12 if dtype == torch.float64 else 1e-4
            got_grad = stats.grad_norm.to(torch.float64)
            got_update = stats.update_norm.to(torch.float64)
            torch.testing.assert_close(got_grad, want_grad, rtol=tol, atol=0)
            torch.testing.assert_close(got_update, want_update, rtol=tol, atol=0)


# op, extra keyword arguments, number of input lists
WRITE_INTO = [("sqrt", {}, 1), ("add", {"alpha": 0.9}, 2),
              ("addcmul", {"value": -1}, 3)]


@pytest.mark.parametrize(("op", "kwargs", "inputs"), WRITE_INTO,
                         ids=[w[0] for w in WRITE_INTO])
def test_write_into_gives_the_same_bits_per_tensor_and_multi_tensor(
    op: str, kwargs: dict, inputs: int
) -> None:
    # The multi-tensor branch is the one GPUs take; here it runs on CPU tensors.
    lists = [[t.abs() for t in _params(torch.float32)] for _ in range(inputs)]
    gen = torch.Generator().manual_seed(inputs)
    for tensors in lists[1:]:
        for t in tensors:
            t.copy_(torch.rand(t.shape, generator=gen))
    expected = [getattr(torch, op)(*args, **kwargs)
                for args in zip(*lists, strict=True)]
    for per_tensor in (True, False):
        out = [torch.full_like(t, math.nan) for t in lists[0]]
        base.write_into(out, op, *lists, per_tensor=per_tensor, **kwargs)
        for got, want in zip(out, expected, strict=True):
            assert torch.equal(got, want), f"{op}, per_tensor={per_tensor}"
