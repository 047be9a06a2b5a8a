"""Student momentum SGD that adds weight decay to the step, not to the gradient."""

import torch


class MomentumSGD(torch.optim.Optimizer):
    def __init__(self, params, lr=1e-3, momentum=0.9, dampening=0.0, weight_decay=0.0):
        super().__init__(
            params,
            dict(
                lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay
            ),
        )

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                st = self.state[p]
                if "buf" not in st:
                    st["buf"] = p.grad.clone()
                else:
                    st["buf"] = (
                        group["momentum"] * st["buf"]
                        + (1 - group["dampening"]) * p.grad
                    )
                update = st["buf"] + group["weight_decay"] * p
                p -= group["lr"] * update
