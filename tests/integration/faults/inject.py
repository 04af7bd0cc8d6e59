"""Ways to break a sandbox box on purpose, and to look at what a fault left behind.

Everything acts on one named box: its sshd sessions, its own veth pair, mounts inside
it. Whatever is changed is put back in a `finally`, and the box is reset after the test.
Never used: the host side of a veth taken down, since the host would then route the
box's address out through its default route.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from fabfile.core.lock import LockHolder, is_stale, machine_id, pid_alive
from fabfile.core.remote_lock import LOCK_DIR
from fabfile.core.store import LOCK_NAME
from sandbox.box import box_exec
from sandbox.config import SUBNET, BoxSpec
from sandbox.state import recorded_specs
from tests.integration.conftest import Fleet

T = TypeVar("T")
HELD_MARK = "/run/zachot-fault-held"  # the held writer's pid, once it is holding
_SOCKET = re.compile(r"\S+:(\d+)\s+\S+:(\d+)\s+users:\((.*)\)")
_PID = re.compile(r"pid=(\d+)")


def spec(fleet: Fleet, box: str) -> BoxSpec:
    return {s.name: s for s in recorded_specs(fleet.paths)}[box]


def wait_until(check: Callable[[], T], what: str, *, timeout: float = 60, every=0.05) -> T:
    """Poll until check() returns something truthy; that value is returned."""
    deadline = time.monotonic() + timeout
    while not (found := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)
    return found


# -- the connection ---------------------------------------------------------------------


def _sockets(ss_output: str) -> list[tuple[int, int, set[int]]]:
    """(local port, peer port, pids) of each line of `ss -tnpH state established`."""
    found = []
    for line in ss_output.splitlines():
        if match := _SOCKET.search(line):
            pids = {int(p) for p in _PID.findall(match.group(3))}
            found.append((int(match.group(1)), int(match.group(2)), pids))
    return found


def kill_sessions(fleet: Fleet, box: str, client_pid: int) -> list[int]:
    """kill -9 the box's sshd processes serving this client's connections: the link dies."""
    address = spec(fleet, box).address
    ours = subprocess.run(
        ["ss", "-tnpH", "state", "established", "dst", address],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    ports = {local for local, peer, pids in _sockets(ours) if peer == 22 and client_pid in pids}
    theirs = fleet.exec(box, ["ss", "-tnpH", "state", "established", "sport", "=", ":22"]).stdout
    victims = sorted({p for local, peer, pids in _sockets(theirs) if peer in ports for p in pids})
    assert victims, f"no sshd session on {box} serves pid {client_pid} (ports {ports})"
    fleet.exec(box, ["kill", "-9", *map(str, victims)])
    return victims


@contextmanager
def slow_link(
    fleet: Fleet, box: str, rate: str = "400mbit", burst: str = "256kb", latency: str = "200ms"
) -> Iterator[None]:
    """Rate-limit the box's veth both ways (tc tbf) so a transfer lasts long enough to cut.
    A burst of one packet slows every request too, not only bulk data."""
    s = spec(fleet, box)
    ends = [[], ["ip", "netns", "exec", s.netns]]  # host side, then the box's side
    devices = [s.veth_host, s.veth_box]
    try:
        for prefix, dev in zip(ends, devices, strict=True):
            tbf = ["tc", "qdisc", "replace", "dev", dev, "root", "tbf", "rate", rate]
            subprocess.run([*prefix, *tbf, "burst", burst, "latency", latency], check=True)
        yield
    finally:
        for prefix, dev in zip(ends, devices, strict=True):
            subprocess.run([*prefix, "tc", "qdisc", "del", "dev", dev, "root"], capture_output=True)


@contextmanager
def box_link_down(fleet: Fleet, box: str) -> Iterator[None]:
    """The box's end of its veth down: to the operator it is powered off.

    A link going down drops the routes through it, so the box's route to the rest of
    the sandbox (the repo server) is put back with it; a reset would not rebuild it."""
    s = spec(fleet, box)
    inside = ["ip", "netns", "exec", s.netns, "ip"]
    subprocess.run([*inside, "link", "set", s.veth_box, "down"], check=True)
    try:
        yield
    finally:
        subprocess.run([*inside, "link", "set", s.veth_box, "up"], check=True)
        subnet = f"{SUBNET}.0.0/16"
        subprocess.run([*inside, "route", "replace", subnet, "via", s.host_ip], check=True)


@contextmanager
def frozen_sshd(fleet: Fleet, box: str) -> Iterator[None]:
    """SIGSTOP the box's sshd listener: TCP still connects, no SSH banner ever comes."""
    pid = fleet.exec(box, ["cat", "/run/sshd.pid"]).stdout.strip()
    assert pid.isdigit(), f"no sshd pid on {box}"
    fleet.exec(box, ["kill", "-STOP", pid])
    try:
        yield
    finally:
        fleet.exec(box, ["kill", "-CONT", pid])


