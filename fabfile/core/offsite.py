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
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import posixpath
import secrets
import stat
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import paramiko

from . import crypto, output
from .errors import StoreError, TransferError, UsageError, ZachotError
from .manifest import KINDS, MANIFEST_NAME, Manifest, id_sort_key, is_backup_id
from .model import Host
from .runner import Outcome
from .store import BackupRef, Store
from .transport import IDLE_TIMEOUT, Transport

CHUNK = 1 << 20
TEMP_MARK = ".part-"  # ".<name>.part-<hex>": an upload not yet renamed into place
MAX_REMOTE_MANIFEST = 64 * 1024 * 1024
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
    temps: tuple[str, ...]  # leftovers of interrupted uploads

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
        """mkdir -p, each new directory 0700 (backups hold secrets)."""
        prefix = "/" if path.startswith("/") else ""
        for part in (p for p in path.split("/") if p):
            prefix = posixpath.join(prefix, part) if prefix else part
            try:
                if stat.S_ISDIR(self.sftp.stat(prefix).st_mode):
                    continue
                raise TransferError(f"{self.name}: {prefix} exists and is not a directory")
            except FileNotFoundError:
                pass
            except SFTP_ERRORS as exc:
                raise self.fail(prefix, exc) from None
            try:
                self.sftp.mkdir(prefix, 0o700)
            except SFTP_ERRORS as exc:
                raise self.fail(prefix, exc) from None

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
            with self.sftp.open(path, "rb") as handle:
                data = handle.read(limit + 1)
        except SFTP_ERRORS as exc:
            raise self.fail(path, exc) from None
        if len(data) > limit:
            raise TransferError(f"{self.name}: {path}: larger than {limit} bytes")
        return data

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
    """(kind, id) -> what the vault holds for that backup of `host`."""
    found: dict[tuple[str, str], RemoteBackup] = {}
    for kind in KINDS:
        for entry in vault.listdir(posixpath.join(remote_base(host), kind)):
            if not (is_backup_id(entry.filename) and stat.S_ISDIR(entry.st_mode or 0)):
                continue
            files: dict[str, int] = {}
            temps: list[str] = []
            for item in vault.listdir(backup_dir(host, kind, entry.filename)):
                if item.filename.startswith(".") and TEMP_MARK in item.filename:
                    temps.append(item.filename)
                elif stat.S_ISREG(item.st_mode or 0):
                    files[item.filename] = item.st_size or 0
            found[(kind, entry.filename)] = RemoteBackup(files, tuple(temps))
    return found


def uploads(store: Store, ref: BackupRef) -> list[_Upload]:
    """The files that make `ref` on the vault: the bytes it holds, then its manifest."""
    items = []
    for record in ref.manifest.files:
        if record.stored_in is None:  # unchanged content lives in (and goes with) its holder
            path = store.file_path(ref, record.name)
            items.append(_Upload(record.name, path, record.size, crypto.stored_sha256(record)))
    data = offsite_manifest(ref)
    manifest = ref.path / MANIFEST_NAME
    items.append(
        _Upload(MANIFEST_NAME, manifest, len(data), hashlib.sha256(data).hexdigest(), data)
    )
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


def replicate(host: Host, vault: Vault, *, dry_run: bool = False) -> list[Row]:
    """Send every backup of `host` the vault lacks, oldest first (holders before references)."""
    store = Store(host.store.path)
    remote = list_remote(vault, host)
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
            there = remote.get((ref.kind, ref.id))
            rows.append(_replicate_one(store, host, vault, ref, there, dry_run))
    return rows


