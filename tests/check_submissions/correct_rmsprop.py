"""A correct student RMSProp (centered and momentum included)."""

import torch
from torch.optim import Optimizer


class StudentRMSprop(Optimizer):
    def __init__(
        self,
        params,
        lr=0.01,
        alpha=0.99,
        eps=1e-8,
        weight_decay=0,
        momentum=0,
        centered=False,
    ):
        super().__init__(
            params,
            dict(
                lr=lr,
                alpha=alpha,
                eps=eps,
                weight_decay=weight_decay,
                momentum=momentum,
                centered=centered,
            ),
        )

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            a = group["alpha"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                s = self.state[p]
                if not s:
                    s["v"] = torch.zeros_like(p)
                    s["mean"] = torch.zeros_like(p)
                    s["buf"] = torch.zeros_like(p)
                g = p.grad
                if group["weight_decay"]:
                    g = g + group["weight_decay"] * p
                s["v"] = a * s["v"] + (1 - a) * g * g
                var = s["v"]
                if group["centered"]:
                    s["mean"] = a * s["mean"] + (1 - a) * g
                    var = var - s["mean"] ** 2
                denom = var.sqrt() + group["eps"]
                if group["momentum"] > 0:
                    s["buf"] = group["momentum"] * s["buf"] + g / denom
                    p -= group["lr"] * s["buf"]
                else:
                    p -= group["lr"] * g / denom
