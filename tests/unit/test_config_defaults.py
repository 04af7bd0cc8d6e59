"""Issue 13 §1/§6: defaults from the inventory and config, and the small status fixes."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path

import pytest

from fabfile.backup import pull
from fabfile.backup import verify as verify_task
from fabfile.core.checklist import status as fleet
from fabfile.core.checklist.model import RedisFacts
from fabfile.core.dramatiq_queues import read_report
from fabfile.core.errors import ExitCode, InventoryError, UsageError
from fabfile.core.inventory import Inventory, load_inventory
from fabfile.core.offsite import OffsiteState
from fabfile.core.recovery import origin_of
from fabfile.core.restores.server_options import PipSource

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 30, 11, 0, tzinfo=UTC)


def inventory(tmp_path: Path, new_box: str) -> Inventory:
    wheels = tmp_path / "wheels"
    wheels.mkdir(exist_ok=True)
    (wheels / "a-1-py3-none-any.whl").write_bytes(b"")
    path = tmp_path / "inventory.yml"
    path.write_text(
        "all:\n  hosts:\n    prod: {address: 10.0.0.1}\n"
        f"    new-box: {new_box}\n"
        f"  vars:\n    restore: {{wheelhouse: {wheels}}}\n"
    )
    return load_inventory(path)


def test_replaces_is_the_default_source_and_the_plan_says_why(tmp_path):
    inv = inventory(tmp_path, "{address: 10.0.0.2, scratch: true, replaces: prod}")
    new = inv.host("new-box")
    origin, said = origin_of(inv, new, None)
    assert origin.name == "prod"
    assert said == "source prod (inventory: new-box replaces prod)"
    assert origin_of(inv, new, "new-box") == (new, "")  # --source wins, the title names it
    assert origin_of(inv, inv.host("prod"), None) == (inv.host("prod"), "")


def test_replaces_must_name_another_known_host(tmp_path):
    inv = inventory(tmp_path, "{address: 10.0.0.2, replaces: new-box}")
    with pytest.raises(UsageError, match="replaces itself"):
        origin_of(inv, inv.host("new-box"), None)
    inv = inventory(tmp_path, "{address: 10.0.0.2, replaces: prod9}")
    with pytest.raises(UsageError, match="prod9"):
        origin_of(inv, inv.host("new-box"), None)
    with pytest.raises(InventoryError, match="replaces"):
        inventory(tmp_path, "{address: 10.0.0.2, replaces: 'a b'}")


def test_pip_source_falls_back_to_the_inventory_wheelhouse(tmp_path):
    host = inventory(tmp_path, "{address: 10.0.0.2}").host("new-box")
    assert PipSource.for_host(host, None, None, None).wheelhouse == tmp_path / "wheels"
    given = PipSource.for_host(host, None, None, "http://10.0.0.9/simple")
    assert given == PipSource(index_url="http://10.0.0.9/simple")  # a flag replaces it
    bare = dataclasses.replace(host, restore=type(host.restore)())
    assert PipSource.for_host(bare, None, None, None) == PipSource()


def test_backup_all_switches_come_from_the_config():
    assert pull._switch(None, True, "--offsite") is True
    assert pull._switch(None, False, "--logs") is False
    assert pull._switch(True, False, "--logs") is True
    assert pull._switch("no", True, "--offsite") is False
    with pytest.raises(UsageError, match="--logs=maybe"):
        pull._switch("maybe", True, "--logs")


def test_config_defaults_are_held_once_at_the_root():
    from fabfile import ns

    config = ns.configuration()
    assert config["restore"]["health_timeout"] == 60
    backup = ns.collections["backup"].configuration()["backup"]
    assert (backup["logs"], backup["offsite"], backup["parallel"]) == (False, True, 1)
    # Deploys and the root tasks (drill, checklist) see restore.health_timeout too.
    assert ns.configuration("deploy.rollback")["restore"]["health_timeout"] == 60


def test_an_empty_scratch_host_is_a_row_not_a_failure():
    empty = fleet.HostStatus("new-box", empty_scratch=True, health="URLError",
                             units={"zachot-api.service": "inactive"})  # fmt: skip
    assert fleet.row(empty, NOW)[1] == "empty scratch host"
    assert fleet.outcome(empty).ok and fleet.as_json(empty)["empty_scratch"] is True


def test_a_changed_host_key_exits_5_in_status():
    down = fleet.HostStatus("prod", down="host key changed", down_code=ExitCode.HOST_KEY)
    assert fleet.outcome(down).exit_code == ExitCode.HOST_KEY == 5
    assert fleet.outcome(fleet.HostStatus("prod", down="refused")).exit_code == 4


class FakeRedis:
    """The few commands read_report sends; heartbeats at the given ages (seconds)."""

    def __init__(self, ages: list[float]) -> None:
        self.now_ms = 1_800_000_000_000
        self.beats = [self.now_ms - int(a * 1000) for a in ages]

    def time(self):
        return self.now_ms // 1000, (self.now_ms % 1000) * 1000

    def zcount(self, key, low, high):
        return sum(1 for b in self.beats if b > int(str(low).lstrip("(")))

    def zcard(self, key):
        return len(self.beats)

    def pipeline(self, transaction=False):
        class Pipe:
            def __getattr__(self, name):
                return lambda *a: None

            def execute(self):
                return [0, 0, 0]

        return Pipe()

    def scan_iter(self, match, count):
        return iter(())


def test_stale_heartbeats_are_shown_apart_and_the_timeout_is_configurable():
    client = FakeRedis([1, 30, 90, 600])
    report = read_report(client, "dramatiq", ("default",))
    assert (report.workers_alive, report.workers_known) == (2, 4)
    assert read_report(client, "dramatiq", ("default",), timeout_ms=10_000).workers_alive == 1
    facts = RedisFacts(True, "PONG", 2, {}, workers_stale=2)
    up = fleet.HostStatus("prod", redis=facts, health="200")
    assert fleet.row(up, NOW)[2] == "up, 2 live worker(s), 2 stale"
    assert fleet.as_json(up)["redis"]["workers_stale"] == 2


def test_heartbeat_timeout_is_an_inventory_key(tmp_path):
    inv = inventory(tmp_path, "{address: 10.0.0.2, dramatiq: {heartbeat_timeout: 30}}")
    assert inv.host("new-box").dramatiq.heartbeat_timeout == 30.0
    with pytest.raises(InventoryError, match="heartbeat_timeout"):
        inventory(tmp_path, "{address: 10.0.0.2, dramatiq: {heartbeat_timeout: 0}}")


def test_verify_summarises_present_offsite_rows_unless_verbose():
    ids = [f"202611{d:02d}T020000Z" for d in range(1, 13)]
    states = [OffsiteState("prod", "env", i, True, "complete", True, "intact") for i in ids]
    states.append(OffsiteState("prod", "units", ids[0], True, "missing", False, "not there"))
    shown = verify_task.summarised(states)
    assert [(s.kind, s.id, s.ok) for s in shown] == [("env", ids[-1], True),
                                                     ("units", ids[0], False)]  # fmt: skip
    assert shown[0].detail == "intact; and 11 older present"
    assert verify_task.summarised(states[:1])[0].detail == "intact"


def test_nspawn_cleanup_noise_is_hidden_and_real_errors_are_kept():
    from sandbox.nspawn import without_noise

    said = (
        'Attempted to remove disk file system under "/run/systemd/nspawn/propagate/x", '
        "and we can't allow that.\n"
        "E: Unable to locate package foo\n"
    )
    assert without_noise(said) == "E: Unable to locate package foo\n"
