"""An Ansible inventory as operators have them: ansible_* variables and nested groups."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import pytest

from fabfile.core.inventory import load_inventory

pytestmark = pytest.mark.unit

ANSIBLE_STYLE = Path(__file__).resolve().parents[1] / "ansible_inventory.yml"


def load(tmp_path: Path, text: str):
    path = tmp_path / "hosts.yml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return load_inventory(path)


def test_connection_variables_are_ours(capsys):
    inv = load_inventory(ANSIBLE_STYLE)
    prod, worker = inv.host("prod"), inv.host("worker1")
    assert (prod.address, prod.port, prod.user, prod.sudo) == ("192.0.2.10", 2222, "deploy", True)
    assert prod.identity_file == Path("~/.ssh/prod").expanduser()
    assert (worker.address, worker.port, worker.sudo) == ("192.0.2.11", 2200, False)
    # Other ansible_* variables: one note per key on stderr, not an error.
    err = capsys.readouterr().err
    assert err.count("ansible_python_interpreter") == 1
    assert err.count("ansible_connection") == 1
    assert "ignored" in err


def test_a_group_named_in_several_places_is_one_group():
    inv = load_inventory(ANSIBLE_STYLE)
    assert inv.groups == {
        "all": ("prod", "worker1", "mail", "db1"),
        "production": ("prod", "worker1"),
        "web": ("prod",),
        "workers": ("prod", "worker1"),
        "europe": ("prod",),
        "dbservers": ("db1", "prod", "worker1"),  # a top-level group, as in Ansible
    }
    assert inv.host("prod").groups == ("production", "web", "workers", "europe", "dbservers")
    assert [h.name for h in inv.resolve("production")] == ["prod", "worker1"]
    # Ansible's implicit 'ungrouped': its hosts belong to all only.
    assert inv.host("mail").groups == ()
    assert inv.host("mail").address == "192.0.2.20"


def test_precedence_is_ansibles_child_over_parent_then_name(tmp_path):
    # 'web' is listed at top level before 'production' names it as a child: its depth is
    # still 2 (the longest path from all), so its vars beat production's, as in Ansible.
    inv = load(
        tmp_path,
        """
        all:
          vars: {port: 1}
          children:
            web:
              vars: {port: 3, user: web}
              hosts: {prod: }
            production:
              vars: {port: 2, user: production, connect_timeout: 7}
              children: {web: }
            alpha:
              vars: {user: alpha}
              hosts: {prod: }
        """,
    )
    prod = inv.host("prod")
    assert (prod.port, prod.connect_timeout) == (3, 7.0)
    # alpha and production share depth 1 and sort by name; web (depth 2) beats both.
    assert prod.user == "web"


def test_same_value_under_both_names_is_fine(tmp_path):
    inv = load(
        tmp_path, "all:\n  hosts:\n    prod: {address: 192.0.2.1, ansible_host: 192.0.2.1}\n"
    )
    assert inv.host("prod").address == "192.0.2.1"


def test_long_chains_and_diamonds_of_references_are_cheap(tmp_path):
    # References are cheap to write: a chain longer than Python's stack, and diamonds
    # (each group named by two parents) that a naive walk would expand 2**n times.
    count = 1200  # over the default recursion limit (1000), under MAX_NODES
    chain = "".join(f"g{i}:\n  children:\n    g{i + 1}:\n" for i in range(count))
    diamonds = "".join(
        f"d{i}:\n  children:\n    l{i}:\n    r{i}:\nl{i}:\n  children:\n    d{i + 1}:\n"
        f"r{i}:\n  children:\n    d{i + 1}:\n"
        for i in range(40)
    )
    text = f"{chain}g{count}:\n  hosts:\n    h:\n{diamonds}d40:\n  hosts:\n    k:\n"
    started = time.monotonic()
    inv = load(tmp_path, text)
    assert time.monotonic() - started < 30.0  # PyYAML parsing is most of it; 2**40 is not
    assert inv.groups["g0"] == ("h",) and inv.groups["d0"] == ("k",)
    assert len(inv.host("h").groups) == count + 1
