"""sudo fails: a wrong password, none given, or a login that is not in sudoers. One clear
line, a non-zero exit, the password never echoed, nothing changed on the box and
nothing added to the store."""

from __future__ import annotations

import pytest

from . import inject
from .lab import ENV, SERVICES, Lab, prod10_lab  # noqa: F401  (fixture)

pytestmark = pytest.mark.integration

FAULT = "sudo fails"
PASSWORD = "right-pw-5c1e"
PASSWORD_ENV = "ZACHOT_FAULT_SUDO_PASSWORD"
TASKS = (("backup.all", "--logs"), ("restore.env", "--yes"), ("restore.units", "--yes"))
CASES = {
    # case: (login, the password in the environment, what the error says)
    "wrong password": ("faultpw", "wrong-pw-0b7d", "sudo password rejected for 'faultpw'"),
    "no password given": ("faultpw", None, "sudo needs a password for 'faultpw'"),
    "not in sudoers": ("faultnosudo", PASSWORD, "user 'faultnosudo' may not use sudo"),
    "not in sudoers, no password given": (
        "faultnosudo",
        None,
        "user 'faultnosudo' may not use sudo",
    ),
}
USERS = (
    'set -e; for u in faultpw faultnosudo; do useradd -m -s /bin/sh "$u"; '
    'echo "$u:$1" | chpasswd; cp /etc/ssh/authorized_keys/ops "/etc/ssh/authorized_keys/$u"; '
    "done; echo 'faultpw ALL=(ALL) ALL' > /etc/sudoers.d/faultpw; "
    "chmod 0440 /etc/sudoers.d/faultpw; visudo -c >/dev/null"
)
SNAPSHOT = (
    "find /opt/zachot/backups /opt/zachot/envs/prod/etc /etc/systemd/system -maxdepth 1 "
    "-type f | sort | xargs sha256sum; ls -A /run/lock; "
    f"systemctl show -p MainPID --value {' '.join(SERVICES)}"
)


def login_as(lab: Lab, user: str, password: str | None, monkeypatch) -> None:
    lab.configure(hosts={lab.box: {"user": user, "sudo_password_env": PASSWORD_ENV}})
    if password is None:
        monkeypatch.delenv(PASSWORD_ENV, raising=False)
    else:
        monkeypatch.setenv(PASSWORD_ENV, password)


@pytest.fixture
def sudo_box(prod10):
    """prod10 with a backup made by ops, a changed env file (so a restore has work to do)
    and two more logins with the operator's key: one whose sudo needs a password, one
    not in sudoers."""
    assert prod10.fab("backup.all").returncode == 0
    prod10.sh(f"echo FAULT_EXTRA=1 >> {ENV}")
    prod10.fleet.exec(prod10.box, ["sh", "-c", USERS, "sh", PASSWORD])
    return prod10


@pytest.mark.fault(FAULT, checked="exit 1, one error line, no password echoed, box and store same")
@pytest.mark.parametrize("case", list(CASES))
def test_sudo_failure_is_clear_and_changes_nothing(sudo_box, case, monkeypatch):
    user, password, says = CASES[case]
    login_as(sudo_box, user, password, monkeypatch)
    box_before = sudo_box.sh(SNAPSHOT)
    store_before = [(r.kind, r.id) for r in sudo_box.store.list()]
    for args in TASKS:
        run = sudo_box.fab(*args)
        errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
        assert run.returncode == 1, (args, run.stdout, run.stderr)
        assert len(errors) == 1 and says in errors[0], (args, run.stderr)
        assert "Traceback" not in run.stderr
        for secret in {PASSWORD, password} - {None}:
            assert secret not in run.stdout + run.stderr
    assert sudo_box.sh(SNAPSHOT) == box_before
    assert [(r.kind, r.id) for r in sudo_box.store.list()] == store_before
    assert inject.leftovers(sudo_box.store.root) == []
    assert inject.store_lock_free(sudo_box.store.root)


def test_control_the_right_password_works(sudo_box, monkeypatch):
    """The same login and rule with the right password: the failures above are sudo's."""
    login_as(sudo_box, "faultpw", PASSWORD, monkeypatch)
    run = sudo_box.fab("restore.env", "--yes")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "FAULT_EXTRA" not in sudo_box.sh(f"cat {ENV}")
    assert PASSWORD not in run.stdout + run.stderr
