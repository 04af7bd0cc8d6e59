"""The off-site copy's decisions: what to send, what is intact, for backup.replicate,
backup.verify and status; written once against offsite_backend.Backend (the SFTP vault
or an S3 bucket: "the vault" below means either).

Layout there is the store's: ``<offsite_dir>/<host>/<kind>/<id>/`` with the
backup's own files and its manifest.json.

A backup is complete on the vault exactly when its manifest.json is there. Each
file is verified before it appears under its name (the back end's job); the
manifest goes last. An interrupted run leaves a backup without a manifest, which
the next run finishes.

A far vault costs a round trip per request, and listing one backup takes several,
so what the vault holds is read from one file, ``<offsite_dir>/<host>/index.json``
(see Index): replicate, status and verify make the same number of requests
whether the vault holds 5 backups or 5000.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from . import crypto, output
from .errors import StoreError, TransferError, UsageError, ZachotError
from .manifest import KINDS, MANIFEST_NAME, Manifest, id_sort_key, is_backup_id, is_file_name
from .model import Host
from .offsite_backend import (
    INDEX_NAME,
    MAX_TRANSFERS,
    Backend,
    RemoteBackup,
    Upload,
    grouped,
    has_offsite,
)
from .offsite_waves import Done, Job, send_in_waves
from .runner import Outcome, failed
from .store import BackupRef, Store

MAX_REMOTE_MANIFEST = 64 * 1024 * 1024
INDEX_FORMAT = 1
MAX_INDEX = 256 * 1024 * 1024
SHA256_RE = re.compile(r"[0-9a-f]{64}", re.ASCII)
REFUSED = (
    "not encrypted: {kind} backups go off-site only age-encrypted; set backup.age_recipients "
    "in the inventory and run fab backup.{kind} (this backup stays local)"
)
PLAIN_ALLOWED = "; or list {kind} in backup.offsite_plain to send it unencrypted"

SUPERSEDED = "not encrypted, and a newer encrypted backup goes off-site instead; prune it"


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


# -- where things are -------------------------------------------------------------------


def remote_base(host: Host) -> str:
    return posixpath.join(host.backup.offsite_dir, host.name)


def backup_dir(host: Host, kind: str, backup_id: str) -> str:
    return posixpath.join(remote_base(host), kind, backup_id)


def list_remote(vault: Backend, host: Host) -> dict[tuple[str, str], RemoteBackup]:
    """(kind, id) -> what the vault holds for that backup of `host`, from listings: several
    requests per backup, so only to rebuild the index (Index)."""
    found: dict[tuple[str, str], RemoteBackup] = {}
    for kind in KINDS:
        for name in vault.list_dirs(posixpath.join(remote_base(host), kind)):
            if is_backup_id(name):
                there = vault.probe(backup_dir(host, kind, name))
                found[(kind, name)] = there or RemoteBackup({})
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


def read_index(vault: Backend, host: Host) -> Index:
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


def load_index(vault: Backend, host: Host, *, rebuild: bool = False) -> Index:
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


def save_index(vault: Backend, host: Host, index: Index) -> None:
    """Write the index under a temporary name and rename it into place."""
    data = index.to_json()
    item = Upload(INDEX_NAME, Path(INDEX_NAME), len(data), _sha256(data), data)
    vault.upload(item, remote_base(host), f"index of {host.name}")
    index.changed = False


def _expected(
    ref: BackupRef, manifest: tuple[int, str] | None = None
) -> dict[str, tuple[int, str]]:
    """name -> (size, sha256) of what the vault should hold for `ref`, from its manifest;
    `manifest` is the off-site manifest's (size, sha256) when already known (ManifestMemo)."""
    found = {
        record.name: (record.size, crypto.stored_sha256(record))
        for record in ref.manifest.files
        if record.stored_in is None  # unchanged content lives in (and goes with) its holder
    }
    found[MANIFEST_NAME] = manifest or _digest(offsite_manifest(ref))
    return found


def _digest(data: bytes) -> tuple[int, str]:
    return len(data), _sha256(data)


