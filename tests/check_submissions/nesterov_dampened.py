"""Student Nesterov that dampens the buffer by (1 - momentum). Always Nesterov."""

import torch


class NesterovSGD(torch.optim.Optimizer):
    def __init__(self, params, lr=1e-3, momentum=0.9, weight_decay=0.0):
        super().__init__(
            params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay)
        )

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            mu = group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad + group["weight_decay"] * p
                st = self.state[p]
                if "buf" not in st:
                    st["buf"] = g.clone()
                else:
                    st["buf"] = mu * st["buf"] + (1 - mu) * g
                p -= group["lr"] * (g + mu * st["buf"])
