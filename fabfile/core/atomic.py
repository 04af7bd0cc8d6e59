"""Whole-file writes on the operator's machine: a temp name beside the target, fsync, rename.

Readers (a second fab run, node_exporter, systemd) see the old file or the whole new one,
never a torn one; a failed write leaves the target as it was and no temp behind. read_json
is the reading side for the store's small JSON records.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from pathlib import Path
from typing import Any


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


def read_json(path: Path, limit: int) -> Any:
    """A small JSON record, never through a link; OSError or ValueError if missing or damaged
    (each caller treats that as "none")."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as handle:
        return json.loads(handle.read(limit))