class ManifestMemo:
    """(size, sha256) of each backup's off-site manifest, kept in the store by the sha256 of
    the local manifest's bytes: re-serialising a long history's manifests on every replicate
    took about a second. A local manifest that changes has other bytes, so another key."""

    # Part of every key: change it when Manifest.offsite or to_json change what the vault
    # gets, so the memo cannot vouch for the old form (the next replicate repairs them all).
    VERSION = b"offsite manifest 2\n"

    def __init__(self, store: Store, host: str) -> None:
        self.store, self.host = store, host
        self.known = store.offsite_digests(host)
        self.used: dict[str, tuple[int, str]] = {}

    def of(self, ref: BackupRef) -> tuple[int, str]:
        local = ref.manifest_sha256
        if local is None:  # a ref not read from the store: nothing to key it by
            return _digest(offsite_manifest(ref))
        key = _sha256(self.VERSION + local.encode())
        found = self.used[key] = self.known.get(key) or _digest(offsite_manifest(ref))
        return found

    def save(self) -> None:
        """Rewrite the memo when it changed (hold the store lock); it is only a cache."""
        if self.used == self.known:
            return
        try:
            self.store.record_offsite_digests(self.host, self.used)
        except OSError as exc:
            output.warn(f"cannot write the off-site manifest memo of {self.host}: {exc}")


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


def _locate(vault: Backend, host: Host, index: Index, key: tuple[str, str]) -> RemoteBackup | None:
    """What the vault holds for one backup: the index's word, else _listed."""
    return index.backups[key] if key in index.backups else _listed(vault, host, index, key)


def _listed(vault: Backend, host: Host, index: Index, key: tuple[str, str]) -> RemoteBackup | None:
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


def uploads(store: Store, ref: BackupRef) -> list[Upload]:
    """The files that make `ref` on the vault: the bytes it holds, then its manifest."""
    data = offsite_manifest(ref)
    items = [
        Upload(name, store.file_path(ref, name), size, sha)
        for name, (size, sha) in _expected(ref).items()
        if name != MANIFEST_NAME
    ]
    manifest = ref.path / MANIFEST_NAME
    items.append(Upload(MANIFEST_NAME, manifest, len(data), _sha256(data), data))
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
    host: Host,
    vault: Backend,
    *,
    dry_run: bool = False,
    rescan: bool = False,
    transfers: int = 1,
    refs: Sequence[BackupRef] | None = None,
) -> list[Row]:
    """Send every backup of `host` the vault lacks, `transfers` at a time (offsite_waves:
    a backup goes once every backup it refers to is complete there).

    What the vault holds comes from its index (one read); only backups the index lacks or
    disagrees with are listed, and the index is rewritten once, at the end, when anything
    changed. Rows are in the store's order (oldest first).
    """
    store = Store(host.store.path)
    index = load_index(vault, host, rebuild=rescan)
    refs = store.list(host.name) if refs is None else refs  # `refs`: that list, read already
    memo = ManifestMemo(store, host.name)
    refusals = [unencrypted(ref, host) for ref in refs]
    # Per kind, the newest backup that may leave: plain ones before it are superseded.
    newest_sendable = {ref.kind: i for i, ref in enumerate(refs) if refusals[i] is None}
    rows: list[Row | _Job] = []
    for i, (ref, refused) in enumerate(zip(refs, refusals, strict=True)):
        last = rows[-1] if rows else None
        if isinstance(last, Row) and not last.ok and not dry_run and not vault.alive():
            rows.append(_not_tried(ref, vault))
        elif refused and newest_sendable.get(ref.kind, -1) > i:
            # Taken before encryption was on: the newer encrypted backup covers it off-site.
            rows.append(Row(ref.host, ref.kind, ref.id, "skip", "stays local", True, SUPERSEDED))
        elif refused:
            rows.append(Row(ref.host, ref.kind, ref.id, "refuse", "REFUSED", False, refused))
        else:
            rows.append(_plan_one(store, host, vault, ref, index, dry_run, memo))
    if not dry_run:
        memo.save()
        rows = _send_all(host, vault, rows, index, transfers)
    done = [row if isinstance(row, Row) else row.would_send() for row in rows]
    if index.changed and not dry_run and vault.alive():
        try:
            save_index(vault, host, index)
        except ZachotError as exc:  # the vault is fine; the next run lists what the index lacks
            done.append(Row(host.name, "-", INDEX_NAME, "write", "FAILED", False, exc.message))
    return done


