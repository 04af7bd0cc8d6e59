"""Secrets: a canary secret in prod11's env file never leaves it.

Every task runs against prod11 (deploys and restore.server as dry runs), and the canary
must not appear in stdout or stderr, the cron log, --json output, any file in the store
(manifests included), the off-site copy or the drill report. The local store is 0700/0600
throughout; after every restore the env file is 0600 zachot:zachot; and a watcher inside
the box looks, about ten times a second while the tasks run, for any world-readable file
that holds the canary (and for the canary in any process's command line).
"""

from __future__ import annotations

import secrets
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from sandbox.box import box_exec

from .lab import ENV, VAULT, VAULT_ROOT, Lab, prod8_lab, prod11_lab  # noqa: F401  (fixtures)

pytestmark = pytest.mark.integration

FAULT = "secrets"
PATTERN = "/root/.zachot-canary"  # grep -f reads it: the canary is in no command line
STOP = "/run/zachot-watch-stop"
WATCHED = "/opt /tmp /var/tmp /var/backups /var/lib /var/log /root /home /srv /etc /run"
# Each round: files changed (ctime) since the watch began, readable by others, holding the
# canary; then every process's command line. One "tick" per round, to show its pace.
WATCH = rf"""
touch /run/zachot-watch-start
while [ ! -e {STOP} ]; do
  find {WATCHED} -xdev -type f -cnewer /run/zachot-watch-start -perm -o=r -print0 2>/dev/null \
    | xargs -0 -r grep -lF -f {PATTERN} -- 2>/dev/null \
    | while IFS= read -r f; do stat -c 'LEAK %a %U:%G %n' -- "$f"; done
  grep -lF -f {PATTERN} /proc/[0-9]*/cmdline 2>/dev/null | sed 's/^/CMDLINE /'
  echo tick
  sleep 0.05
done
"""


@dataclass
class Watch:
    lines: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def leaks(self) -> list[str]:
        return [ln for ln in self.lines if ln.startswith(("LEAK", "CMDLINE"))]

    @property
    def rate(self) -> float:
        return self.lines.count("tick") / max(self.seconds, 1e-9)


@contextmanager
def watching(lab: Lab, canary: str) -> Iterator[Watch]:
    """The watcher runs in the box (root, not through the code under test) meanwhile."""
    put = box_exec(lab.box, ["sh", "-c", f"umask 077 && cat > {PATTERN} && rm -f {STOP}"],
                   input=canary + "\n")  # fmt: skip
    assert put.returncode == 0, put.stderr
    watch, said = Watch(), {}
    thread = threading.Thread(
        target=lambda: said.update(run=box_exec(lab.box, ["sh", "-c", WATCH], timeout=3600))
    )
    started = time.monotonic()
    thread.start()
    try:
        yield watch
    finally:
        lab.fleet.exec(lab.box, ["touch", STOP])
        thread.join(timeout=120)
        watch.seconds = time.monotonic() - started
        watch.lines = said["run"].stdout.splitlines() if "run" in said else ["watcher died"]
        lab.fleet.exec(lab.box, ["rm", "-f", STOP, PATTERN])


def env_meta(lab: Lab) -> str:
    return lab.fleet.exec(lab.box, ["stat", "-c", "%a %U:%G", ENV]).stdout.strip()


def loose_modes(root: Path) -> list[str]:
    """Anything in the store that is not a 0700 directory or a 0600 file."""
    found = []
    for path in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        want = 0o700 if path.is_dir() else 0o600
        if mode != want or path.is_symlink():
            found.append(f"{mode:04o} {path}")
    return found


def add_canary(lab: Lab) -> str:
    canary = f"zc-canary-{secrets.token_hex(12)}"
    lab.sh(f"printf 'CANARY_SECRET=%s\\n' '{canary}' >> {ENV}")
    assert env_meta(lab) == "600 zachot:zachot"
    return canary


# Every task, in an order that leaves something for the next one to read; `None` in the
# codes means "any exit is fine, as long as it is one clear line and no secret".
TASKS: list[tuple[tuple[str, ...], set[int] | None]] = [
    (("backup.env",), {0}),
    (("backup.units",), {0}),
    (("backup.logs",), {0}),
    (("backup.redis", "--yes"), {0}),
    (("backup.all", "--logs", "--redis", "--yes", "--offsite"), {0}),
    (("backup.list",), {0}),
    (("backup.list", "--json"), {0}),
    (("backup.verify",), {0}),
    (("backup.verify", "--json"), {0}),
    (("backup.replicate", "--dry-run"), {0}),
    (("backup.replicate",), {0}),
    (("backup.prune",), {0}),
    (("backup.cron", "--show"), None),
    (("backup.cron", "--install", "--dry-run"), {0}),
    (("backup.cron", "--server", "--show"), {0}),
    (("restore.env", "--dry-run"), {0}),
    (("restore.env", "--yes"), {0}),
    (("restore.units", "--dry-run"), {0}),
    (("restore.units", "--yes"), {0}),
    (("restore.redis", "--dry-run"), {0}),
    (("restore.redis", "--from", "latest", "--yes"), {0}),
    (("restore.server", "--dry-run"), {0}),
    (("restore.unlock", "--yes"), {0}),
    (("deploy.rollback", "--dry-run"), None),
    (("deploy.release", "--dry-run"), None),
    (("checklist",), None),
    (("checklist", "--json"), None),
    (("status",), None),
    (("status", "--json"), None),
    (("hosts.list",), {0}),
    (("hosts.list", "--json"), {0}),
    (("hosts.ping",), {0}),
    (("hosts.exec", "--command", "uptime"), {0}),
    (("hosts.trust", "--yes"), {0}),
    (("hosts.ssh-config",), {0}),
]


