"""The operator-side backup store: ``<root>/<host>/<kind>/<id>/`` plus a manifest.

A backup is complete exactly when its directory is named by a backup id and
holds a valid manifest. Backups are written into a ``.staging-*`` directory
and renamed into place last, so a crash or an interrupted pull leaves either
nothing or a staging directory that is never listed and never ``latest``.

Everything the store creates is private (directories 0700, files 0600), set
explicitly because env backups hold secrets and the umask is not ours to trust.
Pure local-filesystem code; the transport writes the bytes into paths we hand out.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import secrets
import shutil
import stat
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from fabfile.core import atomic
from fabfile.core.errors import BackupNotFoundError, BadSelectorError, StoreError, UsageError
from fabfile.core.lock import StoreLock
from fabfile.core.manifest import (
    FORMAT,
    KINDS,
    MANIFEST_NAME,
    SHA256_RE,
    FileRecord,
    Manifest,
    format_utc,
    id_sort_key,
    is_backup_id,
    is_file_name,
    is_host_name,
    parse_utc,
    short_repr,
)
from fabfile.core.manifest_cache import CACHE_NAME, ManifestCache, stamp_of

if TYPE_CHECKING:
    from fabfile.core.model import Host

__all__ = ["KINDS", "BackupRef", "FileRecord", "Manifest", "StagedBackup", "Store"]

LOCK_NAME = ".lock"
# backup.routine's record of its last runs (core/routine.py).
ROUTINE_NAME = ".routine.json"
STAGING_PREFIX = ".staging-"
# A deleted backup is renamed to this first, then removed; a leftover is already gone.
DELETING_PREFIX = ".deleting-"
# Written by backup.verify beside the (immutable) manifest.
VERIFIED_NAME = "verified.json"
# backup.verify's rolling read-back log: <root>/<host>/read-back.json (0600), when each
# backup (local or off-site) was last read back and whether it was intact.
READ_BACK_NAME = "read-back.json"
MAX_READ_BACK_BYTES = 16 * 1024 * 1024
# backup.replicate's memo: <root>/<host>/offsite-manifests.json (0600), the size and sha256
# of each backup's off-site manifest, keyed by the sha256 of the local manifest's bytes, so
# a run with nothing to send does not re-serialise every manifest of a long history.
OFFSITE_DIGESTS_NAME = "offsite-manifests.json"
# Beside it, the listing's cache of parsed manifests (CACHE_NAME, core/manifest_cache.py).
# Drill reports (core/drill/) beside the kinds: <root>/<host>/drills/<id>.md and .json.
DRILLS_DIR = "drills"
STAGING_MAX_AGE = timedelta(hours=1)
MAX_SUFFIX = 999  # the id regex allows -1 .. -999
MAX_MANIFEST_BYTES = 64 * 1024 * 1024
MAX_SELECTOR = 64  # longer than any id; refuse before running a regex on it
SELECTOR_HELP = (
    "use 'latest', a backup id like 20261124T151500Z, "
    "or a unique prefix of one (at least 8 digits, e.g. 20261124)"
)
LIST_HINT = "see what there is with: fab backup.list"

_ID = r"[0-9]{8}T[0-9]{6}Z(?:-[0-9]{1,3})?"
_STAGING_RE = re.compile(rf"\.staging-(?P<id>{_ID})-[0-9a-f]{{16}}", re.ASCII)
# Every prefix (>= 8 chars) of something ID_RE accepts, and nothing else.
_PREFIX_RE = re.compile(r"[0-9]{8}(?:T(?:[0-9]{0,5}|[0-9]{6}(?:Z(?:-[0-9]{0,3})?)?))?", re.ASCII)


@dataclass(frozen=True)
class ReadBack:
    """One backup read back by backup.verify: when, and whether it was intact."""

    at: datetime
    ok: bool


# (where, kind, id): where is "local" or "offsite".
ReadBackKey = tuple[str, str, str]
READ_BACK_PLACES = ("local", "offsite")


@dataclass(frozen=True)
class BackupRef:
    host: str
    kind: str
    id: str
    path: Path
    manifest: Manifest
    # sha256 of the manifest file's bytes, when read from the store (ManifestMemo's key).
    manifest_sha256: str | None = None

    @property
    def created(self) -> datetime:
        return self.manifest.created_at

    @property
    def size(self) -> int:
        """Bytes this backup restores, counting files kept in another backup."""
        return sum(record.size for record in self.manifest.files)

    @property
    def stored_size(self) -> int:
        """Bytes physically in this backup's directory (unchanged files excluded)."""
        return sum(record.size for record in self.manifest.files if record.stored_in is None)

    def references(self) -> set[str]:
        """Ids of the backups whose bytes this one needs: stored_in files and logs archives."""
        ids = {record.stored_in for record in self.manifest.files if record.stored_in}
        index = self.manifest.meta.get("index") if self.kind == "logs" else None
        for entry in index if isinstance(index, list) else []:
            if isinstance(entry, dict) and isinstance(entry.get("archive"), str):
                ids.add(entry["archive"])
        return ids - {self.id}