def _replicate_one(
    store: Store,
    host: Host,
    vault: Vault,
    ref: BackupRef,
    there: RemoteBackup | None,
    dry_run: bool,
) -> Row:
    def row(action: str, result: str, ok: bool, detail: str = "") -> Row:
        return Row(ref.host, ref.kind, ref.id, action, result, ok, detail)

    try:
        items = uploads(store, ref)
    except (StoreError, OSError) as exc:
        return row("send", "FAILED", False, f"local copy unusable: {_message(exc)}")
    held = there.files if there else {}
    missing = [item for item in items if held.get(item.name) != item.size]
    if not missing:
        return row("skip", "present", True)
    if missing[-1].name != MANIFEST_NAME:
        missing.append(items[-1])  # a repaired backup gets its manifest back last
    action = "send" if there is None else "resume" if not there.complete else "repair"
    amount = f"{len(missing)} files, {sum(item.size for item in missing)} bytes"
    if dry_run:
        return row(action, "would send", True, amount)
    try:
        _send(vault, backup_dir(host, ref.kind, ref.id), there, missing, ref)
    except ZachotError as exc:
        return row(action, "FAILED", False, exc.message)
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
    hosts: Sequence[Host], find: Callable[[str], Host], *, dry_run: bool = False
) -> list[Outcome]:
    """backup.replicate for several hosts: one connection per vault, one table, outcomes."""
    outcomes: dict[str, Outcome] = {}
    rows: list[Row] = []
    by_vault: dict[str, list[Host]] = {}
    for host in hosts:
        try:
            by_vault.setdefault(vault_for(host, find).name, []).append(host)
        except ZachotError as exc:
            outcomes[host.name] = Outcome(host.name, False, exc.message, 0.0, exc.exit_code)
    for vault_name, members in by_vault.items():
        try:
            with Vault.open(find(vault_name)) as vault:
                for host in members:
                    host_rows = replicate(host, vault, dry_run=dry_run)
                    rows.extend(host_rows)
                    outcomes[host.name] = _outcome(host, host_rows)
        except ZachotError as exc:
            for host in members:
                outcomes.setdefault(
                    host.name, Outcome(host.name, False, exc.message, 0.0, exc.exit_code)
                )
    title = f"backup.replicate to {', '.join(by_vault) or 'no vault'}"
    output.table(
        title + (" (dry run, nothing sent)" if dry_run else ""),
        ["host", "kind", "id", "action", "result", "detail"],
        [(r.host, r.kind, r.id, r.action, r.result, r.detail) for r in rows],
    )
    return [outcomes[host.name] for host in hosts]


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

    deep reads every file back and compares its sha256 with the manifest; without
    it only presence and sizes are checked.
    """
    local = {(ref.kind, ref.id): ref for ref in Store(host.store.path).list(host.name)}
    remote = list_remote(vault, host)
    states = []
    for kind, backup_id in sorted(
        set(local) | set(remote), key=lambda k: (KINDS.index(k[0]), id_sort_key(k[1]))
    ):
        ref, there = local.get((kind, backup_id)), remote.get((kind, backup_id))
        if there is None:
            why = unencrypted(ref, host) if ref else None
            where, problems = "missing", [why or f"not on {vault.name}; run fab backup.replicate"]
        elif not there.complete:
            where, problems = "incomplete", [f"no manifest on {vault.name} (interrupted upload)"]
        else:
            where = "complete"
            problems = _remote_problems(vault, host, kind, backup_id, there, ref, remote, deep)
        detail = "; ".join(problems) or ("intact" if ref else "intact (only off-site)")
        states.append(
            OffsiteState(host.name, kind, backup_id, ref is not None, where, not problems, detail)
        )
    return states


def _remote_problems(
    vault: Vault,
    host: Host,
    kind: str,
    backup_id: str,
    there: RemoteBackup,
    ref: BackupRef | None,
    remote: dict[tuple[str, str], RemoteBackup],
    deep: bool,
) -> list[str]:
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
            holder = remote.get((kind, record.stored_in))
            if holder is None or not holder.complete:
                problems.append(f"{record.name}: kept in {record.stored_in}, not on {vault.name}")
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
                    states += _newest_only(host, offsite_status(host, vault), kinds)
        except ZachotError as exc:
            states += [OffsiteState(h.name, "-", "-", True, "unreachable", False, exc.message)
                       for h in members]  # fmt: skip
    return states


def _newest_only(
    host: Host, states: list[OffsiteState], kinds: Sequence[str]
) -> list[OffsiteState]:
    store = Store(host.store.path)
    newest = [ref for k in kinds if (ref := store.latest(host.name, k)) is not None]
    # A newest backup that refers to older ones is only as good as their copies.
    wanted = {(ref.kind, i) for ref in newest for i in {ref.id, *ref.references()}}
    return [s for s in states if (s.kind, s.id) in wanted]
