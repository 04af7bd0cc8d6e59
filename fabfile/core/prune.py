"""backup.prune: apply the retention policy to the store and to the server's env copies.

The decision is retention.py's pure function; this module gathers its inputs
(ids, times, verified marks, references between backups) and carries it out.
Deleting happens under the store lock and is decided under it too, so a
backup that starts referring to an old one cannot race with its removal.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from . import facts
from .backups.env import NAME as ENV_NAME
from .errors import ZachotError
from .manifest import KINDS
from .model import Host
from .retention import Decision, Policy, Snapshot, apply_policy, protect
from .store import Store
from .transport import Transport

NEWEST_VERIFIED = "newest verified"
# The runbook's server copies, zachot.env.<YYYYmmdd_HHMMSS>; nothing else is touched.
SERVER_COPY_RE = re.compile(re.escape(ENV_NAME) + r"\.[0-9]{8}_[0-9]{6}", re.ASCII)


class ServerPruneFailed(ZachotError):
    def __init__(self, cause: ZachotError, *, applied: bool) -> None:
        done = "the store was pruned" if applied else "the store's plan is above"
        super().__init__(f"{done}, but the server's env copies failed: {cause.message}")
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
