"""A correct student Adam (with AMSGrad), written with m_hat and v_hat."""

import torch
from torch.optim import Optimizer


class StudentAdam(Optimizer):
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

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                st = self.state[p]
                if not st:
                    st["t"] = 0
                    st["m"] = torch.zeros_like(p)
                    st["v"] = torch.zeros_like(p)
                    st["vmax"] = torch.zeros_like(p)
                st["t"] += 1
                t = st["t"]
                g = p.grad + group["weight_decay"] * p
                st["m"] = b1 * st["m"] + (1 - b1) * g
                st["v"] = b2 * st["v"] + (1 - b2) * g**2
                m_hat = st["m"] / (1 - b1**t)
                if group["amsgrad"]:
                    st["vmax"] = torch.maximum(st["vmax"], st["v"])
                    v_hat = st["vmax"] / (1 - b2**t)
                else:
                    v_hat = st["v"] / (1 - b2**t)
                p -= group["lr"] * m_hat / (torch.sqrt(v_hat) + group["eps"])
