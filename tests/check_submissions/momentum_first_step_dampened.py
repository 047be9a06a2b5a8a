"""Student momentum SGD whose buffer starts at zero, so dampening hits step one."""

import torch


class MomentumSGD(torch.optim.Optimizer):
    def __init__(self, params, lr=1e-3, momentum=0.9, dampening=0.0, weight_decay=0.0):
        super().__init__(
            params,
            dict(
                lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay
            ),
        )

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad + group["weight_decay"] * p
                if p not in self.state or "v" not in self.state[p]:
                    self.state[p]["v"] = torch.zeros_like(p)
                v = self.state[p]["v"]
                v.mul_(group["momentum"]).add_((1 - group["dampening"]) * g)
                p.sub_(group["lr"] * v)