@dataclass(frozen=True)
class _Job:
    """One backup to send: what the vault holds of it, and what it lacks (manifest last)."""

    ref: BackupRef
    there: RemoteBackup | None
    missing: list[Upload]
    action: str  # send, resume, repair
    indexed: bool  # the index lists it (a repair): dropped from it before anything is sent

    @property
    def amount(self) -> str:
        return f"{len(self.missing)} files, {sum(item.size for item in self.missing)} bytes"

    def row(self, result: str, ok: bool, detail: str = "") -> Row:
        return Row(self.ref.host, self.ref.kind, self.ref.id, self.action, result, ok, detail)

    def would_send(self) -> Row:
        return self.row("would send", True, self.amount)


def _not_tried(ref: BackupRef, vault: Backend) -> Row:
    lost = f"lost the connection to {vault.name}"
    return Row(ref.host, ref.kind, ref.id, "send", "not tried", False, lost)


def _plan_one(
    store: Store,
    host: Host,
    vault: Backend,
    ref: BackupRef,
    index: Index,
    dry_run: bool,
    memo: ManifestMemo,
) -> Row | _Job:
    """Whether `ref` is on the vault (a row), or what to send (a job)."""

    def row(action: str, result: str, ok: bool, detail: str = "") -> Row:
        return Row(ref.host, ref.kind, ref.id, action, result, ok, detail)

    key = (ref.kind, ref.id)
    indexed = index.backups.get(key)
    if indexed is not None and not _differences(indexed, _expected(ref, memo.of(ref))):
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
        if not dry_run:
            index.add(ref.kind, ref.id, RemoteBackup(dict(held)))  # complete, sizes agree
        return row("skip", "present", True)
    if missing[-1].name != MANIFEST_NAME:
        missing.append(items[-1])  # a repaired backup gets its manifest back last
    action = "send" if there is None else "resume" if not there.complete else "repair"
    return _Job(ref, there, missing, action, indexed is not None)


def _send_all(
    host: Host, vault: Backend, rows: list[Row | _Job], index: Index, transfers: int
) -> list[Row | _Job]:
    """The jobs among `rows` sent, `transfers` at a time, each after its holders; rows in
    place. With the link gone, the first failure says why and the rest are "not tried"."""
    jobs = [row for row in rows if isinstance(row, _Job)]
    if not jobs:
        return rows
    repairs = [job for job in jobs if job.indexed]
    try:
        for job in repairs:  # the index must never list a backup being repaired
            index.drop(job.ref.kind, job.ref.id)
        if repairs:
            save_index(vault, host, index)
        lock = threading.Lock()
        done = send_in_waves(
            vault,
            [Job((job.ref.kind, job.ref.id), _holders(job.ref), _sender(host, job, index, lock))
             for job in jobs],
            transfers,
            ok=lambda row: row.ok,
            failed={(r.kind, r.id) for r in rows if isinstance(r, Row) and not r.ok},
        )  # fmt: skip
    except ZachotError as exc:  # the index (a repair) or the workers' sessions
        done = [Done(job.row("FAILED", False, exc.message)) for job in jobs]
    outcomes = iter(done)
    out: list[Row | _Job] = []
    cut: set[int] = set()  # jobs in flight when the link went
    for i, row in enumerate(rows):
        if isinstance(row, _Job):
            outcome = next(outcomes)
            if outcome.lost and outcome.result is not None:
                cut.add(i)
            row = _job_row(row, outcome, vault)
        out.append(row)
    # One clear message: the first failure says why; what the lost link cut short after it
    # is "not tried", as when backups went one at a time.
    said = (i for i, r in enumerate(out) if isinstance(r, Row) and r.result == "FAILED")
    first = next(said, len(out))
    return [_not_tried(job.ref, vault) if i in cut and i > first else row  # type: ignore[union-attr]
            for i, (row, job) in enumerate(zip(out, rows, strict=True))]  # fmt: skip


def _job_row(job: _Job, done: Done[Row], vault: Backend) -> Row:
    if done.result is not None:
        return done.result
    if done.lost:
        return _not_tried(job.ref, vault)
    _, holder = done.failed_holder  # type: ignore[misc]
    return job.row("FAILED", False, f"its holder {holder} was not sent")


def _holders(ref: BackupRef) -> frozenset[tuple[str, str]]:
    return frozenset((ref.kind, holder) for holder in ref.references())


