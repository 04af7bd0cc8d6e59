"""Encryption at rest with age (pyrage), and reading any backup file back as plaintext.

When the inventory names age recipients, backups of every kind are stored as
``<name>.age``: the plaintext never lands in the store (a streamed logs archive is
encrypted as it arrives, stored_stream). Their FileRecord keeps
``sha256`` of the plaintext (so unchanged content dedupes, though age output
differs every time), ``ciphertext_sha256`` of the stored bytes, and ``size`` of
the stored bytes (what the store's integrity checks compare with the disk).
Decrypting needs the operator's identity file (``backup.age_identity``).
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import pyrage
from pyrage import x25519

from . import output, secrets
from .errors import (
    BackupNotFoundError,
    StoreError,
    UsageError,
    ZachotError,
    local_write_error,
)
from .manifest import FileRecord
from .store import BackupRef, Store

if TYPE_CHECKING:
    from .model import Host

SUFFIX = ".age"
SECRET_KINDS: tuple[str, ...] = ("env", "redis")  # never off-site unencrypted
MAGIC = b"age-encryption.org/v1\n"
IDENTITY_PREFIX = "AGE-SECRET-KEY-1"
MAX_IDENTITY_BYTES = 64 * 1024
SET_IDENTITY = "set backup.age_identity to the age key file of one of the recipients"


class CryptoError(ZachotError):
    pass


def recipients_for(host: Host, kind: str) -> tuple[str, ...]:
    """The age public keys a backup of `kind` is encrypted to; () means plaintext.

    Every kind: units carry Environment= secrets, logs whatever the app printed."""
    del kind  # one policy for all kinds; callers still say which they store
    return tuple(host.backup.age_recipients)


def stored_name(name: str, *, encrypted: bool) -> str:
    return name + SUFFIX if encrypted else name


def is_encrypted(record: FileRecord) -> bool:
    return record.ciphertext_sha256 is not None


def stored_sha256(record: FileRecord) -> str:
    """The hash of the bytes in the store (and off-site): the ciphertext's when encrypted."""
    return record.ciphertext_sha256 or record.sha256


def same_recipients(meta: dict, recipients: Sequence[str]) -> bool:
    """Whether a backup's manifest meta says it was encrypted to exactly these keys."""
    recorded = (meta.get("encryption") or {}).get("recipients") or []
    return sorted(recorded) == sorted(recipients)


def encryption_meta(recipients: Sequence[str]) -> dict[str, object]:
    """What the manifest records: public keys only, so a rotated key shows which backups need it."""
    return {"encryption": {"tool": "age", "recipients": sorted(recipients)}}


# -- encrypting ---------------------------------------------------------------


def _recipients(keys: Sequence[str]) -> list[x25519.Recipient]:
    parsed = []
    for key in keys:
        try:
            parsed.append(x25519.Recipient.from_str(key))
        except pyrage.RecipientError:
            raise UsageError(
                f"backup.age_recipients: {key[:12]}… is not a valid age public key "
                "(copy it from `age-keygen -y` or the key file's '# public key:' line)"
            ) from None
    if not parsed:
        raise UsageError("no age recipients given; set backup.age_recipients")
    return parsed


def encrypt(plaintext: bytes, recipients: Sequence[str]) -> bytes:
    return pyrage.encrypt(plaintext, _recipients(recipients))


class _HashingWriter:
    def __init__(self, out: BinaryIO) -> None:
        self.out, self.digest, self.size = out, hashlib.sha256(), 0
        self.failed: OSError | None = None  # pyrage words our disk's error as EncryptError

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.size += len(data)
        try:
            return self.out.write(data)
        except OSError as exc:
            self.failed = exc
            raise

    def flush(self) -> None:
        self.out.flush()


def write_encrypted(
    path: Path, plaintext: bytes | BinaryIO, recipients: Sequence[str]
) -> tuple[int, str]:
    """Encrypt to a new file at `path` (0600, fsynced); returns (size, sha256) of the ciphertext.

    Takes bytes or a readable binary file; the file form streams (large redis dumps).
    """
    keys = _recipients(recipients)
    reader = io.BytesIO(plaintext) if isinstance(plaintext, bytes) else plaintext
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            writer = _HashingWriter(out)
            pyrage.encrypt_io(reader, writer, keys)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return writer.size, writer.digest.hexdigest()


