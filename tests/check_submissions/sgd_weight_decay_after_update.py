"""Student SGD that shrinks the weights after taking the gradient step."""

import torch


class DecaySGD(torch.optim.Optimizer):
    def __init__(self, params, lr=1e-3, weight_decay=0.0):
        super().__init__(params, {"lr": lr, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for w in group["params"]:
                if w.grad is None:
                    continue
                w -= group["lr"] * w.grad
                w -= group["lr"] * group["weight_decay"] * w
