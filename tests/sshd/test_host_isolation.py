"""Issue 12: one host's surprise must not sink the rest, over real SSH.

Two inventory hosts: `good`, a plain sshd, and `odd`, an sshd whose ForceCommand wrapper (an
audit shim, as some servers have) appends a cut-short agent report to every python3 command's
stderr. Before the fix the JSONDecodeError from odd's report ended the whole multi-host run
with a traceback, and good's results were lost with it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fabfile.core.agent import TRAILER
from fabfile.core.store import Store
from tests.sshd.helpers import ROOT, free_port, make_server, start_sshd, write_inventory

pytestmark = pytest.mark.sshd

FAB = Path(sys.executable).parent / "fab"
WRAPPER = f"""#!/bin/sh
/bin/sh -c "$SSH_ORIGINAL_COMMAND"; rc=$?
case $SSH_ORIGINAL_COMMAND in *python3*) printf '\\n{TRAILER}{{"ok": true, "sha2' >&2;; esac
exit $rc
"""


@pytest.fixture
def odd_port(sshd, tmp_path):
    """A second sshd with the session's keys, running every command through the wrapper."""
    root = tmp_path / "odd-sshd"
    root.mkdir(mode=0o700)
    wrapper = root / "audit-shim"
    wrapper.write_text(WRAPPER)
    wrapper.chmod(0o755)
    port = free_port()
    proc, _log = start_sshd(root, port, sshd.root, f"ForceCommand {wrapper}")
    key_type, key = (sshd.root / "host_key.pub").read_text().split()[:2]
    with sshd.host.known_hosts.open("a") as known:
        known.write(f"[127.0.0.1]:{port} {key_type} {key}\n")
    yield port
    proc.terminate()
    proc.wait(timeout=10)


def two_host_inventory(sshd, tmp_path: Path, odd_port: int) -> Path:
    path = write_inventory(sshd.host, tmp_path / "inv.yml")
    data = yaml.safe_load(path.read_text())
    hosts = {}
    for name, port in (("good", sshd.port), ("odd", odd_port)):
        layout = make_server(tmp_path / f"server-{name}")
        hosts[name] = {
            "address": "127.0.0.1",
            "port": port,
            "layout": {k: v for k, v in vars(layout).items() if v is not None},
        }
    data["all"]["hosts"] = hosts
    data["all"]["vars"]["store"] = {"path": str(tmp_path / "store")}
    path.write_text(yaml.safe_dump(data))
    return path


def fab(inventory: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "ZACHOT_INVENTORY": str(inventory), "NO_COLOR": "1"}
    return subprocess.run(
        [str(FAB), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("parallel", ["1", "2"])
def test_a_malformed_agent_report_is_that_hosts_row(sshd, tmp_path, odd_port, parallel):
    inventory = two_host_inventory(sshd, tmp_path, odd_port)
    run = fab(inventory, "-H", "odd,good", "backup.all", "--parallel", parallel)
    assert "Traceback" not in run.stderr, run.stderr
    assert run.returncode == 3, run.stderr
    rows = {line.split("\t")[0]: line for line in run.stdout.splitlines() if "\t" in line}
    assert rows["good"].split("\t")[1] == "ok"
    assert rows["odd"].split("\t")[1] == "FAILED" and "JSONDecodeError" in rows["odd"]
    assert "1 of 2 hosts failed: odd" in run.stderr
    store = Store(tmp_path / "store")
    assert store.latest("good", "env") is not None and store.latest("good", "units") is not None
    assert store.latest("odd", "env") is None  # nothing half-made for the odd host
