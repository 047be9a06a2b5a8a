"""build / available / register, and the package.module:Class loader."""

from __future__ import annotations

import inspect
import textwrap

import pytest
import torch

import optimizers

NAMES = ["adagrad", "adam", "adamw", "momentum", "nesterov", "rmsprop", "sgd"]

# Each name and the torch.optim configuration whose defaults it must equal.
TWINS = {
    "sgd": (torch.optim.SGD, {}),
    "momentum": (torch.optim.SGD, {"momentum": 0.9}),
    "nesterov": (torch.optim.SGD, {"momentum": 0.9, "nesterov": True}),
    "adagrad": (torch.optim.Adagrad, {}),
    "rmsprop": (torch.optim.RMSprop, {}),
    "adam": (torch.optim.Adam, {}),
    "adamw": (torch.optim.AdamW, {}),
}


def _param():
    return torch.zeros(3, requires_grad=True)


def test_available_lists_the_seven_names():
    assert set(NAMES) <= set(optimizers.available())
    assert optimizers.available() == sorted(optimizers.available())


@pytest.mark.parametrize("name", NAMES)
def test_defaults_equal_torch(name):
    ours = optimizers.build(name, [_param()])
    assert isinstance(ours, optimizers.Optimizer)
    cls, extra = TWINS[name]
    theirs = cls([_param()], **extra)
    group, reference = ours.param_groups[0], theirs.param_groups[0]
    shared = set(group) & set(reference) - {"params"}
    assert {"lr", "weight_decay"} <= shared
    for key in shared:
        assert group[key] == reference[key], key
    if name == "adamw":
        assert group["decoupled_weight_decay"] is True


def test_build_overrides_the_defaults_a_name_implies():
    opt = optimizers.build("momentum", [_param()], momentum=0.5, lr=0.2)
    assert opt.param_groups[0]["momentum"] == 0.5
    assert opt.param_groups[0]["lr"] == 0.2


def test_unknown_name_lists_the_available_ones():
    with pytest.raises(ValueError) as error:
        optimizers.build("adamax", [_param()])
    assert "adamax" in str(error.value)
    for name in NAMES:
        assert name in str(error.value)


def test_register_a_new_name_and_refuse_a_conflicting_one():
    try:
        optimizers.register("heavy", optimizers.SGD, momentum=0.99)
        optimizers.register("heavy", optimizers.SGD, momentum=0.99)  # same: no-op
        assert "heavy" in optimizers.available()
        assert optimizers.build("heavy", [_param()]).param_groups[0]["momentum"] == 0.99
        with pytest.raises(ValueError, match="already registered"):
            optimizers.register("heavy", optimizers.Adam)
    finally:
        optimizers.unregister("heavy")
    assert "heavy" not in optimizers.available()


@pytest.mark.parametrize("name, cls", [("", optimizers.SGD), ("a:b", optimizers.SGD),
                                        ("thing", dict), ("thing", object())])
def test_register_refuses_bad_names_and_classes(name, cls):
    with pytest.raises(ValueError):
        optimizers.register(name, cls)


def test_unknown_keyword_for_a_foreign_class_is_a_value_error():
    with pytest.raises(ValueError, match="momentun"):
        optimizers.build("torch.optim:SGD", [_param()], lr=0.1, momentun=0.9)


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "my_optim.py").write_text(textwrap.dedent('''
        import torch

        class Sign(torch.optim.Optimizer):
            """Signed gradient descent, a user's own optimizer."""

            def __init__(self, params, lr=0.1):
                super().__init__(params, {"lr": lr})

            @torch.no_grad()
            def step(self, closure=None):
                for group in self.param_groups:
                    for p in group["params"]:
                        if p.grad is not None:
                            p.add_(p.grad.sign(), alpha=-group["lr"])

        NotAnOptimizer = dict
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    return "my_optim"


def test_package_module_class_loads_a_users_optimizer(user_module):
    p = torch.tensor([1.0, -2.0], requires_grad=True)
    opt = optimizers.build(f"{user_module}:Sign", [p], lr=0.5)
    assert type(opt).__name__ == "Sign"
    p.grad = torch.tensor([3.0, -0.1])
    opt.step()
    assert p.tolist() == [0.5, -1.5]


@pytest.mark.parametrize("spec, match", [
    ("no_such_module_xyz:Thing", "cannot import"),
    ("my_optim:Missing", "has no 'Missing'"),
    ("my_optim:NotAnOptimizer", "not a torch.optim.Optimizer"),
    ("my_optim:", "package.module:ClassName"),
    (":Sign", "package.module:ClassName"),
])
def test_bad_class_specs_explain_themselves(user_module, spec, match):
    with pytest.raises(ValueError, match=match):
        optimizers.build(spec, [_param()])


def test_public_signatures_are_typed():
    for cls in (optimizers.SGD, optimizers.Adagrad, optimizers.RMSProp,
                optimizers.Adam):
        for parameter in list(inspect.signature(cls).parameters.values()):
            assert parameter.annotation is not inspect.Parameter.empty, (cls, parameter)
