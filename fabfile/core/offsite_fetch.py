"""backup.fetch: rebuild the local store from the off-site copy (the laptop was lost too).

What is there comes from the vault's index (one read; rebuilt from a listing if it is
gone). Each backup the store lacks is fetched into a staging directory named after its
id, every file checked against the sha256 the off-site manifest gives, and only then
renamed into place: the store never lists a half-fetched backup. A re-run keeps the
files already fetched and checked (resumable), and skips backups already there.

The fetched manifest is the off-site one: no plaintext hashes and no env key names
(Manifest.offsite); the bytes are the same age ciphertext, so restores decrypt them with
the identity as before.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import posixpath
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from . import crypto, output
from .errors import BackupNotFoundError, StoreError, TransferError, ZachotError
from .manifest import KINDS, MANIFEST_NAME, Manifest
from .model import Host
from .offsite import MAX_REMOTE_MANIFEST, backup_dir, load_index
from .offsite_backend import Backend, grouped, has_offsite, open_offsite
from .plan import Step
from .runner import Outcome, failed
from .store import STAGING_PREFIX, Store, _fsync_dir, _makedirs_private, _write_atomic

RESTORED = ("env", "units")  # what restore.server puts on the box


@dataclass(frozen=True)
class FetchRow:
    host: str
    kind: str
    id: str
    result: str  # fetched, present, would fetch, FAILED
    ok: bool
    detail: str = ""


def fetch(
    host: Host, backend: Backend, *, kinds: Sequence[str] = KINDS, dry_run: bool = False
) -> list[FetchRow]:
    """Fetch every complete off-site backup of `host` (of `kinds`) the store lacks, oldest
    first (a backup's holders come before it). Hold the store lock around it."""
    store = Store(host.store.path)
    local = {(ref.kind, ref.id) for ref in store.list(host.name)}
    index = load_index(backend, host)
    rows: list[FetchRow] = []
    for kind in kinds:
        for backup_id in sorted((i for k, i in index.backups if k == kind)):
            if (kind, backup_id) in local:
                rows.append(FetchRow(host.name, kind, backup_id, "present", True))
                continue
            size = sum(index.backups[(kind, backup_id)].files.values())
            if dry_run:
                rows.append(
                    FetchRow(host.name, kind, backup_id, "would fetch", True, f"{size} bytes")
                )
                continue
            try:
                _fetch_one(store, host, backend, kind, backup_id)
            except ZachotError as exc:
                rows.append(FetchRow(host.name, kind, backup_id, "FAILED", False, exc.message))
                if not backend.alive():
                    break
                continue
            rows.append(FetchRow(host.name, kind, backup_id, "fetched", True, f"{size} bytes"))
    return rows


def _fetch_one(store: Store, host: Host, backend: Backend, kind: str, backup_id: str) -> None:
    directory = backup_dir(host, kind, backup_id)
    text = backend.read_small(posixpath.join(directory, MANIFEST_NAME), MAX_REMOTE_MANIFEST)
    where = f"{backend.name}:{directory}"
    manifest = Manifest.from_json(text.decode("utf-8", "replace"), where=where)
    if (manifest.host, manifest.kind, manifest.id) != (host.name, kind, backup_id):
        raise StoreError(f"{where}: its manifest names another backup; not fetched")
    kind_dir = store.root / host.name / kind
    _makedirs_private(kind_dir)  # an empty store: the host's directory too, 0700
    staging = kind_dir / f"{STAGING_PREFIX}{backup_id}-fetch"  # fixed name: resumable
    staging.mkdir(exist_ok=True, mode=0o700)
    for record in manifest.files:
        if record.stored_in is not None:
            continue  # its holder is an older backup, fetched before this one
        want = crypto.stored_sha256(record)
        target = staging / record.name
        if target.exists() and _sha256(target) == want:
            continue  # fetched by an interrupted run
        tmp = staging / f".{record.name}.tmp"
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as out:
            got = backend.get(posixpath.join(directory, record.name), out, record.size,
                              f"fetch {host.name}/{kind}/{backup_id}/{record.name}")  # fmt: skip
            out.flush()
            os.fsync(out.fileno())
        if got != want:
            tmp.unlink()
            raise StoreError(f"{where}/{record.name}: checksum mismatch (damaged off-site)")
        tmp.rename(target)
    _write_atomic(staging / MANIFEST_NAME, text.decode())
    _fsync_dir(staging)
    staging.rename(kind_dir / backup_id)
    _fsync_dir(kind_dir)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def fetch_hosts(
    hosts: Sequence[Host],
    find: Callable[[str], Host],
    *,
    kinds: Sequence[str] = KINDS,
    dry_run: bool = False,
    as_json: bool = False,
) -> list[Outcome]:
    """backup.fetch for several hosts: one session per off-site store, one table."""
    groups, errors = grouped(hosts, find)
    outcomes = {name: failed(name, exc) for name, exc in errors.items()}
    rows: list[FetchRow] = []
    for where, members in groups.values():
        try:
            with where.open() as backend:
                for host in members:
                    lock = Store(host.store.path).lock(
                        timeout=host.store.lock_timeout, purpose="backup.fetch"
                    )
                    with contextlib.nullcontext() if dry_run else lock:
                        host_rows = fetch(host, backend, kinds=kinds, dry_run=dry_run)
                    rows += host_rows
                    outcomes[host.name] = _outcome(host.name, host_rows)
        except ZachotError as exc:
            outcomes.update(
                {h.name: failed(h.name, exc) for h in members if h.name not in outcomes}
            )
    if as_json:
        output.emit_json([asdict(r) for r in rows])
    else:
        output.table(
            "backup.fetch" + (" (dry run, nothing fetched)" if dry_run else ""),
            ["host", "kind", "id", "result", "detail"],
            [(r.host, r.kind, r.id, r.result, r.detail) for r in rows],
        )
    return [outcomes[host.name] for host in hosts]


def _outcome(host: str, rows: list[FetchRow]) -> Outcome:
    bad = [r for r in rows if not r.ok]
    fetched = sum(r.result == "fetched" for r in rows)
    if not bad:
        return Outcome(host, True, f"{fetched} fetched, {len(rows) - fetched} already here", 0.0)
    detail = f"{len(bad)} of {len(rows)} not fetched; {bad[0].kind} {bad[0].id}: {bad[0].detail}"
    return Outcome(host, False, detail + "; run it again to resume", 0.0, TransferError.exit_code)


@dataclass(frozen=True)
class Fetched:
    """What a restore took from the off-site copy because the store lacked it (or, on a dry
    run, would take: nothing is fetched then)."""

    origin: str  # the back end: the vault host, or s3://<bucket>
    host: str
    store: Path
    rows: tuple[FetchRow, ...]  # fetched (or would fetch) only
    seconds: float
    dry_run: bool = False

    @property
    def backups(self) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for row in self.rows:
            found.setdefault(row.kind, []).append(row.id)
        return found

    @property
    def note(self) -> str:
        """The plan's line."""
        what = ", ".join(f"{len(ids)} {kind}" for kind, ids in self.backups.items())
        verb = "would fetch" if self.dry_run else "fetched"
        return (
            f"{verb} from off-site ({self.origin}): {what} backups of {self.host} the store lacked"
        )

    def step(self) -> Step:
        """The fetch as a plan step, for a dry run to show (the real run fetches before it
        plans the restore, whose steps read the fetched files)."""
        actions = tuple(
            f"fetch {r.kind} {r.id} ({r.detail}) from {self.origin} into "
            f"{self.store / self.host / r.kind / r.id}: each file checked against the "
            "off-site manifest's sha256, staged, then renamed in"
            for r in self.rows
        )
        title = f"fetch {self.host}'s backups the store lacks from off-site ({self.origin})"
        return Step("fetch", title, actions)


def fetch_missing(
    host: Host, find: Callable[[str], Host], kinds: Sequence[str], *, dry_run: bool = False
) -> Fetched | None:
    """Fetch `host`'s off-site backups of `kinds` the store lacks, under the store lock
    (a dry run only lists them); None when nothing was missing. Raises ZachotError if any
    is not fetched."""
    store = Store(host.store.path)
    started = time.monotonic()
    # A dry run changes nothing, the store's directory included (lock() creates it).
    lock = (
        contextlib.nullcontext()
        if dry_run
        else store.lock(timeout=host.store.lock_timeout, purpose="backup.fetch")
    )
    with open_offsite(host, find) as backend, lock:
        rows = fetch(host, backend, kinds=kinds, dry_run=dry_run)
        name = backend.name
    if bad := [r for r in rows if not r.ok]:
        raise TransferError(f"{host.name}: {_outcome(host.name, bad).detail}")
    got = tuple(r for r in rows if r.result in ("fetched", "would fetch"))
    if not got:
        return None
    return Fetched(name, host.name, store.root, got, time.monotonic() - started, dry_run)


def fetch_for_restore(
    host: Host,
    find: Callable[[str], Host],
    selector: str = "latest",
    kinds: Sequence[str] = RESTORED,
    *,
    dry_run: bool = False,
) -> Fetched | None:
    """restore.server and drill, when the laptop was lost too: if the store cannot resolve
    `selector` for one of `kinds` and `host` has an off-site copy, fetch what it lacks of
    those kinds first (verified, as backup.fetch does; a dry run only lists it)."""
    store = Store(host.store.path)
    lacking = [kind for kind in kinds if not _resolves(store, host.name, kind, selector)]
    if not lacking or not has_offsite(host):
        return None
    return fetch_missing(host, find, lacking, dry_run=dry_run)


def _resolves(store: Store, host: str, kind: str, selector: str) -> bool:
    try:
        store.resolve(host, kind, selector)
    except BackupNotFoundError:
        return False
    return True
