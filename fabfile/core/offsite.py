"""The off-site copy: the local store mirrored to a second box over SFTP (the vault).

Layout there is the store's: ``<offsite_dir>/<host>/<kind>/<id>/`` with the
backup's own files and its manifest.json, relative to the SFTP login directory.
The vault is SFTP-only (no exec, often chrooted), so everything here is SFTP
requests: listings to see what is there, uploads, and checks by reading files
back and hashing them.

A backup is complete on the vault exactly when its manifest.json is there. Each
file goes up under a temporary name, is read back and hashed, and only then is
renamed into place (posix-rename); the manifest goes last. An interrupted run
leaves a backup without a manifest, which the next run finishes.

A far vault costs a round trip per request, and listing one backup takes several,
so what the vault holds is read from one file, ``<offsite_dir>/<host>/index.json``
(see Index): replicate, status and verify make the same number of requests
whether the vault holds 5 backups or 5000.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import posixpath
import re
import secrets
import stat
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO

import paramiko

from . import crypto, output
from .errors import StoreError, TransferError, UsageError, ZachotError
from .manifest import KINDS, MANIFEST_NAME, Manifest, id_sort_key, is_backup_id, is_file_name
from .model import Host
from .runner import Outcome, failed
from .store import BackupRef, Store
from .transport import IDLE_TIMEOUT, Transport

CHUNK = 1 << 20
TEMP_MARK = ".part-"  # ".<name>.part-<hex>": an upload not yet renamed into place
MAX_REMOTE_MANIFEST = 64 * 1024 * 1024
INDEX_NAME = "index.json"
INDEX_FORMAT = 1
MAX_INDEX = 256 * 1024 * 1024
SHA256_RE = re.compile(r"[0-9a-f]{64}", re.ASCII)
SFTP_ERRORS = (OSError, EOFError, paramiko.SSHException, paramiko.SFTPError)
REFUSED = (
    "not encrypted: {kind} backups go off-site only age-encrypted; set backup.age_recipients "
    "in the inventory and run fab backup.{kind} (this backup stays local)"
)
PLAIN_ALLOWED = "; or list {kind} in backup.offsite_plain to send it unencrypted"

SUPERSEDED = "not encrypted, and a newer encrypted backup goes off-site instead; prune it"


@dataclass(frozen=True)
class RemoteBackup:
    """What one backup directory on the vault holds."""

    files: dict[str, int]  # regular file name -> size
    temps: tuple[str, ...] = ()  # leftovers of interrupted uploads
    # name -> sha256 of the bytes on the vault, as the index records them (none from a listing)
    sha256: dict[str, str] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return MANIFEST_NAME in self.files


@dataclass(frozen=True)
class Row:
    """One line of backup.replicate's table."""

    host: str
    kind: str
    id: str
    action: str  # send, resume, repair, skip, refuse
    result: str  # sent+verified, present, would send, FAILED, REFUSED, not tried
    ok: bool
    detail: str = ""


@dataclass(frozen=True)
class OffsiteState:
    """One backup as backup.verify sees the off-site copy."""

    host: str
    kind: str
    id: str
    local: bool
    remote: str  # complete, incomplete, missing
    ok: bool
    detail: str


@dataclass(frozen=True)
class _Upload:
    name: str
    local: Path
    size: int
    sha256: str
    data: bytes | None = None  # sent instead of the local file's bytes (the off-site manifest)

    def open(self) -> BinaryIO:
        return io.BytesIO(self.data) if self.data is not None else open_local(self.local)


