"""The SFTP off-site back end (offsite_backend.Backend): the vault box, SFTP-only.

The vault has no exec (often chrooted), so everything is SFTP requests. Each file goes up
under a temporary name, is read back and hashed, and only then is renamed into place
(posix-rename); nothing half-sent is ever under its final name.
"""

from __future__ import annotations

import contextlib
import hashlib
import posixpath
import secrets
import stat
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import BinaryIO

import paramiko

from . import output
from .errors import StoreError, TransferError
from .manifest import MANIFEST_NAME
from .model import Host
from .offsite_backend import CHUNK, TEMP_MARK, RemoteBackup, Upload
from .transport import IDLE_TIMEOUT, Transport

SFTP_ERRORS = (OSError, EOFError, paramiko.SSHException, paramiko.SFTPError)
# Sessions at once on one SSH connection: OpenSSH allows 10 (MaxSessions) by default.
MAX_SESSIONS = 8


class SftpBackend:
    """An open SFTP session to the off-site box, through the project's verified Transport."""

    def __init__(self, host: Host, sftp: paramiko.SFTPClient) -> None:
        self.host, self.sftp = host, sftp
        self.name = host.name

    @classmethod
    @contextlib.contextmanager
    def open(cls, host: Host) -> Iterator[SftpBackend]:
        with Transport(host) as transport:
            try:
                sftp = transport.connection.sftp()
            except SFTP_ERRORS as exc:
                raise TransferError(
                    f"{host.name}: no SFTP session ({exc or type(exc).__name__}); "
                    "the off-site box must allow the sftp subsystem"
                ) from None
            # A dead link must fail, not hang: no SFTP reply for this long ends the run.
            sftp.get_channel().settimeout(IDLE_TIMEOUT)
            yield cls(host, sftp)

    def alive(self) -> bool:
        transport = self.sftp.get_channel().get_transport()
        return transport is not None and transport.is_active()

    @contextlib.contextmanager
    def workers(self, n: int) -> Iterator[list[SftpBackend]]:
        """This session and up to n-1 more on the same SSH connection: paramiko's SFTPClient
        mixes up replies when several threads use it, so each worker has its own. A server
        that allows fewer sessions gets fewer workers."""
        transport = self.sftp.get_channel().get_transport()

        def session(_: int) -> paramiko.SFTPClient | None:
            try:
                sftp = paramiko.SFTPClient.from_transport(transport)
            except SFTP_ERRORS:
                return None
            if sftp is not None:
                sftp.get_channel().settimeout(IDLE_TIMEOUT)
            return sftp

        wanted = min(n, MAX_SESSIONS) - 1
        extra: list[paramiko.SFTPClient] = []
        try:
            if wanted > 0:  # opened at once: each costs a few round trips
                with ThreadPoolExecutor(max_workers=wanted) as pool:
                    extra = [sftp for sftp in pool.map(session, range(wanted)) if sftp]
            yield [self, *(SftpBackend(self.host, sftp) for sftp in extra)]
        finally:
            for sftp in extra:
                with contextlib.suppress(*SFTP_ERRORS):
                    sftp.close()

    def fail(self, path: str, exc: BaseException) -> TransferError:
        if isinstance(exc, EOFError) or not self.alive():  # paramiko's word for a dead link
            why = "connection lost"
        else:
            why = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        return TransferError(f"{self.name}: {path}: {why}")

    def list_dirs(self, path: str) -> list[str]:
        try:
            entries = self.sftp.listdir_attr(path)
        except FileNotFoundError:
            return []
        except SFTP_ERRORS as exc:
            raise self.fail(path, exc) from None
        return sorted(e.filename for e in entries if stat.S_ISDIR(e.st_mode or 0))

    def makedirs(self, path: str) -> None:
        """mkdir -p, each new directory 0700 (backups hold secrets). A new backup's directory
        under an existing one costs one request, not one per path component."""
        try:
            self.sftp.mkdir(path, 0o700)
            return
        except SFTP_ERRORS as exc:  # it exists, or its parent does not
            first = exc
        try:
            if stat.S_ISDIR(self.sftp.stat(path).st_mode):
                return
            raise TransferError(f"{self.name}: {path} exists and is not a directory")
        except FileNotFoundError:
            pass
        except SFTP_ERRORS as exc:
            raise self.fail(path, exc) from None
        parent = posixpath.dirname(path)
        if parent in ("", "/", path):
            raise self.fail(path, first)
        self.makedirs(parent)
        try:
            self.sftp.mkdir(path, 0o700)
        except SFTP_ERRORS as exc:
            if not self._is_dir(path):  # else another worker made it meanwhile
                raise self.fail(path, exc) from None

    def _is_dir(self, path: str) -> bool:
        with contextlib.suppress(*SFTP_ERRORS):
            return stat.S_ISDIR(self.sftp.stat(path).st_mode or 0)
        return False

    def probe(self, path: str) -> RemoteBackup | None:
        """What one backup directory holds (one listing), or None if there is none."""
        try:
            entries = self.sftp.listdir_attr(path)
        except FileNotFoundError:
            return None
        except SFTP_ERRORS as exc:
            raise self.fail(path, exc) from None
        files: dict[str, int] = {}
        temps: list[str] = []
        for item in sorted(entries, key=lambda a: a.filename):
            if item.filename.startswith(".") and TEMP_MARK in item.filename:
                temps.append(item.filename)
            elif stat.S_ISREG(item.st_mode or 0):
                files[item.filename] = item.st_size or 0
        return RemoteBackup(files, tuple(temps))

    def sha256(self, path: str, size: int, label: str) -> str:
        """Read a file back and hash it: SFTP has no exec, so this is how we check."""
        return self.get(path, None, size, label)

    def get(self, path: str, dest: BinaryIO | None, size: int, label: str) -> str:
        digest = hashlib.sha256()
        try:
            with self.sftp.open(path, "rb") as handle, output.progress(label, size) as advance:
                _prefetch(handle, size)
                # Exactly size bytes: a read past the prefetched end is one more round trip
                # (paramiko asks the server), and sometimes more. A file of another size is
                # caught by its listed size (offsite.py compares it with the manifest).
                left = size
                while left > 0 and (block := handle.read(min(CHUNK, left))):
                    left -= len(block)
                    digest.update(block)
                    if dest is not None:
                        dest.write(block)
                    advance(len(block))
        except SFTP_ERRORS as exc:
            raise self.fail(path, exc) from None
        return digest.hexdigest()

    def read_small(self, path: str, limit: int) -> bytes:
        try:
            return self._read(path, limit)
        except SFTP_ERRORS as exc:
            raise self.fail(path, exc) from None

    def read_optional(self, path: str, limit: int) -> bytes | None:
        """read_small, or None when the file is not there."""
        try:
            return self._read(path, limit)
        except FileNotFoundError:
            return None
        except SFTP_ERRORS as exc:
            raise self.fail(path, exc) from None

    def _read(self, path: str, limit: int) -> bytes:
        """A whole file in three requests however long it is: its size, then every block
        asked for at once (prefetch), not one round trip per 32 KiB."""
        with self.sftp.open(path, "rb") as handle:
            size = handle.stat().st_size or 0
            if size > limit:
                raise TransferError(f"{self.name}: {path}: larger than {limit} bytes")
            if not size:
                return b""
            _prefetch(handle, size)
            return handle.read(size)

    def upload(self, item: Upload, directory: str, label: str) -> None:
        """tmp name -> read back and hash -> posix-rename; nothing half-sent under its name."""
        final = posixpath.join(directory, item.name)
        tmp = posixpath.join(directory, f".{item.name}{TEMP_MARK}{secrets.token_hex(4)}")
        try:
            sent = self._write(item, tmp, label)
            if sent != item.sha256:
                raise StoreError(
                    f"{item.local}: does not match its manifest; the store is damaged "
                    "(run fab backup.verify); not sent"
                )
            size = self.sftp.stat(tmp).st_size
            if size != item.size:
                raise TransferError(f"{self.name}: {final}: {size} bytes arrived of {item.size}")
            if self.sha256(tmp, item.size, f"check {label}") != item.sha256:
                raise TransferError(f"{self.name}: {final}: checksum differs after upload")
            self.sftp.posix_rename(tmp, final)
        except SFTP_ERRORS as exc:
            self._remove_quietly(tmp)
            raise self.fail(final, exc) from None
        except BaseException:
            self._remove_quietly(tmp)
            raise

    def _write(self, item: Upload, tmp: str, label: str) -> str:
        digest = hashlib.sha256()
        with (
            item.open() as src,
            self.sftp.open(tmp, "wbx") as dst,
            output.progress(label, item.size) as advance,
        ):
            dst.chmod(0o600)  # before any byte is written
            dst.set_pipelined(True)
            while block := src.read(CHUNK):
                digest.update(block)
                dst.write(block)
                advance(len(block))
        return digest.hexdigest()

    def remove(self, path: str) -> None:
        self._gone(self.sftp.remove, path)

    def delete_backup(self, directory: str) -> None:
        # The manifest first: from here on the backup is incomplete, so nothing counts on it.
        self.remove(posixpath.join(directory, MANIFEST_NAME))
        there = self.probe(directory)  # what is really there, upload leftovers included
        for name in [*sorted(there.files), *there.temps] if there else ():
            self.remove(posixpath.join(directory, name))
        self._gone(self.sftp.rmdir, directory)

    def _gone(self, remove: Callable[[str], object], path: str) -> None:
        """Remove `path`; already gone is done (a re-run after a cut finishes the job)."""
        try:
            remove(path)
        except FileNotFoundError:
            pass
        except SFTP_ERRORS as exc:
            raise self.fail(path, exc) from None

    def locked_until(self, directory: str) -> str | None:
        return None  # an SFTP box has no retention lock

    def _remove_quietly(self, path: str) -> None:
        with contextlib.suppress(*SFTP_ERRORS):
            self.sftp.remove(path)


# Asked for before the first answer is read, up to this size; larger files are asked for by
# paramiko's prefetch thread while we read (their requests would fill the server's window).
SEND_FIRST = 4 << 20


def _prefetch(handle: paramiko.SFTPFile, size: int) -> None:
    """Every block of the file asked for at once, so the reads wait for the link once.

    paramiko's prefetch() sends the requests from a thread while we read the answers, and
    marks the prefetch done whenever the answers catch up with the requests sent so far
    (SFTPFile._async_response): the rest is then read one round trip per 32 KiB. Sending
    every request before reading any answer avoids that race; unbounded prefetch, since a
    bounded one runs at about 5 MB/s (FACTS.md)."""
    if size > SEND_FIRST:
        handle.prefetch(size)
        return
    block = handle.MAX_REQUEST_SIZE
    handle._prefetching, handle._prefetch_done = True, False
    handle._prefetch_thread([(at, min(block, size - at)) for at in range(0, size, block)], None)