def _sender(host: Host, job: _Job, index: Index, lock: threading.Lock) -> Callable[[Backend], Row]:
    def send(view: Backend) -> Row:
        ref = job.ref
        try:
            _send(view, backup_dir(host, ref.kind, ref.id), job.there, job.missing, ref)
        except ZachotError as exc:
            return job.row("FAILED", False, exc.message)
        entry = _entry(ref)
        with lock:
            index.add(ref.kind, ref.id, entry)
        return job.row("sent+verified", True, job.amount)

    return send


def _send(
    vault: Backend, directory: str, there: RemoteBackup | None, items: list[Upload], ref: BackupRef
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
    as_json: bool = False,
    transfers: int = 1,
) -> list[Outcome]:
    """backup.replicate for several hosts: one session per off-site store, one table (or
    every row as JSON), outcomes; `transfers` backups in flight at once per host."""
    if not 1 <= transfers <= MAX_TRANSFERS:
        raise UsageError(f"--transfers must be 1 to {MAX_TRANSFERS}, got {transfers}")
    outcomes: dict[str, Outcome] = {}
    rows: list[Row] = []
    by_vault, errors = grouped(hosts, find)
    outcomes.update({name: failed(name, exc) for name, exc in errors.items()})
    # The local stores are read while the off-site sessions open: with a long history the
    # scan is CPU, the handshake and the index read are waits on the link.
    scanner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-scan")
    scans = {h.name: scanner.submit(Store(h.store.path).list, h.name)
             for _, members in by_vault.values() for h in members}  # fmt: skip
    scanner.shutdown(wait=False)
    for where, members in by_vault.values():
        try:
            with where.open() as vault:
                for host in members:
                    try:
                        host_rows = replicate(
                            host, vault, dry_run=dry_run, rescan=rescan, transfers=transfers,
                            refs=scans[host.name].result(),
                        )  # fmt: skip
                    except Exception as exc:  # one host's surprise must not sink the rest
                        outcomes[host.name] = failed(host.name, exc)
                        continue
                    rows.extend(host_rows)
                    outcomes[host.name] = _outcome(host, host_rows)
        except Exception as exc:  # the vault itself: every host still waiting gets its row
            for host in members:
                outcomes.setdefault(host.name, failed(host.name, exc))
    if as_json:
        output.emit_json([{**asdict(r), "dry_run": dry_run} for r in rows])
        return [outcomes[host.name] for host in hosts]
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


def offsite_status(host: Host, vault: Backend, *, deep: bool = True) -> list[OffsiteState]:
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
    vault: Backend,
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
    vault: Backend,
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
    vault: Backend, host: Host, index: Index, kind: str, name: str, holder_id: str
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
    """For backup.verify: is the newest local backup of each kind intact off-site? And can
    this machine's age identity read that copy (a warning if not: offsite_identity)?

    Hosts without an off-site box are left out; a vault that cannot be reached
    gives one failed row per host, so the table and the exit code say so.
    """
    from .offsite_identity import identity_problem  # (it imports this module)

    states: list[OffsiteState] = []
    by_vault, errors = grouped([h for h in hosts if has_offsite(h)], find)
    states += [OffsiteState(name, "-", "-", True, "unusable", False, exc.message)
               for name, exc in errors.items()]  # fmt: skip
    for where, members in by_vault.values():
        try:
            with where.open() as vault:
                for host in members:
                    index = read_index(vault, host)
                    states += _newest(host, vault, kinds, index)
                    if problem := identity_problem(vault, host, index):
                        output.warn(problem)
        except ZachotError as exc:
            states += [OffsiteState(h.name, "-", "-", True, "unreachable", False, exc.message)
                       for h in members]  # fmt: skip
    return states


def _newest(host: Host, vault: Backend, kinds: Sequence[str], index: Index) -> list[OffsiteState]:
    """The newest local backup of each kind, read back from the vault, with the older ones
    it refers to (a newest backup is only as good as their copies): the index in one read,
    then a few requests per backup read, however many the vault holds."""
    local = {(ref.kind, ref.id): ref for ref in Store(host.store.path).list(host.name)}
    newest = {kind: ref for (kind, _), ref in local.items() if kind in kinds}  # oldest first
    wanted = {(ref.kind, i) for ref in newest.values() for i in {ref.id, *ref.references()}}
    if index.problem and wanted:
        output.warn(f"{index.problem}; fab backup.replicate writes it")
    return [
        check_backup(vault, host, index, key, local.get(key))
        for key in sorted(wanted, key=_key_order)
    ]
