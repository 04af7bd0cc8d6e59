"""hosts.* through the real fab CLI against the real sshd."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from tests.sshd.helpers import ROOT, write_inventory

pytestmark = pytest.mark.sshd

FAB = Path(sys.executable).parent / "fab"


def fab(inventory: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "ZACHOT_INVENTORY": str(inventory)}
    return subprocess.run(
        [str(FAB), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def test_exec_runs_over_the_verified_connection_and_keeps_the_exit_code(sshd, tmp_path):
    inventory = write_inventory(sshd.host, tmp_path / "inv.yml")
    ok = fab(inventory, "-H", "local", "hosts.exec", "--command", "echo hello; id -un")
    assert ok.returncode == 0, ok.stderr
    assert "local: hello" in ok.stdout and "local: root" in ok.stdout
    failed = fab(inventory, "-H", "local", "hosts.exec", "--command", "exit 3")
    assert failed.returncode == 1 and "exited 3" in failed.stderr


def test_fabric_ad_hoc_form_resolves_through_the_inventory(sshd, tmp_path):
    inventory = write_inventory(sshd.host, tmp_path / "inv.yml")
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    ok = subprocess.run(
        [str(FAB), "-H", "local", "--", "echo hello; id -un"],
        cwd=elsewhere,  # the tasks are bound into our fab: any directory will do
        env={**os.environ, "ZACHOT_INVENTORY": str(inventory)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ok.returncode == 0, ok.stderr
    assert "local: hello" in ok.stdout and "local: root" in ok.stdout
    failed = fab(inventory, "-H", "local", "--", "exit 3")
    assert failed.returncode == 1 and "exited 3" in failed.stderr


def test_ad_hoc_form_refuses_an_unknown_key_before_running_anything(sshd, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    inventory = write_inventory(replace(sshd.host, known_hosts=empty), tmp_path / "inv.yml")
    canary = tmp_path / "adhoc-canary"
    refused = fab(inventory, "-H", "local", "--", f"touch {canary}")
    assert refused.returncode == 5
    assert "SHA256:" in refused.stderr and "Traceback" not in refused.stderr
    assert not canary.exists()


def test_unknown_key_is_refused_then_trusted_with_its_fingerprint(sshd, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    inventory = write_inventory(replace(sshd.host, known_hosts=empty), tmp_path / "inv.yml")
    refused = fab(inventory, "-H", "local", "hosts.ping")
    assert refused.returncode == 5
    assert "SHA256:" in refused.stderr and "hosts.trust" in refused.stderr
    trusted = fab(inventory, "-H", "local", "hosts.trust", "--yes")
    assert trusted.returncode == 0, trusted.stderr
    assert "SHA256:" in trusted.stdout
    assert fab(inventory, "-H", "local", "hosts.ping").returncode == 0
    again = fab(inventory, "-H", "local", "hosts.trust", "--yes")
    assert "already trusted" in again.stdout