class Vault:
    """An open SFTP session to the off-site box, through the project's verified Transport."""

    def __init__(self, host: Host, sftp: paramiko.SFTPClient) -> None:
        self.host, self.sftp = host, sftp
        self.name = host.name

    @classmethod
    @contextlib.contextmanager
    def open(cls, host: Host) -> Iterator[Vault]:
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

    def fail(self, path: str, exc: BaseException) -> TransferError:
        if isinstance(exc, EOFError) or not self.alive():  # paramiko's word for a dead link
            why = "connection lost"
        else:
            why = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        return TransferError(f"{self.name}: {path}: {why}")

    def listdir(self, path: str) -> list[paramiko.SFTPAttributes]:
        try:
            return sorted(self.sftp.listdir_attr(path), key=lambda a: a.filename)
        except FileNotFoundError:
            return []
        except SFTP_ERRORS as exc:
            raise self.fail(path, exc) from None

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
            raise self.fail(path, exc) from None

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
        digest = hashlib.sha256()
        try:
            with self.sftp.open(path, "rb") as handle, output.progress(label, size) as advance:
                handle.prefetch(size)  # unbounded prefetch: bounded is ~5 MB/s (FACTS.md)
                while block := handle.read(CHUNK):
                    digest.update(block)
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
            handle.prefetch(size)
            return handle.read(size)

    def upload(self, item: _Upload, directory: str, label: str) -> None:
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

    def _write(self, item: _Upload, tmp: str, label: str) -> str:
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
        try:
            self.sftp.remove(path)
        except FileNotFoundError:
            pass
        except SFTP_ERRORS as exc:
            raise self.fail(path, exc) from None

    def remove_dir(self, path: str) -> None:
        """rmdir (backup.prune, once the directory's files are gone); gone already is fine."""
        try:
            self.sftp.rmdir(path)
        except FileNotFoundError:
            pass
        except SFTP_ERRORS as exc:
            raise self.fail(path, exc) from None

    def _remove_quietly(self, path: str) -> None:
        with contextlib.suppress(*SFTP_ERRORS):
            self.sftp.remove(path)


def open_local(path: Path) -> BinaryIO:
    """The local bytes to send (a seam: tests make it fail mid-upload)."""
    return path.open("rb")


# -- where things are -------------------------------------------------------------------


def vault_for(host: Host, find: Callable[[str], Host]) -> Host:
    """The inventory host that keeps `host`'s off-site copy (find: Inventory.host)."""
    name = host.backup.offsite_host
    if not name:
        raise UsageError(
            f"{host.name}: no off-site box; set backup.offsite_host in the inventory "
            "to the name of an SFTP host"
        )
    if name == host.name:
        raise UsageError(f"{host.name}: backup.offsite_host names the host itself")
    return find(name)


def remote_base(host: Host) -> str:
    return posixpath.join(host.backup.offsite_dir, host.name)


def backup_dir(host: Host, kind: str, backup_id: str) -> str:
    return posixpath.join(remote_base(host), kind, backup_id)


def list_remote(vault: Vault, host: Host) -> dict[tuple[str, str], RemoteBackup]:
    """(kind, id) -> what the vault holds for that backup of `host`, from listings: several
    requests per backup, so only to rebuild the index (Index)."""
    found: dict[tuple[str, str], RemoteBackup] = {}
    for kind in KINDS:
        for entry in vault.listdir(posixpath.join(remote_base(host), kind)):
            if is_backup_id(entry.filename) and stat.S_ISDIR(entry.st_mode or 0):
                there = vault.probe(backup_dir(host, kind, entry.filename))
                found[(kind, entry.filename)] = there or RemoteBackup({})
    return found


# -- the index ----------------------------------------------------------------------------


@dataclass
class Index:
    """The vault's own record of what it holds for one host: ``<offsite_dir>/<host>/index.json``.

    One read tells replicate, status and verify what is there. It lists complete backups
    only, each file with its size and the sha256 of the bytes on the vault (the
    ciphertext's for encrypted files): no plaintext hash, no key names. It may lag the
    vault (a run died before rewriting it) but never leads it: a backup is added once it
    is complete there, and dropped, with the index rewritten, before anything of it is
    removed (save_index). Lagging costs one listing of that backup on the next replicate.
    """

    host: str
    backups: dict[tuple[str, str], RemoteBackup] = field(default_factory=dict)
    problem: str | None = None  # why the vault's index could not be used
    listing: dict[tuple[str, str], RemoteBackup] | None = None  # a rebuild's full listing
    changed: bool = False  # differs from the vault's copy

    def add(self, kind: str, backup_id: str, there: RemoteBackup) -> None:
        self.backups[(kind, backup_id)] = there
        self.changed = True

    def drop(self, kind: str, backup_id: str) -> None:
        if self.backups.pop((kind, backup_id), None) is not None:
            self.changed = True

    def to_json(self) -> bytes:
        backups = [
            {"kind": kind, "id": backup_id,
             "files": {n: [size, there.sha256.get(n)] for n, size in there.files.items()}}
            for (kind, backup_id), there in sorted(self.backups.items(), key=_order)
        ]  # fmt: skip
        data = {"format": INDEX_FORMAT, "host": self.host, "backups": backups}
        return json.dumps(data, separators=(",", ":")).encode()


