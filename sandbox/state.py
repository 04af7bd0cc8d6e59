"""What the running fleet consists of, so down/reset act on exactly what up made."""

from __future__ import annotations

import fcntl
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sandbox.config import BoxSpec, Paths, fleet_specs


def load_state(paths: Paths) -> dict[str, Any]:
    try:
        return json.loads(paths.fleet_file.read_text())
    except (OSError, ValueError):
        return {}


def save_state(paths: Paths, extra_prod: int) -> None:
    paths.run.mkdir(parents=True, exist_ok=True)
    specs = fleet_specs(extra_prod)
    data = {"extra_prod": extra_prod, "boxes": [s.name for s in specs]}
    tmp = paths.fleet_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(paths.fleet_file)


def recorded_specs(paths: Paths) -> list[BoxSpec]:
    """Boxes a previous up may have made: the recorded set, never fewer than the standard three."""
    return fleet_specs(int(load_state(paths).get("extra_prod", 0)))


@contextmanager
def fleet_lock(paths: Paths) -> Iterator[None]:
    """One up/down/reset at a time (a test session and a shell may race)."""
    paths.run.mkdir(parents=True, exist_ok=True)
    with open(paths.lock, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield
