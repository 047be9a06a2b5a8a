"""Student momentum that scales by the learning rate in the buffer and in the step."""

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
            mu, lr = group["momentum"], group["lr"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad + group["weight_decay"] * p
                st = self.state[p]
                if "velocity" in st:
                    st["velocity"] = (
                        mu * st["velocity"] + (1 - group["dampening"]) * lr * g
                    )
                else:
                    st["velocity"] = lr * g
                p -= lr * st["velocity"]