class StoredStream:
    """A new store file filled by write() while its bytes arrive (stored_stream)."""

    HEAD = 8

    def __init__(self, path: Path, recipients: Sequence[str]) -> None:
        self.path, self.recipients = path, tuple(recipients)
        self.head = b""  # the plaintext's first bytes (a compressor's magic number)
        self.size = 0  # of the stored bytes, and their sha256: set once the file is whole
        self.sha256 = ""
        self._write: Callable[[bytes], object] = lambda data: None

    def write(self, data: bytes) -> None:
        if len(self.head) < self.HEAD:
            self.head += data[: self.HEAD - len(self.head)]
        try:
            self._write(data)
        except OSError as exc:  # our disk (full, say), as every transfer says it
            raise local_write_error(self.path, exc) from None

    @property
    def encrypted(self) -> bool:
        return bool(self.recipients)

    def record(self, plain: FileRecord) -> FileRecord:
        """plain's record as stored: the ciphertext's name, size and sha256 when sealed."""
        if not self.encrypted:
            return plain
        name = stored_name(plain.name, encrypted=True)
        return replace(plain, name=name, size=self.size, ciphertext_sha256=self.sha256)


@contextmanager
def stored_stream(path: Path, recipients: Sequence[str]) -> Iterator[StoredStream]:
    """A new 0600 file at path (path.age with recipients, age-encrypted on the way, so the
    plaintext never touches the disk) fed by the yielded StoredStream's write(). Fsynced
    once the block ends; removed if it raises."""
    keys = _recipients(recipients) if recipients else []
    stream = StoredStream(path.with_name(stored_name(path.name, encrypted=bool(keys))), recipients)
    fd = os.open(stream.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    fed = False  # past the caller's block: an OSError from here on is our disk's
    try:
        with os.fdopen(fd, "wb") as out:
            stored = _HashingWriter(out)
            with _encrypting(stored, keys) if keys else _as_is(stored) as write:
                stream._write = write
                yield stream
                fed = True
            out.flush()
            os.fsync(out.fileno())
        stream.size, stream.sha256 = stored.size, stored.digest.hexdigest()
    except OSError as exc:
        stream.path.unlink(missing_ok=True)
        if not fed:
            raise
        raise local_write_error(stream.path, exc) from None
    except BaseException:
        stream.path.unlink(missing_ok=True)
        raise


@contextmanager
def _as_is(out: _HashingWriter) -> Iterator[Callable[[bytes], object]]:
    yield out.write


@contextmanager
def _encrypting(
    out: _HashingWriter, keys: list[x25519.Recipient]
) -> Iterator[Callable[[bytes], object]]:
    """write() of plaintext, age-encrypted into out as it comes. pyrage reads its input as a
    file, so it runs on its own thread at the far end of a pipe."""
    reader, writer = os.pipe()
    failed: list[BaseException] = []

    def encrypt() -> None:
        try:
            with os.fdopen(reader, "rb") as source:
                pyrage.encrypt_io(source, out, keys)
        except BaseException as exc:  # raised on the caller's thread, below
            failed.append(out.failed or exc)

    thread = threading.Thread(target=encrypt, name="age-encrypt", daemon=True)
    thread.start()

    def stopped() -> BaseException:
        """The pipe broke: the encryptor stopped, and its error (a full disk) is the one."""
        thread.join()
        return failed[0] if failed else StoreError("age encryption stopped")

    def write(data: bytes) -> None:
        try:
            sink.write(data)
        except BrokenPipeError:
            raise stopped() from None

    try:
        with os.fdopen(writer, "wb") as sink:
            yield write
    except BrokenPipeError:  # on the last flush
        raise stopped() from None
    finally:
        thread.join()  # the pipe is closed: it has read to the end and finished the file
    if failed:
        raise failed[0]


# -- decrypting ---------------------------------------------------------------


def load_identities(identity: Path | None, *, what: str) -> list[x25519.Identity]:
    """The AGE-SECRET-KEY-1… lines of an age key file (age-keygen's format)."""
    if identity is None:
        raise UsageError(f"cannot decrypt {what}: backup.age_identity is not set; {SET_IDENTITY}")
    path = Path(identity).expanduser()
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_IDENTITY_BYTES + 1)
    except OSError as exc:
        raise UsageError(
            f"cannot decrypt {what}: cannot read {path}: {exc.strerror or exc}; {SET_IDENTITY}"
        ) from None
    lines = raw.decode("utf-8", "replace").splitlines()
    keys = [line.strip() for line in lines if line.strip().startswith(IDENTITY_PREFIX)]
    identities = []
    for key in keys:
        try:
            identities.append(x25519.Identity.from_str(key))
        except pyrage.IdentityError:
            continue  # reported below if nothing usable is left
    if len(raw) > MAX_IDENTITY_BYTES or not identities:
        raise UsageError(
            f"cannot decrypt {what}: {path} holds no age identity "
            f"(expected a line starting {IDENTITY_PREFIX}); {SET_IDENTITY}"
        )
    return identities


