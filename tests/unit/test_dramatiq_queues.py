"""Dramatiq's real Redis key names, and reading counts through a client."""

from __future__ import annotations

import pytest

from fabfile.core import dramatiq_queues as dq
from fabfile.core.dramatiq_queues import QueueCounts, QueueReport, jobs_across_a_stop

pytestmark = pytest.mark.unit


def test_key_names_follow_the_broker_not_the_runbook():
    keys = dq.QueueKeys("dramatiq", "default")
    assert keys.queued == "dramatiq:default"
    assert keys.messages == "dramatiq:default.msgs"
    assert keys.delayed == "dramatiq:default.DQ"
    assert keys.delayed_messages == "dramatiq:default.DQ.msgs"
    assert keys.dead == "dramatiq:default.XQ"
    assert keys.dead_messages == "dramatiq:default.XQ.msgs"
    assert keys.acks_pattern == "dramatiq:__acks__.*.default"
    assert dq.heartbeats_key("dramatiq") == "dramatiq:__heartbeats__"
    assert "dramatiq:queue:default" not in keys.all()


def test_namespace_and_queue_are_configurable():
    keys = dq.QueueKeys("zachot", "emails.high")
    assert keys.queued == "zachot:emails.high"
    assert keys.dead_messages == "zachot:emails.high.XQ.msgs"
    assert keys.acks_pattern == "zachot:__acks__.*.emails.high"


def test_glob_specials_in_names_do_not_widen_the_scan():
    assert dq.QueueKeys("ns", "a*b").acks_pattern == "ns:__acks__.*.a\\*b"


@pytest.mark.parametrize(
    ("key", "queue"),
    [
        ("dramatiq:__acks__.0f1e2d3c-aaaa-bbbb-cccc-1234567890ab.default", "default"),
        ("dramatiq:__acks__.w1.default.DQ", "default.DQ"),  # a worker holding delayed messages
        ("dramatiq:__acks__.w1.x.default", "x.default"),  # queue names may hold dots
        ("dramatiq:__acks__.w1", None),
        ("dramatiq:__acks__..default", None),
        ("other:__acks__.w1.default", None),
        ("dramatiq:default", None),
    ],
)
def test_acks_key_names_its_queue(key, queue):
    assert dq.acks_queue("dramatiq", key) == queue


class FakeRedis:
    """Just the commands read_report uses, over plain dicts; enough to check the sums."""

    def __init__(self, now_ms: int) -> None:
        self.now_ms = now_ms
        self.lists: dict[str, list[str]] = {}
        self.hashes: dict[str, dict[str, str]] = {}
        self.zsets: dict[str, dict[str, float]] = {}
        self.sets: dict[str, set[str]] = {}

    def time(self):
        return divmod(self.now_ms * 1000, 1_000_000)

    def llen(self, key):
        return len(self.lists.get(key, []))

    def hlen(self, key):
        return len(self.hashes.get(key, {}))

    def zcard(self, key):
        return len(self.zsets.get(key, {}))

    def scard(self, key):
        return len(self.sets.get(key, set()))

    def zcount(self, key, low, high):
        assert high == "+inf" and low.startswith("(")
        return sum(1 for score in self.zsets.get(key, {}).values() if score > float(low[1:]))

    def scan_iter(self, match, count):
        import fnmatch

        pattern = match.replace("\\*", "[*]")
        return [k.encode() for k in self.sets if fnmatch.fnmatchcase(k, pattern)]

    def pipeline(self, transaction):
        return FakePipeline(self)


class FakePipeline:
    def __init__(self, client: FakeRedis) -> None:
        self.client, self.calls = client, []

    def __getattr__(self, name):
        return lambda *args: self.calls.append((name, args))

    def execute(self):
        return [getattr(self.client, name)(*args) for name, args in self.calls]


def test_report_sums_every_place_a_message_can_be():
    now = 1_800_000_000_000
    r = FakeRedis(now)
    r.lists["dramatiq:default"] = ["m1", "m2", "m3"]
    r.hashes["dramatiq:default.DQ.msgs"] = {"d1": "{}", "d2": "{}"}
    r.zsets["dramatiq:default.XQ"] = {"x1": now - 5}
    r.sets["dramatiq:__acks__.w1.default"] = {"a1", "a2"}
    r.sets["dramatiq:__acks__.w2.default"] = {"a3"}
    r.sets["dramatiq:__acks__.w2.x.default"] = {"decoy"}  # queue "x.default"
    r.sets["dramatiq:__acks__.w2.default.DQ"] = {"d2"}  # delayed, counted as delayed
    r.zsets["dramatiq:__heartbeats__"] = {"w1": now - 1_000, "w2": now - 59_999, "w3": now - 60_000}
    report = dq.read_report(r, "dramatiq", ("default",))
    assert report.queues == (dq.QueueCounts("default", queued=3, delayed=2, in_flight=3, dead=1),)
    assert (report.workers_alive, report.workers_known) == (2, 3)
    assert report.as_meta() == {
        "namespace": "dramatiq",
        "queues": {"default": {"queued": 3, "delayed": 2, "in_flight": 3, "dead": 1}},
        "workers_alive": 2,
        "workers_known": 3,
    }
    assert report.rows() == [("default", 3, 2, 3, 1)]


def _report(queued: int, delayed: int, flying: int) -> QueueReport:
    counts = QueueCounts("default", queued, delayed, flying, 0)
    return QueueReport(namespace="dramatiq", queues=(counts,), workers_alive=1, workers_known=1)


@pytest.mark.unit
def test_a_graceful_stop_reports_its_in_flight_jobs_as_kept():
    said = jobs_across_a_stop(_report(10, 2, 3), _report(13, 2, 0))
    assert said == "jobs: 3 in flight at the stop, 0 left unacked; queued and delayed 12 -> 15"


@pytest.mark.unit
def test_jobs_left_unacked_are_said_to_be_requeued_after_the_heartbeat_timeout():
    said = jobs_across_a_stop(_report(0, 0, 2), _report(0, 0, 2))
    assert "2 left unacked (kept: requeued 60 s after the last heartbeat)" in said
