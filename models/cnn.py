"""Convolutional networks for CIFAR-10 (3 x 32 x 32 inputs, 10 classes)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from models.base import ImageClassifier

CNN_ARCHS = ("default", "cifar10_3c3d")


class CNN(ImageClassifier):
    """CIFAR-10 classifier; the architecture is chosen by ``arch``.

    ``default`` (620,362 parameters)::

        conv1 3->32   3x3 pad 1, ReLU, maxpool 2   32x32 -> 16x16
        conv2 32->64  3x3 pad 1, ReLU, maxpool 2   16x16 -> 8x8
        conv3 64->128 3x3 pad 1, ReLU, maxpool 2   8x8   -> 4x4
        fc1   2048->256, ReLU
        fc2   256->10

    ``cifar10_3c3d`` (895,210 parameters), the DeepOBS test problem of Schneider,
    Balles & Hennig (2019)::

        conv1 3->64   5x5 valid, ReLU, maxpool 3 stride 2 "same"   32 -> 28 -> 14
        conv2 64->96  3x3 valid, ReLU, maxpool 3 stride 2 "same"   14 -> 12 -> 6
        conv3 96->128 3x3 pad 1, ReLU, maxpool 3 stride 2 "same"    6 ->  6 -> 3
        fc1 1152->512, ReLU;  fc2 512->256, ReLU;  fc3 256->10

    TensorFlow's "same" pooling pads only on the right/bottom here, which is what
    ``ceil_mode=True`` does. (DeepOBS also adds L2 weight decay 0.002; pass it as
    the optimizer's ``weight_decay`` if wanted.)

    There is no BatchNorm (nor dropout): the output of a sample depends on that
    sample only, so per-sample gradient statistics are defined and full-batch
    gradient descent accumulated over chunks is exactly gradient descent on the
    mean loss.

    With ``channels_last`` (default) the weights and inputs use the NHWC memory
    layout, which the CPU convolution kernels run faster.
    """

    def __init__(
        self,
        arch: str = "default",
        channels_last: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if arch not in CNN_ARCHS:
            raise ValueError(f"arch={arch!r} is not a CNN architecture; use one of "
                             f"{CNN_ARCHS}")
        self.arch = arch
        self.channels_last = channels_last
        if arch == "default":
            self.conv1 = nn.Conv2d(3, 32, 3, padding=1)
            self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
            self.conv3 = nn.Conv2d(64, 128, 3, padding=1)
            self.fc1 = nn.Linear(128 * 4 * 4, 256)
            self.fc2 = nn.Linear(256, self.num_classes)
            self.pool = nn.MaxPool2d(2)
            self.head = [self.fc1, self.fc2]
        else:
            self.conv1 = nn.Conv2d(3, 64, 5)
            self.conv2 = nn.Conv2d(64, 96, 3)
            self.conv3 = nn.Conv2d(96, 128, 3, padding=1)
            self.fc1 = nn.Linear(128 * 3 * 3, 512)
            self.fc2 = nn.Linear(512, 256)
            self.fc3 = nn.Linear(256, self.num_classes)
            self.pool = nn.MaxPool2d(3, stride=2, ceil_mode=True)
            self.head = [self.fc1, self.fc2, self.fc3]
        if channels_last:
            self.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        # relu(maxpool(z)) == maxpool(relu(z)) since relu is monotone; pooling first
        # applies the ReLU (and its backward) to a quarter of the elements. In place
        # is safe: convolution and linear backward need their inputs, not outputs.
        for conv in (self.conv1, self.conv2, self.conv3):
            x = F.relu(self.pool(conv(x)), inplace=True)
        x = x.flatten(1)
        for layer in self.head[:-1]:
            x = F.relu(layer(x), inplace=True)
        return self.head[-1](x)
