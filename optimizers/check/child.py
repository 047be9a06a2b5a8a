"""The child process: load a submission and run every scenario with it.

Run as ``python -m optimizers.check.child SPEC.json OUT.json PROGRESS``. The parent
has already set the resource limits. Everything the submission prints goes to this
process's stdout/stderr, which the parent captures; the results go to ``OUT.json``
as plain numbers (never pickles), and ``PROGRESS`` names the phase in hand so the
parent can say where a submission hung.
"""

from __future__ import annotations

import contextlib
import errno
import importlib.util
import json
import os
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any


def main(argv: list[str]) -> int:
    spec_path, out_path, progress_path = argv
    spec = json.loads(Path(spec_path).read_text())
    progress = Path(progress_path)

    def phase(name: str) -> None:
        progress.write_text(name)

    phase("importing torch")
    import torch

    torch.set_num_threads(1)
    from optimizers.check.reference import class_factory
    from optimizers.check.scenarios import (
        ConstructionError,
        InvalidRun,
        NotApplicable,
        Scenario,
        run_scenario,
    )

    _warm_up(torch)

    phase(f"importing {spec['file']}")
    result: dict[str, Any] = {"status": "ok", "error": None, "records": {}}
    try:
        cls = _load_class(spec["file"], spec["class"], torch.optim.Optimizer)
    except _LoadError as error:
        result.update(status="load_error", error=str(error))
        _write(out_path, result)
        return 0

    factory = class_factory(cls, tuple(spec.get("optional_keys", ())))
    for data in spec["scenarios"]:
        scenario = Scenario.from_dict(data)
        phase(f"scenario {scenario.name!r}")
        try:
            record = {"status": "ok", **run_scenario(factory, scenario)}
        except ConstructionError as error:
            record = {"status": "construct_error", "error": str(error)}
        except NotApplicable as error:
            record = {"status": "not_applicable", "error": str(error)}
        except InvalidRun as error:
            record = {"status": "invalid", "error": str(error)[:2000]}
        except MemoryError:
            result.update(status="memory", error=f"MemoryError in {scenario.name!r}")
            break
        except Exception as error:  # noqa: BLE001 - the submission's own failure
            message = f"{type(error).__name__}: {error}"
            if "can't allocate memory" in message:
                result.update(status="memory", error=message[:500])
                break
            if _file_too_large(error):
                result.update(
                    status="file_limit",
                    where=f"scenario {scenario.name!r}",
                    error=(
                        f"the submission wrote a file past the grader's file-size "
                        f"limit in {scenario.name!r} ({message[:300]}); not graded"
                    ),
                )
                break
            record = {
                "status": "error",
                "error": message[:2000],
                "traceback": _submission_frames(error, spec["file"]),
            }
        result["records"][scenario.name] = record
    phase("done")
    _write(out_path, result)
    return 0


def _warm_up(torch) -> None:
    """Pay torch's lazy imports (the first optimizer costs seconds) before the clock.

    The parent starts the submission's time limit when the next phase begins.
    """
    x = torch.zeros(2, requires_grad=True)
    (x * x).sum().backward()
    torch.optim.SGD([x], lr=0.1).step()


def _file_too_large(error: BaseException) -> bool:
    """Whether ``error`` (or one it was raised from) is the file-size limit's
    ``EFBIG``: the grader's limit, not a mistake of the submission."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno == errno.EFBIG:
            return True
        current = current.__cause__ or current.__context__
    return False


class _LoadError(Exception):
    pass


def _load_class(file: str, class_name: str, base: type) -> type:
    path = Path(file).resolve()
    if path.is_dir():
        raise _LoadError(f"{file}: is a directory; expected a .py file")
    if not path.is_file():
        raise _LoadError(f"{file}: no such file")
    sys.path.insert(0, str(path.parent))
    module_name = f"optimlab_submission_{path.stem}"
    try:
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise _LoadError(f"{file}: not a Python file")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    except _LoadError:
        raise
    except BaseException as error:  # noqa: BLE001 - SystemExit included
        raise _LoadError(
            f"{file}: raised {type(error).__name__} on import: {error}\n"
            + _submission_frames(error, file)
        ) from None
    cls = getattr(module, class_name, None)
    if cls is None:
        found = sorted(
            n
            for n, v in vars(module).items()
            if isinstance(v, type) and issubclass(v, base) and v is not base
        )
        hint = f"; optimizer classes in the file: {', '.join(found)}" if found else ""
        raise _LoadError(f"{file}: has no class {class_name!r}{hint}")
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise _LoadError(
            f"{file}:{class_name} is not a subclass of torch.optim.Optimizer"
        )
    return cls


def _submission_frames(error: BaseException, file: str) -> str:
    """The last frames of ``error`` in the submission's file (importlib's own
    frames never shown); for a syntax error, the offending line and its caret."""
    frames = [
        f
        for f in traceback.extract_tb(error.__traceback__)
        if not f.filename.startswith("<frozen importlib")
    ]
    name = Path(file).name
    mine = [f for f in frames if Path(f.filename).name == name]
    text = "".join(traceback.format_list(mine[-3:]))
    if isinstance(error, SyntaxError):
        # the File/line/caret lines; the last line repeats the message
        text += "".join(traceback.format_exception_only(error)[:-1])
    elif not mine:
        text = "".join(traceback.format_list(frames[-1:]))
    return text[:2000]


def _write(out_path: str, result: dict[str, Any]) -> None:
    """Write ``result`` as JSON to ``out_path``: the parent reads all of it or none.

    Durable like ``experiments.runstore.atomic_write_json`` (this package may not
    import it): a fresh temporary file beside ``out_path`` is flushed to disk, then
    renamed over it; a write that fails leaves no partial file behind.
    """
    text = json.dumps(result)
    folder = os.path.dirname(os.path.abspath(out_path))
    name = os.path.basename(out_path)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, out_path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