class Store:
    def __init__(self, root: Path) -> None:
        self.root = Path(root).expanduser()
        # Per host, kept between listings: prune and verify list the store many times.
        self._caches: dict[str, ManifestCache] = {}

    # -- writing -------------------------------------------------------------

    def begin(self, host: str, kind: str, *, now: datetime | None = None) -> StagedBackup:
        """Start a backup; use as `with store.begin(host, kind) as staged: ... staged.commit()`.

        Callers should hold `store.lock()`: it is what keeps two writers from
        picking the same id in the same second.
        """
        _check_host(host)
        _check_kind(kind)
        moment = _utc(now)
        kind_dir = self._ensure_host_dir(host, kind)
        self.cleanup_staging()
        backup_id = _next_id(kind_dir, moment.strftime("%Y%m%dT%H%M%SZ"))
        staging = kind_dir / f"{STAGING_PREFIX}{backup_id}-{secrets.token_hex(8)}"
        _mkdir_private(staging)
        return StagedBackup(self, host, kind, backup_id, staging, created=format_utc(moment))

    def cleanup_staging(self, *, max_age: timedelta = STAGING_MAX_AGE) -> list[Path]:
        """Remove staging dirs left by crashed runs; returns what was removed.

        Age is wall-clock time since anything in the dir last changed, so a slow
        but live pull (which keeps adding files) is not swept away.
        """
        cutoff = time.time() - max_age.total_seconds()
        removed = []
        for host in self._hosts():
            for kind in KINDS:
                for entry in _entries(self.root / host / kind):
                    old = _is_staging(entry) and _newest_mtime(Path(entry.path)) < cutoff
                    if old or _is_deleting(entry):
                        shutil.rmtree(entry.path, ignore_errors=True)
                        removed.append(Path(entry.path))
        return removed

    def lock(self, *, timeout: float, purpose: str) -> StoreLock:
        """The store-wide writer lock (not yet acquired; use it as a context manager)."""
        _makedirs_private(self.root)
        return StoreLock(self.root / LOCK_NAME, timeout=timeout, purpose=purpose)

    def delete(self, ref: BackupRef) -> None:
        """Remove a backup; hold `store.lock()`. It is renamed aside first, so
        readers see it whole or not at all, even if the removal is interrupted."""
        self._check_own(ref)
        aside = ref.path.with_name(f"{DELETING_PREFIX}{ref.id}-{secrets.token_hex(8)}")
        try:
            os.rename(ref.path, aside)
        except FileNotFoundError:
            raise BackupNotFoundError(f"{ref.path}: already gone") from None
        except OSError as exc:
            raise StoreError(f"cannot delete {ref.path}: {exc.strerror}") from None
        _fsync_dir(ref.path.parent)
        shutil.rmtree(aside, ignore_errors=True)  # cleanup_staging() sweeps what survives

    def mark_verified(self, ref: BackupRef, when: datetime, checks: list[str]) -> None:
        """Record that backup.verify passed (the manifest itself never changes)."""
        self._check_own(ref)
        if ref.manifest.file(VERIFIED_NAME) is not None:
            raise StoreError(f"{ref.path}: holds a file named {VERIFIED_NAME}; cannot mark it")
        record = {"id": ref.id, "verified_at": format_utc(_utc(when)), "checks": list(checks)}
        _write_atomic(ref.path / VERIFIED_NAME, json.dumps(record) + "\n")

    def unmark_verified(self, ref: BackupRef) -> None:
        self._check_own(ref)
        if ref.manifest.file(VERIFIED_NAME) is None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(ref.path / VERIFIED_NAME)

    def verified_at(self, ref: BackupRef) -> datetime | None:
        """When backup.verify last passed this backup; None if never (or unreadable)."""
        if ref.manifest.file(VERIFIED_NAME) is not None:
            return None
        try:
            data = atomic.read_json(ref.path / VERIFIED_NAME, 64 * 1024)
            if data["id"] != ref.id:
                return None
            return parse_utc(data["verified_at"])
        except (OSError, ValueError, TypeError, KeyError):
            return None

    def read_backs(self, host: str) -> dict[ReadBackKey, ReadBack]:
        """When each backup of `host` was last read back; {} if never (or unreadable)."""
        _check_host(host)
        try:
            data = atomic.read_json(self.root / host / READ_BACK_NAME, MAX_READ_BACK_BYTES)
            return dict(_read_back_entry(entry) for entry in data["read_back"])
        except (OSError, ValueError, TypeError, KeyError):
            return {}  # a damaged log only means: read everything back again

    def record_read_backs(
        self,
        host: str,
        results: Mapping[ReadBackKey, ReadBack],
        *,
        alive: Collection[ReadBackKey] | None = None,
    ) -> None:
        """Add `results` to the read-back log (hold the store lock); with `alive`, also
        forget entries of backups that are gone, so the log does not grow forever."""
        merged = {**self.read_backs(host), **results}
        if alive is not None:
            merged = {key: value for key, value in merged.items() if key in alive}
        entries = [
            {"where": w, "kind": k, "id": i, "at": format_utc(rb.at), "ok": rb.ok}
            for (w, k, i), rb in sorted(merged.items())
        ]
        target = self._ensure_host_dir(host, "") / READ_BACK_NAME
        _write_atomic(target, json.dumps({"read_back": entries}, indent=1) + "\n")
        _fsync_dir(target.parent)

    def offsite_digests(self, host: str) -> dict[str, tuple[int, str]]:
        """backup.replicate's memo (see OFFSITE_DIGESTS_NAME); {} if none or unreadable."""
        _check_host(host)
        try:
            data = atomic.read_json(self.root / host / OFFSITE_DIGESTS_NAME, MAX_READ_BACK_BYTES)
            found = {key: (size, sha) for key, (size, sha) in data["manifests"].items()}
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            return {}  # a damaged memo only means: serialise the manifests once more
        ok = all(
            SHA256_RE.fullmatch(key) and SHA256_RE.fullmatch(sha) and type(size) is int
            for key, (size, sha) in found.items()
        )
        return found if ok else {}

    def record_offsite_digests(self, host: str, digests: Mapping[str, tuple[int, str]]) -> None:
        """Write the memo whole (hold the store lock): what the caller kept is what is alive."""
        target = self._ensure_host_dir(host, "") / OFFSITE_DIGESTS_NAME
        data = {key: list(value) for key, value in sorted(digests.items())}
        _write_atomic(target, json.dumps({"manifests": data}, indent=0) + "\n")

    def write_drill_file(self, host: str, name: str, text: str) -> Path:
        """Write one drill report file (0600, in 0700 directories) atomically; its path."""
        _check_host(host)
        _check_name(name)
        target = self._ensure_host_dir(host, DRILLS_DIR) / name
        _write_atomic(target, text)
        _fsync_dir(target.parent)
        return target

    def drills_dir(self, host: str) -> Path:
        _check_host(host)
        return self.root / host / DRILLS_DIR

    # -- reading -------------------------------------------------------------

    def list(self, host: str | None = None, kind: str | None = None) -> list[BackupRef]:
        """Complete backups sorted by host, kind (in KINDS order), then oldest first."""
        if host is not None:
            _check_host(host)
        if kind is not None:
            _check_kind(kind)
        refs: list[BackupRef] = []
        kinds = (kind,) if kind is not None else KINDS
        for one_host in [host] if host is not None else self._hosts():
            cache = self._caches.get(one_host)
            if cache is None:
                cache = self._caches[one_host] = ManifestCache(self.root / one_host)
            cache.start()
            for one_kind in kinds:
                refs.extend(self._scan(one_host, one_kind, cache)[0])
            cache.save(kinds)
        return refs

    def latest(self, host: str, kind: str) -> BackupRef | None:
        _check_host(host)
        _check_kind(kind)
        return next(self._newest_first(host, kind), None)

    def resolve(self, host: str, kind: str, selector: str) -> BackupRef:
        """'latest', a full id or a unique id prefix -> that backup of host/kind."""
        # Validate first: a hostile selector must not reach the filesystem.
        _check_selector(selector)
        _check_host(host)
        _check_kind(kind)
        if selector == "latest":
            ref = self.latest(host, kind)
            if ref is None:
                raise BackupNotFoundError(
                    f"no complete {kind} backup of {host} in {self.root}; {LIST_HINT}"
                )
            return ref
        refs = self.list(host, kind)
        exact = [ref for ref in refs if ref.id == selector]
        matches = exact or [ref for ref in refs if ref.id.startswith(selector)]
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise BadSelectorError(
                f"{selector!r} matches {len(matches)} {kind} backups of {host}: "
                f"{_some([ref.id for ref in matches])}; give more of the id"
            )
        raise BackupNotFoundError(
            f"no {kind} backup {selector!r} of {host} in {self.root}; {LIST_HINT}"
        )

    def find_by_sha256(self, host: str, kind: str, name: str, sha256: str) -> BackupRef | None:
        """The backup that physically holds the newest intact copy of this content, if any.

        Returns the holder itself (not a backup that merely refers to it), so
        the caller can set `stored_in=ref.id` and references never chain.
        """
        _check_host(host)
        _check_kind(kind)
        _check_name(name)
        for ref in self._newest_first(host, kind):
            record = ref.manifest.file(name)
            if record is None or record.sha256 != sha256:
                continue
            try:
                holder = self._holder(ref, record)
            except StoreError:
                continue  # damaged: do not spread references to it
            if _file_problem(holder.path / name, record) is None:
                return holder
        return None

    def file_path(self, ref: BackupRef, name: str) -> Path:
        """Where the bytes of `name` in `ref` are, following `stored_in`."""
        _check_name(name)
        record = ref.manifest.file(name)
        if record is None:
            raise BackupNotFoundError(f"backup {ref.host}/{ref.kind}/{ref.id} has no file {name}")
        path = self._holder(ref, record).path / name
        if (problem := _file_problem(path, record)) is not None:
            raise StoreError(f"{problem}; the store is damaged")
        return path

    def problems(self, host: str | None = None, kind: str | None = None) -> list[str]:
        """Everything wrong in the store, one line each: incomplete dirs, bad
        manifests, missing or stray files, broken references, loose permissions.
        With host (and kind), only what is wrong in that part of the store."""
        if not self.root.is_dir():
            return []
        found = self._layout_problems() if host is None else []
        if host is not None:
            _check_host(host)
        if kind is not None:
            _check_kind(kind)
        for one_host in [host] if host is not None else self._hosts():
            for one_kind in [kind] if kind is not None else KINDS:
                # No cache: this check is there to notice a damaged manifest.
                refs, scan_problems = self._scan(one_host, one_kind, None)
                found.extend(scan_problems)
                for ref in refs:
                    found.extend(self._backup_problems(ref))
        return found

    # -- internals -----------------------------------------------------------

    def _check_own(self, ref: BackupRef) -> None:
        # A ref is a value anyone can build: only ever touch a backup directory of this store.
        _check_host(ref.host)
        _check_kind(ref.kind)
        if not is_backup_id(ref.id) or ref.path != self.root / ref.host / ref.kind / ref.id:
            raise StoreError(f"{ref.path} is not a backup in the store {self.root}")

    def _hosts(self) -> list[str]:
        return [
            entry.name
            for entry in _entries(self.root)
            if is_host_name(entry.name) and entry.is_dir(follow_symlinks=False)
        ]

    def _ensure_host_dir(self, host: str, name: str) -> Path:
        """<root>/<host>/<name> (a kind, or drills; "" for the host dir itself), created
        private where missing."""
        _makedirs_private(self.root)
        for path in dict.fromkeys((self.root / host, self.root / host / name)):
            if _mkdir_private(path):
                _fsync_dir(path.parent)
        return self.root / host / name

    def _scan(
        self, host: str, kind: str, cache: ManifestCache | None
    ) -> tuple[list[BackupRef], list[str]]:
        """(complete backups oldest first, one-line problems) of one host/kind."""
        refs, found = [], []
        for entry in _entries(self.root / host / kind):
            if is_backup_id(entry.name) and entry.is_dir(follow_symlinks=False):
                try:
                    refs.append(self._read_backup(host, kind, entry.name, cache))
                except StoreError as exc:
                    found.append(str(exc))
            elif _is_deleting(entry):
                continue  # deleted; only its removal was interrupted
            elif _is_staging(entry):
                found.append(f"{entry.path}: incomplete backup (staging; removed after an hour)")
            else:
                found.append(f"{entry.path}: stray entry, not a backup")
        refs.sort(key=lambda ref: id_sort_key(ref.id))
        return refs, found

    def _newest_first(self, host: str, kind: str) -> Iterator[BackupRef]:
        """The complete backups of one host/kind, newest first, each manifest read only when
        reached: latest() and the dedup lookup stop at the first, so a long history costs
        them a directory listing, not a read of every manifest."""
        names = [entry.name for entry in _entries(self.root / host / kind)
                 if is_backup_id(entry.name) and entry.is_dir(follow_symlinks=False)]  # fmt: skip
        for name in sorted(names, key=id_sort_key, reverse=True):
            try:
                yield self._read_backup(host, kind, name)
            except StoreError:
                continue  # damaged or incomplete: list() and verify report it

    def _read_backup(
        self, host: str, kind: str, backup_id: str, cache: ManifestCache | None = None
    ) -> BackupRef:
        path = self.root / host / kind / backup_id
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            raise StoreError(f"{path}: no such backup") from None
        if not stat.S_ISDIR(mode):
            raise StoreError(f"{path}: not a directory")
        if cache is not None and (hit := _cached(cache, path, host, kind, backup_id)):
            manifest, sha256 = hit
        else:
            data, info = _read_manifest(path)
            manifest = Manifest.from_json(_utf8(data, path), where=str(path / MANIFEST_NAME))
            sha256 = hashlib.sha256(data).hexdigest()
            if cache is not None:
                cache.put(kind, backup_id, stamp_of(info), manifest, sha256)
        if (manifest.host, manifest.kind, manifest.id) != (host, kind, backup_id):
            raise StoreError(
                f"{path / MANIFEST_NAME}: manifest is for "
                f"{manifest.host}/{manifest.kind}/{manifest.id}, not this directory"
            )
        return BackupRef(host, kind, backup_id, path, manifest, sha256)

    def _holder(self, ref: BackupRef, record: FileRecord) -> BackupRef:
        """The backup that physically holds `record`'s bytes: `ref`, or where stored_in leads."""
        seen = {ref.id}
        where = f"{ref.host}/{ref.kind}/{ref.id}: {record.name}"
        current, holder = record, ref
        while current.stored_in is not None:
            target = current.stored_in
            if target in seen:
                raise StoreError(f"{where}: stored_in references loop through {target}")
            seen.add(target)
            try:
                holder = self._read_backup(ref.host, ref.kind, target)
            except StoreError as exc:
                raise StoreError(f"{where} is kept in {target}, which is unusable: {exc}") from None
            found = holder.manifest.file(record.name)
            if found is None or found.sha256 != record.sha256:
                raise StoreError(f"{where} is kept in {target}, which lacks that content")
            current = found
        return holder

    def _layout_problems(self) -> list[str]:
        found = []
        for entry in _entries(self.root):
            if entry.name.startswith((LOCK_NAME, ROUTINE_NAME)):
                continue  # the lock and the routine's record, and their transient temp files
            if not (is_host_name(entry.name) and entry.is_dir(follow_symlinks=False)):
                found.append(f"{entry.path}: stray entry, not a host directory")
                continue
            found.extend(
                f"{kind_entry.path}: stray entry, not a backup kind ({', '.join(KINDS)})"
                for kind_entry in _entries(Path(entry.path))
                if not _is_host_entry(kind_entry)
            )
        return found

    def _backup_problems(self, ref: BackupRef) -> list[str]:
        found = [_loose_mode(ref.path, 0o700), _loose_mode(ref.path / MANIFEST_NAME, 0o600)]
        physical = {r.name for r in ref.manifest.files if r.stored_in is None}
        for record in ref.manifest.files:
            if record.stored_in is None:
                found += [_file_problem(ref.path / record.name, record)]
                found += [_loose_mode(ref.path / record.name, 0o600)]
                continue
            try:
                self._holder(ref, record)
            except StoreError as exc:
                found.append(str(exc))
        found.extend(
            f"{entry.path}: stray file, not in the manifest"
            for entry in _entries(ref.path)
            if entry.name not in (MANIFEST_NAME, VERIFIED_NAME) and entry.name not in physical
        )
        return [problem for problem in found if problem is not None]


