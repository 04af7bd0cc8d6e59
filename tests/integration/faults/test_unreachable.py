"""The box is down, unreachable or on the wrong port: one clear line within the connect
timeout (the sandbox inventory sets 5 s), exit 4, nothing in the store; in a parallel
multi-host run the other host still finishes and the summary names the dead one."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

import pytest

from . import inject
from .lab import Lab, prod9_lab, prod10_lab  # noqa: F401  (fixtures)

pytestmark = pytest.mark.integration

FAULT = "box down, unreachable or wrong port"
STARTUP = 3.0  # seconds of fab's own start-up on top of the connect timeout
TASKS = (("backup.all", "--logs"), ("restore.env", "--yes"), ("hosts.exec", "uptime"))

Breaker = Callable[[Lab], AbstractContextManager]
MODES: dict[str, tuple[dict, Breaker, str]] = {
    # mode: (inventory overrides for the box, what breaks it, what the error says)
    "powered off": ({}, lambda lab: inject.box_link_down(lab.fleet, lab.box), "host unreachable"),
    "sshd hung": ({}, lambda lab: inject.frozen_sshd(lab.fleet, lab.box), "no SSH handshake"),
    "wrong port": ({"port": 2222}, lambda lab: nullcontext(), "connection refused"),
    "wrong address": (
        {"address": "10.231.12.99"},  # on prod10's own /24: nobody answers ARP there
        lambda lab: nullcontext(),
        "host unreachable",
    ),
}


def timed(lab: Lab, *args: str, hosts: str | None = None):
    started = time.monotonic()
    run = lab.fab(*args, hosts=hosts)
    return run, time.monotonic() - started


@pytest.mark.fault(FAULT, checked="exit 4 and one clear line within the connect timeout")
@pytest.mark.parametrize("mode", list(MODES))
def test_every_task_fails_clearly_within_the_connect_timeout(prod10, mode):
    overrides, breaker, reason = MODES[mode]
    prod10.configure(hosts={prod10.box: overrides})
    limit = prod10.host().connect_timeout + STARTUP
    with breaker(prod10):
        results = {args[0]: timed(prod10, *args) for args in TASKS}
    assert prod10.reaches_repo()
    for task, (run, seconds) in results.items():
        lines = run.stderr.strip().splitlines()
        assert run.returncode == 4, (task, run.stdout, run.stderr)
        assert reason in lines[-1] and f"{prod10.box} (" in lines[-1], (task, run.stderr)
        assert "Traceback" not in run.stderr, (task, run.stderr)
        assert seconds < limit, f"{task} took {seconds:.1f} s to fail ({mode})"
    assert prod10.store.list() == [] and inject.leftovers(prod10.store.root) == []
    assert inject.store_lock_free(prod10.store.root)


@pytest.mark.fault(FAULT, checked="parallel run: the live host lands, the dead one named, exit 3")
def test_a_dead_host_does_not_stop_the_others(prod9, prod10):
    with inject.box_link_down(prod9.fleet, prod10.box):
        run = prod9.fab("backup.all", "--parallel", "2", hosts="prod9,prod10")
    assert run.returncode == 3, run.stdout + run.stderr
    assert prod10.reaches_repo()
    assert "1 of 2 hosts failed: prod10" in run.stderr and "Traceback" not in run.stderr
    rows = {line.split("\t")[0]: line.split("\t") for line in run.stdout.splitlines()}
    assert rows["prod9"][1] == "ok" and rows["prod10"][1] == "FAILED", run.stdout
    assert "host unreachable" in rows["prod10"][-1]
    assert float(rows["prod10"][2]) < prod9.host().connect_timeout + 1
    for kind in ("env", "units"):
        assert prod9.store.latest("prod9", kind) is not None
        assert prod9.store.latest("prod10", kind) is None
    assert inject.leftovers(prod9.store.root) == [] and inject.store_lock_free(prod9.store.root)
