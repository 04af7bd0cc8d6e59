"""Wheels for the boxes, downloaded on the operator side (the boxes have no internet)."""

from __future__ import annotations

import subprocess
import sys

from sandbox.config import Paths
from sandbox.gitrepo import APP_SRC

# Debian 12's python3 is 3.11.2: redis needs async-timeout below 3.11.3, but pip on the
# operator side evaluates that marker for its own Python, so name it explicitly.
EXTRA = ("async-timeout==5.0.1",)
BOX_PYTHON = "3.11.2"


def ensure_wheelhouse(paths: Paths) -> list[str]:
    """Download (once) every wheel requirements.txt needs; return the wheel file names."""
    reqs = (APP_SRC / "requirements.txt").read_text()
    stamp = paths.wheels / "requirements.lock"
    wanted = reqs + "".join(f"{e}\n" for e in EXTRA)
    if not (stamp.exists() and stamp.read_text() == wanted):
        paths.wheels.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "-q",
                "--disable-pip-version-check",
                "--only-binary=:all:",
                "--python-version",
                BOX_PYTHON,
                "--implementation",
                "cp",
                "-d",
                str(paths.wheels),
                "-r",
                str(APP_SRC / "requirements.txt"),
                *EXTRA,
            ],
            check=True,
        )
        stamp.write_text(wanted)
    return sorted(p.name for p in paths.wheels.glob("*.whl"))
