"""A submission that crashes as soon as it is imported."""

import torch

BATCH = torch.zeros(3) + torch.zeros(4)  # shape mismatch: raises on import


class BrokenSGD(torch.optim.Optimizer):
    pass
