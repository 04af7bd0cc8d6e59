"""A live prod: steady traffic, Dramatiq jobs (delayed ones too), busy logs, logrotate.

Started on each prod box after it boots (fleet.up and fleet.reset), unless
ZACHOT_SANDBOX_LOAD is "0", as two transient systemd units inside the box, so they live and
die with it:

- zachot-load, as the service user with the app's venv: load_box.py, one call per tick to
  127.0.0.1 (API and the app's own actor) and log lines appended to api.log and worker.log;
- zachot-load-rotate, as root: logrotate forced every ROTATE_EVERY s with the box's real
  config (/etc/logrotate.d/zachot: copytruncate, compress, delaycompress), every other time
  without copytruncate (rename and create), so rotations of both kinds fall inside backups.

Both are bounded in rate (--rate, --lines), in time (RuntimeMaxSec) and in CPU (CPUQuota).
A test that needs a quiet box calls quiet(box); reset brings the load back.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from sandbox import box

Exec = Callable[..., subprocess.CompletedProcess[str]]  # box.exec_in or box.box_exec, bound

ENV_SWITCH = "ZACHOT_SANDBOX_LOAD"
UNITS = ("zachot-load", "zachot-load-rotate")
HOME = "/run/zachot-load-bin"  # root's: the script and the rename variant of the config
STATS = "/run/zachot-load/stats.json"  # the load unit's RuntimeDirectory, the user's
RATE = 5.0  # calls per second (API and actor)
LINES = 300  # log lines per second over both logs
ROTATE_EVERY = 25  # seconds between forced rotations
MAX_SECONDS = 4 * 3600
CPU_QUOTA = "5%"  # a cap where cgroups allow; measured 0.8% of a core (cpu_share)
APP = {"user": "zachot", "venv": "/opt/zachot/envs/prod", "repo": "/opt/zachot/repo"}
ENV_FILE = "/opt/zachot/envs/prod/etc/zachot.env"
REAL_CONFIG = "/etc/logrotate.d/zachot"

ROTATE = f"""
sed '/^[[:space:]]*copytruncate[[:space:]]*$/d' {REAL_CONFIG} > {HOME}/rename.conf
chmod 0644 {HOME}/rename.conf
i=0
while sleep {ROTATE_EVERY}; do
  if [ $((i % 2)) = 0 ]; then conf={REAL_CONFIG}; else conf={HOME}/rename.conf; fi
  logrotate -f -s {HOME}/logrotate.status "$conf" || echo "logrotate $conf failed"
  i=$((i + 1))
done
"""


def wanted() -> bool:
    """Prod is live by default, as it is in production; ZACHOT_SANDBOX_LOAD=0 quiets a fleet."""
    return os.environ.get(ENV_SWITCH, "1") != "0"


def start(run: Exec, *, seconds: int = MAX_SECONDS) -> None:
    """Install and start the load in a booted prod box (idempotent: a running one stays)."""
    if run(["systemctl", "is-active", "--quiet", UNITS[0]]).returncode == 0:
        return
    # Scripts, not command lines: systemd would expand the shell's $ in ExecStart.
    _check(run(["install", "-d", "-m", "0755", HOME]))
    files = {"load.py": Path(__file__).with_name("load_box.py").read_text(), "rotate.sh": ROTATE}
    for name, text in files.items():
        _check(run(["sh", "-c", f"cat > {HOME}/{name}"], input=text))
    bound = [f"--property=RuntimeMaxSec={seconds}", "--collect", "--quiet", "--no-block"]
    _check(run([
        "systemd-run", f"--unit={UNITS[0]}", *bound,
        f"--uid={APP['user']}", f"--gid={APP['user']}", "--nice=10",
        f"--property=CPUQuota={CPU_QUOTA}", "--property=RuntimeDirectory=zachot-load",
        f"--property=EnvironmentFile=-{ENV_FILE}", f"--working-directory={APP['repo']}",
        f"--setenv=PYTHONPATH={APP['repo']}",
        f"{APP['venv']}/bin/python", f"{HOME}/load.py",
        f"--rate={RATE}", f"--lines={LINES}", f"--seconds={seconds}",
    ]))  # fmt: skip
    _check(run([
        "systemd-run", f"--unit={UNITS[1]}", *bound, "--nice=10",
        "/bin/sh", f"{HOME}/rotate.sh",
    ]))  # fmt: skip


def quiet(run: Exec) -> None:
    """Stop the load (for a test that needs a quiet box); in-flight delayed jobs stay queued."""
    run(["systemctl", "stop", *UNITS])


def in_box(name: str) -> Exec:
    """Run argv as root in the named box (not through SSH or the code under test)."""
    return functools.partial(box.box_exec, name)


def quiet_box(name: str) -> None:
    quiet(in_box(name))


def running(run: Exec) -> bool:
    return run(["systemctl", "is-active", "--quiet", *UNITS]).returncode == 0


def stats(run: Exec) -> dict[str, float]:
    said = run(["cat", STATS])
    return json.loads(said.stdout) if said.returncode == 0 and said.stdout else {}


def cpu_share(run: Exec, seconds: float = 30) -> float:
    """The load units' CPU over `seconds`, as a fraction of one core."""

    before, t0 = _cpu_ticks(run), time.monotonic()
    time.sleep(seconds)
    return (_cpu_ticks(run) - before) / os.sysconf("SC_CLK_TCK") / (time.monotonic() - t0)


def _cpu_ticks(run: Exec) -> int:
    """utime+stime of the units' main processes and of their reaped children (logrotate,
    gzip): /proc, since the box has no cgroup CPU accounting."""
    pids = run(["systemctl", "show", "--value", "-p", "MainPID", *UNITS]).stdout.split()
    total = 0
    for pid in (p for p in pids if p.isdigit() and p != "0"):
        fields = run(["cat", f"/proc/{pid}/stat"]).stdout.rpartition(")")[2].split()
        total += sum(int(v) for v in fields[11:15])  # utime stime cutime cstime
    return total


def _check(said: subprocess.CompletedProcess[str]) -> None:
    if said.returncode != 0:
        raise RuntimeError(f"starting the sandbox load failed: {said.stderr.strip()}")
