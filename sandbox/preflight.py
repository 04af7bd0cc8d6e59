"""Can the sandbox run on this machine? Used by `up` and by the test tier to skip or fail."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

TOOLS = (
    "debootstrap",
    "systemd-nspawn",
    "ip",
    "nsenter",
    "mount",
    "ssh",
    "sftp",
    "ssh-keygen",
    "git",
)


def problems() -> list[str]:
    """Empty when the sandbox can run; otherwise one line per missing prerequisite."""
    found = []
    if os.geteuid() != 0:
        found.append("not root (netns, veth, overlay mounts and nspawn need root)")
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        found.append(
            f"missing tools: {', '.join(missing)} "
            "(apt-get install debootstrap systemd-container iproute2 openssh-client git)"
        )
    try:
        if "overlay" not in Path("/proc/filesystems").read_text():
            found.append("kernel has no overlayfs")
    except OSError:
        found.append("cannot read /proc/filesystems")
    return found