@contextlib.contextmanager
def store_locks(hosts: Sequence[Host], purpose: str) -> Iterator[None]:
    """Lock every store these hosts write to, in a fixed order (no deadlock)."""
    roots = sorted({(str(h.store.path), h.store.lock_timeout) for h in hosts})
    with contextlib.ExitStack() as stack:
        for root, timeout in roots:
            stack.enter_context(Store(Path(root)).lock(timeout=timeout, purpose=purpose))
        yield


class StagedBackup:
    """A backup being written. Nothing is visible to readers until commit()."""

    def __init__(
        self, store: Store, host: str, kind: str, backup_id: str, path: Path, *, created: str
    ) -> None:
        self.store, self.host, self.kind = store, host, kind
        self.id = backup_id
        self.path = path
        self.created = created
        self.meta: dict[str, Any] = {}
        self._records: dict[str, FileRecord] = {}
        self._state = "open"  # open -> committed | discarded

    def target(self, name: str) -> Path:
        """The path to write file `name` to (the writer does its own tmp+fsync+rename)."""
        self._check_open()
        _check_name(name)
        if name in self._records:
            raise StoreError(f"{self._where}: {name} was already added")
        return self.path / name

    def add(self, record: FileRecord) -> None:
        """Register a file written to target(record.name), or a reference (stored_in)."""
        self._check_open()
        if (problem := record.problem()) is not None:
            raise StoreError(f"{self._where}: {problem}")
        if record.name in self._records:
            raise StoreError(f"{self._where}: {record.name} was already added")
        if record.stored_in is None:
            self._check_written(record)
            os.chmod(self.path / record.name, 0o600)  # whatever mode the writer used
        else:
            record = self._checked_reference(record)
        self._records[record.name] = record

    def commit(self) -> BackupRef:
        """Write the manifest and move the backup into place; from now on it is listed."""
        self._check_open()
        self._check_contents()
        manifest = Manifest(
            format=FORMAT,
            id=self.id,
            host=self.host,
            kind=self.kind,
            created=self.created,
            files=tuple(self._records.values()),
            meta=dict(self.meta),
        )
        try:
            text = manifest.to_json()
        except (TypeError, ValueError) as exc:
            raise StoreError(f"{self._where}: cannot write manifest: {exc}") from None
        _write_atomic(self.path / MANIFEST_NAME, text)
        _fsync_dir(self.path)
        final = self.path.parent / self.id
        # os.rename would silently replace an empty directory; the store lock
        # makes this check-then-rename race-free between our own writers.
        if os.path.lexists(final):
            raise StoreError(f"{final} appeared while writing; is another writer running?")
        try:
            os.rename(self.path, final)
        except OSError as exc:
            raise StoreError(f"cannot move {self.path.name} to {final}: {exc.strerror}") from None
        _fsync_dir(final.parent)
        self._state = "committed"
        sha256 = hashlib.sha256(text.encode()).hexdigest()
        return BackupRef(self.host, self.kind, self.id, final, manifest, sha256)

    def discard(self) -> None:
        if self._state == "open":
            self._state = "discarded"
            # Best effort: cleanup_staging() removes whatever survives.
            shutil.rmtree(self.path, ignore_errors=True)

    def __enter__(self) -> StagedBackup:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.discard()

    @property
    def _where(self) -> str:
        return f"backup {self.host}/{self.kind}/{self.id}"

    def _check_open(self) -> None:
        if self._state != "open":
            raise StoreError(f"{self._where} is already {self._state}")

    def _check_written(self, record: FileRecord) -> None:
        if (problem := _file_problem(self.path / record.name, record)) is not None:
            raise StoreError(problem)

    def _checked_reference(self, record: FileRecord) -> FileRecord:
        if record.stored_in == self.id:
            raise StoreError(f"{self._where}: {record.name}: stored_in names this backup")
        if os.path.lexists(self.path / record.name):
            raise StoreError(f"{self._where}: {record.name} is both written and a reference")
        holder = self.store._holder(self._as_ref_stub(), record)
        if (problem := _file_problem(holder.path / record.name, record)) is not None:
            raise StoreError(f"{self._where}: cannot refer to it: {problem}")
        # Point at the backup that physically holds the bytes, so references never chain.
        return replace(record, stored_in=holder.id)

    def _as_ref_stub(self) -> BackupRef:
        stub = Manifest(FORMAT, self.id, self.host, self.kind, self.created, ())
        return BackupRef(self.host, self.kind, self.id, self.path, stub)

    def _check_contents(self) -> None:
        """Every file present is registered, and still the size it was registered with."""
        physical = {name for name, record in self._records.items() if record.stored_in is None}
        strays = [e.name for e in _entries(self.path) if e.name not in physical]
        if strays:
            raise StoreError(f"{self._where}: files written but not added: {_some(strays)}")
        for name in sorted(physical):
            self._check_written(self._records[name])


