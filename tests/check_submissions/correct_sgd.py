"""A correct student SGD (plain, momentum and Nesterov), written with .data."""

from torch.optim import Optimizer


class StudentSGD(Optimizer):
    def __init__(
        self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False
    ):
        defaults = dict(
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            weight_decay=weight_decay,
            nesterov=nesterov,
        )
        super().__init__(params, defaults)

    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                d_p = p.grad.data
                if group["weight_decay"] != 0:
                    d_p = d_p + group["weight_decay"] * p.data
                if group["momentum"] != 0:
                    state = self.state[p]
                    if "momentum_buffer" not in state:
                        buf = state["momentum_buffer"] = d_p.clone()
                    else:
                        buf = state["momentum_buffer"]
                        buf.mul_(group["momentum"]).add_((1 - group["dampening"]) * d_p)
                    if group["nesterov"]:
                        d_p = d_p + group["momentum"] * buf
                    else:
                        d_p = buf
                p.data = p.data - group["lr"] * d_p
        return loss
