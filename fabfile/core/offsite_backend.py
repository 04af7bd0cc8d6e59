"""The off-site back-end interface: what replicate, verify, prune, status and fetch need
from where the off-site copy lives, and the choice of back end from the inventory.

Paths are POSIX paths under the back end's root (``<offsite_dir>/<host>/<kind>/<id>/<file>``):
the SFTP login directory, or the bucket (offsite_dir is then the key prefix). The
decisions (offsite.py, prune.py) are written once against `Backend`; offsite_sftp.py and
offsite_s3.py implement it, and are with transport.py the only modules that do remote I/O.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol

from .errors import UsageError, ZachotError
from .manifest import MANIFEST_NAME
from .model import Host

CHUNK = 1 << 20
TEMP_MARK = ".part-"  # ".<name>.part-<hex>": an upload not yet renamed into place (SFTP)
INDEX_NAME = "index.json"  # <offsite_dir>/<host>/index.json: what is there (offsite.Index)
MAX_TRANSFERS = 32  # backup.offsite_transfers at most (S3's connection pool is this large)


@dataclass(frozen=True)
class RemoteBackup:
    """What one backup directory off-site holds."""

    files: dict[str, int]  # regular file name -> size
    temps: tuple[str, ...] = ()  # leftovers of interrupted uploads
    # name -> sha256 of the bytes off-site, as the index records them (none from a listing)
    sha256: dict[str, str] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return MANIFEST_NAME in self.files


@dataclass(frozen=True)
class Upload:
    """One file to send: its name there, the local bytes, and what they must be."""

    name: str
    local: Path
    size: int
    sha256: str
    data: bytes | None = None  # sent instead of the local file's bytes (the off-site manifest)

    def open(self) -> BinaryIO:
        return io.BytesIO(self.data) if self.data is not None else open_local(self.local)


def open_local(path: Path) -> BinaryIO:
    """The local bytes to send (a seam: tests make it fail mid-upload)."""
    return path.open("rb")


class Backend(Protocol):
    """One open off-site store. Every method raises ZachotError (TransferError mostly)
    with a one-line message; none leaves a partly written file under its final name."""

    name: str  # for messages: the vault's host name, or s3://bucket

    def alive(self) -> bool:
        """Still usable after a failure (False: the link is gone, stop trying)."""

    def workers(self, n: int) -> contextlib.AbstractContextManager[list[Backend]]:
        """Up to n views of this store, one per thread sending at once (each view is used by
        one thread at a time; fewer when the store allows fewer sessions)."""

    def list_dirs(self, path: str) -> list[str]:
        """The names of the directories directly under `path`, sorted ([] if none)."""

    def probe(self, path: str) -> RemoteBackup | None:
        """What one backup directory holds (one listing), or None if there is none."""

    def makedirs(self, path: str) -> None:
        """Make `path` (private) before files go into it."""

    def upload(self, item: Upload, directory: str, label: str) -> None:
        """Send `item` into `directory`, verified (by the server's checksum or a read-back)
        before it appears under its name; a local file that does not match item.sha256 is
        not sent (StoreError)."""

    def sha256(self, path: str, size: int, label: str) -> str:
        """Read a file back and hash it (backup.verify's deep check)."""

    def get(self, path: str, dest: BinaryIO | None, size: int, label: str) -> str:
        """Copy a file into `dest` (None: only hash it); its sha256."""

    def read_small(self, path: str, limit: int) -> bytes:
        """A whole small file (manifests, the index)."""

    def read_optional(self, path: str, limit: int) -> bytes | None:
        """read_small, or None when the file is not there."""

    def remove(self, path: str) -> None:
        """Delete one file; gone already is fine."""

    def delete_backup(self, directory: str) -> None:
        """Delete one backup: its manifest first (from then on it is incomplete, so nothing
        counts on it), then everything else in it, upload leftovers included."""

    def locked_until(self, directory: str) -> str | None:
        """When the backup's retention ends (Object Lock), if it is still locked."""


# -- choosing the back end ----------------------------------------------------------------


@dataclass(frozen=True)
class Where:
    """Where one host's off-site copy lives: `key` groups hosts that share one session."""

    key: str
    open: Callable[[], contextlib.AbstractContextManager[Backend]]
    sealed_to: str = ""  # whom its metadata is sealed to: hosts differing here differ in session


def has_offsite(host: Host) -> bool:
    return bool(host.backup.offsite_host or host.backup.offsite_s3_bucket)


def locate(host: Host, find: Callable[[str], Host]) -> Where:
    """The back end that keeps `host`'s off-site copy (find: Inventory.host)."""
    settings = host.backup
    if settings.offsite_s3_bucket or settings.offsite_s3_endpoint:
        if settings.offsite_host:
            raise UsageError(
                f"{host.name}: set either backup.offsite_host (SFTP) or backup.offsite_s3_bucket"
                " (S3), not both"
            )
        if not (settings.offsite_s3_bucket and settings.offsite_s3_endpoint):
            missing = "offsite_s3_bucket" if settings.offsite_s3_endpoint else "offsite_s3_endpoint"
            raise UsageError(f"{host.name}: S3 off-site needs backup.{missing} too")
        from . import offsite_s3, offsite_seal  # boto3 is imported only when S3 is used

        keys = offsite_seal.recipients(host)
        return Where(
            f"s3:{settings.offsite_s3_endpoint}/{settings.offsite_s3_bucket}",
            lambda: offsite_seal.sealing(
                offsite_s3.S3Backend.open(settings), keys, settings.age_identity
            ),
            f"{sorted(keys)} {settings.age_identity}",
        )
    name = settings.offsite_host
    if not name:
        raise UsageError(
            f"{host.name}: no off-site box; set backup.offsite_host in the inventory "
            "to the name of an SFTP host (or backup.offsite_s3_bucket)"
        )
    if name == host.name:
        raise UsageError(f"{host.name}: backup.offsite_host names the host itself")
    vault = find(name)
    from .offsite_sftp import SftpBackend

    return Where(name, lambda: SftpBackend.open(vault))


def grouped(
    hosts: Sequence[Host], find: Callable[[str], Host]
) -> tuple[dict[str, tuple[Where, list[Host]]], dict[str, ZachotError]]:
    """Hosts with an off-site copy by where it lives (one session each), and the hosts
    whose setting is wrong with why."""
    groups: dict[str, tuple[Where, list[Host]]] = {}
    errors: dict[str, ZachotError] = {}
    for host in hosts:
        try:
            where = locate(host, find)
        except ZachotError as exc:
            errors[host.name] = exc
            continue
        label, n = where.key, 1
        while label in groups and groups[label][0].sealed_to != where.sealed_to:
            n += 1  # the same bucket, sealed to other keys: a session of its own
            label = f"{where.key} #{n}"
        groups.setdefault(label, (where, []))[1].append(host)
    return groups, errors


@contextlib.contextmanager
def open_offsite(host: Host, find: Callable[[str], Host]) -> Iterator[Backend]:
    with locate(host, find).open() as backend:
        yield backend
