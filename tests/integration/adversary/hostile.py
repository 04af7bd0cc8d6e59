"""The hostile service user: what `zachot` (the app's account) can do to root, and the checks.

Threat model (README, "Threat model"): the service user and everything it can write (the
repo, the venv, the env file and its directory, the logs, Redis config) are hostile input
to root. Each attack here runs as `zachot` inside a real sandbox box, then a real task
runs against that box, then the test checks what root did:

- a root-owned canary (/root/adversary-canary, 0600) is unchanged, and nothing the attacker
  asked root to create exists (`planted_by_root`);
- no process ran as root from code the attacker wrote: attacker code writes `id -u` into
  PWNED, and `ran_as_root()` reads it back;
- no secret from the env file appears in the task's output (`assert_no_secret`);
- the task did its job, or refused with one line naming what was wrong (`one_line_error`).

This tier owns prod6, prod7, prod12 and prod13; each test gets its box reset before and after
(the fault lab's machinery), so an attack never outlives its test.
"""

from __future__ import annotations

import secrets
import shlex
from collections.abc import Iterator

import pytest

from tests.integration.faults.lab import ENV, Lab, _lab

pytestmark = pytest.mark.integration

USER = "zachot"
ROOT_DIR = "/opt/zachot"
REPO = "/opt/zachot/repo"
VENV = "/opt/zachot/envs/prod"
LOGS = "/opt/zachot/logs"
BACKUPS = "/opt/zachot/backups"
CANARY = "/root/adversary-canary"  # root-only; an attack tries to read, move or change it
PWNED = "/tmp/adversary-pwned"  # attacker code appends `id -u` here when it runs
ROOT_ONLY = "/root/adversary-secret"  # a root-only file an attacker wants to read


def attacker(lab: Lab, script: str) -> str:
    """Run a shell script as the service user inside the box; must succeed."""
    return lab.sh(f"runuser -u {USER} -- sh -c {shlex.quote(script)}")


def payload(tag: str) -> str:
    """Shell code an attacker plants: it records who ran it (uid) and where."""
    return f"id -u >> {PWNED}; echo {tag} >> {PWNED}.where"


def plant_git_config(lab: Lab) -> None:
    """What `zachot` can put in .git: every key that makes git run a command, and hooks."""
    hook = f"#!/bin/sh\n{payload('hook')}\n"
    attacker(
        lab,
        f"""
        cd {REPO}
        git config core.fsmonitor '{payload("fsmonitor")}; false'
        git config core.pager '{payload("pager")}; cat'
        git config diff.external '{payload("diff")}'
        git config core.sshCommand '{payload("ssh")}; ssh'
        for h in post-checkout post-merge reference-transaction pre-auto-gc; do
            printf '%s' '{hook}' > .git/hooks/$h && chmod +x .git/hooks/$h
        done
        """,
    )


def ran_as_root(lab: Lab) -> list[str]:
    """Where attacker code ran with uid 0 (empty: it never did)."""
    said = lab.fleet.exec(lab.box, ["sh", "-c", f"paste -d' ' {PWNED} {PWNED}.where 2>/dev/null"])
    return [ln for ln in said.stdout.splitlines() if ln.split()[:1] == ["0"]]


def canary_state(lab: Lab) -> str:
    return lab.sh(f"stat -c '%U:%G %a %s %Y' {CANARY} && sha256sum {CANARY}")


def setup_canaries(lab: Lab) -> str:
    """A root-only canary and a root-only secret; returns the secret's text."""
    secret = f"root-only-{secrets.token_hex(10)}"
    lab.sh(
        f"umask 077; echo canary-{secrets.token_hex(6)} > {CANARY}; "
        f"printf '%s\\n' {secret} > {ROOT_ONLY}; rm -f {PWNED} {PWNED}.where; "
        f"install -m 0622 -o {USER} -g {USER} /dev/null {PWNED}; "
        f"install -m 0622 -o {USER} -g {USER} /dev/null {PWNED}.where"
    )
    return secret


def env_secrets(lab: Lab) -> list[str]:
    """The env file's values that look secret (the masker's own rule: 6+ chars, not digits)."""
    values = []
    for line in lab.sh(f"cat {ENV}").splitlines():
        key, sep, value = line.partition("=")
        if sep and not key.startswith("#") and len(value) >= 6 and not value.isdigit():
            values.append(value)
    return values


def assert_no_secret(texts: list[str], found: list[str]) -> None:
    for secret in found:
        for text in texts:
            assert secret not in text, f"secret {secret[:4]}… leaked"


def one_line_error(stderr: str) -> str:
    """The refusal: exactly one line that is not a traceback."""
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    assert "Traceback" not in stderr, stderr
    assert lines, "no error line"
    return lines[-1]


@pytest.fixture(name="prod6")
def prod6_lab(fleet, tmp_path) -> Iterator[Lab]:
    yield from _lab(fleet, tmp_path, "prod6")


@pytest.fixture(name="prod7")
def prod7_lab(fleet, tmp_path) -> Iterator[Lab]:
    yield from _lab(fleet, tmp_path, "prod7")


@pytest.fixture(name="prod12")
def prod12_lab(fleet, tmp_path) -> Iterator[Lab]:
    yield from _lab(fleet, tmp_path, "prod12")


@pytest.fixture(name="prod13")
def prod13_lab(fleet, tmp_path) -> Iterator[Lab]:
    yield from _lab(fleet, tmp_path, "prod13")