# -- validation ---------------------------------------------------------------


def _check_selector(selector: object) -> None:
    ok = isinstance(selector, str) and len(selector) <= MAX_SELECTOR
    if not (ok and (selector == "latest" or _PREFIX_RE.fullmatch(selector))):
        raise BadSelectorError(f"bad backup selector {short_repr(selector)}: {SELECTOR_HELP}")


def _check_host(host: object) -> None:
    if not is_host_name(host):
        raise UsageError(f"bad host name {short_repr(host)}: letters, digits, '.', '_', '-'")


def _check_kind(kind: object) -> None:
    if kind not in KINDS:
        raise UsageError(f"bad backup kind {short_repr(kind)}: one of {', '.join(KINDS)}")


def _check_name(name: object) -> None:
    if not is_file_name(name):
        raise StoreError(f"bad file name {short_repr(name)} for a backup: one plain file name")


def _utc(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now.astimezone(UTC)


def _next_id(kind_dir: Path, base: str) -> str:
    """`base`, or `base-N` with the smallest free N; ids of live staging dirs count as taken."""
    taken = set()
    for entry in _entries(kind_dir):
        match = _STAGING_RE.fullmatch(entry.name)
        taken.add(match["id"] if match else entry.name)
    for candidate in (base, *(f"{base}-{n}" for n in range(1, MAX_SUFFIX + 1))):
        if candidate not in taken:
            return candidate
    raise StoreError(f"{kind_dir}: more than {MAX_SUFFIX} backups stamped {base}")


def _is_host_entry(entry: os.DirEntry[str]) -> bool:
    """What may sit in <root>/<host>/: the kinds, the drills, the read-back log, the memo
    and the manifest cache."""
    if entry.name in (READ_BACK_NAME, OFFSITE_DIGESTS_NAME, CACHE_NAME):
        return entry.is_file(follow_symlinks=False)
    return entry.name in (*KINDS, DRILLS_DIR) and entry.is_dir(follow_symlinks=False)


def _read_back_entry(entry: dict[str, Any]) -> tuple[ReadBackKey, ReadBack]:
    key = (entry["where"], entry["kind"], entry["id"])
    if key[0] not in READ_BACK_PLACES or key[1] not in KINDS or not is_backup_id(key[2]):
        raise ValueError(f"bad read-back entry {key!r}")
    if not isinstance(entry["ok"], bool):
        raise ValueError("ok must be true or false")
    return key, ReadBack(parse_utc(entry["at"]), entry["ok"])


def _is_deleting(entry: os.DirEntry[str]) -> bool:
    return entry.name.startswith(DELETING_PREFIX) and entry.is_dir(follow_symlinks=False)


def _is_staging(entry: os.DirEntry[str]) -> bool:
    return _STAGING_RE.fullmatch(entry.name) is not None and entry.is_dir(follow_symlinks=False)


def _file_problem(path: Path, record: FileRecord) -> str | None:
    """Why the bytes at `path` cannot be `record`'s (existence, type, size), or None."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return f"{path}: missing"
    if not stat.S_ISREG(info.st_mode):
        return f"{path}: not a regular file"
    if info.st_size != record.size:
        return f"{path}: size is {info.st_size}, manifest says {record.size}"
    return None


def _loose_mode(path: Path, expected: int) -> str | None:
    with contextlib.suppress(FileNotFoundError):
        mode = stat.S_IMODE(os.lstat(path).st_mode)
        if mode & 0o077:
            return f"{path}: mode {mode:04o} lets others in (should be {expected:04o})"
    return None


def _some(items: list[str], limit: int = 5) -> str:
    shown = ", ".join(items[:limit])
    return f"{shown} and {len(items) - limit} more" if len(items) > limit else shown


# -- filesystem helpers -------------------------------------------------------


def _entries(path: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(path) as iterator:
            return sorted(iterator, key=lambda entry: entry.name)
    except FileNotFoundError:
        return []
    except NotADirectoryError:
        raise StoreError(f"{path}: expected a directory") from None


def _newest_mtime(path: Path) -> float:
    try:
        return max(
            [os.lstat(path).st_mtime]
            + [entry.stat(follow_symlinks=False).st_mtime for entry in _entries(path)]
        )
    except OSError:
        return float("inf")  # changing under us: someone is using it


def _mkdir_private(path: Path) -> bool:
    """Create one directory 0700 whatever the umask; False if it already exists."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        # A symlink here would let backups land outside the store unseen by list().
        if path.is_symlink() or not path.is_dir():
            raise StoreError(f"{path} exists and is not a directory") from None
        return False
    os.chmod(path, 0o700)
    return True


def _makedirs_private(path: Path) -> None:
    """Like mkdir -p, with every directory it creates 0700. An existing root
    (even a symlink the operator made) is left as it is."""
    if path.is_dir():
        return
    if path.parent != path:
        _makedirs_private(path.parent)
    if _mkdir_private(path):
        _fsync_dir(path.parent)


def _cached(
    cache: ManifestCache, backup_dir: Path, host: str, kind: str, backup_id: str
) -> tuple[Manifest, str] | None:
    """The cached manifest of a backup when its file is unchanged since it was read."""
    try:
        info = os.stat(backup_dir / MANIFEST_NAME, follow_symlinks=False)
    except OSError:
        return None  # _read_manifest says what is wrong
    hit = cache.get(kind, backup_id, stamp_of(info)) if stat.S_ISREG(info.st_mode) else None
    if hit is None or (hit[0].host, hit[0].kind, hit[0].id) != (host, kind, backup_id):
        return None  # a damaged cache row: the file decides
    return hit


def _read_manifest(backup_dir: Path) -> tuple[bytes, os.stat_result]:
    """The manifest's bytes and the stat of the file they were read from."""
    path = backup_dir / MANIFEST_NAME
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        raise StoreError(f"{backup_dir}: incomplete backup (no {MANIFEST_NAME})") from None
    except OSError as exc:
        raise StoreError(f"{path}: cannot read: {exc.strerror}") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise StoreError(f"{path}: bad manifest: not a regular file")
    with os.fdopen(fd, "rb") as handle:
        data = handle.read(MAX_MANIFEST_BYTES + 1)
    if len(data) > MAX_MANIFEST_BYTES:
        raise StoreError(f"{path}: bad manifest: larger than {MAX_MANIFEST_BYTES} bytes")
    return data, info


def _utf8(data: bytes, backup_dir: Path) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise StoreError(f"{backup_dir / MANIFEST_NAME}: bad manifest: not UTF-8 text") from None


def _write_atomic(path: Path, text: str) -> None:
    atomic.write_file(path, text.encode())


def _fsync_dir(path: Path) -> None:
    """Make a rename/mkdir in `path` durable: without it a crash can undo a commit."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    except OSError as exc:
        # Some network filesystems cannot fsync a directory; nothing more we can do there.
        if exc.errno not in (errno.EINVAL, errno.EOPNOTSUPP):
            raise
    finally:
        os.close(fd)
