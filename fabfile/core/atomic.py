"""Whole-file writes on the operator's machine: a temp name beside the target, fsync, rename.

Readers (a second fab run, node_exporter, systemd) see the old file or the whole new one,
never a torn one; a failed write leaves the target as it was and no temp behind.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path


def write_file(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Replace `path` with `data`, mode `mode` whatever the umask (0600: the store's rule)."""
    temp = path.with_name(f".{path.name}.tmp-{secrets.token_hex(8)}")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(temp, flags, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
