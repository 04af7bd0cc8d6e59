"""What every step of one recovery shares, and reading backups out of the store."""

from __future__ import annotations

import os
import posixpath
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from ..crypto import open_backup_file
from ..facts import gather, is_file
from ..manifest import FileRecord
from ..model import Host
from ..store import BackupRef, Store
from ..transport import Transport


@dataclass
class RestoreContext:
    host: Host
    transport: Transport
    store: Store
    source: str  # the host whose backups are restored (new-box restores prod's)
    health_timeout: float = 60.0
    # That host's inventory entry: its age identity decrypts its backups.
    origin: Host | None = None
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    _workdir: tempfile.TemporaryDirectory | None = field(default=None, init=False)

    @property
    def stamp(self) -> str:
        """Suffix of the copies a restore keeps: <path>.pre-restore.<stamp>."""
        return self.now.strftime("%Y%m%d_%H%M%S")

    def backup(self, kind: str, selector: str) -> BackupRef:
        return self.store.resolve(self.source, kind, selector)

    @property
    def workdir(self) -> Path:
        """A private local directory for this run, removed by close()."""
        if self._workdir is None:
            self._workdir = tempfile.TemporaryDirectory(prefix="zachot-restore-")
            os.chmod(self._workdir.name, 0o700)
        return Path(self._workdir.name)

    def plaintext(self, ref: BackupRef, record: FileRecord) -> Path:
        """A private local copy of a backed-up file, decrypted and checked, ready to push."""
        path = self.workdir / record.name.removesuffix(".age")
        data = open_backup_file(self.store, ref, record.name, self.origin or self.host)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        return path

    def remote_bytes(self, path: str) -> bytes | None:
        """A server file's content (None when absent), for dry-run diffs."""
        if gather(self.transport, is_file(path)) is False:
            return None
        local = self.workdir / f"current-{posixpath.basename(path)}"
        self.transport.pull(path, local, sudo=True)
        return local.read_bytes()

    def close(self) -> None:
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None
