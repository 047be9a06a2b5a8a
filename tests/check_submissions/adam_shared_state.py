"""Student Adam that keys its moments by the parameter's shape."""

import torch


class MyAdam(torch.optim.Optimizer):
    def __init__(
        self,
        params,
        lr=1e-3,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=0,
        amsgrad=False,
    ):
        super().__init__(
            params,
            dict(
                lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad
            ),
        )
        self.moments = {}

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                key = tuple(p.shape)
                if key not in self.moments:
                    self.moments[key] = dict(
                        t=0,
                        m=torch.zeros_like(p),
                        v=torch.zeros_like(p),
                        vmax=torch.zeros_like(p),
                    )
                s = self.moments[key]
                s["t"] += 1
                g = p.grad + group["weight_decay"] * p
                s["m"] = b1 * s["m"] + (1 - b1) * g
                s["v"] = b2 * s["v"] + (1 - b2) * g * g
                v = s["v"]
                if group["amsgrad"]:
                    s["vmax"] = torch.maximum(s["vmax"], v)
                    v = s["vmax"]
                m_hat = s["m"] / (1 - b1 ** s["t"])
                v_hat = v / (1 - b2 ** s["t"])
                p -= group["lr"] * m_hat / (v_hat.sqrt() + group["eps"])
