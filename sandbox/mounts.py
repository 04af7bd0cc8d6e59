"""Overlay mounts for box roots: the cached image stays read-only, each box writes its own upper."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


def is_mounted(target: Path) -> bool:
    want = str(target.resolve())
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == want for line in f)


def mount_overlay(lowers: list[Path], upper: Path, work: Path, target: Path) -> None:
    """lowers are listed top-most first, as overlayfs expects."""
    for d in (upper, work, target):
        d.mkdir(parents=True, exist_ok=True)
    opts = f"lowerdir={':'.join(map(str, lowers))},upperdir={upper},workdir={work}"
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, str(target)], check=True)


def unmount(target: Path) -> None:
    # Lazy fallback only for our own mount point, if something still holds it open.
    while is_mounted(target):
        if subprocess.run(["umount", str(target)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(target)], check=True)


def wipe(*dirs: Path) -> None:
    """Remove a box's writable layer; refuses to run under a live mount."""
    for d in dirs:
        if d.exists():
            if is_mounted(d):
                raise RuntimeError(f"{d} is still mounted")
            shutil.rmtree(d)
