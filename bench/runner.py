"""Run the chosen figures, keep going past a failed one, write and print the table."""

from __future__ import annotations

import compileall
import time
from collections.abc import Iterable
from pathlib import Path

from .boxdata import BoxData
from .context import BenchContext
from .figures import FIGURES
from .measure import BenchError
from .results import Row, finish_info, markdown, run_info, write
from .settings import FABFILE, RESULTS, Settings
from .workspace import Workspace


def run(settings: Settings, only: Iterable[int] = FIGURES, into: Path = RESULTS) -> int:
    """Returns 0 when every chosen figure ran and met its target, 1 otherwise."""
    started = time.monotonic()
    info = run_info(settings.reps, settings.quick)
    _compile_project()
    rows: list[Row] = []
    with Workspace() as workspace:
        data = BoxData(settings)
        ctx = BenchContext(settings, workspace, data)
        try:
            for number in only:
                rows += _figure(ctx, number)
        finally:
            _cleanup(data)
    info = finish_info(info, time.monotonic() - started)
    md_path, json_path = write(rows, info, into)
    print(markdown(rows, info))
    print(f"written: {md_path} and {json_path}")
    return 0 if rows and all(r.met for r in rows) else 1


def _compile_project() -> None:
    """Bytecode for the project's own modules, as `pip install` leaves an installed package:
    with PYTHONDONTWRITEBYTECODE set (this machine sets it) a module edited since its last
    .pyc would otherwise be compiled again by every `fab` run, and that would be timed."""
    compileall.compile_dir(FABFILE, quiet=1)


def _cleanup(data: BoxData) -> None:
    try:
        for line in data.cleanup():
            print(f"cleanup: {line}", flush=True)
    except BenchError as exc:
        left = ", ".join(data.created) or "none"
        print(f"cleanup failed: {exc}; test files left in {data.box}: {left}", flush=True)


def _figure(ctx: BenchContext, number: int) -> list[Row]:
    module = FIGURES[number]
    print(f"figure {number}: {module.TITLE} ...", flush=True)
    t0 = time.monotonic()
    try:
        rows = module.run(ctx)
    except BenchError as exc:
        rows = [
            Row(str(number), module.TITLE, module.MEANING, module.OP, module.TARGET, error=str(exc))
        ]
    print(f"figure {number}: done in {time.monotonic() - t0:.0f} s", flush=True)
    return rows
