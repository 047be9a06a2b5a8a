"""A correct student Adagrad."""

import torch
from torch.optim import Optimizer


class StudentAdagrad(Optimizer):
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
                initial_accumulator_value=initial_accumulator_value,
                eps=eps,
            ),
        )

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if len(state) == 0:
                    state["step"] = 0
                    state["sum"] = (
                        torch.ones_like(p) * group["initial_accumulator_value"]
                    )
                state["step"] += 1
                g = p.grad
                if group["weight_decay"]:
                    g = g + group["weight_decay"] * p
                lr_t = group["lr"] / (1 + (state["step"] - 1) * group["lr_decay"])
                state["sum"] += g * g
                p -= lr_t * g / (torch.sqrt(state["sum"]) + group["eps"])
