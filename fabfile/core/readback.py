"""backup.verify's rolling read-back, like `restic check --read-data-subset`.

Each run reads back a bounded share of the older backups, local and off-site: those
never read back first, then those read back longest ago, until the run's byte budget
or its count is used. The first always goes, so a backup bigger than the budget still
gets its turn; the count bounds the round trips to the vault (a few per backup read),
however small the backups are. Over enough runs every backup, local and off-site, has
been read back once. When each was last read back is kept in the store's read-back log
(Store.read_backs), which backup.list shows and backup.prune's off-site side trusts as
"verified".

Off-site, the only per-backup requests are the reads of the chosen backups: what the
vault holds comes from its index, in one read per host (offsite.read_index).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from .errors import LockHeldError, UsageError, ZachotError
from .manifest import KINDS, id_sort_key
from .model import Host
from .offsite import Index, check_backup, read_index
from .offsite_backend import Backend, has_offsite, open_offsite
from .store import BackupRef, ReadBack, ReadBackKey, Store
from .verify import verify_backup

MIB = 1024 * 1024
_SIZE_RE = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*([KMGT]?)(i?B)?", re.ASCII | re.IGNORECASE)
_NEVER = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Candidate:
    """One older backup that could be read back this run."""

    where: str  # local or offsite
    kind: str
    id: str
    size: int  # bytes a read-back reads

    @property
    def key(self) -> ReadBackKey:
        return (self.where, self.kind, self.id)


@dataclass(frozen=True)
class ReadBackRow:
    host: str
    where: str
    kind: str
    id: str
    size: int
    ok: bool
    detail: str

    def as_json(self) -> dict[str, object]:
        return {"read_back": True, **self.__dict__}


def parse_budget(text: object) -> int:
    """'64MiB', '1G', '500kB' or plain bytes -> bytes (binary units either way)."""
    match = _SIZE_RE.fullmatch(str(text).strip())
    if not match:
        raise UsageError(f"--read-budget must be a size such as 64MiB or 1GiB, got {text!r}")
    number, unit = float(match[1]), match[2].upper()
    return int(number * 1024 ** " KMGT".index(unit or " "))


def parse_count(text: object) -> int:
    if not str(text).isdigit():
        raise UsageError(f"--read-count must be a whole number >= 0, got {text!r}")
    return int(str(text))


def choose(
    candidates: Sequence[Candidate],
    last: Mapping[ReadBackKey, ReadBack],
    budget: int,
    count: int | None = None,
) -> list[Candidate]:
    """Never read back first (oldest backup first), then read back longest ago, within
    `budget` bytes and `count` backups; the first always goes (unless either is 0), so
    no backup is too big to ever be read."""

    def order(c: Candidate) -> tuple[datetime, tuple[str, int], str, int]:
        seen = last.get(c.key)
        return (seen.at if seen else _NEVER, id_sort_key(c.id), c.where, KINDS.index(c.kind))

    chosen: list[Candidate] = []
    total = 0
    for candidate in sorted(candidates, key=order) if budget > 0 and count != 0 else ():
        if len(chosen) == count or (chosen and total + candidate.size > budget):
            break  # strictly in turn: a big backup is not skipped for smaller ones
        chosen.append(candidate)
        total += candidate.size
    return chosen


def rolling_read_back(
    host: Host,
    find: Callable[[str], Host],
    *,
    budget: int,
    count: int | None = None,
    kinds: Collection[str] = KINDS,
    done: Mapping[ReadBackKey, ReadBack],
    now: datetime,
) -> list[ReadBackRow]:
    """Read back a budget's worth of `host`'s older backups and log it with `done` (what
    this run's newest-backup checks read back already, and so are not chosen again)."""
    store = Store(host.store.path)
    rows: list[ReadBackRow] = []
    if budget <= 0 or count == 0:  # the rotation is off: no vault session for it
        with _locked(store, host):
            store.record_read_backs(host.name, done)
        return rows
    with _locked(store, host), _vault(host, find, rows) as vault:
        local = {(r.kind, r.id): r for r in store.list(host.name) if r.kind in kinds}
        index = _index(vault, host, rows)
        candidates = [Candidate("local", kind, i, ref.size) for (kind, i), ref in local.items()]
        candidates += [
            Candidate("offsite", kind, i, sum(there.files.values()))
            for (kind, i), there in (index.backups if index else {}).items()
            if kind in kinds
        ]
        fresh = [c for c in candidates if c.key not in done]
        chosen = choose(fresh, store.read_backs(host.name), budget, count)
        rows += [_read_one(store, host, vault, index, c, local) for c in chosen]
        results = {(r.where, r.kind, r.id): ReadBack(now, r.ok) for r in rows if r.id != "-"}
        # Forget the log's entries of backups that are gone, once we know what is there.
        alive = None if index is None or kinds != KINDS else {c.key for c in candidates} | set(done)
        store.record_read_backs(host.name, {**done, **results}, alive=alive)
    return rows


def _read_one(
    store: Store,
    host: Host,
    vault: Backend | None,
    index: Index | None,
    candidate: Candidate,
    local: Mapping[tuple[str, str], BackupRef],
) -> ReadBackRow:
    key = (candidate.kind, candidate.id)
    ref = local.get(key)
    if candidate.where == "local":
        assert ref is not None
        problems = [str(p) for p in verify_backup(store, ref, host)]
        # The same integrity checks as for the newest: keep verified.json truthful.
        if problems:
            store.unmark_verified(ref)
        else:
            store.mark_verified(ref, datetime.now(UTC), ["files", "read back"])
        ok, detail = not problems, "; ".join(problems) or "intact"
    else:
        assert vault is not None and index is not None
        state = check_backup(vault, host, index, key, ref)  # every byte read back and hashed
        ok, detail = state.ok, state.detail
    return ReadBackRow(host.name, candidate.where, *key, candidate.size, ok, detail)


@contextlib.contextmanager
def _locked(store: Store, host: Host) -> Iterator[None]:
    lock = store.lock(timeout=host.store.lock_timeout, purpose="backup.verify")
    try:
        lock.acquire()
    except LockHeldError as exc:
        raise LockHeldError(f"{host.name}: cannot verify now: {exc.message}") from None
    try:
        yield
    finally:
        lock.release()


@contextlib.contextmanager
def _vault(
    host: Host, find: Callable[[str], Host], rows: list[ReadBackRow]
) -> Iterator[Backend | None]:
    """The host's vault session, or None (no off-site box, or unreachable: a failed row)."""
    with contextlib.ExitStack() as stack:
        vault = None
        try:
            if has_offsite(host):
                vault = stack.enter_context(open_offsite(host, find))
        except ZachotError as exc:  # only the opening: the body's errors are its own
            rows.append(ReadBackRow(host.name, "offsite", "-", "-", 0, False, exc.message))
        yield vault


def _index(vault: Backend | None, host: Host, rows: list[ReadBackRow]) -> Index | None:
    """The vault's index of `host` (one read), or None: no vault, or no usable index."""
    if vault is None:
        return None
    try:
        index = read_index(vault, host)
    except ZachotError as exc:
        rows.append(ReadBackRow(host.name, "offsite", "-", "-", 0, False, exc.message))
        return None
    return None if index.problem else index


def newest_read_backs(
    local: Sequence[tuple[BackupRef, bool]], offsite: Sequence[tuple[str, str, bool]], now: datetime
) -> dict[ReadBackKey, ReadBack]:
    """What this run's newest-backup checks read back: (ref, intact) locally and
    (kind, id, intact) off-site, as read-back log entries."""
    found = {("local", ref.kind, ref.id): ReadBack(now, ok) for ref, ok in local}
    found.update({("offsite", kind, i): ReadBack(now, ok) for kind, i, ok in offsite})
    return found
