"""The commands that fix a failing item: our restore tasks, or a command to run on the host.

Each Fix carries the exact command line for the operator and, when --guided
can do the same through the library, the name of that action (guided.py).
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from .. import services
from ..model import Host
from .model import Fix


def fab(host: Host, task: str) -> Fix:
    """One of our tasks; restore.env, restore.units and restore.redis run under --guided."""
    guided = task if task.startswith("restore.") and task != "restore.server" else None
    return Fix(f"fab -H {host.name} {task}", guided)


def on_host(host: Host, *commands: Sequence[str], action: str | None = None) -> Fix:
    """Commands run as root on the host, written as one ssh line."""
    script = " && ".join(shlex.join(["sudo", *argv]) for argv in commands)
    return Fix(f"ssh {host.name} {shlex.quote(script)}", action)


def env_perms(host: Host) -> Fix:
    layout = host.layout
    owner = f"{layout.service_user}:{layout.service_user}"
    return on_host(
        host,
        ["chown", owner, layout.env_file],
        ["chmod", "0600", layout.env_file],
        action="env-perms",
    )


def restart_from(host: Host, role: str) -> Fix:
    """The runbook's order from `role` on: stop the later services, start each with its gate."""
    chosen = services.stack(host)
    tail = chosen[next(i for i, s in enumerate(chosen) if s.role == role) :]
    stop = ["systemctl", "stop", *(s.unit for s in reversed(tail))]
    starts = [["systemctl", "start", s.unit] for s in tail]
    return on_host(host, stop, *starts, action=f"start:{role}")


def install(host: Host, package: str) -> Fix:
    return on_host(host, ["apt-get", "install", "-y", package])


def read_log(host: Host, path: str) -> Fix:
    return on_host(host, ["tail", "-n", "50", path])