def decrypt(ciphertext: bytes, identity: Path | None, *, what: str) -> bytes:
    """Plaintext of an age file; every failure is one CryptoError/UsageError line."""
    identities = load_identities(identity, what=what)
    if not ciphertext.startswith(MAGIC):
        raise CryptoError(f"cannot decrypt {what}: not an age file (damaged?)")
    try:
        return pyrage.decrypt(ciphertext, identities)
    except pyrage.DecryptError as exc:
        if "no matching keys" in str(exc).lower():
            raise CryptoError(
                f"cannot decrypt {what}: no matching identity in {identity}; {SET_IDENTITY}"
            ) from None
        raise CryptoError(f"cannot decrypt {what}: damaged age file ({exc})") from None


def decrypt_file(path: Path, identity: Path | None) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise StoreError(f"cannot read {path}: {exc.strerror or exc}") from None
    return decrypt(data, identity, what=str(path))


def find_record(ref: BackupRef, name: str) -> FileRecord:
    """`name` in a backup, by its stored name or by its plaintext name (zachot.env)."""
    record = ref.manifest.file(name) or ref.manifest.file(stored_name(name, encrypted=True))
    if record is None:
        raise BackupNotFoundError(f"backup {ref.host}/{ref.kind}/{ref.id} has no file {name}")
    return record


def open_backup_file(
    store: Store, ref: BackupRef, name: str, host: Host, *, checked: bool = True
) -> bytes:
    """The plaintext of a backed-up file, checked against both manifest hashes.

    For verify and restore: works whether or not the file is encrypted, and
    follows `stored_in` to the backup that holds unchanged content. checked=False
    (a forced restore) skips the hash comparisons, never the decryption.
    """
    record = find_record(ref, name)
    path = store.file_path(ref, record.name)
    where = f"{ref.host}/{ref.kind}/{ref.id}/{record.name}"
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise StoreError(f"cannot read {path}: {exc.strerror or exc}") from None
    if checked and hashlib.sha256(data).hexdigest() != stored_sha256(record):
        raise StoreError(f"{where}: checksum does not match the manifest; the store is damaged")
    if not is_encrypted(record):
        return data
    plaintext = decrypt(data, host.backup.age_identity, what=where)
    # A backup fetched from off-site has no plaintext hash (Manifest.offsite puts the
    # ciphertext's there); age's authentication and the ciphertext hash vouch for it.
    offsite_copy = record.sha256 == record.ciphertext_sha256
    if checked and not offsite_copy and hashlib.sha256(plaintext).hexdigest() != record.sha256:
        raise CryptoError(f"{where}: decrypted content does not match the manifest's sha256")
    return plaintext


def register_env_backup(host: Host) -> None:
    """Register the values of `host`'s newest env backup with the masker.

    For output this process did not parse itself (hosts.exec, a unit's EnvironmentFile=):
    masking only knows values it has seen. No backup, or none this machine can open,
    leaves the masker as it is (with a warning for the latter)."""
    store = Store(host.store.path)
    ref = store.latest(host.name, "env")
    if ref is None or not ref.manifest.files:
        return
    try:
        data = open_backup_file(store, ref, ref.manifest.files[0].name, host)
    except ZachotError as exc:
        output.warn(f"{host.name}: env values from the store are not masked: {exc.message}")
        return
    secrets.env_values(data)
