"""Where a rollback goes when no --to is given. Pure: history and repo facts in, a commit out.

In order: a failed rollback still checked out is retried; else the newest
deployment in the history that is neither running now nor marked bad; else, with
no usable history, the newest tag that is an ancestor of HEAD (not HEAD, not bad).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .history import History

Tags = Mapping[str, Sequence[str]]  # commit -> the tags that point at it


@dataclass(frozen=True)
class Target:
    commit: str
    label: str  # a tag, or the short commit id
    why: str


class NoTarget(Exception):
    pass


def label(commit: str, tags: Tags) -> str:
    names = sorted(tags.get(commit, ()))
    return names[0] if names else commit[:12]


def rollback_target(history: History, head: str, tags: Tags, ancestry: Sequence[str]) -> Target:
    """ancestry: commits reachable from HEAD, newest first (HEAD itself may lead)."""
    flight = history.in_flight(head)
    if flight and flight.action == "rollback":
        where = f" at {flight.step}" if flight.step else ""
        why = f"retrying the rollback of {flight.time}, which failed{where}"
        return Target(flight.commit, flight.ref, why)
    bad = history.bad()
    for entry in reversed(history.entries):
        deployed = [entry.commit] if entry.result == "ok" else []
        ran_before = [entry.previous] if entry.previous else []
        for commit in deployed + ran_before:
            if commit != head and commit not in bad:
                why = f"the deployment before, per the history ({entry.action} of {entry.time})"
                # Named by tag, not by the branch it was released as: branches move on.
                return Target(commit, label(commit, tags), why)
    for commit in ancestry:
        if commit != head and commit not in bad and tags.get(commit):
            why = "the newest tag before HEAD (the history names no earlier good deployment)"
            return Target(commit, label(commit, tags), why)
    raise NoTarget(
        "the history names no earlier good deployment and no tag before HEAD is left "
        "that is not marked bad"
    )
