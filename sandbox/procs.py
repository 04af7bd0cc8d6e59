"""Process checks by recorded pid, guarded against pid reuse by the command line."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def alive_with(pid: int, needles: list[str]) -> bool:
    """pid is running and its command line contains every needle (so it is still ours)."""
    args = cmdline(pid)
    if not args or _is_zombie(pid):
        return False
    return all(any(n in a for a in args) for n in needles)


def pid_alive_with(pid_file: Path, needles: list[str]) -> bool:
    try:
        pid = int(pid_file.read_text())
    except (OSError, ValueError):
        return False
    return alive_with(pid, needles)


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def wait_gone(pid: int, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if not Path(f"/proc/{pid}").exists() or _is_zombie(pid):
            return True
        time.sleep(0.1)
    return False


def kill(pid: int, sig: int = signal.SIGTERM) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def pids_in_netns(netns_path: Path) -> list[int]:
    """Processes whose network namespace is the one bound at netns_path (e.g. /run/netns/zt-x).
    A namespace the sandbox created holds only what the sandbox started, so this finds
    leftovers of a crashed run (an orphaned container init) by identity, not by name."""
    try:
        want = netns_path.stat()
    except OSError:
        return []
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            st = (entry / "ns" / "net").stat()
        except OSError:
            continue
        if (st.st_ino, st.st_dev) == (want.st_ino, want.st_dev):
            found.append(int(entry.name))
    return found


def is_pidns_init(pid: int) -> bool:
    """PID 1 of a nested PID namespace: killing it ends the whole namespace."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    nspid = next((ln.split()[1:] for ln in status.splitlines() if ln.startswith("NSpid:")), [])
    return len(nspid) > 1 and nspid[-1] == "1"


def kill_all_in_netns(netns_path: Path, timeout: float = 10) -> None:
    """SIGKILL namespace inits first (takes their containers down), then any stragglers."""
    pids = pids_in_netns(netns_path)
    for pid in sorted(pids, key=lambda p: not is_pidns_init(p)):
        kill(pid, signal.SIGKILL)
    for pid in pids:
        wait_gone(pid, timeout)
