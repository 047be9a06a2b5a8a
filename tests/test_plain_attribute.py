"""PlainAttributeMixin assigns exactly as ``torch.nn.Module.__setattr__`` would.

Every case is run on a module with the mixin and on the same module without it;
the outcome (the value read back, where it is registered, or the error type) must
be the same.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from models.base import ImageClassifier, PlainAttributeMixin


class _Plain(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(2))
        self.register_buffer("running", torch.zeros(2))
        self.child = nn.Linear(2, 2)
        self.tag = "start"


class _Mixed(PlainAttributeMixin, _Plain):
    pass


def _shown(value):
    return type(value) if isinstance(value, (torch.Tensor, nn.Module)) else value


def _outcome(module: nn.Module, name: str, value) -> tuple:
    """What an assignment did: the error type, or where the name now lives.

    Where: the value read back, and for each of the parameter, buffer and module
    registries and the instance ``__dict__``, what it holds under the name.
    """
    try:
        setattr(module, name, value)
    except (TypeError, AttributeError) as error:
        return ("error", type(error).__name__)
    missing = "<absent>"
    places = (module._parameters, module._buffers, module._modules, module.__dict__)
    return (_shown(getattr(module, name)),) + tuple(
        _shown(place.get(name, missing)) for place in places
    )


CASES = [
    # (attribute, value)
    ("tag", "hook_name"),
    ("tag", None),
    ("fresh", 3),
    ("fresh", 2.5),
    ("fresh", True),
    ("fresh", None),
    ("weight", None),  # unregisters the parameter value, keeps the name
    ("weight", "oops"),  # TypeError: parameter expects Parameter or None
    ("weight", 1.0),
    ("running", None),
    ("running", "oops"),  # TypeError: buffer expects a tensor or None
    ("child", None),
    ("child", 7),  # TypeError: child module expects Module or None
    ("fresh", torch.ones(1)),
    ("fresh", nn.Parameter(torch.ones(1))),
    ("fresh", nn.ReLU()),
    ("training", False),
]


@pytest.mark.parametrize(("name", "value"), CASES)
def test_same_outcome_as_nn_module(name, value):
    assert _outcome(_Mixed(), name, value) == _outcome(_Plain(), name, value)


def test_plain_value_skips_module_setattr(monkeypatch):
    calls = []
    original = nn.Module.__setattr__

    def counting(self, name, value):
        calls.append(name)
        original(self, name, value)

    monkeypatch.setattr(nn.Module, "__setattr__", counting)
    module = _Mixed()
    calls.clear()
    module._current_fx_name = "training_step"
    module.fresh = torch.ones(1)  # tensors keep the nn.Module path
    assert calls == ["fresh"]
    assert module._current_fx_name == "training_step"


def test_image_classifier_uses_the_mixin():
    assert issubclass(ImageClassifier, PlainAttributeMixin)
    assert ImageClassifier.__mro__.index(PlainAttributeMixin) < (
        ImageClassifier.__mro__.index(nn.Module)
    )
