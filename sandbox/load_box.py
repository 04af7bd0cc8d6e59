"""The live load inside a prod box (copied in and run by sandbox/load.py; stdlib + the app).

Runs as the service user with the app's venv, so delayed jobs go through the app's own
actor. Every tick (1/rate s) it makes one call in a fixed cycle: enqueue a job through the
API, read /health, read a job's state, enqueue a delayed job through the actor, read /health
again. It also appends log lines to the API's and the worker's logs, as a busy service would,
through O_APPEND descriptors like systemd's `append:`, reopened when logrotate has renamed
the file (a copytruncate keeps the same file). Only 127.0.0.1 is ever contacted. Every
failure is counted, never fatal: a restore stops Redis or the API on purpose.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import time
import urllib.request
import uuid

API = "http://127.0.0.1:8000"
LOGS = "/opt/zachot/logs"
STATS = "/run/zachot-load/stats.json"


class Appender:
    """An O_APPEND descriptor on a log path, reopened when the path is a new file."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = -1

    def write(self, data: bytes) -> None:
        try:
            st = os.stat(self.path)
            if self.fd < 0 or os.fstat(self.fd).st_ino != st.st_ino:
                self._reopen()
        except FileNotFoundError:
            self._reopen()  # renamed away and not recreated yet: start the new file
        os.write(self.fd, data)

    def _reopen(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)


def delayed_sender():
    """The app's actor (import at start; None if the app cannot be imported)."""
    try:
        from zachot.tasks import record_job
    except Exception:
        return None
    return record_job


def call(method: str, path: str, body: bytes | None = None) -> int:
    req = urllib.request.Request(API + path, data=body, method=method)
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=2) as resp:
        resp.read()
        return resp.status


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=float, default=5.0, help="API calls and actor sends per s")
    ap.add_argument("--lines", type=int, default=300, help="log lines per second, in total")
    ap.add_argument("--seconds", type=float, default=3600.0)
    ap.add_argument("--logs", default=LOGS)
    args = ap.parse_args()
    actor = delayed_sender()
    logs = [Appender(f"{args.logs}/api.log"), Appender(f"{args.logs}/worker.log")]
    stats = {"ok": 0, "failed": 0, "jobs": 0, "delayed": 0, "lines": 0, "started": time.time()}
    tick = 1.0 / args.rate
    per_tick = max(1, round(args.lines * tick / len(logs)))
    last_job = str(uuid.uuid4())
    end = time.monotonic() + args.seconds
    n = 0
    next_at = time.monotonic()
    while time.monotonic() < end:
        step = n % 5
        try:
            if step == 0:
                last_job = str(uuid.uuid4())
                call("POST", "/jobs", json.dumps({"id": last_job}).encode())
                stats["jobs"] += 1
            elif step in (1, 4):
                call("GET", "/health")
            elif step == 2:
                call("GET", f"/jobs/{last_job}")
            elif actor is not None:
                delay = random.randint(2_000, 20_000)
                actor.send_with_options(args=(f"delayed-{uuid.uuid4()}",), delay=delay)
                stats["delayed"] += 1
            stats["ok"] += 1
        except Exception:
            stats["failed"] += 1
        chatter(logs, n, per_tick)
        stats["lines"] += per_tick * len(logs)
        if n % max(1, int(args.rate * 5)) == 0:
            save(stats)
        n += 1
        next_at += tick
        time.sleep(max(0.0, next_at - time.monotonic()))
    save(stats)


def chatter(logs: list[Appender], n: int, count: int) -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    for where, log in zip(("zachot.api", "dramatiq.worker"), logs, strict=True):
        lines = "".join(
            f"{stamp} INFO {where} seq={n}.{i} request_id={n * count + i:012x} "
            f"status=ok elapsed_ms={(n + i) % 97 / 10:.1f}\n"
            for i in range(count)
        )
        with contextlib.suppress(OSError):  # the logs are being restored: try next tick
            log.write(lines.encode())


def save(stats: dict[str, float]) -> None:
    tmp = STATS + ".tmp"
    with open(tmp, "w") as f:
        json.dump(stats, f)
    os.replace(tmp, STATS)


if __name__ == "__main__":
    main()
