"""The host key changed (the box's keys regenerated): every task is refused before login,
exit 5, the message shows both fingerprints, and sshd logs no accepted login. The
sandbox keeps each box's recorded key in its state dir; a reset puts it back."""

from __future__ import annotations

import subprocess

import pytest

from . import inject
from .lab import prod10_lab  # noqa: F401  (fixture)

pytestmark = pytest.mark.integration

FAULT = "host key changed"
TASKS = (
    ("backup.all", "--logs"),
    ("restore.env", "--yes"),
    ("hosts.exec", "touch /tmp/fault-canary"),
    ("deploy.rollback", "--yes"),
)
REKEY = "rm -f /etc/ssh/ssh_host_*; ssh-keygen -A >/dev/null; systemctl restart ssh"
PUBLIC = "/etc/ssh/ssh_host_ed25519_key.pub"
LOGINS = "journalctl -u ssh --no-pager -q | grep -c 'Accepted publickey' || true"
SNAPSHOT = (
    "find /opt/zachot -path /opt/zachot/logs -prune -o -name __pycache__ -prune -o -type f "
    "-print0 | sort -z | xargs -0 sha256sum; ls -A /run/lock /tmp"
)


def fingerprint(public_key: str) -> str:
    said = subprocess.run(["ssh-keygen", "-lf", "-"], input=public_key, capture_output=True,
                          text=True, check=True)  # fmt: skip
    return said.stdout.split()[1]  # "256 SHA256:... comment (ED25519)"


@pytest.mark.fault(FAULT, checked="exit 5, both fingerprints shown, no login accepted, no change")
def test_a_changed_host_key_refuses_every_task_before_login(prod10):
    assert prod10.fab("backup.all").returncode == 0  # so each restore would have work to do
    known = fingerprint(prod10.sh(f"cat {PUBLIC}"))
    prod10.sh(REKEY)
    offered = fingerprint(prod10.sh(f"cat {PUBLIC}"))
    assert offered != known
    logins, box_before = prod10.sh(LOGINS), prod10.sh(SNAPSHOT)
    assert int(logins) > 0  # the backup's login is there: the journal does record them
    store_before = [(r.kind, r.id) for r in prod10.store.list()]
    for args in TASKS:
        run = prod10.fab(*args)
        errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
        assert run.returncode == 5, (args, run.stdout, run.stderr)
        assert len(errors) == 1 and "HOST KEY CHANGED" in errors[0], (args, run.stderr)
        assert f"offers ssh-ed25519 {offered}" in errors[0]
        assert f"known_hosts has ssh-ed25519 {known}" in errors[0]
    assert prod10.sh(LOGINS) == logins  # sshd never let us in: no command, no data
    assert prod10.sh(SNAPSHOT) == box_before
    assert [(r.kind, r.id) for r in prod10.store.list()] == store_before
    assert inject.leftovers(prod10.store.root) == [] and inject.store_lock_free(prod10.store.root)

    # The sandbox's reset seeds the recorded key again: the box is trusted once more.
    prod10.fleet.reset(prod10.box)
    assert fingerprint(prod10.sh(f"cat {PUBLIC}")) == known
    assert prod10.fab("hosts.ping").returncode == 0
