"""The base image: a Debian 12 rootfs built once by debootstrap and cached by recipe hash."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from sandbox.config import SANDBOX_PKG, Paths

SUITE = "bookworm"
MIRROR = os.environ.get("ZACHOT_SANDBOX_MIRROR", "http://deb.debian.org/debian")
# The runbook's base packages plus what a booted server needs (systemd, sshd, logrotate).
PACKAGES = (
    "systemd,systemd-sysv,dbus,openssh-server,sudo,python3,python3-venv,python3-pip,"
    "git,redis-server,logrotate,iproute2,procps,ca-certificates,curl,less,gzip,zstd"
)
BASE_SCRIPT = SANDBOX_PKG / "provision" / "base.sh"


def recipe_hash() -> str:
    """Changes whenever anything that goes into the image changes."""
    h = hashlib.sha256()
    for part in (SUITE, MIRROR, PACKAGES, BASE_SCRIPT.read_text()):
        h.update(part.encode() + b"\0")
    return h.hexdigest()[:16]


def ensure_base_image(paths: Paths, log=print) -> Path:
    """Return the cached base rootfs, building it (about a minute or two) if missing."""
    final = paths.images / f"base-{recipe_hash()}"
    done = final.with_name(final.name + ".complete")  # beside, not inside: boxes see the rootfs
    if done.exists():
        return final
    tmp = final.with_name(final.name + ".tmp")
    if tmp.exists():  # a crashed build: start over rather than trust it
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    log(f"debootstrap {SUITE} -> {final} (first run only)")
    subprocess.run(
        ["debootstrap", "--variant=minbase", f"--include={PACKAGES}", SUITE, str(tmp), MIRROR],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    shutil.copy(BASE_SCRIPT, tmp / "root" / "base.sh")
    # chroot, not nspawn: nothing has to run yet, only files to write.
    subprocess.run(["chroot", str(tmp), "/bin/bash", "/root/base.sh"], check=True)
    (tmp / "root" / "base.sh").unlink()
    if final.exists():  # left by a crash between rename and marker
        shutil.rmtree(final)
    tmp.rename(final)
    done.write_text(recipe_hash() + "\n")
    return final