def _order(item: tuple[tuple[str, str], object]) -> tuple[int, tuple[str, int]]:
    return _key_order(item[0])


def _key_order(key: tuple[str, str]) -> tuple[int, tuple[str, int]]:
    kind, backup_id = key
    return KINDS.index(kind), id_sort_key(backup_id)


def index_path(host: Host) -> str:
    return posixpath.join(remote_base(host), INDEX_NAME)


def read_index(vault: Vault, host: Host) -> Index:
    """The vault's index of `host` in one read; an empty one with .problem if unusable."""
    data = vault.read_optional(index_path(host), MAX_INDEX)
    if data is None:
        return Index(host.name, problem=f"no {INDEX_NAME} for {host.name} on {vault.name}")
    try:
        return Index(host.name, _parse_index(json.loads(data), host.name))
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
        why = f"{INDEX_NAME} for {host.name} on {vault.name} is unreadable ({exc})"
        return Index(host.name, problem=why)


def _parse_index(data: dict, host: str) -> dict[tuple[str, str], RemoteBackup]:
    """Validated: the vault is not trusted to name paths (file names are single components)."""
    if data["format"] != INDEX_FORMAT or data["host"] != host:
        raise ValueError(f"format {data['format']!r} for {data['host']!r}")
    found: dict[tuple[str, str], RemoteBackup] = {}
    for entry in data["backups"]:
        kind, backup_id, files = entry["kind"], entry["id"], entry["files"]
        if kind not in KINDS or not is_backup_id(backup_id) or MANIFEST_NAME not in files:
            raise ValueError(f"bad entry {kind!r}/{backup_id!r}")
        sizes, hashes = {}, {}
        for name, (size, sha) in files.items():
            ok_name = name == MANIFEST_NAME or is_file_name(name)
            ok_sha = sha is None or (isinstance(sha, str) and SHA256_RE.fullmatch(sha))
            if not (ok_name and type(size) is int and size >= 0 and ok_sha):
                raise ValueError(f"bad file in {kind}/{backup_id}")
            sizes[name] = size
            if sha is not None:
                hashes[name] = sha
        found[(kind, backup_id)] = RemoteBackup(sizes, (), hashes)
    return found


def load_index(vault: Vault, host: Host, *, rebuild: bool = False) -> Index:
    """read_index, rebuilt from listings when it is missing or unreadable (or asked to):
    slow on a far link, so said so. The caller writes it back with save_index."""
    index = read_index(vault, host)
    if index.problem is None and not rebuild:
        return index
    listing = list_remote(vault, host)
    complete = {key: there for key, there in listing.items() if there.complete}
    if listing:  # a vault that holds nothing of the host has nothing to index yet
        why = index.problem or "--rescan"
        output.warn(f"{why}; rebuilt it from a listing of {len(listing)} backups there (once)")
    changed = bool(complete or index.backups)
    return Index(host.name, complete, index.problem, listing, changed=changed)


def save_index(vault: Vault, host: Host, index: Index) -> None:
    """Write the index under a temporary name and rename it into place."""
    data = index.to_json()
    item = _Upload(INDEX_NAME, Path(INDEX_NAME), len(data), _sha256(data), data)
    vault.upload(item, remote_base(host), f"index of {host.name}")
    index.changed = False


