"""Student Adam that decays the weights directly, AdamW style."""

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
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                s = self.state[p]
                if not s:
                    s.update(
                        step=0,
                        m=torch.zeros_like(p),
                        v=torch.zeros_like(p),
                        vmax=torch.zeros_like(p),
                    )
                s["step"] += 1
                p.mul_(1 - group["lr"] * group["weight_decay"])
                s["m"].mul_(b1).add_((1 - b1) * p.grad)
                s["v"].mul_(b2).add_((1 - b2) * p.grad**2)
                v = s["v"]
                if group["amsgrad"]:
                    s["vmax"] = torch.maximum(s["vmax"], v)
                    v = s["vmax"]
                m_hat = s["m"] / (1 - b1 ** s["step"])
                v_hat = v / (1 - b2 ** s["step"])
                p.sub_(group["lr"] * m_hat / (v_hat.sqrt() + group["eps"]))
