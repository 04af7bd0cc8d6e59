"""In-flight Dramatiq jobs across a restore: reported from the Dramatiq keys, and kept.

The worker fetches delayed messages into its acks set and holds them until their eta.
restore.env stops the worker: its step table must say how many jobs were in flight, how many
were left unacked, and how many were queued or delayed on either side of the stop; afterwards
every held job is still in Redis (requeued by the graceful stop), none dropped.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator

import pytest

from tests.integration.faults.lab import ENV, Lab, _lab

pytestmark = pytest.mark.integration

BOX = "prod4"
JOBS = 3
DELAY_MS = 600_000  # far beyond the test: they stay delayed throughout


@pytest.fixture(name="prod4")
def prod4_lab(fleet, tmp_path) -> Iterator[Lab]:
    yield from _lab(fleet, tmp_path, BOX)


def enqueue_delayed(lab: Lab, count: int) -> str:
    """Delayed jobs through the app's own actor, tagged; the tag."""
    tag = f"held-{uuid.uuid4().hex[:8]}"
    send = (
        "from zachot.tasks import record_job\n"
        f"for i in range({count}): record_job.send_with_options(args=('{tag}-%d' % i,), "
        f"delay={DELAY_MS})\n"
    )
    lab.sh(
        f"cd /opt/zachot/repo && set -a && . {ENV} && set +a && PYTHONDONTWRITEBYTECODE=1 "
        f'runuser -u zachot -- /opt/zachot/envs/prod/bin/python -c "{send}"'
    )
    return tag


def still_in_redis(lab: Lab, tag: str) -> int:
    """How many of the tagged delayed jobs Redis still holds (bodies in the DQ's hash)."""
    said = lab.sh(f"redis-cli HVALS dramatiq:default.DQ.msgs | grep -c -- {tag} || true")
    return int(said.strip() or 0)


def held_jobs(lab: Lab) -> tuple[int, int]:
    """(delayed in the DQ, in flight in any worker's acks set) for queue default."""
    script = (
        "d=$(redis-cli HLEN dramatiq:default.DQ.msgs); f=0; "
        "for k in $(redis-cli --scan --pattern 'dramatiq:__acks__.*.default.DQ'); do "
        'f=$((f + $(redis-cli SCARD "$k"))); done; echo "$d $f"'
    )
    delayed, flying = lab.sh(script).split()
    return int(delayed), int(flying)


def test_restore_env_reports_in_flight_jobs_and_keeps_them(prod4):
    # The box is live: the load's own delayed jobs (2-20 s) come and go beside these.
    ours = enqueue_delayed(prod4, JOBS)
    assert still_in_redis(prod4, ours) == JOBS
    deadline = time.monotonic() + 30
    while held_jobs(prod4)[1] < JOBS and time.monotonic() < deadline:
        time.sleep(0.5)  # the worker fetches delayed messages within a second or two
    assert held_jobs(prod4)[1] >= JOBS, held_jobs(prod4)
    assert prod4.fab("backup.env").returncode == 0
    run = prod4.fab("restore.env", "--yes")
    assert run.returncode == 0, run.stdout + run.stderr
    said = re.search(
        r"jobs: (\d+) in flight at the stop, (\d+) left unacked.*?; "
        r"queued and delayed (\d+) -> (\d+)",
        run.stdout,
    )
    assert said, run.stdout
    # Held delayed messages count as delayed (their bodies stay in the DQ's hash), so ours
    # show on both sides of the stop.
    assert int(said.group(3)) >= JOBS and int(said.group(4)) >= JOBS, said.group(0)
    assert still_in_redis(prod4, ours) == JOBS  # the worker's stop dropped none of them