def _expected(ref: BackupRef) -> dict[str, tuple[int, str]]:
    """name -> (size, sha256) of what the vault should hold for `ref`, from its manifest."""
    data = offsite_manifest(ref)
    found = {
        record.name: (record.size, crypto.stored_sha256(record))
        for record in ref.manifest.files
        if record.stored_in is None  # unchanged content lives in (and goes with) its holder
    }
    found[MANIFEST_NAME] = (len(data), _sha256(data))
    return found


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _differences(there: RemoteBackup, expected: dict[str, tuple[int, str]]) -> list[str]:
    """How what the vault holds (by the index or a listing) differs from the local backup."""
    problems = []
    for name, (size, sha) in expected.items():
        held = there.files.get(name)
        if held is None:
            problems.append(f"{name}: missing")
        elif held != size:
            problems.append(f"{name}: size {held}, manifest says {size}")
        elif there.sha256.get(name, sha) != sha:
            problems.append(f"{name}: differs from the local one")
    return problems


def _locate(vault: Vault, host: Host, index: Index, key: tuple[str, str]) -> RemoteBackup | None:
    """What the vault holds for one backup: the index's word, else _listed."""
    return index.backups[key] if key in index.backups else _listed(vault, host, index, key)


def _listed(vault: Vault, host: Host, index: Index, key: tuple[str, str]) -> RemoteBackup | None:
    """What one backup's directory holds: the rebuild's listing, else a listing of that one
    directory (one request per backup the index lacks: new ones, interrupted ones)."""
    if index.listing is not None:
        return index.listing.get(key)
    return vault.probe(backup_dir(host, *key))


def _entry(ref: BackupRef) -> RemoteBackup:
    """The index's entry for `ref` once the vault holds all of it."""
    expected = _expected(ref)
    sizes = {name: size for name, (size, _) in expected.items()}
    return RemoteBackup(sizes, (), {name: sha for name, (_, sha) in expected.items()})


def index_of(host: str, refs: Sequence[BackupRef]) -> bytes:
    """The index the vault gets once it holds all of `refs` (for tools that fill a vault)."""
    return Index(host, {(ref.kind, ref.id): _entry(ref) for ref in refs}).to_json()


def uploads(store: Store, ref: BackupRef) -> list[_Upload]:
    """The files that make `ref` on the vault: the bytes it holds, then its manifest."""
    data = offsite_manifest(ref)
    items = [
        _Upload(name, store.file_path(ref, name), size, sha)
        for name, (size, sha) in _expected(ref).items()
        if name != MANIFEST_NAME
    ]
    manifest = ref.path / MANIFEST_NAME
    items.append(_Upload(MANIFEST_NAME, manifest, len(data), _sha256(data), data))
    return items


def offsite_manifest(ref: BackupRef) -> bytes:
    """The manifest as the vault holds it (Manifest.offsite): no plaintext hashes or key names."""
    return ref.manifest.offsite().to_json().encode()


def unencrypted(ref: BackupRef, host: Host) -> str | None:
    """Why `ref` must not leave the laptop, or None: anything plain, unless the inventory
    lists its kind in backup.offsite_plain (units and logs only)."""
    if all(crypto.is_encrypted(record) for record in ref.manifest.files):
        return None
    if ref.kind in host.backup.offsite_plain:
        return None
    plain_ok = ref.kind not in crypto.SECRET_KINDS
    return REFUSED.format(kind=ref.kind) + (PLAIN_ALLOWED.format(kind=ref.kind) if plain_ok else "")


# -- backup.replicate ---------------------------------------------------------------------


