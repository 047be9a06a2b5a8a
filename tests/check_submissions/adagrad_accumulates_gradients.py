"""Student Adagrad that sums the gradients instead of their squares."""

import torch


class MyAdagrad(torch.optim.Optimizer):
    def __init__(
        self,
        params,
        lr=0.01,
        lr_decay=0,
        weight_decay=0,
        initial_accumulator_value=0,
        eps=1e-10,
    ):
        super().__init__(
            params,
            dict(
                lr=lr,
                lr_decay=lr_decay,
                weight_decay=weight_decay,
                init=initial_accumulator_value,
                eps=eps,
            ),
        )

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                s = self.state[p]
                if not s:
                    s["n"] = 0
                    s["G"] = torch.full_like(p, group["init"])
                s["n"] += 1
                g = p.grad + group["weight_decay"] * p
                s["G"] += g
                lr = group["lr"] / (1 + (s["n"] - 1) * group["lr_decay"])
                p -= lr * g / (s["G"].sqrt() + group["eps"])
