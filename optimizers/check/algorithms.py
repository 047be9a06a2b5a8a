"""What ``--as NAME`` means: the hyperparameter settings and scenarios per algorithm.

Every algorithm is checked at its base setting (the registry entry's own
hyperparameters with an explicit learning rate, the other defaults left to the
submission, so wrong defaults show up) and at one setting per flag it has. The
scenarios then cover the properties of the issue: step-by-step trajectories, one
step from a hand-set state, two param groups with different settings,
hyperparameters changed between steps (the learning rate every step, one more
half-way), a ``state_dict`` round trip, a parameter that gets no gradient on some
steps, and the loss falling on a convex problem.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from optimizers.check.scenarios import Scenario, Settings


@dataclass(frozen=True)
class AlgorithmSpec:
    """How one algorithm is exercised."""

    name: str  # the registry name of the reference
    base: Settings  # always passed to the constructor
    variations: tuple[Settings, ...]  # one per flag, merged over ``base``
    group_variation: Settings  # the second param group's settings (over base)
    convex_lr: float  # a sensible learning rate for the convex problem
    mid_run_change: Settings  # set on every group half-way (besides the lr decay)
    optional_keys: tuple[str, ...] = ()  # dropped if the constructor refuses them


ALGORITHMS: dict[str, AlgorithmSpec] = {
    "sgd": AlgorithmSpec(
        name="sgd",
        base={"lr": 0.05},
        variations=({"weight_decay": 0.1},),
        group_variation={"lr": 0.02, "weight_decay": 0.05},
        mid_run_change={},
        convex_lr=0.1,
    ),
    "momentum": AlgorithmSpec(
        name="momentum",
        base={"lr": 0.05, "momentum": 0.9},
        variations=({"dampening": 0.3}, {"weight_decay": 0.1}, {"momentum": 0.5}),
        group_variation={"lr": 0.02, "momentum": 0.5, "weight_decay": 0.05},
        mid_run_change={"momentum": 0.5},
        convex_lr=0.05,
    ),
    "nesterov": AlgorithmSpec(
        name="nesterov",
        base={"lr": 0.05, "momentum": 0.9, "nesterov": True},
        variations=({"weight_decay": 0.1}, {"momentum": 0.5}),
        group_variation={"lr": 0.02, "momentum": 0.5, "weight_decay": 0.05},
        mid_run_change={"momentum": 0.5},
        convex_lr=0.05,
        optional_keys=("nesterov",),
    ),
    "adagrad": AlgorithmSpec(
        name="adagrad",
        base={"lr": 0.1},
        variations=(
            {"lr_decay": 0.05},
            {"initial_accumulator_value": 0.1},
            {"weight_decay": 0.1},
            {"eps": 1e-3},
        ),
        group_variation={"lr": 0.05, "lr_decay": 0.02, "weight_decay": 0.05},
        mid_run_change={"eps": 1e-3},
        convex_lr=0.5,
    ),
    "rmsprop": AlgorithmSpec(
        name="rmsprop",
        base={"lr": 0.01},
        variations=(
            {"alpha": 0.9},
            {"eps": 1e-3},
            {"centered": True},
            {"momentum": 0.9},
            {"weight_decay": 0.1},
            {"centered": True, "momentum": 0.5},
        ),
        group_variation={"lr": 0.005, "alpha": 0.9, "momentum": 0.5},
        mid_run_change={"alpha": 0.9},
        convex_lr=0.02,
    ),
    "adam": AlgorithmSpec(
        name="adam",
        base={"lr": 0.01},
        variations=(
            {"betas": (0.8, 0.99)},
            {"eps": 1e-3},
            {"weight_decay": 0.1},
            {"amsgrad": True},
        ),
        group_variation={"lr": 0.005, "betas": (0.5, 0.9), "weight_decay": 0.05},
        mid_run_change={"betas": (0.8, 0.99)},
        convex_lr=0.05,
    ),
}

TRAJECTORY_STEPS = 12


def setting_label(settings: Settings) -> str:
    return ",".join(f"{k}={_fmt(v)}" for k, v in settings.items()) or "defaults"


def _fmt(value: Any) -> str:
    if isinstance(value, tuple):
        return "(" + ",".join(_fmt(v) for v in value) + ")"
    return repr(value) if isinstance(value, str) else str(value)


def build_scenarios(
    algorithm: str, overrides: Settings | None = None
) -> list[Scenario]:
    """The scenarios for ``algorithm``.

    ``overrides`` (``--hparams``) win everywhere except for the convex problem's
    learning rate, which stays the one known to make the loss fall.
    """
    spec = get_spec(algorithm)
    overrides = dict(overrides or {})
    base = {**spec.base, **overrides}
    settings = [base] + [{**base, **v, **overrides} for v in spec.variations]
    scenarios = [
        Scenario(
            name=f"trajectory[{setting_label(s)}]",
            prop="trajectory",
            problem="mlp",
            settings=(s,),
            steps=TRAJECTORY_STEPS,
        )
        for s in settings
    ]
    second = {**base, **spec.group_variation, **overrides}
    scenarios += [
        Scenario(
            name="convex",
            prop="trajectory",
            problem="quadratic",
            settings=({**base, "lr": spec.convex_lr},),
            steps=40,
        ),
        Scenario(
            name="hand-set gradients",
            prop="hand_set_state",
            problem="handset",
            settings=(base,),
            steps=4,
        ),
        Scenario(
            name="hand-set state",
            prop="hand_set_state",
            problem="handset",
            settings=(base,),
            steps=4,
            notes={"set_state": True, "algorithm": algorithm},
        ),
        Scenario(
            name="param groups",
            prop="param_groups",
            problem="mlp",
            settings=(base, second),
            steps=10,
        ),
        Scenario(
            name="hyperparameters changed between steps",
            prop="hparams_changed",
            problem="mlp",
            settings=(base,),
            steps=10,
            lr_factor=0.8,
            change_at=5,
            change={**spec.mid_run_change},
        ),
        Scenario(
            name="state_dict round trip",
            prop="state_dict",
            problem="mlp",
            settings=(base,),
            steps=10,
            reload_at=5,
        ),
        Scenario(
            name="no gradient on odd steps",
            prop="no_grad_untouched",
            problem="mlp",
            settings=(base,),
            steps=8,
            intermittent=True,
        ),
    ]
    return scenarios


def get_spec(algorithm: str) -> AlgorithmSpec:
    try:
        return ALGORITHMS[algorithm]
    except KeyError:
        allowed = ", ".join(ALGORITHMS)
        raise ValueError(
            f"--as: unknown algorithm {algorithm!r}; allowed: {allowed}"
        ) from None
