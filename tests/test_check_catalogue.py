"""The grader's catalogue and in-process grading (no child processes here).

One table, ``SUBMISSIONS``, drives the tests: each student-style file in
``tests/check_submissions`` with its class, the algorithm it claims and the
catalogue entry it must be identified as (``None``: it is correct).
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import math
from pathlib import Path

import pytest
import torch

from optimizers.check import CATALOGUE, check_class
from optimizers.check.algorithms import ALGORITHMS, build_scenarios
from optimizers.check.api import _distance, mistake_records, reference_records, run_all
from optimizers.check.compare import RTOL
from optimizers.check.mistakes import TEXTBOOK, mistakes_for
from optimizers.check.reference import class_factory

SUBMISSIONS_DIR = Path(__file__).parent / "check_submissions"

# file stem -> (class name, --as, expected catalogue entry or None when correct)
SUBMISSIONS: dict[str, tuple[str, str, str | None]] = {
    "correct_sgd": ("StudentSGD", "sgd", None),
    "correct_adagrad": ("StudentAdagrad", "adagrad", None),
    "correct_rmsprop": ("StudentRMSprop", "rmsprop", None),
    "correct_adam": ("StudentAdam", "adam", None),
    "sgd_weight_decay_after_update": ("DecaySGD", "sgd", "="),
    "sgd_weight_decay_without_lr": ("DecaySGD", "sgd", "="),
    "momentum_ema_buffer": ("MomentumSGD", "momentum", "="),
    "momentum_first_step_dampened": ("MomentumSGD", "momentum", "="),
    "momentum_sutskever_form": ("MomentumSGD", "momentum", "="),
    "momentum_lr_twice": ("MomentumSGD", "momentum", "="),
    "momentum_weight_decay_on_update": ("MomentumSGD", "momentum", "="),
    "nesterov_as_plain_momentum": ("NesterovSGD", "nesterov", "="),
    "nesterov_dampened": ("NesterovSGD", "nesterov", "="),
    "nesterov_lookahead_without_mu": ("NesterovSGD", "nesterov", "="),
    "adagrad_accumulates_gradients": ("MyAdagrad", "adagrad", "="),
    "adagrad_eps_inside_sqrt": ("MyAdagrad", "adagrad", "="),
    "adagrad_tf_initial_accumulator": ("MyAdagrad", "adagrad", "="),
    "adagrad_lr_decay_off_by_one": ("MyAdagrad", "adagrad", "="),
    "rmsprop_averages_gradient": ("MyRMSprop", "rmsprop", "="),
    "rmsprop_eps_inside_sqrt": ("MyRMSprop", "rmsprop", "="),
    "rmsprop_alpha_swapped": ("MyRMSprop", "rmsprop", "="),
    "adam_no_bias_correction": ("MyAdam", "adam", "="),
    "adam_bias_correction_swapped": ("MyAdam", "adam", "="),
    "adam_second_moment_uncorrected": ("MyAdam", "adam", "="),
    "adam_eps_inside_sqrt": ("MyAdam", "adam", "="),
    "adam_eps_before_bias_correction": ("MyAdam", "adam", "="),
    "adam_decoupled_weight_decay": ("MyAdam", "adam", "="),
    "adam_step_per_group": ("MyAdam", "adam", "="),
    "adam_shared_state": ("MyAdam", "adam", "="),
}

# The correct SGD serves all three SGD algorithms.
CORRECT_EXTRA = [
    ("correct_sgd", "StudentSGD", "momentum"),
    ("correct_sgd", "StudentSGD", "nesterov"),
]

TORCH_CLASSES = [
    ("sgd", torch.optim.SGD),
    ("momentum", torch.optim.SGD),
    ("nesterov", torch.optim.SGD),
    ("adagrad", torch.optim.Adagrad),
    ("rmsprop", torch.optim.RMSprop),
    ("adam", torch.optim.Adam),
]


pytestmark = pytest.mark.usefixtures("one_thread")


def load(stem: str, class_name: str) -> type[torch.optim.Optimizer]:
    path = SUBMISSIONS_DIR / f"{stem}.py"
    spec = importlib.util.spec_from_file_location(f"check_submission_{stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, class_name)


def test_every_catalogue_entry_has_a_student_file():
    assert len(CATALOGUE) >= 15
    identified = {stem for stem, (_, _, entry) in SUBMISSIONS.items() if entry}
    assert identified == set(CATALOGUE)
    for mistake in CATALOGUE.values():
        assert SUBMISSIONS[mistake.name][1] == mistake.algorithm


def test_catalogue_covers_all_six_algorithms_with_explanations():
    assert {m.algorithm for m in CATALOGUE.values()} == set(ALGORITHMS)
    for mistake in CATALOGUE.values():
        assert len(mistake.explanation) > 120, mistake.name
        assert "=" in mistake.equation, mistake.name
        assert mistake.title and mistake.name.startswith(
            ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam")
        )


@pytest.mark.parametrize("stem", sorted(SUBMISSIONS))
def test_student_file_is_identified(stem):
    class_name, algorithm, expected = SUBMISSIONS[stem]
    result = check_class(load(stem, class_name), algorithm)
    if expected is None:
        assert result.status == "pass", result.format()
        assert result.exit_code == 0
        assert result.reference_distance <= RTOL
        assert result.diagnosis == []
        return
    assert result.status == "fail" and result.exit_code == 1, result.format()
    assert [d.name for d in result.matched] == [stem], result.format()
    nearest = result.diagnosis[0]
    assert nearest.name == stem and nearest.distance <= RTOL
    # the runner-up is clearly apart, and the report names the distance
    assert result.diagnosis[1].distance > 100 * RTOL
    assert f"{stem}: " in result.format() and "distance" in result.format()


@pytest.mark.parametrize(("stem", "class_name", "algorithm"), CORRECT_EXTRA)
def test_correct_sgd_passes_momentum_and_nesterov(stem, class_name, algorithm):
    result = check_class(load(stem, class_name), algorithm)
    assert result.passed, result.format()


@pytest.mark.parametrize(
    ("algorithm", "cls"), TORCH_CLASSES, ids=[a for a, _ in TORCH_CLASSES]
)
def test_torch_optim_passes(algorithm, cls):
    result = check_class(cls, algorithm)
    assert result.passed, result.format()


@pytest.mark.parametrize("algorithm", sorted(TEXTBOOK))
def test_unmutated_textbook_equals_reference(algorithm):
    """Each mistake is its textbook class plus one change: pin the textbook."""
    result = check_class(TEXTBOOK[algorithm], algorithm)
    assert result.passed, result.format()


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
def test_entries_differ_from_reference_and_each_other(algorithm):
    scenarios = build_scenarios(algorithm)
    reference = reference_records(algorithm)
    entries = mistakes_for(algorithm)
    assert entries, algorithm
    records = {m.name: mistake_records(m.name, algorithm) for m in entries}
    for name, rec in records.items():
        assert _distance(scenarios, rec, reference) > 100 * RTOL, name
    for a, b in itertools.combinations(records, 2):
        assert _distance(scenarios, records[a], records[b]) > 100 * RTOL, (a, b)


def test_first_difference_is_located():
    result = check_class(load("adam_no_bias_correction", "MyAdam"), "adam")
    trajectory = next(p for p in result.properties if p.name == "trajectory")
    mismatch = trajectory.mismatch
    assert mismatch.step == 1  # bias correction matters from the first step
    assert mismatch.parameter.split("[")[0] in {"W1", "b1", "W2", "b2"}
    assert mismatch.difference == pytest.approx(
        abs(mismatch.submitted - mismatch.expected)
    )
    assert "first differs after step 1" in trajectory.detail


def test_in_place_grad_change_and_nograd_motion_are_caught():
    class Sloppy(torch.optim.SGD):
        @torch.no_grad()
        def step(self, closure=None):
            for group in self.param_groups:
                for p in group["params"]:
                    if p.grad is None:
                        p.mul_(0.5)  # moves a parameter that has no gradient
                        continue
                    p.grad.add_(p, alpha=group["weight_decay"])  # edits .grad
                    p.add_(p.grad, alpha=-group["lr"])

    result = check_class(Sloppy, "sgd")
    failed = {p.name for p in result.properties if not p.passed}
    assert {"grad_not_modified", "no_grad_untouched"} <= failed
    assert "changed .grad in place" in result.format()


def test_state_dict_round_trip_failure_is_caught():
    class Forgetful(torch.optim.SGD):
        def state_dict(self):
            saved = super().state_dict()
            saved["state"] = {}
            return saved

    result = check_class(Forgetful, "momentum")
    prop = next(p for p in result.properties if p.name == "state_dict")
    assert not prop.passed
    assert "restored run vs uninterrupted" in prop.detail
    assert prop.detail.count("after step 6") == 1  # first step after the reload


def test_unsupported_flag_is_skipped_not_failed():
    class NoWeightDecay(torch.optim.Optimizer):
        def __init__(self, params, lr=1e-3):
            super().__init__(params, {"lr": lr})

        @torch.no_grad()
        def step(self, closure=None):
            for group in self.param_groups:
                for p in group["params"]:
                    if p.grad is not None:
                        p.add_(p.grad, alpha=-group["lr"])

    result = check_class(NoWeightDecay, "sgd")
    props = {p.name: p for p in result.properties}
    trajectory = props["trajectory"]
    assert trajectory.passed and trajectory.status == "ok"
    assert (trajectory.ran, trajectory.total) == (2, 3)  # base and convex ran
    assert any("weight_decay" in s for s in trajectory.skipped)
    # the param-group scenario needs weight decay too: never tested, so not "ok"
    groups = props["param_groups"]
    assert groups.status == "skipped" and not groups.passed and groups.ran == 0
    # nothing failed, but a property went untested: not a pass (exit 3)
    assert result.status == "incomplete" and result.exit_code == 3
    text = result.format()
    assert "INCOMPLETE (exit 3" in text
    assert "not tested at all: param_groups" in text
    assert "ok   trajectories equal the reference step by step (float64) (2 of 3 " in (
        text
    )
    assert "scenarios; 1 skipped)" in text
    assert (
        "skip param groups with different settings are honoured (not tested: its "
        "scenario was skipped)\n       skipped: param groups: TypeError"
    ) in text
    data = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert data["exit_code"] == 3 and data["untested"] == ["param_groups"]
    by_name = {p["name"]: p for p in data["properties"]}
    assert by_name["param_groups"]["status"] == "skipped"
    assert by_name["param_groups"]["passed"] is False
    assert by_name["trajectory"]["status"] == "ok"
    assert (by_name["trajectory"]["ran"], by_name["trajectory"]["total"]) == (2, 3)


def test_a_property_whose_runs_broke_is_not_ok():
    """.grad and the convex loss are judged on finished runs: none, none tested."""
    result = check_class(load("odd_tensors", "Float32SGD"), "sgd")
    props = {p.name: p for p in result.properties}
    assert result.exit_code == 1
    for name in ("grad_not_modified", "convex_loss_decreases"):
        assert props[name].status == "skipped" and props[name].unfinished >= 1
    assert (
        "skip the loss decreases on a convex problem (not tested: its scenario "
        "did not finish)"
    ) in result.format()


def test_hparams_override_and_bad_hparams():
    result = check_class(torch.optim.Adam, "adam", {"lr": 0.003, "betas": (0.9, 0.99)})
    assert result.passed, result.format()
    wrong = check_class(
        load("adam_no_bias_correction", "MyAdam"),
        "adam",
        {"lr": 0.02, "betas": (0.9, 0.99)},
    )
    assert [d.name for d in wrong.matched] == ["adam_no_bias_correction"]
    mismatch = wrong.properties[0].mismatch
    assert mismatch.scenario == "trajectory[lr=0.02,betas=(0.9,0.99)]"
    assert mismatch.step == 1
    with pytest.raises(ValueError, match="lr"):
        check_class(torch.optim.Adam, "adam", {"lr": -1.0})
    with pytest.raises(ValueError, match="--as"):
        check_class(torch.optim.Adam, "adamax")


def test_result_json_is_strict_json():
    result = check_class(load("adagrad_accumulates_gradients", "MyAdagrad"), "adagrad")
    text = json.dumps(result.to_dict(), allow_nan=False)
    data = json.loads(text)
    assert data["exit_code"] == 1 and data["status"] == "fail"
    assert data["diagnosis"][0]["name"] == "adagrad_accumulates_gradients"
    assert not math.isnan(data["diagnosis"][0]["distance"])


def test_hand_set_state_pairs_state_entries_by_value():
    """The submission's own state names are paired with the reference's."""
    scenarios = build_scenarios("adam")
    handset = next(s for s in scenarios if s.name == "hand-set state")
    record = run_all(class_factory(load("correct_adam", "StudentAdam")), [handset])
    assert record["hand-set state"]["status"] == "ok"
    assert record["hand-set state"]["state_keys"] == {"step": "t", "m": "m", "v": "v"}


def test_hand_set_state_catches_state_kept_outside_the_state_dict():
    class Shadow(torch.optim.SGD):
        """Right trajectories, but the math reads a private copy of the buffer."""

        @torch.no_grad()
        def step(self, closure=None):
            shadow = self.__dict__.setdefault("shadow", {})
            for group in self.param_groups:
                mu = group["momentum"]
                for p in group["params"]:
                    if p.grad is None:
                        continue
                    g = p.grad.add(p, alpha=group["weight_decay"])
                    if id(p) in shadow:
                        shadow[id(p)].mul_(mu).add_(g, alpha=1 - group["dampening"])
                    else:
                        shadow[id(p)] = g.clone()
                    self.state[p]["momentum_buffer"] = shadow[id(p)].clone()
                    p.add_(shadow[id(p)], alpha=-group["lr"])

    result = check_class(Shadow, "momentum")
    by_name = {p.name: p for p in result.properties}
    assert by_name["trajectory"].passed
    assert not by_name["hand_set_state"].passed
    detail = by_name["hand_set_state"].detail
    assert "hand-set state: first differs in the step from the hand-set" in detail


def test_hand_set_state_not_applicable_is_said():
    class Elsewhere(torch.optim.Optimizer):
        """Correct heavy ball whose buffers live outside ``self.state``."""

        def __init__(
            self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0
        ):
            super().__init__(
                params,
                dict(
                    lr=lr,
                    momentum=momentum,
                    dampening=dampening,
                    weight_decay=weight_decay,
                ),
            )
            self.buffers = {}

        @torch.no_grad()
        def step(self, closure=None):
            for group in self.param_groups:
                for p in group["params"]:
                    if p.grad is None:
                        continue
                    g = p.grad.add(p, alpha=group["weight_decay"])
                    b = self.buffers.get(id(p))
                    if b is None:
                        b = self.buffers[id(p)] = g.clone()
                    else:
                        b.mul_(group["momentum"]).add_(g, alpha=1 - group["dampening"])
                    p.add_(b, alpha=-group["lr"])

    result = check_class(Elsewhere, "momentum")
    prop = next(p for p in result.properties if p.name == "hand_set_state")
    assert prop.passed  # the hand-set gradients still agree
    assert any("cannot be set by hand" in s for s in prop.skipped)


def test_json_diagnosis_with_distances():
    result = check_class(
        load("sgd_weight_decay_without_lr", "DecaySGD"), "sgd", {"lr": 0.02}
    )
    data = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert data["status"] == "fail" and data["exit_code"] == 1
    first, second = data["diagnosis"]
    assert first["name"] == "sgd_weight_decay_without_lr" and first["matched"]
    assert first["distance"] <= RTOL and first["explanation"]
    assert (
        first["equation"] == "theta_t = theta_{t-1} - gamma (g_t + lambda theta_{t-1})"
    )
    assert not second["matched"] and second["distance"] > 1e-6
    trajectory = data["properties"][0]
    assert trajectory["name"] == "trajectory" and not trajectory["passed"]
    assert trajectory["mismatch"]["step"] == 1
    assert trajectory["mismatch"]["scenario"] == "trajectory[lr=0.02,weight_decay=0.1]"


def test_hyperparameters_cached_at_construction_are_caught():
    class CachedBetas(torch.optim.Adam):
        """Right math, but betas read once in __init__ (a common student habit)."""

        def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), **kwargs):
            super().__init__(params, lr=lr, betas=betas, **kwargs)
            self.frozen_betas = betas

        def step(self, closure=None):
            for group in self.param_groups:
                group["betas"] = self.frozen_betas
            return super().step(closure)

    result = check_class(CachedBetas, "adam")
    failed = [p.name for p in result.properties if not p.passed]
    # the second param group's betas are ignored too
    assert failed == ["param_groups", "hparams_changed"], result.format()
    assert "hyperparameters changed between steps: first differs after step 6" in (
        result.format()
    )


def test_exception_in_step_fails_with_the_submission_frame():
    class Careless(torch.optim.SGD):
        @torch.no_grad()
        def step(self, closure=None):
            for group in self.param_groups:
                for p in group["params"]:
                    p.sub_(group["lr"] * p.grad)  # p.grad may be None

    result = check_class(Careless, "sgd")
    assert result.exit_code == 1
    trajectory = next(p for p in result.properties if p.name == "trajectory")
    assert "raised TypeError" in trajectory.detail
    assert result.matched == [] and "no known mistake comes close" in result.format()


# (class in odd_tensors.py, the property that fails, text its detail must hold)
ODD_TENSOR_CASES = [
    (
        "SparseGradSGD",
        "grad_not_modified",
        "step() replaced .grad (with a sparse tensor)",
    ),
    ("NoGradSGD", "grad_not_modified", "step() replaced .grad (with None)"),
    ("Float32SGD", "trajectory", "step() turned parameter W1 into a float32 tensor"),
]


@pytest.mark.parametrize(
    ("class_name", "prop", "text"),
    ODD_TENSOR_CASES,
    ids=[c[0] for c in ODD_TENSOR_CASES],
)
def test_odd_tensors_left_behind_are_the_submissions_finding(class_name, prop, text):
    """The grader's own comparisons never raise on what a step() leaves behind."""
    result = check_class(load("odd_tensors", class_name), "sgd")
    assert result.status == "fail", result.format()
    failed = {p.name: p for p in result.properties if p.status == "fail"}
    assert text in failed[prop].detail, result.format()
    assert ": raised" not in result.format()  # no exception reported as theirs
