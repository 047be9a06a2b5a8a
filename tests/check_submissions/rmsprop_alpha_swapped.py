"""Student RMSProp that swaps alpha and (1 - alpha) in the square average."""

import torch


class MyRMSprop(torch.optim.Optimizer):
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
                s = self.state.setdefault(p, {})
                if "sq" not in s:
                    s.update(
                        sq=torch.zeros_like(p),
                        avg=torch.zeros_like(p),
                        buf=torch.zeros_like(p),
                    )
                g = p.grad + group["weight_decay"] * p
                s["sq"] = (1 - a) * s["sq"] + a * g * g
                var = s["sq"]
                if group["centered"]:
                    s["avg"] = a * s["avg"] + (1 - a) * g
                    var = var - s["avg"] * s["avg"]
                step = g / (var.sqrt() + group["eps"])
                if group["momentum"] > 0:
                    s["buf"] = group["momentum"] * s["buf"] + step
                    step = s["buf"]
                p -= group["lr"] * step
