"""Backups sent side by side (backup.replicate --transfers): on a far link each request waits
a round trip, so N backups in flight at once take about 1/N of the time.

What must hold at every instant, whatever finishes first: no backup complete on the vault
(its manifest there) refers to one that is not. So a backup goes only once every backup it
refers to (its holders) is complete: waves, each in parallel; a backup whose holder failed
is not sent. Each worker has its own view of the vault (Backend.workers: S3 shares one
thread-safe client, SFTP opens one session per worker on the same SSH connection).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Collection, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

from .offsite_backend import Backend

R = TypeVar("R")


@dataclass(frozen=True)
class Job(Generic[R]):
    key: Hashable  # what other jobs name as their holder
    holders: frozenset[Hashable]  # keys this one refers to (only those in this run matter)
    send: Callable[[Backend], R]  # on one worker's view; returns its outcome


@dataclass(frozen=True)
class Done(Generic[R]):
    """A job's outcome: sent (result), or skipped because a holder failed or the link went."""

    result: R | None = None
    ok: bool = False
    failed_holder: Hashable | None = None  # the holder that was not sent
    lost: bool = False  # the link was gone (before it started, or while it ran)


def send_in_waves(
    vault: Backend,
    jobs: Sequence[Job[R]],
    transfers: int,
    ok: Callable[[R], bool],
    failed: Collection[Hashable] = (),
) -> list[Done[R]]:
    """Run every job, at most `transfers` at once, each after all its holders succeeded;
    `failed`: keys already known not to be on the vault. Outcomes in the order of `jobs`."""
    done: dict[int, Done[R]] = {}
    bad = set(failed)
    pending = dict(enumerate(jobs))
    lost = threading.Event()
    width = max(1, min(transfers, len(jobs)))
    with vault.workers(width) as views, ThreadPoolExecutor(max_workers=len(views)) as pool:
        free: queue.Queue[Backend] = queue.Queue()
        for view in views:
            free.put(view)

        def run(job: Job[R]) -> Done[R]:
            if lost.is_set():
                return Done(lost=True)
            view = free.get()
            try:
                result = job.send(view)
            finally:
                free.put(view)
            if ok(result):
                return Done(result, True)
            if not vault.alive():
                lost.set()
                return Done(result, lost=True)
            return Done(result)

        while pending:
            waiting = {job.key for job in pending.values()}
            ready = []
            for i, job in pending.items():
                holder = next((h for h in sorted(job.holders, key=str) if h in bad), None)
                if holder is not None:
                    done[i] = Done(failed_holder=holder, lost=lost.is_set())
                elif not job.holders & waiting:
                    ready.append(i)
            if not ready and not any(i in done for i in pending):
                raise AssertionError("backups that refer to each other")  # ids only grow
            for i, outcome in zip(ready, pool.map(run, [pending[i] for i in ready]), strict=True):
                done[i] = outcome
            for i in [i for i in pending if i in done]:
                if not done[i].ok:
                    bad.add(pending[i].key)
                del pending[i]
    return [done[i] for i in range(len(jobs))]