def replicate(
    host: Host, vault: Vault, *, dry_run: bool = False, rescan: bool = False
) -> list[Row]:
    """Send every backup of `host` the vault lacks, oldest first (holders before references).

    What the vault holds comes from its index (one read); only backups the index lacks or
    disagrees with are listed, and the index is rewritten when anything changed.
    """
    store = Store(host.store.path)
    index = load_index(vault, host, rebuild=rescan)
    refs = store.list(host.name)
    refusals = [unencrypted(ref, host) for ref in refs]
    # Per kind, the newest backup that may leave: plain ones before it are superseded.
    newest_sendable = {ref.kind: i for i, ref in enumerate(refs) if refusals[i] is None}
    rows: list[Row] = []
    for i, (ref, refused) in enumerate(zip(refs, refusals, strict=True)):
        if rows and not rows[-1].ok and not dry_run and not vault.alive():
            lost = f"lost the connection to {vault.name}"
            rows.append(Row(ref.host, ref.kind, ref.id, "send", "not tried", False, lost))
        elif refused and newest_sendable.get(ref.kind, -1) > i:
            # Taken before encryption was on: the newer encrypted backup covers it off-site.
            rows.append(Row(ref.host, ref.kind, ref.id, "skip", "stays local", True, SUPERSEDED))
        elif refused:
            rows.append(Row(ref.host, ref.kind, ref.id, "refuse", "REFUSED", False, refused))
        else:
            rows.append(_replicate_one(store, host, vault, ref, index, dry_run))
    if index.changed and not dry_run and vault.alive():
        try:
            save_index(vault, host, index)
        except ZachotError as exc:  # the vault is fine; the next run lists what the index lacks
            rows.append(Row(host.name, "-", INDEX_NAME, "write", "FAILED", False, exc.message))
    return rows


def _replicate_one(
    store: Store, host: Host, vault: Vault, ref: BackupRef, index: Index, dry_run: bool
) -> Row:
    def row(action: str, result: str, ok: bool, detail: str = "") -> Row:
        return Row(ref.host, ref.kind, ref.id, action, result, ok, detail)

    key = (ref.kind, ref.id)
    indexed = index.backups.get(key)
    if indexed is not None and not _differences(indexed, _expected(ref)):
        return row("skip", "present", True)  # no request: the common case, every run
    try:
        items = uploads(store, ref)
    except (StoreError, OSError) as exc:
        return row("send", "FAILED", False, f"local copy unusable: {_message(exc)}")
    try:
        there = _listed(vault, host, index, key)  # the index lacks it, or is out of date
    except ZachotError as exc:
        return row("send", "FAILED", False, exc.message)
    held = there.files if there else {}
    missing = [item for item in items if held.get(item.name) != item.size]
    if not missing:
        index.add(ref.kind, ref.id, RemoteBackup(dict(held)))  # complete, sizes agree
        return row("skip", "present", True)
    if missing[-1].name != MANIFEST_NAME:
        missing.append(items[-1])  # a repaired backup gets its manifest back last
    action = "send" if there is None else "resume" if not there.complete else "repair"
    amount = f"{len(missing)} files, {sum(item.size for item in missing)} bytes"
    if dry_run:
        return row(action, "would send", True, amount)
    try:
        if indexed is not None:  # the index must never list a backup being repaired
            index.drop(ref.kind, ref.id)
            save_index(vault, host, index)
        _send(vault, backup_dir(host, ref.kind, ref.id), there, missing, ref)
    except ZachotError as exc:
        return row(action, "FAILED", False, exc.message)
    index.add(ref.kind, ref.id, _entry(ref))
    return row(action, "sent+verified", True, amount)


def _send(
    vault: Vault, directory: str, there: RemoteBackup | None, items: list[_Upload], ref: BackupRef
) -> None:
    if there is not None and there.complete:
        # Repair: stop it looking complete while its files are replaced.
        vault.remove(posixpath.join(directory, MANIFEST_NAME))
    vault.makedirs(directory)
    for temp in there.temps if there else ():
        vault.remove(posixpath.join(directory, temp))
    # The manifest is last in `uploads`, so it lands only after every file.
    for item in items:
        vault.upload(item, directory, f"send {ref.host}/{ref.kind}/{ref.id}/{item.name}")


