"""Architecture pins (per-layer parameter counts), forward shapes, LR schedules."""

from __future__ import annotations

import math

import pytest
import torch

from models import CNN, MLP, lr_factor

# (model class, constructor kwargs, {parameter name: element count}, total)
ARCHITECTURES = [
    (
        CNN, {"arch": "default"},
        {
            "conv1.weight": 3 * 32 * 3 * 3, "conv1.bias": 32,
            "conv2.weight": 32 * 64 * 3 * 3, "conv2.bias": 64,
            "conv3.weight": 64 * 128 * 3 * 3, "conv3.bias": 128,
            "fc1.weight": 2048 * 256, "fc1.bias": 256,
            "fc2.weight": 256 * 10, "fc2.bias": 10,
        },
        620_362,
    ),
    (
        CNN, {"arch": "cifar10_3c3d"},
        {
            "conv1.weight": 3 * 64 * 5 * 5, "conv1.bias": 64,
            "conv2.weight": 64 * 96 * 3 * 3, "conv2.bias": 96,
            "conv3.weight": 96 * 128 * 3 * 3, "conv3.bias": 128,
            "fc1.weight": 1152 * 512, "fc1.bias": 512,
            "fc2.weight": 512 * 256, "fc2.bias": 256,
            "fc3.weight": 256 * 10, "fc3.bias": 10,
        },
        895_210,  # DeepOBS's count for cifar10_3c3d
    ),
    (
        MLP, {"arch": "default"},
        {
            "fc1.weight": 784 * 256, "fc1.bias": 256,
            "fc2.weight": 256 * 128, "fc2.bias": 128,
            "out.weight": 128 * 10, "out.bias": 10,
        },
        235_146,
    ),
    (
        MLP, {"arch": "fmnist_mlp"},
        {
            "fc1.weight": 784 * 1000, "fc1.bias": 1000,
            "fc2.weight": 1000 * 500, "fc2.bias": 500,
            "fc3.weight": 500 * 100, "fc3.bias": 100,
            "out.weight": 100 * 10, "out.bias": 10,
        },
        1_336_610,  # DeepOBS's count for fmnist_mlp
    ),
    (
        MLP, {"hidden": (16,)},
        {"fc1.weight": 784 * 16, "fc1.bias": 16, "out.weight": 160, "out.bias": 10},
        12_730,
    ),
]


@pytest.mark.parametrize(("cls", "kwargs", "layers", "total"), ARCHITECTURES)
def test_parameter_count_of_every_layer(cls, kwargs, layers, total):
    model = cls(**kwargs)
    counts = {name: p.numel() for name, p in model.named_parameters()}
    assert counts == layers
    assert sum(counts.values()) == total


@pytest.mark.parametrize(
    ("cls", "kwargs", "shape"),
    [
        (CNN, {"arch": "default"}, (3, 3, 32, 32)),
        (CNN, {"arch": "cifar10_3c3d"}, (3, 3, 32, 32)),
        (CNN, {"arch": "default", "channels_last": False}, (3, 3, 32, 32)),
        (MLP, {"arch": "default"}, (3, 1, 28, 28)),
        (MLP, {"arch": "fmnist_mlp"}, (3, 1, 28, 28)),
    ],
)
def test_forward_gives_one_logit_per_class(cls, kwargs, shape):
    torch.manual_seed(0)
    logits = cls(**kwargs)(torch.randn(shape))
    assert logits.shape == (shape[0], 10)
    assert torch.isfinite(logits).all()


def test_channels_last_does_not_change_the_function():
    torch.manual_seed(0)
    a = CNN(channels_last=False)
    b = CNN(channels_last=True)
    b.load_state_dict(a.state_dict())
    x = torch.randn(4, 3, 32, 32)
    torch.testing.assert_close(a(x), b(x), atol=1e-5, rtol=1e-5)


def test_no_batchnorm_anywhere():
    for model in (CNN(), CNN(arch="cifar10_3c3d"), MLP(), MLP(arch="fmnist_mlp")):
        assert not any(
            isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
            for m in model.modules()
        )


@pytest.mark.parametrize(
    ("cls", "kwargs", "match"),
    [
        (CNN, {"arch": "fmnist_mlp"}, "arch='fmnist_mlp'"),
        (MLP, {"arch": "cifar10_3c3d"}, "arch='cifar10_3c3d'"),
        (MLP, {"hidden": (0,)}, "hidden"),
        (MLP, {"hidden": ()}, "hidden"),
        (MLP, {"class_names": ["a", "b"]}, "class_names"),
    ],
)
def test_bad_model_arguments_name_the_field(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls(**kwargs)


# (schedule, warmup, total, step, expected factor)
SCHEDULE_CASES = [
    ("constant", 0, None, 0, 1.0),
    ("constant", 0, None, 10_000, 1.0),
    ("constant", 4, None, 0, 0.25),
    ("constant", 4, None, 3, 1.0),
    ("constant", 4, None, 4, 1.0),
    ("step", 0, 100, 49, 1.0),
    ("step", 0, 100, 50, 0.1),
    ("step", 0, 100, 75, 0.01),
    ("step", 10, 110, 60, 0.1),
    ("cosine", 0, 100, 0, 1.0),
    ("cosine", 0, 100, 50, 0.5),
    ("cosine", 0, 100, 100, 0.0),
    ("cosine", 10, 110, 5, 0.6),
    ("cosine", 10, 110, 35, 0.5 * (1 + math.cos(math.pi * 0.25))),
]


@pytest.mark.parametrize(("schedule", "warmup", "total", "step", "expected"),
                         SCHEDULE_CASES)
def test_lr_factor(schedule, warmup, total, step, expected):
    factor = lr_factor(step, schedule=schedule, warmup_steps=warmup,
                       total_steps=total)
    assert factor == pytest.approx(expected, abs=1e-12)


def test_unknown_schedule_is_named():
    with pytest.raises(ValueError, match="schedule='linear'"):
        lr_factor(3, schedule="linear", warmup_steps=0, total_steps=10)


@pytest.mark.parametrize("arch", ["default", "cifar10_3c3d"])
def test_cnn_matches_conv_relu_pool_reference(arch):
    # the forward pools before the ReLU; the function must be conv -> ReLU -> pool
    torch.manual_seed(0)
    model = CNN(arch=arch, channels_last=False)
    x = torch.randn(4, 3, 32, 32)
    h = x
    for conv in (model.conv1, model.conv2, model.conv3):
        h = model.pool(torch.relu(conv(h)))
    h = h.flatten(1)
    for layer in model.head[:-1]:
        h = torch.relu(layer(h))
    torch.testing.assert_close(model(x), model.head[-1](h))
