"""Multilayer perceptrons for Fashion-MNIST (1 x 28 x 28 inputs, 10 classes)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from models.base import ImageClassifier

# arch -> hidden widths
MLP_ARCHS: dict[str, tuple[int, ...]] = {
    "default": (256, 128),
    "fmnist_mlp": (1000, 500, 100),
}


class MLP(ImageClassifier):
    """Fully connected ReLU network on flattened images.

    ``default`` is 784-256-128-10 (235,146 parameters); ``fmnist_mlp`` is the
    DeepOBS test problem of Schneider, Balles & Hennig (2019), 784-1000-500-100-10
    (1,336,610 parameters). ``hidden`` replaces the arch's hidden widths.
    Layers are named ``fc1``, ``fc2``, ... and the output layer ``out``.
    """

    def __init__(
        self,
        arch: str = "default",
        hidden: Sequence[int] | None = None,
        in_features: int = 28 * 28,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if arch not in MLP_ARCHS:
            raise ValueError(
                f"arch={arch!r} is not an MLP architecture; use one of "
                f"{tuple(MLP_ARCHS)}"
            )
        widths = tuple(MLP_ARCHS[arch] if hidden is None else hidden)
        if not widths or any(int(w) < 1 for w in widths):
            raise ValueError(
                f"hidden={hidden!r} must be one or more positive layer widths"
            )
        self.arch = arch
        self.hidden = tuple(int(w) for w in widths)
        sizes = (in_features, *self.hidden)
        # Plain attributes (not a ModuleList) so parameter names read fc1.weight.
        self.hidden_layers: list[nn.Linear] = []
        for index in range(1, len(sizes)):
            layer = nn.Linear(sizes[index - 1], sizes[index])
            setattr(self, f"fc{index}", layer)
            self.hidden_layers.append(layer)
        self.out = nn.Linear(sizes[-1], self.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        for layer in self.hidden_layers:
            x = F.relu(layer(x))
        return self.out(x)