def replicate_hosts(
    hosts: Sequence[Host],
    find: Callable[[str], Host],
    *,
    dry_run: bool = False,
    rescan: bool = False,
    verbose: bool = False,
) -> list[Outcome]:
    """backup.replicate for several hosts: one connection per vault, one table, outcomes."""
    outcomes: dict[str, Outcome] = {}
    rows: list[Row] = []
    by_vault: dict[str, list[Host]] = {}
    for host in hosts:
        try:
            by_vault.setdefault(vault_for(host, find).name, []).append(host)
        except ZachotError as exc:
            outcomes[host.name] = failed(host.name, exc)
    for vault_name, members in by_vault.items():
        try:
            with Vault.open(find(vault_name)) as vault:
                for host in members:
                    try:
                        host_rows = replicate(host, vault, dry_run=dry_run, rescan=rescan)
                    except Exception as exc:  # one host's surprise must not sink the rest
                        outcomes[host.name] = failed(host.name, exc)
                        continue
                    rows.extend(host_rows)
                    outcomes[host.name] = _outcome(host, host_rows)
        except Exception as exc:  # the vault itself: every host still waiting gets its row
            for host in members:
                outcomes.setdefault(host.name, failed(host.name, exc))
    title = f"backup.replicate to {', '.join(by_vault) or 'no vault'}"
    output.table(
        title + (" (dry run, nothing sent)" if dry_run else ""),
        ["host", "kind", "id", "action", "result", "detail"],
        [(r.host, r.kind, r.id, r.action, r.result, r.detail)
         for r in (rows if verbose else summarised(rows))],
    )  # fmt: skip
    return [outcomes[host.name] for host in hosts]


def summarised(rows: list[Row]) -> list[Row]:
    """Backups already on the vault as one row per host and kind ("712 backups, present"),
    at the place of the first; every other row as it is."""
    present = Counter((r.host, r.kind) for r in rows if r.result == "present")
    shown: list[Row] = []
    for r in rows:
        n = present[(r.host, r.kind)]
        if r.result != "present" or n == 1:
            shown.append(r)
        elif n > 1:
            shown.append(replace(r, id=f"{n} backups"))
            present[(r.host, r.kind)] = 0  # the rest of them are in this row
    return shown


def _outcome(host: Host, rows: list[Row]) -> Outcome:
    failed = [r for r in rows if not r.ok]
    if not failed:
        sent = sum(r.result == "sent+verified" for r in rows)
        return Outcome(host.name, True, f"{sent} sent, {len(rows) - sent} already there", 0.0)
    first = failed[0]
    detail = f"{len(failed)} of {len(rows)} backups not replicated; {first.kind} {first.id}: "
    return Outcome(host.name, False, detail + first.detail, 0.0, TransferError.exit_code)


# -- off-site status (for backup.verify) ------------------------------------------------


def offsite_status(host: Host, vault: Vault, *, deep: bool = True) -> list[OffsiteState]:
    """Every backup of `host`, local or on the vault: is the vault's copy there and intact?

    deep reads every file back and compares its sha256 with the manifest (its requests
    grow with the backups: that is the point); without it the vault's index is compared
    with the local manifests, and only backups the index lacks are listed.
    """
    local = {(ref.kind, ref.id): ref for ref in Store(host.store.path).list(host.name)}
    index = load_index(vault, host)  # only read: a rebuild here is not written back
    keys = set(local) | set(index.backups) | set(index.listing or {})
    return [
        check_backup(vault, host, index, key, local.get(key), deep=deep)
        for key in sorted(keys, key=_key_order)
    ]


def check_backup(
    vault: Vault,
    host: Host,
    index: Index,
    key: tuple[str, str],
    ref: BackupRef | None,
    *,
    deep: bool = True,
) -> OffsiteState:
    """One backup's copy on the vault (ref: the local one, if any): there, complete, and
    with deep, every byte read back: a constant number of requests per backup."""
    kind, backup_id = key

    def state(where: str, problems: list[str]) -> OffsiteState:
        detail = "; ".join(problems) or ("intact" if ref else "intact (only off-site)")
        return OffsiteState(
            host.name, kind, backup_id, ref is not None, where, not problems, detail
        )

    try:
        there = _locate(vault, host, index, key)
    except ZachotError as exc:
        return state("unreachable", [exc.message])
    if there is None:
        why = unencrypted(ref, host) if ref else None
        return state("missing", [why or f"not on {vault.name}; run fab backup.replicate"])
    if not there.complete:
        return state("incomplete", [f"no manifest on {vault.name} (interrupted upload)"])
    if not deep and key in index.backups:
        return state("complete", _differences(there, _expected(ref)) if ref else [])
    return state("complete", _remote_problems(vault, host, index, key, there, ref, deep))


