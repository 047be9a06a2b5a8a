"""Student Adam that corrects each moment with the other's factor."""

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

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["t"] = 0
                    state["m"] = torch.zeros_like(p)
                    state["v"] = torch.zeros_like(p)
                    state["v_max"] = torch.zeros_like(p)
                state["t"] += 1
                t = state["t"]
                g = p.grad + group["weight_decay"] * p
                state["m"] = beta1 * state["m"] + (1 - beta1) * g
                state["v"] = beta2 * state["v"] + (1 - beta2) * g * g
                v = state["v"]
                if group["amsgrad"]:
                    state["v_max"] = torch.maximum(state["v_max"], v)
                    v = state["v_max"]
                m_hat = state["m"] / (1 - beta2**t)
                v_hat = v / (1 - beta1**t)
                p -= group["lr"] * m_hat / (v_hat.sqrt() + group["eps"])
