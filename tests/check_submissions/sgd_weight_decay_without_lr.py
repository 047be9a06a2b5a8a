"""Student SGD whose weight decay ignores the learning rate."""

import torch


class DecaySGD(torch.optim.Optimizer):
    def __init__(self, params, lr=1e-3, weight_decay=0.0):
        super().__init__(params, {"lr": lr, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for w in group["params"]:
                if w.grad is not None:
                    w.copy_(w - group["lr"] * w.grad - group["weight_decay"] * w)
