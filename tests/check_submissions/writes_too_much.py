"""A correct SGD that floods its output (or a file of its own) on every step.

Used with a small file-size limit: the grader must say its own limit was hit,
not blame the submission's print or write.
"""

import torch

CHUNK = "x" * 65536


class LoudSGD(torch.optim.SGD):
    def step(self, closure=None):
        for _ in range(24):  # 1.5 MiB per step
            print(CHUNK)
        return super().step(closure)


class HoarderSGD(torch.optim.SGD):
    def step(self, closure=None):
        with open("hoard.txt", "a") as hoard:
            for _ in range(24):
                hoard.write(CHUNK)
        return super().step(closure)
