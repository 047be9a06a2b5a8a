"""A submission that normalises by a norm that is zero, so every update is NaN."""

import torch


class NanSGD(torch.optim.Optimizer):
    def __init__(self, params, lr=1e-3, weight_decay=0):
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                scale = (p.grad - p.grad).norm()
                p.sub_(group["lr"] * p.grad * scale / scale)
