"""One deploy in progress: what its steps share, settle as they run, and record."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from . import remote
from .history import Entry, History
from .target import label


@dataclass
class Deployment:
    """One deploy in progress: what the steps share and settle as they run."""

    action: str  # release or rollback
    ref: str  # what the operator named, or the label of the chosen target
    wanted: str  # what to resolve in the clone: ref, or the chosen commit
    why: str
    head: str  # the commit checked out when the plan was made
    history: History
    tags: Mapping[str, Sequence[str]]
    commit: str | None = None  # the target as a commit, once known
    previous: str | None = None  # the commit this deploy replaces
    noop: bool = False  # the target already runs, healthy: nothing to do
    failure: str | None = None  # the operator's message when a step failed
    outcome: str | None = None  # the closing line of a successful run

    def name(self, commit: str | None) -> str:
        if commit is None:
            return "?"
        named = self.ref if commit == self.commit else label(commit, self.tags)
        return named if named == commit[:12] else f"{named} ({commit[:12]})"

    def entry(self, result: str, step: str | None = None) -> Entry:
        assert self.commit is not None  # entries are written only once the code moved
        if self.action == "rollback":
            # The commit rolled back from is bad, whether or not the rollback worked.
            bad = self.previous if self.previous != self.commit else None
        else:
            bad = self.commit if result == "failed" else None
        return Entry(
            time=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            action=self.action,
            ref=self.ref,
            commit=self.commit,
            previous=self.previous,
            operator=remote.operator(),
            result=result,
            bad=bad,
            step=step,
        )
