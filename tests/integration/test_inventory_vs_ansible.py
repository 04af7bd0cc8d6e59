"""The real ansible-inventory and this toolkit read the same files the same way:
the same hosts, group memberships, addresses and connection settings."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
from pathlib import Path

import pytest

from fabfile.core.errors import InventoryError
from fabfile.core.inventory import load_inventory

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ANSIBLE_STYLE = ROOT / "tests" / "ansible_inventory.yml"
ANSIBLE_INVENTORY = ROOT / ".venv" / "bin" / "ansible-inventory"
# What Ansible calls our connection keys; ansible_* spellings win in Ansible's eyes.
CONNECTION = {
    "address": "ansible_host",
    "port": "ansible_port",
    "user": "ansible_user",
    "sudo": "ansible_become",
}


def ansible_view(path: Path, tmp_path: Path) -> dict:
    env = {
        **os.environ,
        "ANSIBLE_INVENTORY_UNPARSED_FAILED": "true",  # a file Ansible cannot read fails
        "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp"),
        "ANSIBLE_HOME": str(tmp_path / "ansible-home"),
    }
    done = subprocess.run(
        [str(ANSIBLE_INVENTORY), "--list", "-i", str(path)],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def memberships(listing: dict) -> dict[str, set[str]]:
    """Every group's hosts, recursively, from ansible-inventory's --list JSON."""

    def hosts_of(group: str) -> set[str]:
        entry = listing.get(group, {})
        found = set(entry.get("hosts", []))
        for child in entry.get("children", []):
            found |= hosts_of(child)
        return found

    names = [name for name in listing if name != "_meta"]
    return {name: hosts_of(name) for name in names}


def agree(path: Path, tmp_path: Path) -> None:
    listing = ansible_view(path, tmp_path)
    ours = load_inventory(path)
    theirs = memberships(listing)
    hostvars = listing["_meta"]["hostvars"]
    assert set(hostvars) | theirs["all"] == set(ours.hosts)
    # Ansible adds 'ungrouped': the hosts in no group but all.
    assert theirs.pop("ungrouped", set()) == {
        name for name, host in ours.hosts.items() if not host.groups
    }
    assert theirs == {name: set(members) for name, members in ours.groups.items()}
    for name, host in ours.hosts.items():
        seen = hostvars.get(name, {})
        for field, ansible_name in CONNECTION.items():
            theirs_value = seen.get(ansible_name, seen.get(field))
            if field == "sudo" and theirs_value is None:
                theirs_value = True  # our default; Ansible's is a different tool's choice
            assert getattr(host, field) == theirs_value, (path.name, name, field)
        key = seen.get("ansible_ssh_private_key_file", seen.get("identity_file"))
        expected = path.parent / Path(key).expanduser() if key else None
        assert host.identity_file == expected, (path.name, name, "identity_file")


def test_example_inventory(tmp_path):
    agree(ROOT / "inventory.yml", tmp_path)


def test_sandbox_inventory(fleet, tmp_path):
    agree(fleet.inventory, tmp_path)


def test_ansible_style_inventory(tmp_path):
    agree(ANSIBLE_STYLE, tmp_path)


def test_any_ansible_source_reads_through_ansible_inventory(capsys):
    # An INI file is not our YAML: it is read as ansible-inventory reads it (INI gives
    # strings, "false" included), then checked like ours. It says what the YAML says.
    from_ini = load_inventory(ANSIBLE_STYLE.with_suffix(".ini"))
    from_yaml = load_inventory(ANSIBLE_STYLE)
    assert {name: set(members) for name, members in from_ini.groups.items()} == {
        name: set(members) for name, members in from_yaml.groups.items()
    }
    assert set(from_ini.hosts) == set(from_yaml.hosts)
    for name, host in from_ini.hosts.items():
        other = from_yaml.host(name)
        assert set(host.groups) == set(other.groups)
        assert dataclasses.replace(host, groups=()) == dataclasses.replace(other, groups=())
    assert "ansible_connection is an Ansible variable" in capsys.readouterr().err


def test_a_source_ansible_cannot_read_is_one_line(tmp_path):
    broken = tmp_path / "hosts.ini"
    broken.write_text("[web\nprod\n")
    with pytest.raises(InventoryError) as caught:
        load_inventory(broken)
    assert str(caught.value).startswith(f"{broken}: ansible-inventory cannot read it")
    assert "\n" not in str(caught.value)


def test_a_dynamic_inventory_plugin(tmp_path):
    # A plugin's config is YAML too, but not ours: 'plugin:' sends it to ansible-inventory.
    source = tmp_path / "fleet.yml"
    source.write_text(
        "plugin: ansible.builtin.generator\n"
        "hosts:\n  name: '{{ app }}-{{ env }}'\n  parents:\n    - name: '{{ env }}'\n"
        "layers:\n  app: [api]\n  env: [blue, green]\n"
    )
    inv = load_inventory(source)
    assert inv.groups["blue"] == ("api-blue",) and inv.groups["green"] == ("api-green",)
    assert [h.name for h in inv.resolve("blue,green")] == ["api-blue", "api-green"]
    agree(source, tmp_path)
