"""Dramatiq's Redis broker keys, and how many messages are where.

The runbook checks `LLEN dramatiq:queue:default`, a key the broker never
writes, so it always says 0. The real keys (dramatiq/brokers/redis/dispatch.lua)
for namespace N and queue Q are:

- N:Q            LIST  ids of messages waiting to be fetched
- N:Q.msgs       HASH  id -> body, for waiting and fetched messages
- N:Q.DQ(.msgs)  LIST/HASH  delayed messages (the same pair for the delay queue)
- N:Q.XQ(.msgs)  ZSET/HASH  dead letters, scored by when they died
- N:__acks__.<worker id>.Q  SET  fetched but not yet acked (in flight)
- N:__heartbeats__  ZSET  worker id -> last heartbeat in ms; dead after 60 s

Nothing here talks SSH: read_report takes a connected redis client.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

# dramatiq's DEFAULT_HEARTBEAT_TIMEOUT: a worker silent this long is dead.
HEARTBEAT_TIMEOUT_MS = 60_000
ACKS = "__acks__"
COLUMNS = ("queue", "queued", "delayed", "in flight", "dead")


@dataclass(frozen=True)
class QueueKeys:
    namespace: str
    queue: str

    @property
    def queued(self) -> str:
        return f"{self.namespace}:{self.queue}"

    @property
    def messages(self) -> str:
        return f"{self.queued}.msgs"

    @property
    def delayed(self) -> str:
        return f"{self.queued}.DQ"

    @property
    def delayed_messages(self) -> str:
        return f"{self.delayed}.msgs"

    @property
    def dead(self) -> str:
        return f"{self.queued}.XQ"

    @property
    def dead_messages(self) -> str:
        return f"{self.dead}.msgs"

    @property
    def acks_pattern(self) -> str:
        """SCAN pattern for every worker's in-flight set of this queue (may over-match)."""
        return f"{_glob_escape(self.namespace)}:{ACKS}.*.{_glob_escape(self.queue)}"

    def all(self) -> tuple[str, ...]:
        """Every fixed key of the queue, e.g. to inspect or delete them together."""
        return (
            self.queued,
            self.messages,
            self.delayed,
            self.delayed_messages,
            self.dead,
            self.dead_messages,
        )


def heartbeats_key(namespace: str) -> str:
    return f"{namespace}:__heartbeats__"


def acks_queue(namespace: str, key: str) -> str | None:
    """The queue of an in-flight set `N:__acks__.<worker id>.<queue>`, else None.

    Worker ids are uuid4 strings (no dots); queue names may hold dots, so the
    queue is everything after the first dot following the worker id.
    """
    prefix = f"{namespace}:{ACKS}."
    if not key.startswith(prefix):
        return None
    worker, dot, queue = key[len(prefix) :].partition(".")
    return queue if worker and dot and queue else None


@dataclass(frozen=True)
class QueueCounts:
    queue: str
    queued: int  # waiting in the LIST
    delayed: int  # in the delay queue (including ones a worker holds until their eta)
    in_flight: int  # fetched by a worker, not yet acked
    dead: int  # dead letters

    def row(self) -> tuple[object, ...]:
        return (self.queue, self.queued, self.delayed, self.in_flight, self.dead)


@dataclass(frozen=True)
class QueueReport:
    namespace: str
    queues: tuple[QueueCounts, ...]
    workers_alive: int  # heartbeat within HEARTBEAT_TIMEOUT_MS of the server's clock
    workers_known: int  # every id in the heartbeats set, dead ones included

    @property
    def title(self) -> str:
        return (
            f"Dramatiq queues (namespace {self.namespace}): "
            f"{self.workers_alive} live workers, {self.workers_known} known"
        )

    def rows(self) -> list[tuple[object, ...]]:
        return [q.row() for q in self.queues]

    def as_meta(self) -> dict[str, Any]:
        """Counts only: message bodies hold task arguments and never leave Redis."""
        return {
            "namespace": self.namespace,
            "queues": {q.queue: {k: v for k, v in asdict(q).items() if k != "queue"}
                       for q in self.queues},
            "workers_alive": self.workers_alive,
            "workers_known": self.workers_known,
        }  # fmt: skip


def server_millis(client: Any) -> int:
    """Redis's own clock, as dramatiq's heartbeats use: the laptop's clock may be off."""
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000


def workers_alive(
    client: Any,
    namespace: str,
    *,
    now_ms: int | None = None,
    timeout_ms: int = HEARTBEAT_TIMEOUT_MS,
) -> int:
    """Workers whose last heartbeat is newer than dramatiq's timeout (60 s by default)."""
    now_ms = server_millis(client) if now_ms is None else now_ms
    return int(client.zcount(heartbeats_key(namespace), f"({now_ms - timeout_ms}", "+inf"))


def in_flight(client: Any, keys: QueueKeys) -> int:
    sets = [
        key
        for key in (_text(k) for k in client.scan_iter(match=keys.acks_pattern, count=1000))
        if acks_queue(keys.namespace, key) == keys.queue
    ]
    if not sets:
        return 0
    pipe = client.pipeline(transaction=False)
    for key in sets:
        pipe.scard(key)
    return sum(int(n) for n in pipe.execute())


def read_report(
    client: Any, namespace: str, queues: tuple[str, ...], timeout_ms: int = HEARTBEAT_TIMEOUT_MS
) -> QueueReport:
    now_ms = server_millis(client)
    counts: list[QueueCounts] = []
    for queue in queues:
        keys = QueueKeys(namespace, queue)
        pipe = client.pipeline(transaction=False)
        pipe.llen(keys.queued)
        pipe.hlen(keys.delayed_messages)
        pipe.zcard(keys.dead)
        queued, delayed, dead = (int(n) for n in pipe.execute())
        counts.append(QueueCounts(queue, queued, delayed, in_flight(client, keys), dead))
    return QueueReport(
        namespace=namespace,
        queues=tuple(counts),
        workers_alive=workers_alive(client, namespace, now_ms=now_ms, timeout_ms=timeout_ms),
        workers_known=int(client.zcard(heartbeats_key(namespace))),
    )


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _glob_escape(name: str) -> str:
    # Redis glob specials; inventory names are plain, but a key pattern must not widen.
    return "".join(f"\\{ch}" if ch in "*?[]\\" else ch for ch in name)


def jobs_across_a_stop(before: QueueReport, after: QueueReport) -> str:
    """What stopping the worker did to the jobs, in the Dramatiq keys' own terms.

    In flight at the stop: fetched by the worker, not yet acked. A graceful stop finishes or
    requeues them; any left unacked stay in Redis and the next worker requeues them once the
    stopped one's heartbeat is older than the timeout: kept either way, never dropped."""

    def total(report: QueueReport, field: str) -> int:
        return sum(getattr(q, field) for q in report.queues)

    flying, left = total(before, "in_flight"), total(after, "in_flight")
    waiting = [total(r, "queued") + total(r, "delayed") for r in (before, after)]
    said = f"jobs: {flying} in flight at the stop, {left} left unacked"
    if left:
        said += f" (kept: requeued {HEARTBEAT_TIMEOUT_MS // 1000} s after the last heartbeat)"
    return said + f"; queued and delayed {waiting[0]} -> {waiting[1]}"
