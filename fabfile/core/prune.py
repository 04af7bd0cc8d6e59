"""backup.prune: apply the retention policy to the store, the off-site copy and the
server's env copies.

The decision is retention.py's pure function; this module gathers its inputs
(ids, times, verified marks, references between backups) and carries it out.
Deleting happens under the store lock and is decided under it too, so a
backup that starts referring to an old one cannot race with its removal (nor
a replicate with an off-site delete: replicate holds the same lock).

Off-site, the same rules apply to the vault's complete backups, and a backup the
local store keeps is kept there too (replicate would only send it again). What is
there comes from the vault's index (one read) and one listing per kind directory;
the only per-backup requests are the deletes, and reading the manifest of a kept
backup that is no longer local (to learn what it refers to). Deleting drops the
backups from the index first (it never lists one being deleted), then removes each
manifest first, so from its first request on a backup is incomplete: nothing counts
on it, and the next prune finishes it. Backups go newest first, so one that refers
to another always goes before it. A backup the policy forgets but S3 Object Lock still
retains is kept, with what it refers to, and said so (one HEAD per backup to forget,
only with backup.offsite_retain_days); a later prune deletes it.
"""

from __future__ import annotations

import contextlib
import posixpath
import re
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from . import facts
from .backups.env import NAME as ENV_NAME
from .errors import StoreError, TransferError, ZachotError
from .manifest import KINDS, MANIFEST_NAME, Manifest, id_sort_key, is_backup_id
from .model import Host
from .offsite import (
    MAX_REMOTE_MANIFEST,
    Index,
    backup_dir,
    load_index,
    remote_base,
    save_index,
)
from .offsite_backend import Backend, open_offsite
from .retention import Decision, Policy, Snapshot, apply_policy, protect
from .store import BackupRef, Store
from .transport import Transport

NEWEST_VERIFIED = "newest verified"
NEWEST_READ_BACK = "newest read back off-site"
KEPT_LOCALLY = "kept locally"  # replicate would send it again
LEFTOVER = "incomplete and not in the local store: an interrupted prune or upload"
# The runbook's server copies, zachot.env.<YYYYmmdd_HHMMSS>, with -1..-9 for a second copy
# within the same second (agent.py's copy); nothing else is touched.
SERVER_COPY_RE = re.compile(re.escape(ENV_NAME) + r"\.[0-9]{8}_[0-9]{6}(?:-[1-9])?", re.ASCII)


class ServerPruneFailed(ZachotError):
    """A later part of backup.prune failed: the message says the store's part is done."""

    def __init__(
        self, cause: ZachotError, *, applied: bool, part: str = "the server's env copies"
    ) -> None:
        done = "the store was pruned" if applied else "the store's plan is above"
        super().__init__(f"{done}, but {part} failed: {cause.message}")
        self.exit_code = cause.exit_code


@dataclass(frozen=True)
class KindPrune:
    host: str
    kind: str
    decisions: tuple[Decision, ...]
    deleted: tuple[str, ...] = ()  # ids actually removed (empty in a dry run)

    @property
    def forget(self) -> list[Decision]:
        return [d for d in self.decisions if not d.keep]


@dataclass(frozen=True)
class ServerPrune:
    directory: str
    keep: tuple[str, ...]
    forget: tuple[str, ...]
    deleted: bool = False


def decide(store: Store, host: str, kind: str, policy: Policy) -> tuple[list[Decision], dict]:
    """The decisions for one host/kind (newest first) and the refs they name."""
    refs = store.list(host, kind)
    # Local time: "daily" means the operator's days, as in restic.
    snapshots = [Snapshot(ref.id, ref.created.astimezone()) for ref in refs]
    verified = [ref for ref in refs if store.verified_at(ref) is not None]
    pinned = {verified[-1].id: NEWEST_VERIFIED} if verified else {}
    decisions = protect(
        apply_policy(snapshots, policy),
        pinned=pinned,
        references={ref.id: ref.references() for ref in refs},
    )
    return decisions, {ref.id: ref for ref in refs}


def prune_store(
    host: Host, policy: Policy, *, kinds: Sequence[str] = KINDS, apply: bool
) -> list[KindPrune]:
    """Decide for each kind and, when `apply`, delete what is not kept (under the lock)."""
    store = Store(host.store.path)
    if not apply:
        return [
            KindPrune(host.name, kind, tuple(decide(store, host.name, kind, policy)[0]))
            for kind in kinds
        ]
    results = []
    with store.lock(timeout=host.store.lock_timeout, purpose="backup.prune"):
        store.cleanup_staging()  # also what an interrupted delete left
        for kind in kinds:
            decisions, refs = decide(store, host.name, kind, policy)
            deleted = []
            for decision in decisions:
                if not decision.keep:
                    store.delete(refs[decision.id])
                    deleted.append(decision.id)
            results.append(KindPrune(host.name, kind, tuple(decisions), tuple(deleted)))
    return results


