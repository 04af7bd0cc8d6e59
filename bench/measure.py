"""Timing and memory measurement: paired repetitions, medians, a child's peak RSS."""

from __future__ import annotations

import os
import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

Trial = Callable[[], float]  # runs one repetition, returns the seconds it measured


class BenchError(Exception):
    """A side of a figure failed: the figure is reported as failed, the run goes on."""

    def __init__(self, message: str, stdout: str = "") -> None:
        super().__init__(message)
        self.stdout = stdout


@dataclass(frozen=True)
class Child:
    seconds: float
    max_rss_kb: int
    stdout: str
    stderr: str


def median(samples: Sequence[float]) -> float:
    return statistics.median(samples)


def paired(
    reps: int, ours: Trial, baseline: Trial, *, before: Callable[[], object] | None = None
) -> tuple[list[float], list[float]]:
    """Run both sides `reps` times, alternating which goes first, so drifting load
    (other users of the machine) hits both sides alike. `before` runs, untimed,
    at the start of every repetition. After it and after every trial the page cache is
    written back (untimed), so no trial pays for dirty pages it did not make: the boxes
    share this machine's disk, and a side that fsyncs (ours, its lock and its files) would
    otherwise flush the 10 MB log `before` just wrote on a box."""
    ours_s: list[float] = []
    base_s: list[float] = []
    for rep in range(reps):
        if before is not None:
            before()
            os.sync()
        order = (
            ((base_s, baseline), (ours_s, ours))
            if rep % 2 == 0
            else ((ours_s, ours), (base_s, baseline))
        )
        for into, trial in order:
            into.append(trial())
            os.sync()
    return ours_s, base_s


def run_child(
    argv: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    stdout_path: Path | None = None,
    what: str,
    ok_codes: tuple[int, ...] = (0,),
) -> Child:
    """Run argv, timing its wall clock and reading its own peak RSS with wait4()."""
    out = stdout_path.open("wb") if stdout_path else subprocess.PIPE
    started = time.monotonic()
    try:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.PIPE, env=env)
        # communicate() drains the pipes; wait4 then reaps this one child with its rusage.
        stdout, stderr = _drain(proc)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.monotonic() - started
    finally:
        if stdout_path:
            out.close()  # type: ignore[union-attr]
    code = os.waitstatus_to_exitcode(status)
    proc.returncode = code
    if code not in ok_codes:
        last = (stderr.strip().splitlines() or [f"exit {code}"])[-1]
        raise BenchError(f"{what} exited {code}: {last}", stdout)
    return Child(seconds, usage.ru_maxrss, stdout, stderr)


def _drain(proc: subprocess.Popen[bytes]) -> tuple[str, str]:
    # Read until both pipes close (the child exited or closed them), without reaping it.
    chunks: dict[str, bytes] = {"out": b"", "err": b""}

    def read(name: str, pipe) -> None:  # type: ignore[no-untyped-def]
        if pipe is not None:
            chunks[name] = pipe.read()
            pipe.close()

    readers = [
        threading.Thread(target=read, args=("out", proc.stdout)),
        threading.Thread(target=read, args=("err", proc.stderr)),
    ]
    for r in readers:
        r.start()
    for r in readers:
        r.join()
    return chunks["out"].decode("utf-8", "replace"), chunks["err"].decode("utf-8", "replace")


def timed(fn: Callable[[], object]) -> float:
    started = time.monotonic()
    fn()
    return time.monotonic() - started
