"""WAN mode and the history generator on the sandbox (issue 12, §2 and §3).

WAN: the user-space link in sandbox/wan.py fronts the boxes; a box seen through it answers
one round trip later and streams at the link's rate. History: sandbox/history.py writes a
store of cloned real backups, locally and onto the vault, that the project's own list,
verify and replicate accept as their own. Both use prod7 (reset before and after by the
fault lab) and a private directory on the vault, removed afterwards.
"""

from __future__ import annotations

import dataclasses
import json
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from sandbox import wan
from sandbox.config import Paths
from sandbox.history import generate
from sandbox.inventory import wan_inventory_data
from sandbox.state import recorded_specs
from tests.integration.faults.lab import Lab, _lab

pytestmark = pytest.mark.integration

BOX = "prod7"
LINK = wan.LinkSpec.parse("30ms,100mbit")
PULL = 10_000_000


@pytest.fixture(name="prod7")
def prod7_lab(fleet, tmp_path) -> Iterator[Lab]:
    yield from _lab(fleet, tmp_path, BOX)


@pytest.fixture
def link(fleet) -> Iterator[wan.LinkSpec]:
    """The running WAN link; started at 30ms,100mbit for this test (and stopped) if off."""
    paths = Paths()
    running = wan.running(paths)
    if running is None:
        wan.enable(paths, recorded_specs(paths), LINK)
    try:
        yield running or LINK
    finally:
        if running is None:
            wan.stop(paths)


def wan_lab_inventory(lab: Lab) -> Path:
    """This lab's inventory (private store) with every host behind its WAN proxy port."""
    paths = Paths()
    ports = {s.name: wan.proxy_port(s) for s in recorded_specs(paths)}
    data = wan_inventory_data(
        yaml.safe_load(lab.inventory.read_text()), ports, wan.known_hosts_file(paths)
    )
    path = lab.tmp / "inventory-wan.yml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def banner_seconds(address: str, port: int) -> float:
    """Connect and wait for sshd's banner: through the link, half an RTT out, half back."""
    t0 = time.monotonic()
    with socket.create_connection((address, port), timeout=10) as sock:
        assert sock.recv(64).startswith(b"SSH-2.0-")
        return time.monotonic() - t0


def test_wan_link_adds_its_round_trip_and_caps_the_rate(fleet, prod7: Lab, link) -> None:
    spec = next(s for s in recorded_specs(Paths()) if s.name == BOX)
    port = wan.proxy_port(spec)
    # sshd's own start-up (about 20 ms) is in both; the link adds one round trip.
    added = min(banner_seconds("127.0.0.1", port) for _ in range(5))
    added -= min(banner_seconds(spec.address, 22) for _ in range(5))
    assert 0.6 * link.rtt <= added <= 1.5 * link.rtt + 0.01, f"{added * 1000:.1f} ms added"

    # The project's own client through the WAN inventory: host keys check out, it connects.
    inventory = wan_lab_inventory(prod7)
    fab = dataclasses.replace(prod7.fleet, inventory=inventory)
    t0 = time.monotonic()
    done = fab.fab("-H", BOX, "hosts.ping")
    ping = time.monotonic() - t0
    assert done.returncode == 0, done.stdout + done.stderr
    assert ping >= 5 * link.rtt  # TCP, banners, kex, auth, channel, exec: several trips

    # A 10 MB pull through OpenSSH takes about 10 MB at the link's rate.
    known = wan.known_hosts_file(Paths())
    argv = ["ssh", "-F", "/dev/null", "-i", str(fleet.key), "-o", f"UserKnownHostsFile={known}"]
    argv += ["-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes"]
    argv += ["-p", str(port), "ops@127.0.0.1", f"head -c {PULL} /dev/zero"]
    t0 = time.monotonic()
    pulled = subprocess.run(argv, capture_output=True, timeout=120)
    seconds = time.monotonic() - t0
    assert pulled.returncode == 0 and len(pulled.stdout) == PULL, pulled.stderr
    data_time = PULL / link.rate
    assert data_time <= seconds <= data_time * 1.3 + 20 * link.rtt, f"{seconds:.2f} s"


def test_wan_proxy_reaches_only_the_boxes() -> None:
    for address in ("127.0.0.1", "10.231.1.1", "8.8.8.8"):
        with pytest.raises(ValueError, match="not a sandbox box"):
            wan.check_target(address)


def test_generated_history_is_accepted_by_list_verify_and_replicate(prod7: Lab) -> None:
    prod7.configure(offsite=True)
    history = generate(prod7.inventory, BOX, 120, offsite_dir=prod7.offsite_dir)
    assert history.written == {"env": 120, "units": 120, "logs": 18, "redis": 4}
    assert history.offsite == history.written, history.summary()

    listed = prod7.fab("backup.list", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert Counter(r["kind"] for r in rows) == Counter(history.written)
    assert prod7.store.problems(BOX) == []

    verified = prod7.fab("backup.verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr

    dry = prod7.fab("backup.replicate", "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "would send" not in dry.stdout  # the vault already holds every one
