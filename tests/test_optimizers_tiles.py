"""The cache-tiled SGD path equals torch.optim bit for bit.

Real models rarely cross the tile threshold in tests, so the tile size is shrunk
here until every layout occurs: tensors cut into several tiles, small tensors
gathered into one tile, non-contiguous tensors taken whole.
"""

from __future__ import annotations

import pytest
import torch

import optimizers
from optimizers import base

SHAPES = [(40, 30), (7,), (300,), (33, 5)]
CASES = {
    "momentum": {"momentum": 0.9},
    "nesterov": {"momentum": 0.9, "nesterov": True, "weight_decay": 1e-2},
    "dampened": {"momentum": 0.5, "dampening": 0.3, "weight_decay": 1e-3},
}


def _params(dtype: torch.dtype) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    params = [torch.randn(s, generator=gen, dtype=dtype) for s in SHAPES]
    # a transposed, non-contiguous tensor must be taken whole
    params.append(torch.randn(20, 50, generator=gen, dtype=dtype).t())
    return params


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("case", sorted(CASES))
def test_tiled_sgd_matches_torch_bit_for_bit(
    monkeypatch: pytest.MonkeyPatch, case: str, dtype: torch.dtype
) -> None:
    monkeypatch.setattr(base, "TILE", 64)
    hparams = {"lr": 0.05, **CASES[case]}
    ours = [p.clone().requires_grad_() for p in _params(dtype)]
    theirs = [p.clone().requires_grad_() for p in _params(dtype)]
    opt = optimizers.build("sgd", ours, **hparams)
    ref = torch.optim.SGD(theirs, foreach=True, **hparams)
    gen = torch.Generator().manual_seed(1)
    for step in range(60):
        for a, b in zip(ours, theirs, strict=True):
            g = torch.randn(a.shape, generator=gen, dtype=dtype)
            a.grad, b.grad = g.clone(), g.clone()
        grads_before = [a.grad.clone() for a in ours]
        before = [a.detach().clone() for a in ours]
        if step % 7 == 3:
            opt.request_stats()
        opt.step()
        ref.step()
        for a, b, g in zip(ours, theirs, grads_before, strict=True):
            assert torch.equal(a, b), f"step {step}: parameters differ"
            assert torch.equal(a.grad, g), f"step {step}: .grad was written"
        if step % 7 == 3:
            stats = opt.last_stats
            wd = hparams.get("weight_decay", 0.0)
            used = [g + wd * p for g, p in zip(grads_before, before, strict=True)]
            want_grad = torch.stack([u.norm() for u in used]).to(torch.float64)
            want_update = torch.stack(
                [(a.detach() - p).norm() for a, p in zip(ours, before, strict=True)]
            ).to(torch.float64)
            tol = 1e-12 if dtype == torch.float64 else 1e-4
            got_grad = stats.grad_norm.to(torch.float64)
            got_update = stats.update_norm.to(torch.float64)
            torch.testing.assert_close(got_grad, want_grad, rtol=tol, atol=0)
            torch.testing.assert_close(got_update, want_update, rtol=tol, atol=0)
