"""LightningModules: a shared image classifier, the CIFAR-10 CNN and the MLP."""

from models.base import ImageClassifier, lr_factor
from models.cnn import CNN, CNN_ARCHS
from models.mlp import MLP, MLP_ARCHS
from models.probes import GradientProbe

__all__ = [
    "CNN",
    "CNN_ARCHS",
    "MLP",
    "MLP_ARCHS",
    "GradientProbe",
    "ImageClassifier",
    "lr_factor",
]
