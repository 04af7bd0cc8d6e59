"""Sealed metadata off-site: the manifests and the per-host index are age-encrypted on the
way out and decrypted on the way in, so a bucket operator sees object names and sizes and
nothing else (the backups' own files are age ciphertext already: offsite.unencrypted).

`Sealed` wraps an open Backend; the decisions (offsite.py, prune.py, fetch) keep reading
plaintext JSON and make the same requests (the index is still one GET). What changes:

- reading the index or a manifest needs the age identity (backup.age_identity);
- age output differs on every run, so the index records the manifest's plaintext size and
  sha256 (the index itself is sealed), and a listing (probe) reports a sealed manifest by
  its plaintext size too: one more GET, only for backups the index lacks.
"""

from __future__ import annotations

import contextlib
import hashlib
import posixpath
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import BinaryIO

from . import crypto
from .errors import StoreError, UsageError
from .manifest import MANIFEST_NAME
from .model import Host
from .offsite_backend import INDEX_NAME, Backend, RemoteBackup, Upload

SEALED = frozenset({MANIFEST_NAME, INDEX_NAME})
MAX_SEALED = 256 * 1024 * 1024


def recipients(host: Host) -> tuple[str, ...]:
    """Whom `host`'s off-site metadata is sealed to; () only where the inventory opts kinds
    out (backup.offsite_plain), else a one-line UsageError naming the key to set."""
    keys = tuple(host.backup.age_recipients)
    if not keys and not host.backup.offsite_plain:
        raise UsageError(
            f"{host.name}: what goes to S3 is age-encrypted, index and manifests included, "
            "and backup.age_recipients is not set; set it (or list the kinds that may go "
            "unencrypted in backup.offsite_plain)"
        )
    return keys


@contextlib.contextmanager
def sealing(
    opened: contextlib.AbstractContextManager[Backend],
    keys: Sequence[str],
    identity: Path | None,
) -> Iterator[Backend]:
    """The back end `opened` gives, sealed to `keys` (as it is without any)."""
    with opened as backend:
        yield Sealed(backend, tuple(keys), identity) if keys else backend


class Sealed:
    """A Backend whose manifests and index are age ciphertext there, plaintext here."""

    def __init__(self, inner: Backend, keys: tuple[str, ...], identity: Path | None) -> None:
        self.inner, self.keys, self.identity = inner, keys, identity
        self.name = inner.name

    def upload(self, item: Upload, directory: str, label: str) -> None:
        if item.name in SEALED:
            with item.open() as source:  # never a plain manifest or index, however it came
                plain = source.read(MAX_SEALED + 1)
            if hashlib.sha256(plain).hexdigest() != item.sha256:
                raise StoreError(f"{item.local}: does not match its manifest; not sent")
            data = crypto.encrypt(plain, self.keys)
            item = Upload(item.name, item.local, len(data), hashlib.sha256(data).hexdigest(), data)
        self.inner.upload(item, directory, label)

    def read_optional(self, path: str, limit: int) -> bytes | None:
        data = self.inner.read_optional(path, limit)
        return None if data is None else self._open(path, data)

    def read_small(self, path: str, limit: int) -> bytes:
        return self._open(path, self.inner.read_small(path, limit))

    def probe(self, path: str) -> RemoteBackup | None:
        there = self.inner.probe(path)
        if there is None or MANIFEST_NAME not in there.files:
            return there
        # The decisions compare sizes with the local (plaintext) manifest's.
        text = self.read_small(posixpath.join(path, MANIFEST_NAME), MAX_SEALED)
        return replace(there, files={**there.files, MANIFEST_NAME: len(text)})

    def _open(self, path: str, data: bytes) -> bytes:
        if posixpath.basename(path) not in SEALED or not data.startswith(crypto.MAGIC):
            # A plain one (written before sealing) reads as it is; age gives secrecy, not
            # authenticity (anyone with the public key can encrypt), so this costs nothing.
            return data
        return crypto.decrypt(data, self.identity, what=f"{self.name}:{path}")

    # -- the rest as the back end does it --

    def alive(self) -> bool:
        return self.inner.alive()

    @contextlib.contextmanager
    def workers(self, n: int) -> Iterator[list[Backend]]:
        with self.inner.workers(n) as views:
            yield [Sealed(view, self.keys, self.identity) for view in views]

    def list_dirs(self, path: str) -> list[str]:
        return self.inner.list_dirs(path)

    def makedirs(self, path: str) -> None:
        self.inner.makedirs(path)

    def sha256(self, path: str, size: int, label: str) -> str:
        return self.inner.sha256(path, size, label)

    def get(self, path: str, dest: BinaryIO | None, size: int, label: str) -> str:
        return self.inner.get(path, dest, size, label)

    def remove(self, path: str) -> None:
        self.inner.remove(path)

    def delete_backup(self, directory: str) -> None:
        self.inner.delete_backup(directory)

    def locked_until(self, directory: str) -> str | None:
        return self.inner.locked_until(directory)
