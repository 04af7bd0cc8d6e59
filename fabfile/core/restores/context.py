"""What every step of one recovery shares, and reading backups out of the store."""

from __future__ import annotations

import os
import posixpath
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from .. import output
from ..crypto import open_backup_file
from ..errors import BackupNotFoundError, ZachotError
from ..facts import gather, is_file
from ..manifest import FileRecord, id_sort_key, is_backup_id
from ..model import Host
from ..store import BackupRef, Store
from ..transport import Transport
from ..verify import verify_backup


class BackupDamagedError(ZachotError):
    pass


@dataclass
class RestoreContext:
    host: Host
    transport: Transport
    store: Store
    source: str  # the host whose backups are restored (new-box restores prod's)
    health_timeout: float = 60.0
    # That host's inventory entry: its age identity decrypts its backups.
    origin: Host | None = None
    # Use a backup that fails verification (--force): warn instead of refusing.
    force: bool = False
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    _workdir: tempfile.TemporaryDirectory | None = field(default=None, init=False)

    @property
    def stamp(self) -> str:
        """Suffix of the copies a restore keeps: <path>.pre-restore.<stamp>."""
        return self.now.strftime("%Y%m%d_%H%M%S")

    def backup(self, kind: str, selector: str) -> BackupRef:
        """The backup to restore, checked like backup.verify does; a damaged one is refused."""
        try:
            ref = self.store.resolve(self.source, kind, selector)
        except BackupNotFoundError:
            # The store does not list a backup whose manifest is damaged: say so, not "no such".
            if why := self._unreadable(kind).get(selector):
                raise BackupDamagedError(
                    f"refusing {self.source}/{kind}/{selector}: {why}; without its manifest "
                    "even --force cannot use it: restore another with --from (see fab backup.list)"
                ) from None
            raise
        if selector == "latest":
            for newer, why in self._unreadable(kind).items():
                if id_sort_key(newer) > id_sort_key(ref.id):
                    output.warn(f"skipping the newer {self.source}/{kind}/{newer}: {why}")
        problems = verify_backup(self.store, ref, self.origin or self.host)
        where = f"{ref.host}/{kind}/{ref.id}"
        if problems and not self.force:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise BackupDamagedError(
                f"refusing {where}: it fails verification: {problems[0]}{more}; restore another "
                "with --from (see fab backup.list), or add --force to use it as it is"
            )
        for problem in problems:
            output.warn(f"--force: using {where} although it fails verification: {problem}")
        return ref

    def _unreadable(self, kind: str) -> dict[str, str]:
        """Backup directories of `kind` the store skips (bad or missing manifest): id -> why."""
        listed = {ref.id for ref in self.store.list(self.source, kind)}
        kind_dir = self.store.root / self.source / kind
        names = sorted(p.name for p in kind_dir.iterdir()) if kind_dir.is_dir() else []
        damaged = [name for name in names if is_backup_id(name) and name not in listed]
        problems = self.store.problems(self.source, kind) if damaged else []
        return {
            name: next((p for p in problems if p.startswith(str(kind_dir / name))), "unreadable")
            for name in damaged
        }

    @property
    def workdir(self) -> Path:
        """A private local directory for this run, removed by close()."""
        if self._workdir is None:
            self._workdir = tempfile.TemporaryDirectory(prefix="zachot-restore-")
            os.chmod(self._workdir.name, 0o700)
        return Path(self._workdir.name)

    def plaintext(self, ref: BackupRef, record: FileRecord) -> Path:
        """A private local copy of a backed-up file, decrypted and checked, ready to push.

        Forced, bytes that no longer match the manifest are used as they are (an
        encrypted file still has to decrypt)."""
        path = self.workdir / record.name.removesuffix(".age")
        host = self.origin or self.host
        data = open_backup_file(self.store, ref, record.name, host, checked=not self.force)
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