@pytest.mark.fault(FAULT, checked="canary in no output, log, JSON, manifest or off-site copy")
def test_the_canary_never_leaves_the_env_file(prod11):
    prod11.configure(offsite=True)
    canary = add_canary(prod11)
    prod11.sh(f"printf 'CHANGED=1\\n' >> {ENV}")  # so restore.env has something to put back
    runs: dict[str, subprocess.CompletedProcess[str]] = {}
    after_restore: dict[str, str] = {}
    log = prod11.tmp / "backup-cron.log"
    with watching(prod11, canary) as watch:
        for args, codes in TASKS:
            if args == ("restore.env", "--yes"):
                prod11.sh(f"printf 'DRIFT=1\\n' >> {ENV}")
            run = prod11.fab(*args)
            runs[" ".join(args)] = run
            said = run.stdout + run.stderr
            assert "Traceback" not in said, (args, said)
            assert codes is None or run.returncode in codes, (args, run.returncode, said)
            if run.returncode:
                assert run.stderr.strip().splitlines()[-1].startswith("error: "), (args, said)
            if args[0].startswith("restore.") and "--yes" in args:
                after_restore[args[0]] = env_meta(prod11)
        assert prod11.cron_fires(log) == 0, log.read_text()
    assert watch.leaks == [], watch.leaks
    assert watch.rate > 3, f"the watcher managed {watch.rate:.1f} rounds a second"

    for name, run in runs.items():
        assert canary not in run.stdout + run.stderr, name
    assert canary not in log.read_text() and " backup.all end: exit 0 " in log.read_text()
    for path in prod11.store.root.rglob("*"):
        if path.is_file():
            assert canary.encode() not in path.read_bytes(), path
    manifests = list(prod11.store.root.rglob("manifest.json"))
    assert len(manifests) >= 8  # env, units, logs, redis: twice each at least
    offsite = f"{VAULT_ROOT}/{prod11.offsite_dir}"
    copied = prod11.fleet.exec(VAULT, ["find", offsite, "-type", "f"]).stdout.split()
    assert copied, "nothing reached the off-site box"
    grep = prod11.fleet.exec(VAULT, ["grep", "-rlF", "--", canary, offsite])
    assert grep.returncode == 1, grep.stdout  # 1: no match
    assert loose_modes(prod11.store.root) == []
    restores = ("restore.env", "restore.units", "restore.redis", "restore.unlock")
    assert after_restore == dict.fromkeys(restores, "600 zachot:zachot")
    assert b"DRIFT=1" not in prod11.fleet.exec(prod11.box, ["cat", ENV]).stdout.encode()


@pytest.mark.fault(FAULT, checked="no world-readable copy, even of a loose (0644) env file")
def test_no_world_readable_copy_even_of_a_loose_env_file(prod11):
    canary = add_canary(prod11)
    prod11.sh(f"chmod 644 {ENV}")  # someone loosened it; backups must not spread that
    with watching(prod11, canary) as during_backup:
        backup = prod11.fab("backup.env")
    prod11.sh(f"printf 'DRIFT=1\\n' >> {ENV} && chmod 644 {ENV}")  # unwatched: not the tasks'
    with watching(prod11, canary) as during_restore:
        restore = prod11.fab("restore.env", "--yes")
    assert backup.returncode == 0 and restore.returncode == 0, restore.stdout + restore.stderr
    for watch in (during_backup, during_restore):
        assert watch.leaks == [], watch.leaks
        assert watch.rate > 3, f"the watcher managed {watch.rate:.1f} rounds a second"
    assert env_meta(prod11) == "600 zachot:zachot"
    # What the tasks left beside it: the server-side backup copy and the pre-restore copy.
    kept = prod11.sh(
        "stat -c '%a %n' /opt/zachot/backups/zachot.env.* /opt/zachot/envs/prod/etc/*.pre-restore.*"
    ).splitlines()
    assert len(kept) == 2 and all(line.startswith("600 ") for line in kept), kept
    for run in (backup, restore):
        assert canary not in run.stdout + run.stderr


@pytest.mark.fault(FAULT, checked="the drill report and its output hold no secret")
def test_the_drill_report_holds_no_secret(prod11, prod8):
    # prod8 is this suite's own box: marked scratch here, it is the drill's target.
    prod11.configure(hosts={prod8.box: {"scratch": True}})
    canary = add_canary(prod11)
    assert prod11.fab("backup.all").returncode == 0
    wheels = ("--wheelhouse", str(prod11.fleet.paths.wheels))
    run = prod11.fab("drill", "--source", prod11.box, "--yes", *wheels, hosts=prod8.box)
    said = run.stdout + run.stderr
    assert run.returncode == 0 and "Traceback" not in said, said[-3000:]
    reports = sorted(prod11.store.drills_dir(prod11.box).iterdir())
    assert sorted(p.suffix for p in reports) == [".json", ".md"], reports
    for path in reports:
        assert canary not in path.read_text(), path
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert canary not in said
    # The drill restored prod11's env onto prod8: the canary is there, 0600, and nowhere else.
    meta = prod8.fleet.exec(prod8.box, ["stat", "-c", "%a %U:%G", ENV]).stdout.strip()
    assert meta == "600 zachot:zachot"
    assert canary in prod8.fleet.exec(prod8.box, ["cat", ENV]).stdout  # the drill carried it
    assert loose_modes(prod11.store.root) == []
