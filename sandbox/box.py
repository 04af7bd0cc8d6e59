"""One box: an overlay root booted by systemd-nspawn in its netns, and a way in that
does not go through SSH (nsenter into the container's namespaces)."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from pathlib import Path

from sandbox import nspawn, procs
from sandbox.config import BoxSpec, Paths, fleet_specs
from sandbox.keys import host_key
from sandbox.mounts import is_mounted, mount_overlay, unmount, wipe
from sandbox.state import load_state

BOX_ENV = [
    "/usr/bin/env",
    "-i",
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME=/root",
    "LANG=C.UTF-8",
    "TERM=dumb",
]
LOGIN_USER = {"prod": "ops", "new-box": "ops", "vault": "vault"}


def _dirs(paths: Paths, spec: BoxSpec) -> dict[str, Path]:
    d = paths.box_dir(spec.name)
    return {
        "dir": d,
        "upper": d / "upper",
        "work": d / "work",
        "root": d / "root",
        "pid": d / "nspawn.pid",
        "console": d / "console.log",
        "lowers": d / "lowers",
        "lock": d / "nspawn.lock",
    }


def nspawn_pid(paths: Paths, spec: BoxSpec) -> int | None:
    """pid of this box's systemd-nspawn, if it is still the one we started."""
    f = _dirs(paths, spec)["pid"]
    if procs.pid_alive_with(f, ["systemd-nspawn", f"--machine={spec.machine}"]):
        return int(f.read_text())
    return None


def leader_pid(paths: Paths, spec: BoxSpec) -> int | None:
    """Host pid of the container's PID 1 (systemd), a direct child of nspawn."""
    parent = nspawn_pid(paths, spec)
    if parent is None:
        return None
    children = Path(f"/proc/{parent}/task/{parent}/children")
    for pid in children.read_text().split() if children.exists() else []:
        if procs.is_pidns_init(int(pid)):
            return int(pid)
    return None


def is_running(paths: Paths, spec: BoxSpec) -> bool:
    return nspawn_pid(paths, spec) is not None


def running_lowers(paths: Paths, spec: BoxSpec) -> str:
    f = _dirs(paths, spec)["lowers"]
    return f.read_text() if f.exists() else ""


def _seed(root: Path, paths: Paths, spec: BoxSpec) -> None:
    """Per-box identity written into the fresh upper layer before boot."""
    (root / "etc" / "hostname").write_text(f"{spec.name}\n")
    (root / "etc" / "hosts").write_text(
        f"127.0.0.1 localhost\n127.0.1.1 {spec.name}\n::1 localhost ip6-localhost\n"
    )
    key = host_key(paths, spec)
    for src, mode in ((key, 0o600), (key.with_suffix(".pub"), 0o644)):
        dst = root / "etc" / "ssh" / src.name
        dst.write_bytes(src.read_bytes())
        dst.chmod(mode)
    auth = root / "etc" / "ssh" / "authorized_keys" / LOGIN_USER[spec.role]
    auth.write_text(paths.key.with_suffix(".pub").read_text())
    auth.chmod(0o644)


def start_box(paths: Paths, spec: BoxSpec, lowers: list[Path]) -> None:
    """Boot the box from a fresh upper layer (its initial state)."""
    d = _dirs(paths, spec)
    stop_box(paths, spec)
    wipe(d["upper"], d["work"])
    mount_overlay(lowers, d["upper"], d["work"], d["root"])
    _seed(d["root"], paths, spec)
    st = d["root"].stat()  # nspawn's image lock is named after the root's inode
    d["lock"].write_text(f"/run/systemd/nspawn/locks/inode-{st.st_dev}:{st.st_ino}\n")
    d["lowers"].write_text(":".join(map(str, lowers)))
    with open(d["console"], "wb") as log:
        proc = subprocess.Popen(
            nspawn.boot_argv(d["root"], spec.machine, spec.name, spec.netns),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # the box outlives the invoke process that booted it
        )
    d["pid"].write_text(f"{proc.pid}\n")
    # Until the child has exec'd, its cmdline is still ours and nspawn_pid() would say "dead".
    end = time.monotonic() + 5
    while nspawn_pid(paths, spec) is None and proc.poll() is None and time.monotonic() < end:
        time.sleep(0.01)


def stop_box(paths: Paths, spec: BoxSpec, graceful: bool = True) -> None:
    """Stop our nspawn (clean poweroff on SIGTERM, else kill the container's PID 1,
    which takes its whole PID namespace with it), then unmount the root."""
    d = _dirs(paths, spec)
    pid = nspawn_pid(paths, spec)
    if pid is not None:
        if graceful:
            procs.kill(pid, signal.SIGTERM)
        if not (graceful and procs.wait_gone(pid, 20)):
            leader = leader_pid(paths, spec)
            if leader is not None:
                procs.kill(leader, signal.SIGKILL)
            if not procs.wait_gone(pid, 10):
                procs.kill(pid, signal.SIGKILL)
                procs.wait_gone(pid, 5)
    d["pid"].unlink(missing_ok=True)
    # A crashed run can leave an orphaned container (its nspawn gone); it lives in our netns.
    procs.kill_all_in_netns(Path("/run/netns") / spec.netns)
    if is_mounted(d["root"]):
        unmount(d["root"])
    # nspawn's per-machine scratch dir on the host, if it failed to remove it itself.
    leftover = Path("/run/systemd/nspawn/propagate") / spec.machine
    if leftover.is_dir() and not is_mounted(leftover):
        leftover.rmdir()
    if d["lock"].exists():  # left behind only when nspawn itself was killed
        Path(d["lock"].read_text().strip()).unlink(missing_ok=True)
        d["lock"].unlink()


def remove_nspawn_run_dirs() -> None:
    """nspawn leaves empty scratch dirs under /run/systemd/nspawn; drop them only if empty
    (rmdir fails otherwise), so another nspawn user's state is never touched."""
    top = Path("/run/systemd/nspawn")
    for d in (top / "propagate", top / "locks", top):
        with contextlib.suppress(OSError):
            d.rmdir()


def exec_in(
    paths: Paths, spec: BoxSpec, argv: list[str], timeout: float = 120, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    leader = leader_pid(paths, spec)
    if leader is None:
        raise RuntimeError(f"box {spec.name} is not running")
    return subprocess.run(
        ["nsenter", f"--target={leader}", "--all", "--", *BOX_ENV, *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input,
    )


def box_exec(
    name: str, argv: list[str], timeout: float = 120, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run argv as root inside a running box, bypassing SSH and the code under test."""
    specs = {s.name: s for s in fleet_specs(extra_prod=_extra_count(Paths()))}
    if name not in specs:
        raise KeyError(f"no box {name!r}; boxes: {', '.join(specs)}")
    return exec_in(Paths(), specs[name], argv, timeout=timeout, input=input)


def _extra_count(paths: Paths) -> int:
    return int(load_state(paths).get("extra_prod", 0))


def wait_booted(paths: Paths, spec: BoxSpec, timeout: float = 90) -> str:
    """Wait until systemd inside finished booting; returns its state (running/degraded)."""
    end = time.monotonic() + timeout
    state = "unknown"
    while time.monotonic() < end:
        if not is_running(paths, spec):
            raise RuntimeError(f"box {spec.name} exited; see {_dirs(paths, spec)['console']}")
        if leader_pid(paths, spec) is not None:
            r = exec_in(paths, spec, ["systemctl", "is-system-running"], timeout=10)
            state = r.stdout.strip()
            if state in ("running", "degraded"):
                return state
        time.sleep(0.5)
    raise TimeoutError(f"box {spec.name} did not finish booting (state {state})")
