"""systemd-nspawn invocations. The host has no systemd, hence --register=no --keep-unit."""

from __future__ import annotations

import subprocess
from pathlib import Path

BASE_ARGS = ["systemd-nspawn", "--quiet", "--register=no", "--keep-unit"]


def run_in_root(root: Path, machine: str, netns: str, script: Path, env: dict[str, str]) -> None:
    """Run a provisioning script in the rootfs, not booted, with the box's network."""
    target = root / "root" / script.name
    target.write_bytes(script.read_bytes())
    try:
        setenv = [f"--setenv={k}={v}" for k, v in env.items()]
        subprocess.run(
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
            check=True,
            stdin=subprocess.DEVNULL,
        )
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
