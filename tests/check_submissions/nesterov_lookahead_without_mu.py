"""Student Nesterov whose look-ahead adds the buffer without the momentum factor."""

import torch


class NesterovSGD(torch.optim.Optimizer):
    def __init__(self, params, lr=1e-3, momentum=0.9, weight_decay=0.0, nesterov=True):
        super().__init__(
            params,
            dict(
                lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov
            ),
        )

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad + group["weight_decay"] * p
                st = self.state[p]
                st["buf"] = (
                    g.clone() if "buf" not in st else group["momentum"] * st["buf"] + g
                )
                p -= group["lr"] * (g + st["buf"])