@dataclass(frozen=True)
class OffsitePrune:
    host: str
    vault: str
    kind: str
    decisions: tuple[Decision, ...]
    leftovers: tuple[str, ...]  # incomplete backups nothing will resume: removed too
    deleted: tuple[str, ...] = ()
    error: str = ""  # why deleting stopped part-way; a re-run finishes

    @property
    def forget(self) -> list[Decision]:
        return [d for d in self.decisions if not d.keep]


def id_time(backup_id: str) -> datetime:
    """A backup's time from its id (the id is its UTC creation stamp)."""
    return datetime.strptime(backup_id[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


class RemoteReferences(Mapping[str, set[str]]):
    """What each off-site backup refers to, read only when asked: retention.protect asks
    only for kept backups, so only their manifests are read, and only those not local."""

    def __init__(
        self, ids: Collection[str], local: Mapping[str, BackupRef], read: Callable[[str], Manifest]
    ) -> None:
        self.ids, self.local, self.read = list(ids), local, read
        self._cache: dict[str, set[str]] = {}

    def __getitem__(self, backup_id: str) -> set[str]:
        if backup_id not in self.ids:
            raise KeyError(backup_id)
        if backup_id not in self._cache:
            ref = self.local.get(backup_id)
            if ref is None:
                manifest = self.read(backup_id)
                ref = BackupRef(manifest.host, manifest.kind, backup_id, Path(), manifest)
            self._cache[backup_id] = ref.references()
        return self._cache[backup_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self.ids)

    def __len__(self) -> int:
        return len(self.ids)


def decide_offsite(
    ids: Collection[str],
    policy: Policy,
    *,
    local: Mapping[str, BackupRef],
    local_kept: Collection[str],
    pinned: Mapping[str, str],
    read: Callable[[str], Manifest],
    locked: Callable[[str], str | None] = lambda _id: None,
) -> list[Decision]:
    """The decisions for one kind's complete off-site backups, newest first (locked: when
    a backup's Object Lock retention ends, while it lasts)."""
    snapshots = [
        Snapshot(i, (local[i].created if i in local else id_time(i)).astimezone()) for i in ids
    ]
    references = RemoteReferences(ids, local, read)
    decisions = protect(apply_policy(snapshots, policy), pinned=pinned)
    decisions = protect(
        decisions, pinned={i: KEPT_LOCALLY for i in ids if i in local_kept}, references=references
    )
    held = {d.id: f"locked until {until} (Object Lock)" for d in decisions
            if not d.keep and (until := locked(d.id))}  # fmt: skip
    return protect(decisions, pinned=held, references=references) if held else decisions


def offsite_pins(store: Store, host: str, kind: str, ids: Collection[str]) -> dict[str, str]:
    """Never pruned off-site: the newest backup read back intact from the vault, and the
    newest verified locally (when the vault has it)."""
    read_backs = store.read_backs(host)
    local = {ref.id: ref for ref in store.list(host, kind)}
    ordered = sorted(ids, key=id_sort_key, reverse=True)
    pins: dict[str, str] = {}
    read_back = [i for i in ordered if (rb := read_backs.get(("offsite", kind, i))) and rb.ok]
    verified = [i for i in ordered if i in local and store.verified_at(local[i]) is not None]
    if verified:
        pins[verified[0]] = NEWEST_VERIFIED
    if read_back:
        pins.setdefault(read_back[0], NEWEST_READ_BACK)
    return pins


def prune_offsite(
    host: Host,
    vault: Backend,
    policy: Policy,
    *,
    kinds: Sequence[str] = KINDS,
    local_kept: Mapping[str, Collection[str]],
    apply: bool,
) -> list[OffsitePrune]:
    """Decide for each kind on the vault and, when `apply`, delete (hold the store lock)."""
    store = Store(host.store.path)
    index = load_index(vault, host)  # one read (a listing only if it is missing)
    results = []
    for kind in kinds:
        local = {ref.id: ref for ref in store.list(host.name, kind)}
        complete, leftovers = _survey(vault, host, index, kind, local)
        decisions = decide_offsite(
            complete,
            policy,
            local=local,
            local_kept=local_kept.get(kind, ()),
            pinned=offsite_pins(store, host.name, kind, complete),
            read=lambda i, kind=kind: _read_manifest(vault, host, kind, i),
            locked=lambda i, kind=kind: vault.locked_until(backup_dir(host, kind, i)),
        )
        # A leftover Object Lock still retains stays, shown as kept, until a later prune.
        for backup_id in leftovers:
            if until := vault.locked_until(backup_dir(host, kind, backup_id)):
                why = f"{LEFTOVER}; locked until {until} (Object Lock)"
                decisions.append(Decision(backup_id, id_time(backup_id).astimezone(), (why,)))
        held = {d.id for d in decisions}
        leftovers = tuple(i for i in leftovers if i not in held)
        results.append(OffsitePrune(host.name, vault.name, kind, tuple(decisions), leftovers))
    return _delete_all(vault, host, index, results) if apply else results


def _survey(
    vault: Backend, host: Host, index: Index, kind: str, local: Mapping[str, BackupRef]
) -> tuple[list[str], tuple[str, ...]]:
    """(complete backups, leftovers) of one kind on the vault: the index, plus one listing
    of the kind's directory for what the index does not know. Such a directory that is
    not local (replicate will not resume it) is probed: complete, the index lagged and it
    is added; without its manifest it is what an interrupted prune or upload left."""
    if index.listing is not None:  # just rebuilt from a full listing
        names = [i for k, i in index.listing if k == kind]
    else:
        entries = vault.list_dirs(posixpath.join(remote_base(host), kind))
        names = [name for name in entries if is_backup_id(name)]
    complete = [i for k, i in index.backups if k == kind]
    leftovers = []
    for backup_id in names:
        if backup_id in complete or backup_id in local:
            continue
        there = (index.listing or {}).get((kind, backup_id)) or vault.probe(
            backup_dir(host, kind, backup_id)
        )
        if there is not None and there.complete:
            index.add(kind, backup_id, there)
            complete.append(backup_id)
        else:
            leftovers.append(backup_id)
    return complete, tuple(leftovers)


def _delete_all(
    vault: Backend, host: Host, index: Index, results: list[OffsitePrune]
) -> list[OffsitePrune]:
    """Drop what goes from the vault's index and write it (the index never lists a
    backup that is being deleted), then delete kind by kind; stop at the first failure."""
    for result in results:
        for backup_id in [*result.leftovers, *(d.id for d in result.forget)]:
            index.drop(result.kind, backup_id)
    if index.changed:
        try:
            save_index(vault, host, index)
        except ZachotError as exc:
            raise TransferError(
                f"{host.name}: off-site prune: cannot update the index on {vault.name} "
                f"({exc.message}); nothing was deleted there"
            ) from None
    done = []
    for result in results:
        done.append(_delete_offsite(vault, host, result))
        if done[-1].error:
            return done + results[len(done) :]
    return done


def _read_manifest(vault: Backend, host: Host, kind: str, backup_id: str) -> Manifest:
    path = posixpath.join(backup_dir(host, kind, backup_id), MANIFEST_NAME)
    try:
        text = vault.read_small(path, MAX_REMOTE_MANIFEST).decode("utf-8", "replace")
        return Manifest.from_json(text, where=f"{vault.name}:{path}")
    except ZachotError as exc:
        raise StoreError(
            f"{exc.message}; not pruning {kind} off-site: what this kept backup refers to "
            "is unknown"
        ) from None


def _delete_offsite(vault: Backend, host: Host, result: OffsitePrune) -> OffsitePrune:
    """Leftovers, then forgotten backups newest first (a referrer before what it uses)."""
    deleted: list[str] = []
    for backup_id in [*result.leftovers, *(d.id for d in result.forget)]:
        try:
            vault.delete_backup(backup_dir(host, result.kind, backup_id))
        except ZachotError as exc:
            why = f"stopped at {result.kind} {backup_id}: {exc.message}; run it again to finish"
            return replace(result, deleted=tuple(deleted), error=why)
        deleted.append(backup_id)
    return replace(result, deleted=tuple(deleted))


def prune_offsite_host(
    host: Host,
    find: Callable[[str], Host],
    policy: Policy,
    *,
    kinds: Sequence[str],
    local_kept: Mapping[str, Collection[str]],
    apply: bool,
) -> list[OffsitePrune]:
    """prune_offsite over the host's own vault session; deletes under the store lock."""
    store = Store(host.store.path)
    lock = (
        store.lock(timeout=host.store.lock_timeout, purpose="backup.prune")
        if apply
        else contextlib.nullcontext()
    )
    try:
        with lock, open_offsite(host, find) as vault:
            return prune_offsite(
                host, vault, policy, kinds=kinds, local_kept=local_kept, apply=apply
            )
    except ZachotError as exc:
        raise ServerPruneFailed(exc, applied=apply, part="the off-site copy") from None


class OffsitePruneFailed(TransferError):
    def __init__(self, result: OffsitePrune) -> None:
        super().__init__(f"{result.host}: off-site prune on {result.vault} {result.error}")
        self.result = result


def select_server_copies(names: Sequence[str], keep_last: int) -> tuple[list[str], list[str]]:
    """(keep, forget), newest first, of the names that are server env copies."""
    copies = sorted((n for n in names if SERVER_COPY_RE.fullmatch(n)), reverse=True)
    return copies[:keep_last], copies[keep_last:]


def prune_server(transport: Transport, host: Host, *, apply: bool) -> ServerPrune:
    directory = host.layout.backup_dir
    fact = facts.regular_files(directory, pattern=f"{ENV_NAME}.*", depth=1)
    names = [entry.name for entry in facts.gather(transport, fact)]
    keep, forget = select_server_copies(names, host.backup.server_keep_last)
    if apply and forget:
        # By name at the fd of a directory checked root-owned 0700: never through a link.
        transport.remove_private(directory, forget)
    return ServerPrune(directory, tuple(keep), tuple(forget), deleted=apply and bool(forget))


def prune_server_safely(host: Host, *, apply: bool, sudo_password: str | None) -> ServerPrune:
    """prune_server over its own connection; failures name what was already done."""
    try:
        with Transport(host, sudo_password=sudo_password) as transport:
            return prune_server(transport, host, apply=apply)
    except ZachotError as exc:
        raise ServerPruneFailed(exc, applied=apply) from None
