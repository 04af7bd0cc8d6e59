"""The sudo probe rides on the first sudo command: a far link charges every channel a round
trip, and a separate `sudo -n true` was one more per task on every host."""

from __future__ import annotations

import pytest

from fabfile.core.inventory import load_inventory
from fabfile.core.transport import Transport

pytestmark = pytest.mark.integration

BOX = "prod11"  # read-only here: two harmless commands as root


def test_first_sudo_command_is_also_the_sudo_probe(fleet, monkeypatch) -> None:
    commands: list[str] = []
    exchange = Transport._exchange

    def counted(self, command, **kwargs):
        commands.append(command)
        return exchange(self, command, **kwargs)

    monkeypatch.setattr(Transport, "_exchange", counted)
    host = load_inventory(fleet.inventory).host(BOX)
    with Transport(host) as transport:
        assert transport.run(["id", "-u"], sudo=True).stdout.strip() == "0"
        assert transport.run(["id", "-un"], sudo=True).stdout.strip() == "root"
    assert commands == ["sudo -n -- id -u", "sudo -n -- id -un"]
