"""Student Adam that counts steps once per param group."""

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
                lr=lr,
                betas=betas,
                eps=eps,
                weight_decay=weight_decay,
                amsgrad=amsgrad,
                t=0,
            ),
        )

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            group["t"] += 1
            t = group["t"]
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                s = self.state[p]
                if not s:
                    s.update(
                        m=torch.zeros_like(p),
                        v=torch.zeros_like(p),
                        vmax=torch.zeros_like(p),
                    )
                g = p.grad + group["weight_decay"] * p
                s["m"] = b1 * s["m"] + (1 - b1) * g
                s["v"] = b2 * s["v"] + (1 - b2) * g * g
                v = s["v"]
                if group["amsgrad"]:
                    s["vmax"] = torch.maximum(s["vmax"], v)
                    v = s["vmax"]
                m_hat = s["m"] / (1 - b1**t)
                v_hat = v / (1 - b2**t)
                p -= group["lr"] * m_hat / (v_hat.sqrt() + group["eps"])
