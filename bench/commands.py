"""The command lines both sides run: the project's `fab`, and plain OpenSSH for baselines."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from fabfile.core.model import Host

FAB = Path(sys.executable).parent / "fab"


def fab_argv(hosts: Sequence[str], *task: str) -> list[str]:
    return [str(FAB), "-H", ",".join(hosts), *task]


def fab_env(inventory: Path) -> dict[str, str]:
    return {**os.environ, "ZACHOT_INVENTORY": str(inventory)}


def _ssh_options(host: Host) -> list[str]:
    # -F /dev/null: no user ssh_config (no ControlMaster etc.), so every run is plain OpenSSH.
    return [
        "-F",
        "/dev/null",
        "-i",
        str(host.identity_file),
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        f"UserKnownHostsFile={host.known_hosts}",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "BatchMode=yes",
    ]


def ssh_argv(host: Host, remote_command: str) -> list[str]:
    """`ssh ... user@address 'remote_command'` (the remote shell parses remote_command)."""
    return [
        "ssh",
        *_ssh_options(host),
        "-p",
        str(host.port or 22),
        f"{host.user}@{host.address}",
        remote_command,
    ]


def scp_argv(host: Host, remote_path: str, local_path: Path) -> list[str]:
    return [
        "scp",
        "-q",
        *_ssh_options(host),
        "-P",
        str(host.port or 22),
        f"{host.user}@{host.address}:{remote_path}",
        str(local_path),
    ]


def ssh_to_file(host: Host, remote_command: str, local_path: Path) -> str:
    """One line of a baseline shell script: ssh ... 'cmd' > local_path."""
    return f"{shlex.join(ssh_argv(host, remote_command))} > {shlex.quote(str(local_path))}"


def negotiated_cipher(host: Host) -> str:
    """The cipher OpenSSH's defaults pick with this server (from `ssh -v`)."""
    ssh, *rest = ssh_argv(host, "true")
    done = subprocess.run([ssh, "-v", *rest], capture_output=True, text=True, timeout=30)
    for line in done.stderr.splitlines():
        if "server->client cipher:" in line:
            return line.split("cipher:")[1].split()[0]
    return "unknown"
