"""Where decoded data and statistics are kept between runs.

The data folder may be read-only, so everything the datamodules derive from it goes
to a cache folder: ``$OPTIMLAB_CACHE`` when set, else ``$XDG_CACHE_HOME/optimlab``,
else ``~/.cache/optimlab``. When that folder cannot be written the datamodules work
without it. Within one process decoded arrays are also kept in memory, keyed by the
files' paths, sizes and modification times, so a second datamodule on the same
files decodes nothing.

What is read back from the cache folder is checked before use (label range, shapes,
finite positive std); a cache entry that fails is reported with a warning naming
its file, discarded, and rebuilt from the source files.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

log = logging.getLogger(__name__)

_MEMO: OrderedDict[str, Any] = OrderedDict()
_MEMO_ENTRIES = 4


def cache_dir() -> Path:
    """The cache folder (it may not exist yet)."""
    if os.environ.get("OPTIMLAB_CACHE"):
        return Path(os.environ["OPTIMLAB_CACHE"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "optimlab"
    return Path.home() / ".cache" / "optimlab"


def fingerprint(paths: Sequence[Path], tag: str) -> str:
    """A key that changes when any of ``paths`` is replaced or modified."""
    parts = [tag]
    for path in paths:
        stat = path.stat()
        parts.append(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:24]


def memoized(key: str, compute: Callable[[], Any]) -> Any:
    """``compute()`` once per process and key (the last few keys are kept)."""
    if key in _MEMO:
        _MEMO.move_to_end(key)
        return _MEMO[key]
    value = compute()
    _MEMO[key] = value
    while len(_MEMO) > _MEMO_ENTRIES:
        _MEMO.popitem(last=False)
    return value


def clear_memo() -> None:
    _MEMO.clear()


def channel_stats(images: Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Exact per-channel mean and std on the [0, 1] scale of uint8 ``N x C x H x W``.

    Counts each of the 256 byte values per channel (one ``bincount`` each), then
    ``mean = sum_v p(v) v / 255`` and ``std = sqrt(sum_v p(v) (v / 255)^2 - mean^2)``
    in float64: no float copy of the images is made.
    """
    channels = images.shape[1]
    counts = torch.stack(
        [torch.bincount(images[:, c].flatten(), minlength=256) for c in range(channels)]
    )
    p = counts.to(torch.float64)
    p /= p.sum(dim=1, keepdim=True)
    values = torch.arange(256, dtype=torch.float64) / 255.0
    mean = (p * values).sum(dim=1)
    std = ((p * values**2).sum(dim=1) - mean**2).clamp_min(0).sqrt()
    return tuple(mean.tolist()), tuple(std.tolist())


def cached_stats(key: str, images: Tensor) -> tuple[tuple[float, ...], ...]:
    """Per-channel (mean, std) of ``images``, read from the cache when stored.

    A stored entry must hold one finite mean in [0, 1] and one finite std in
    (0, 1] per channel; any other is discarded with a warning and recomputed.
    """
    path = cache_dir() / "stats.json"
    table = _read_json(path)
    if key in table:
        problem = _stats_problem(table[key], images.shape[1])
        if problem is None:
            entry = table[key]
            return tuple(map(float, entry["mean"])), tuple(map(float, entry["std"]))
        log.warning("discarding the cached statistics %s in %s (%s); recomputing",
                    key, path, problem)
    mean, std = channel_stats(images)
    log.info("training statistics: mean %s, std %s",
             ", ".join(f"{m:.4f}" for m in mean), ", ".join(f"{s:.4f}" for s in std))
    table[key] = {"mean": list(mean), "std": list(std)}
    _write_json(path, table)
    return mean, std


def cached_arrays(
    key: str,
    decode: Callable[[], dict[str, np.ndarray]],
    check: Callable[[dict[str, np.ndarray]], str | None] | None = None,
):
    """Decoded uint8/int64 arrays, stored as ``.npy`` files in the cache folder.

    Reading a ``.npy`` file is a plain copy, much faster than decompressing gzip.
    The files are written atomically; a cache that cannot be written is skipped.
    ``check`` returns what is wrong with arrays read back (``None``: nothing); a
    cache that fails it, or cannot be read, is removed and decoded again.
    """
    folder = cache_dir() / "decoded" / key
    names = _read_json(folder / "index.json").get("names")
    if names:
        problem = None
        try:
            arrays = {
                name: np.load(folder / f"{name}.npy", allow_pickle=False)
                for name in names
            }
        except (OSError, ValueError, TypeError) as error:
            problem = f"unreadable: {error}"
        else:
            problem = check(arrays) if check is not None else None
            if problem is None:
                return arrays
        log.warning("discarding the decoded-data cache %s (%s); decoding the "
                    "source files again", folder, problem)
        shutil.rmtree(folder, ignore_errors=True)
    arrays = decode()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for name, array in arrays.items():
            _atomic_write(folder / f"{name}.npy", lambda f, a=array: np.save(f, a))
        _write_json(folder / "index.json", {"names": list(arrays)})
    except OSError as error:
        log.info("not caching decoded data in %s: %s", folder, error)
    return arrays


def _stats_problem(entry: Any, channels: int) -> str | None:
    """What is wrong with a stored ``{"mean": [...], "std": [...]}``, or None."""
    if not isinstance(entry, dict):
        return "not a mapping"
    for name, low, low_open in (("mean", 0.0, False), ("std", 0.0, True)):
        values = entry.get(name)
        if not isinstance(values, list) or len(values) != channels:
            return f"{name} is not a list of {channels} numbers"
        for value in values:
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            if not ok or not math.isfinite(value):
                return f"{name} holds {value!r}"
            if value > 1.0 or value < low or (low_open and value <= low):
                bound = "in (0, 1]" if low_open else "in [0, 1]"
                return f"{name} holds {value!r}, expected {bound}"
    return None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        with open(path) as handle:
            value = json.load(handle)
        return value if isinstance(value, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_json(path: Path, value: dict[str, Any]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(path, lambda f: f.write(json.dumps(value, indent=1).encode()))
    except OSError as error:
        log.info("not caching %s: %s", path, error)


def _atomic_write(path: Path, write: Callable[[Any], Any]) -> None:
    handle = tempfile.NamedTemporaryFile(
        dir=path.parent, prefix=f".{path.name}.", suffix=".part", delete=False
    )
    try:
        with handle:
            write(handle)
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise
