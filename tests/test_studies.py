"""The six study definitions: presets, grids, overrides and run ids."""

from __future__ import annotations

import math

import pytest

from experiments import runstore, sweep
from experiments.studies import PRESETS, STUDIES, get, parse_override
from experiments.studies.base import log_grid


def _values(plans, name, key):
    [plan] = [p for p in plans if p.study.name == name]
    return plan.settings[key]


@pytest.fixture(scope="module")
def plans():
    return {preset: sweep.plan_sweep("all", preset, {}) for preset in PRESETS}


def test_six_studies_with_three_presets_each():
    assert set(STUDIES) == {
        "batch-size", "momentum", "sgd-lr", "adaptive", "adaptive-lr", "adam-hparams"
    }
    for study in STUDIES.values():
        assert set(study.presets) == set(PRESETS), study.name
        assert study.questions and study.title
        assert study.model in ("cnn", "mlp")


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_plans_unique_valid_runs(plans, preset):
    for plan in plans[preset]:
        ids = [spec.run_id for spec in plan.runs]
        assert ids, plan.study.name
        assert len(ids) == len(set(ids)), plan.study.name
        for spec in plan.runs:
            assert spec.config["model"] == plan.study.model
            assert spec.config["name"] == plan.study.name
            assert spec.config["version"] == spec.run_id
            assert spec.memberships, spec.run_id


# (study, knob, preset, minimum count, low, high): the grids the assignment asks for.
GRIDS = [
    ("sgd-lr", "lrs", "quick", 7, 1e-4, 1.0),
    ("sgd-lr", "lrs", "full", 7, 1e-4, 1.0),
    ("adaptive-lr", "lrs", "quick", 9, 1e-5, 1.0),
    ("adaptive-lr", "lrs", "full", 9, 1e-5, 1.0),
    ("adam-hparams", "epss", "quick", 6, 1e-10, 1.0),
    ("adam-hparams", "epss", "full", 6, 1e-10, 1.0),
]


@pytest.mark.parametrize(("study", "knob", "preset", "count", "low", "high"), GRIDS)
def test_log_grids_span_the_assignment(plans, study, knob, preset, count, low, high):
    values = _values(plans[preset], study, knob)
    assert len(values) >= count
    assert math.isclose(min(values), low) and math.isclose(max(values), high)


@pytest.mark.parametrize("preset", ["quick", "full"])
def test_fixed_sets_match_the_assignment(plans, preset):
    sizes = _values(plans[preset], "batch-size", "batch_sizes")
    assert sizes == [16, 32, 64, 128, 256, 512, 1024, "full"]
    assert sorted(_values(plans[preset], "momentum", "momenta")) == [0.5, 0.9, 0.99]
    assert _values(plans[preset], "adam-hparams", "beta1s") == [
        0.0, 0.5, 0.8, 0.9, 0.95, 0.99]
    assert _values(plans[preset], "adam-hparams", "beta2s") == [
        0.9, 0.99, 0.999, 0.9999]


def test_seeds_per_preset(plans):
    for plan in plans["full"]:
        assert len(plan.settings["seeds"]) >= 3, plan.study.name
    for name in ("momentum", "adaptive", "sgd-lr"):
        assert len(_values(plans["quick"], name, "seeds")) >= 2, name


def test_quick_uses_whole_fashion_mnist(plans):
    for plan in plans["quick"]:
        if plan.study.model == "mlp":
            assert plan.settings["subset"] is None, plan.study.name


def test_batch_size_series_and_noise_scale(plans):
    [plan] = [p for p in plans["quick"] if p.study.name == "batch-size"]
    by_series = {}
    for spec in plan.runs:
        by_series.setdefault(spec.memberships[0]["series"], []).append(spec)
    assert set(by_series) == {"fixed-lr", "scaled-lr"}
    lrs = {s.config["batch_size"]: s.config["hparams"]["lr"]
           for s in by_series["scaled-lr"]}
    cap = plan.settings["lr_cap"]
    assert lrs[256] == pytest.approx(2 * lrs[128])  # linear rule
    assert lrs["full"] == pytest.approx(cap)  # capped
    assert all(s.config["warmup_steps"] > 0 for s in by_series["scaled-lr"])
    assert any(s.config["noise_scale"] for s in by_series["fixed-lr"])
    full = [s for s in plan.runs if s.config["batch_size"] == "full"]
    assert all(s.config["epochs"] == plan.settings["full_batch_epochs"] for s in full)


def test_adam_runs_shared_by_parts_train_once(plans):
    [plan] = [p for p in plans["quick"] if p.study.name == "adam-hparams"]
    default = [s for s in plan.runs
               if s.config["hparams"] == {"lr": 1e-3, "betas": [0.9, 0.999],
                                          "eps": 1e-8}]
    assert len(default) == len(plan.settings["seeds"])
    parts = {m["part"] for m in default[0].memberships}
    assert parts == {"beta1", "beta2", "eps", "grid"}


