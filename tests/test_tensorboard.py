"""TensorBoard serves a run made here: start it on 127.0.0.1, read scalars over HTTP."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from experiments.train import TrainConfig, train

STARTUP_TIMEOUT_S = 60


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get_json(url: str):
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read().decode())


@pytest.fixture
def run(real_data_dir, tmp_path):
    config = TrainConfig(
        model="mlp", hidden=(16,), optimizer="momentum",
        hparams={"lr": 0.05, "momentum": 0.9}, batch_size=32, epochs=2, subset=128,
        val_size=100, log_every=2, data_dir=str(real_data_dir),
        logdir=str(tmp_path / "logs"), name="tb", progress_bar=False,
    )
    return config, train(config)


@pytest.fixture
def tensorboard(run):
    config, _ = run
    port = _free_port()
    command = [
        sys.executable, "-m", "tensorboard.main", "--logdir", config.logdir,
        "--host", "127.0.0.1", "--port", str(port), "--load_fast", "false",
        "--reload_interval", "1",
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    base = f"http://127.0.0.1:{port}"
    try:
        yield base, process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_for_run(base: str, process: subprocess.Popen, run_name: str) -> dict:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"tensorboard exited early: {process.stderr.read()[-2000:]}")
        try:
            tags = _get_json(f"{base}/data/plugin/scalars/tags")
        except OSError:
            time.sleep(0.3)
            continue
        if run_name in tags and "val/acc" in tags[run_name]:
            return tags[run_name]
        time.sleep(0.3)
    pytest.fail(f"tensorboard did not serve run {run_name!r} in {STARTUP_TIMEOUT_S} s")


def test_tensorboard_serves_the_runs_scalars(run, tensorboard):
    config, result = run
    base, process = tensorboard
    run_name = Path(result.log_dir).relative_to(config.logdir).as_posix()
    tags = _wait_for_run(base, process, run_name)
    for tag in ("train/loss", "grad_norm/global", "update/global",
                "effective_lr/steady_state", "momentum/norm", "momentum/grad_cosine",
                "perf/samples_per_s", "val/acc", "per_class_acc/val/Trouser",
                "test/acc"):
        assert tag in tags, tag

    def scalars(tag: str) -> list[tuple[int, float]]:
        query = urllib.parse.urlencode({"run": run_name, "tag": tag})
        rows = _get_json(f"{base}/data/plugin/scalars/scalars?{query}")
        return [(int(step), float(value)) for _, step, value in rows]

    # 2 epochs of 4 steps; instruments every 2 steps
    assert [step for step, _ in scalars("train/loss")] == [0, 2, 4, 6]
    val = scalars("val/acc")
    assert [step for step, _ in val] == [4, 8]
    assert [value for _, value in val] == pytest.approx(
        [h["val_acc"] for h in result.history], abs=1e-6
    )
    (test_point,) = scalars("test/acc")
    assert test_point[1] == pytest.approx(result.test_acc, abs=1e-6)
