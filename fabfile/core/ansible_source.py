"""Ansible's side of the inventory: its connection variables, and any inventory source
Ansible reads (INI files, dynamic inventory plugins, scripts, directories) through
`ansible-inventory --list --export`, turned into our YAML shape for inventory.py to check.

Our own YAML files never go through here: they keep their line numbers and need no
Ansible. Running a source runs the operator's own plugin or script, as Ansible would.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, get_type_hints

import yaml

from .errors import InventoryError
from .model import Host

# Ansible's connection variables, read as our own keys (ansible_ssh_* are the older
# spellings Ansible still honours). Other ansible_* variables are Ansible's business.
EQUIVALENTS = {
    "ansible_host": "address",
    "ansible_ssh_host": "address",
    "ansible_port": "port",
    "ansible_ssh_port": "port",
    "ansible_user": "user",
    "ansible_ssh_user": "user",
    "ansible_ssh_private_key_file": "identity_file",
    "ansible_become": "sudo",
}
TIMEOUT = 60.0  # seconds; a dynamic plugin may call a cloud API
# INI sources give every value as a string; Ansible turns these into booleans.
_TRUE, _FALSE = {"true", "yes", "on", "1"}, {"false", "no", "off", "0"}
_BOOLS = {name for name, hint in get_type_hints(Host).items() if hint is bool}
_BOOL_KEYS = _BOOLS | {ansible for ansible, ours in EQUIVALENTS.items() if ours in _BOOLS}


def is_ansible_source(path: Path, text: str | None) -> bool:
    """Not a YAML file in our shape: a directory, another format, or a plugin's config."""
    if path.is_dir() or path.suffix not in (".yml", ".yaml"):
        return True
    return text is not None and any(line.startswith("plugin:") for line in text.splitlines())


def as_our_yaml(path: Path) -> str:
    """The source as ansible-inventory sees it, written in our YAML shape."""
    listing = _ansible_list(path)
    meta = listing.get("_meta", {}).get("hostvars", {})
    top = listing.get("all", {})
    hosts = {name: _vars(meta.get(name, {})) or None for name in _all_hosts(listing)}
    children: dict[str, Any] = {}
    for name, entry in listing.items():
        if name in ("_meta", "all", "ungrouped"):
            continue
        body: dict[str, Any] = {}
        if entry.get("vars"):
            body["vars"] = _vars(entry["vars"])
        if entry.get("hosts"):
            body["hosts"] = dict.fromkeys(entry["hosts"])
        if entry.get("children"):
            body["children"] = dict.fromkeys(c for c in entry["children"] if c != "ungrouped")
        children[name] = body or None
    shaped = {"all": {"vars": _vars(top.get("vars", {})), "hosts": hosts, "children": children}}
    return yaml.safe_dump(shaped, sort_keys=False)


def _vars(values: dict[str, Any]) -> dict[str, Any]:
    return {
        key: _boolean(value) if key in _BOOL_KEYS and isinstance(value, str) else value
        for key, value in values.items()
    }


def _boolean(value: str) -> bool | str:
    lowered = value.strip().lower()
    return True if lowered in _TRUE else False if lowered in _FALSE else value


def _all_hosts(listing: dict[str, Any]) -> list[str]:
    names = list(listing.get("_meta", {}).get("hostvars", {}))
    for entry in listing.values():
        if isinstance(entry, dict):
            names.extend(entry.get("hosts", []))
    return list(dict.fromkeys(names))


def _program() -> str | None:
    beside = Path(sys.executable).parent / "ansible-inventory"  # our venv, not on PATH
    return str(beside) if beside.exists() else shutil.which("ansible-inventory")


def _ansible_list(path: Path) -> dict[str, Any]:
    program = _program()
    if program is None:
        raise InventoryError(
            path,
            "",
            "not a YAML inventory in this toolkit's shape; reading another Ansible source "
            "needs ansible-inventory (pip install ansible-core)",
        )
    env = {**os.environ, "ANSIBLE_INVENTORY_UNPARSED_FAILED": "true"}
    argv = [program, "--list", "--export", "-i", str(path)]
    try:
        done = subprocess.run(
            argv, env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InventoryError(path, "", f"ansible-inventory did not run: {exc}") from None
    if done.returncode != 0:
        said = [line for line in done.stderr.splitlines() if line.strip()]
        last = said[-1].strip() if said else f"exit {done.returncode}"
        raise InventoryError(path, "", f"ansible-inventory cannot read it: {last}")
    try:
        return json.loads(done.stdout)
    except ValueError:
        raise InventoryError(path, "", "ansible-inventory printed no JSON") from None
