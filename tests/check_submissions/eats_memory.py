"""A submission that allocates far more memory than any sensible limit."""

import torch


class HungrySGD(torch.optim.Optimizer):
    def __init__(self, params, lr=1e-3, **kwargs):
        super().__init__(params, dict(lr=lr, **kwargs))

    def step(self, closure=None):
        self.hoard = [torch.empty(1 << 28) for _ in range(64)]  # 64 x 1 GiB
