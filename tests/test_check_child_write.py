"""The grader child's result file: complete, flushed to disk, never half written."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

from optimizers.check import child


def test_result_is_synced_then_renamed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    out = tmp_path / "out.json"
    child._write(str(out), {"status": "ok", "records": {"a": {"x": [float("nan")]}}})
    data = json.loads(out.read_text())
    assert data["status"] == "ok" and math.isnan(data["records"]["a"]["x"][0])
    assert len(synced) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out.json"
    out.write_text('{"status": "old"}')

    def refuse(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="disk full"):
        child._write(str(out), {"status": "new", "records": {}})
    assert json.loads(out.read_text()) == {"status": "old"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]