def test_run_ids_are_stable_and_follow_the_config():
    first = sweep.plan_sweep("momentum", "smoke", {})[0].runs
    again = sweep.plan_sweep("momentum", "smoke", {}, logdir="elsewhere")[0].runs
    assert [s.run_id for s in first] == [s.run_id for s in again]
    reseeded = sweep.plan_sweep("momentum", "smoke", {"seeds": [1]})[0].runs
    assert not {s.run_id for s in first} & {s.run_id for s in reseeded}
    config = first[0].config
    assert runstore.run_id(config) == runstore.run_id({**config, "data_dir": "/x"})
    assert runstore.run_id(config) != runstore.run_id({**config, "epochs": 9})


PARSE_CASES = [
    ("epochs=3", ("epochs", 3)),
    ("lr=1e-3", ("lr", 1e-3)),
    ("seeds=0,1", ("seeds", (0, 1))),
    ("lrs=[0.1, 1]", ("lrs", [0.1, 1])),
    ("batch_size=full", ("batch_size", "full")),
    ("subset=null", ("subset", None)),
    ("hidden=None", ("hidden", None)),
    ("augment=true", ("augment", True)),
    ("lrs={'adam': 3e-4}", ("lrs", {"adam": 3e-4})),
]


@pytest.mark.parametrize(("text", "expected"), PARSE_CASES)
def test_parse_override(text, expected):
    assert parse_override(text) == expected


def test_overrides_reach_the_runs():
    [plan] = sweep.plan_sweep("sgd-lr", "smoke",
                              {"lrs": 0.5, "epochs": 2, "subset": 128})
    assert plan.settings["lrs"] == [0.5]
    assert {s.config["hparams"]["lr"] for s in plan.runs} == {0.5}
    assert {s.config["epochs"] for s in plan.runs} == {2}
    assert {s.config["subset"] for s in plan.runs} == {128}


BAD_INPUTS = [
    (("nope", "smoke", {}), "unknown study 'nope'.*batch-size.*adam-hparams"),
    (("momentum", "huge", {}), "unknown preset 'huge'.*smoke, quick, full"),
    (("momentum", "smoke", {"lrz": 1}), "unknown setting 'lrz'.*momenta.*subset"),
    (("all", "smoke", {"bogus": 1}), "unknown setting 'bogus' for all studies"),
    (("momentum", "smoke", {"epochs": "many"}), "epochs"),
    (("momentum", "smoke", {"augment": 3}), "augment"),
    (("momentum", "smoke", {"lr": "fast"}), "lr='fast': expected a number"),
    (("sgd-lr", "smoke", {"lrs": "a,b"}), "lrs: 'a,b' is not a number"),
]


@pytest.mark.parametrize(("call", "message"), BAD_INPUTS)
def test_bad_input_names_the_valid_choices(call, message):
    with pytest.raises(ValueError, match=message):
        sweep.plan_sweep(*call)


def test_parse_override_needs_a_key():
    with pytest.raises(ValueError, match="key=value"):
        parse_override("epochs")


def test_log_grid():
    assert log_grid(1e-4, 1.0, 1) == [1e-4, 1e-3, 1e-2, 1e-1, 1.0]
    assert len(log_grid(1e-5, 1.0, 2)) == 11


def test_get_unknown_lists_all():
    with pytest.raises(ValueError, match="momentum"):
        get("momentom")


PLAN_TIME_ERRORS = [  # each would fail every run at training time, or be ignored
    ({"lrs": -1}, r"run sgd lr=-1: optimizer 'sgd'.*lr=-1 is invalid"),
    ({"momentum": 2}, r"optimizer 'momentum'.*momentum=2.0 is invalid"),
    ({"subset": 999999}, r"subset=999999 is larger.*at most 49744"),
    ({"target_accuracy": 5}, r"target_accuracy=5.0 is invalid.*\(0, 1\]"),
    ({"target_accuracy": 0}, r"target_accuracy=0.0 is invalid"),
    ({"optimizer": "foo"}, r"--set optimizer is refused: set by the study per run"),
    ({"seed": 3}, r"--set seed is refused: set by the study per run; use --set seeds"),
    ({"logdir": "/tmp/other"}, r"--set logdir is refused: use --logdir"),
    ({"version": "x"}, r"--set version is refused"),
    ({"lrs": (-1, "abc")}, r"--set lrs: 'abc' is not a number"),
    ({"hidden": "abc"}, r"--set hidden: 'abc' is not an integer"),
]


@pytest.mark.parametrize(("overrides", "message"), PLAN_TIME_ERRORS)
def test_plan_refuses_what_training_would_reject(overrides, message):
    with pytest.raises(ValueError, match=message):
        sweep.plan_sweep("sgd-lr", "smoke", overrides)


@pytest.mark.parametrize(("text", "expected"), [
    ("lrs=-1,abc", ("lrs", (-1, "abc"))),
    ("hidden=256,128", ("hidden", (256, 128))),
])
def test_parse_override_reads_list_items_alone(text, expected):
    assert parse_override(text) == expected
