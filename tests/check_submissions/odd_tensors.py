"""Correct SGD steps that leave odd tensors behind for the grader to read.

The grader must name what was left (a sparse .grad, no .grad, a float32
parameter) as the submission's finding, never fail in its own comparisons.
"""

import torch


class SparseGradSGD(torch.optim.SGD):
    def step(self, closure=None):
        loss = super().step(closure)
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.grad = p.grad.to_sparse()
        return loss


class NoGradSGD(torch.optim.SGD):
    def step(self, closure=None):
        loss = super().step(closure)
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None
        return loss


class Float32SGD(torch.optim.SGD):
    def step(self, closure=None):
        loss = super().step(closure)
        for group in self.param_groups:
            for p in group["params"]:
                p.data = p.data.float()
        return loss
