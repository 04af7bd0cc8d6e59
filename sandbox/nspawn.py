"""systemd-nspawn invocations. The host has no systemd, hence --register=no --keep-unit."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BASE_ARGS = ["systemd-nspawn", "--quiet", "--register=no", "--keep-unit"]
# nspawn without a running systemd cannot clean its scratch mounts and says so on every run
# ("Attempted to remove disk file system under "/run/...", and we can't allow that."):
# harmless here, and noise in ./dev demo's output.
_HARMLESS = re.compile(r"^Attempted to remove disk file system .*we can't allow that\.?$")


def without_noise(stderr: str) -> str:
    """nspawn's stderr minus the lines that report nothing the user must act on."""
    return "".join(
        line for line in stderr.splitlines(keepends=True) if not _HARMLESS.match(line.strip())
    )


def run_in_root(root: Path, machine: str, netns: str, script: Path, env: dict[str, str]) -> None:
    """Run a provisioning script in the rootfs, not booted, with the box's network."""
    target = root / "root" / script.name
    target.write_bytes(script.read_bytes())
    try:
        setenv = [f"--setenv={k}={v}" for k, v in env.items()]
        done = subprocess.run(
            [
                *BASE_ARGS,
                "-D",
                str(root),
                f"--machine={machine}",
                f"--network-namespace-path=/run/netns/{netns}",
                "--pipe",
                *setenv,
                "/bin/bash",
                f"/root/{script.name}",
            ],
            stdin=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        sys.stderr.write(without_noise(done.stderr))
        done.check_returncode()
    finally:
        target.unlink(missing_ok=True)


def boot_argv(root: Path, machine: str, hostname: str, netns: str) -> list[str]:
    return [
        *BASE_ARGS,
        "-D",
        str(root),
        "--boot",
        f"--machine={machine}",
        f"--hostname={hostname}",
        f"--network-namespace-path=/run/netns/{netns}",
    ]
