"""Which backups to keep: restic's `forget` policy as a pure function.

Newest first, each bucket (last, daily, weekly, monthly) keeps the newest
backup of every period it has not seen yet, until its count runs out; a
period without a backup is not counted. Like restic, a bucket with counts
left also keeps the oldest backup, so a young store keeps its full history.

On top of the policy: pinned backups (the newest verified one) are kept, and
so is every backup a kept one refers to, so no reference is left dangling.
Periods are taken from the times as given: pass local times to get the
operator's days.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from .model import BackupSettings


@dataclass(frozen=True)
class Policy:
    keep_last: int = 0
    keep_daily: int = 0
    keep_weekly: int = 0
    keep_monthly: int = 0

    def __post_init__(self) -> None:
        for name, value in self.__dict__.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be a whole number >= 0, got {value!r}")

    @classmethod
    def from_settings(cls, settings: BackupSettings, **overrides: int | None) -> Policy:
        """The inventory's policy, with any value given on the command line instead."""
        values = {
            name: settings.__dict__[name] if overrides.get(name) is None else overrides[name]
            for name in ("keep_last", "keep_daily", "keep_weekly", "keep_monthly")
        }
        return cls(**values)

    @property
    def empty(self) -> bool:
        return not any(self.__dict__.values())

    def describe(self) -> str:
        parts = [f"{name.removeprefix('keep_')} {n}" for name, n in self.__dict__.items() if n]
        return ", ".join(parts) or "empty"


@dataclass(frozen=True)
class Snapshot:
    id: str
    created: datetime


@dataclass(frozen=True)
class Decision:
    id: str
    created: datetime
    reasons: tuple[str, ...]  # empty: forget it

    @property
    def keep(self) -> bool:
        return bool(self.reasons)


_PERIODS: tuple[tuple[str, Callable[[datetime], object]], ...] = (
    ("daily", lambda t: t.date()),
    ("weekly", lambda t: t.isocalendar()[:2]),  # ISO year and week, as restic
    ("monthly", lambda t: (t.year, t.month)),
)


@dataclass
class _Bucket:
    reason: str
    left: int
    period: Callable[[datetime], object]
    seen: object = None


def apply_policy(snapshots: Sequence[Snapshot], policy: Policy) -> list[Decision]:
    """Keep or forget each snapshot by the policy alone; newest first."""
    ordered = sorted(snapshots, key=lambda s: s.created, reverse=True)
    if policy.empty:
        # restic's answer to an empty policy: remove nothing.
        return [Decision(s.id, s.created, ("policy is empty",)) for s in ordered]
    # "last" sees a new period in every snapshot.
    buckets = [_Bucket(f"last {policy.keep_last}", policy.keep_last, lambda t: object())]
    buckets += [_Bucket(name, getattr(policy, f"keep_{name}"), period) for name, period in _PERIODS]
    decisions = []
    for number, snap in enumerate(ordered):
        oldest = number == len(ordered) - 1
        reasons = []
        for bucket in buckets:
            if bucket.left <= 0:
                continue
            value = bucket.period(snap.created)
            if value != bucket.seen:
                reasons.append(bucket.reason)
            elif oldest:
                reasons.append(f"{bucket.reason} (oldest)")
            else:
                continue
            bucket.left -= 1
            bucket.seen = value
        decisions.append(Decision(snap.id, snap.created, tuple(reasons)))
    return decisions


def protect(
    decisions: Sequence[Decision],
    *,
    pinned: Mapping[str, str] | None = None,
    references: Mapping[str, Collection[str]] | None = None,
) -> list[Decision]:
    """Also keep pinned ids (id -> reason) and whatever a kept backup refers to.

    references maps a backup id to the ids whose files it uses. They are
    followed to a fixed point, so a chain of references is kept whole; an id
    that is not among the decisions (already gone) is ignored here.
    """
    pinned, references = pinned or {}, references or {}
    reasons = {d.id: list(d.reasons) for d in decisions}
    for backup_id, why in pinned.items():
        if backup_id in reasons and why not in reasons[backup_id]:
            reasons[backup_id].append(why)
    users: dict[str, list[str]] = {}
    pending = [d.id for d in decisions if reasons[d.id]]  # newest first
    while pending:
        user = pending.pop(0)
        for target in sorted(references.get(user, ())):
            if target not in reasons or target == user or user in users.get(target, []):
                continue
            if not reasons[target] and target not in users:
                pending.append(target)
            users.setdefault(target, []).append(user)
    for target, by in users.items():
        more = f" and {len(by) - 1} more" if len(by) > 1 else ""
        reasons[target].append(f"used by {by[0]}{more}")
    return [Decision(d.id, d.created, tuple(reasons[d.id])) for d in decisions]
