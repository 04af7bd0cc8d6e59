"""offsite_waves.send_in_waves: backups side by side, each only after its holders."""

from __future__ import annotations

import contextlib
import threading
import time

import pytest

from fabfile.core.offsite_waves import Job, send_in_waves

pytestmark = pytest.mark.unit


class Vault:
    name = "vault"

    def __init__(self) -> None:
        self.up = True

    def alive(self) -> bool:
        return self.up

    def workers(self, n: int) -> contextlib.AbstractContextManager[list[Vault]]:
        return contextlib.nullcontext([self] * n)


def jobs(holders: dict[str, set[str]], log: list[str], fail: set[str] = frozenset()) -> list[Job]:
    lock = threading.Lock()

    def sender(key: str):
        def send(_view) -> bool:
            time.sleep(0.02)
            with lock:
                log.append(key)
            return key not in fail

        return send

    return [Job(key, frozenset(h), sender(key)) for key, h in holders.items()]


def test_holders_go_first_and_a_failed_holder_stops_its_referrers():
    # a <- b <- c (a chain), d alone, e refers to the failing f.
    order: list[str] = []
    graph = {"a": set(), "b": {"a"}, "c": {"a", "b"}, "d": set(), "e": {"f"}, "f": set()}
    done = send_in_waves(Vault(), jobs(graph, order, fail={"f"}), 8, ok=bool)
    assert [d.ok for d in done] == [True, True, True, True, False, False]
    assert done[4].failed_holder == "f" and done[4].result is None  # e was never sent
    assert order.index("a") < order.index("b") < order.index("c")
    assert "e" not in order


def test_known_failures_and_a_lost_link():
    vault = Vault()
    order: list[str] = []
    done = send_in_waves(vault, jobs({"x": {"old"}}, order), 4, ok=bool, failed={"old"})
    assert done[0].failed_holder == "old" and order == []

    def dies(_view) -> bool:
        vault.up = False
        return False

    cut = [Job("a", frozenset(), dies), *jobs({"b": {"a"}}, order)]
    first, then = send_in_waves(vault, cut, 1, ok=bool)
    assert first.lost and first.result is False  # in flight when the link went
    assert then.lost and then.result is None and order == []  # not tried