def _remote_problems(
    vault: Vault,
    host: Host,
    index: Index,
    key: tuple[str, str],
    there: RemoteBackup,
    ref: BackupRef | None,
    deep: bool,
) -> list[str]:
    kind, backup_id = key
    directory = backup_dir(host, kind, backup_id)
    manifest_path = posixpath.join(directory, MANIFEST_NAME)
    try:
        text = vault.read_small(manifest_path, MAX_REMOTE_MANIFEST)
        manifest = Manifest.from_json(text.decode("utf-8", "replace"), where=manifest_path)
    except ZachotError as exc:
        return [exc.message]
    problems = []
    if ref is not None and offsite_manifest(ref) != text:
        problems.append("manifest differs from the local one")
    for record in manifest.files:
        if record.stored_in is not None:
            problems += _holder_problems(vault, host, index, kind, record.name, record.stored_in)
            continue
        size = there.files.get(record.name)
        if size is None:
            problems.append(f"{record.name}: missing")
        elif size != record.size:
            problems.append(f"{record.name}: size {size}, manifest says {record.size}")
        elif deep:
            path = posixpath.join(directory, record.name)
            try:
                digest = vault.sha256(path, size, f"check {host.name}/{kind}/{backup_id}")
            except ZachotError as exc:
                problems.append(exc.message)
                continue
            if digest != crypto.stored_sha256(record):
                problems.append(f"{record.name}: checksum mismatch (damaged on {vault.name})")
    return problems


def _holder_problems(
    vault: Vault, host: Host, index: Index, kind: str, name: str, holder_id: str
) -> list[str]:
    try:
        holder = _locate(vault, host, index, (kind, holder_id))
    except ZachotError as exc:
        return [exc.message]
    if holder is None or not holder.complete:
        return [f"{name}: kept in {holder_id}, not on {vault.name}"]
    return []


def _message(exc: BaseException) -> str:
    if isinstance(exc, ZachotError):
        return exc.message
    return getattr(exc, "strerror", None) or str(exc)


def newest_offsite(
    hosts: Sequence[Host], find: Callable[[str], Host], kinds: Sequence[str] = KINDS
) -> list[OffsiteState]:
    """For backup.verify: is the newest local backup of each kind intact off-site?

    Hosts without an off-site box are left out; a vault that cannot be reached
    gives one failed row per host, so the table and the exit code say so.
    """
    states: list[OffsiteState] = []
    by_vault: dict[str, list[Host]] = {}
    for host in hosts:
        if host.backup.offsite_host:
            by_vault.setdefault(vault_for(host, find).name, []).append(host)
    for vault_name, members in by_vault.items():
        try:
            with Vault.open(find(vault_name)) as vault:
                for host in members:
                    states += _newest(host, vault, kinds)
        except ZachotError as exc:
            states += [OffsiteState(h.name, "-", "-", True, "unreachable", False, exc.message)
                       for h in members]  # fmt: skip
    return states


def _newest(host: Host, vault: Vault, kinds: Sequence[str]) -> list[OffsiteState]:
    """The newest local backup of each kind, read back from the vault, with the older ones
    it refers to (a newest backup is only as good as their copies): the index in one read,
    then a few requests per backup read, however many the vault holds."""
    local = {(ref.kind, ref.id): ref for ref in Store(host.store.path).list(host.name)}
    newest = {kind: ref for (kind, _), ref in local.items() if kind in kinds}  # oldest first
    wanted = {(ref.kind, i) for ref in newest.values() for i in {ref.id, *ref.references()}}
    index = read_index(vault, host)
    if index.problem and wanted:
        output.warn(f"{index.problem}; fab backup.replicate writes it")
    return [
        check_backup(vault, host, index, key, local.get(key))
        for key in sorted(wanted, key=_key_order)
    ]