# -- inside the box ---------------------------------------------------------------------


@contextmanager
def held_op(fleet: Fleet, box: str, op: str, path: str, seconds: float = 5) -> Iterator[None]:
    """Shadow python3 (sudo's secure_path puts /usr/local/bin first) with a wrapper that
    holds the transport agent's `op` ("read", "write") of `path` for a while: a window to
    cut the link in, or to start a second run, however small the file. The agent runs as
    `python3 -I -c SOURCE op path ...`."""
    wrapper = (
        "#!/bin/sh\n"
        "# fault injection by tests/integration/faults: hold one operation of the agent\n"
        f'if [ "$4" = {op} ] && [ "$5" = "{path}" ]; then\n'
        f"  echo $$ > {HELD_MARK}; sleep {seconds:g}\n"
        "fi\n"
        'exec /usr/bin/python3 "$@"\n'
    )
    script = 'cat > /usr/local/bin/python3 && chmod 755 /usr/local/bin/python3 && rm -f -- "$1"'
    put = box_exec(box, ["sh", "-c", script, "sh", HELD_MARK], input=wrapper)
    assert put.returncode == 0, put.stderr
    try:
        yield
    finally:
        fleet.exec(box, ["rm", "-f", "/usr/local/bin/python3", HELD_MARK])


def held_writer(fleet: Fleet, box: str) -> int | None:
    """pid of the agent held by held_op(), once it holds."""
    said = fleet.exec(box, ["cat", HELD_MARK]).stdout.strip()
    return int(said) if said.isdigit() else None


@contextmanager
def tmpfs(fleet: Fleet, box: str, path: str, size: str) -> Iterator[None]:
    """A small tmpfs over `path` in the box, holding a copy of what was there (modes kept)."""
    keep = f"/run/zachot-fault-keep{path.replace('/', '-')}"
    script = (
        'set -e; mkdir -p "$3"; cp -a "$1/." "$3/"; '
        'mount -t tmpfs -o "size=$2,mode=0755" tmpfs "$1"; cp -a "$3/." "$1/"; '
        'chown --reference="$3" "$1"; chmod --reference="$3" "$1"'
    )
    said = fleet.exec(box, ["sh", "-c", script, "sh", path, size, keep])
    assert said.returncode == 0, said.stderr
    try:
        yield
    finally:
        fleet.exec(box, ["umount", path])
        fleet.exec(box, ["rm", "-rf", "--", keep])


def fill(fleet: Fleet, box: str, path: str, leave: int = 0) -> None:
    """Fill the filesystem holding `path` (leaving `leave` bytes): writes then fail."""
    script = (
        'dd if=/dev/zero of="$1/.fault-filler" bs=4096 2>/dev/null; '
        'test "$2" -eq 0 || truncate -s "-$2" "$1/.fault-filler"; df -B1 --output=avail "$1"'
    )
    fleet.exec(box, ["sh", "-c", script, "sh", path, str(leave)])


# -- what a fault left behind -----------------------------------------------------------


def leftovers(root: Path) -> list[str]:
    """Temp names in a local tree: interrupted pulls, staged backups, plaintext scratch."""
    marks = (".part-", ".staging-", ".plain-", ".zachot-part-")
    found = (p for p in root.rglob("*") if any(m in p.name for m in marks))
    return sorted(str(p.relative_to(root)) for p in found)


def part_file(root: Path, min_bytes: int) -> Path | None:
    """A transfer's file under root, grown to min_bytes: a pull's .part- temp, or a stream
    (the logs archive) written straight into its backup's .staging- directory."""
    found = [*root.rglob("*.part-*"), *root.rglob(".staging-*/*")] if root.exists() else []
    for p in found:
        try:
            if p.stat().st_size >= min_bytes:
                return p
        except FileNotFoundError:
            continue
    return None


def lock_free(holder_text: str | None, modified: datetime | None = None) -> bool:
    """A lock is no obstacle: absent, or detectably stale (its holder's pid is gone)."""
    if holder_text is None:
        return True
    try:
        holder = LockHolder.from_json(holder_text)
    except ValueError:
        holder = None
    return is_stale(
        holder,
        now=datetime.now(UTC),
        this_machine=machine_id(),
        pid_alive=pid_alive,
        modified=modified,
    )


def store_lock_free(store_root: Path) -> bool:
    lock = store_root / LOCK_NAME
    return lock_free(lock.read_text() if lock.exists() else None)


def run_lock_free(fleet: Fleet, box: str) -> bool:
    """The run lock restores take on the box: released, or its holder is dead."""
    said = fleet.exec(box, ["cat", f"{LOCK_DIR}/holder"])
    return lock_free(said.stdout if said.returncode == 0 else None)
