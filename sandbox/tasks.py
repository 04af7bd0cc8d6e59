"""Invoke tasks: `invoke sandbox.up|down|reset|status` once wired into the top-level tasks.py."""

from __future__ import annotations

import time
from pathlib import Path

from invoke import Collection, task
from invoke.exceptions import Exit

from sandbox import fleet
from sandbox import wan as wan_mod
from sandbox.config import Paths
from sandbox.state import recorded_specs
from sandbox.status import print_status


@task(
    help={
        "extra_prod": "also boot N more prod-like boxes, named prod2..prodN+1",
        "wan": "also start WAN mode, e.g. 30ms,100mbit (see sandbox.wan)",
    }
)
def up(c, extra_prod=0, wan=None):
    """Build (once) and boot the fleet: prod, new-box, vault; write sandbox/inventory.yml."""
    t0 = time.monotonic()
    inventory = fleet.up(extra_prod=int(extra_prod))
    print(f"fleet up in {time.monotonic() - t0:.1f}s; inventory: {inventory}")
    if wan:
        _wan_on(wan)
    print_status()


@task(
    positional=["link"],
    help={"link": "round-trip time and bandwidth cap (e.g. 30ms,100mbit), `off`, or `show`"},
)
def wan(c, link):
    """WAN mode for the running fleet: every box behind a user-space link (sandbox/wan.py);
    use it with ZACHOT_INVENTORY=sandbox/inventory-wan.yml. `off` stops it."""
    if link == "off":
        wan_mod.stop(Paths())
        print("WAN mode off")
    elif link == "show":
        print(f"WAN mode: {wan_mod.running(Paths()) or 'off'}")
    else:
        _wan_on(link)


def _wan_on(link: str) -> None:
    try:
        spec = wan_mod.LinkSpec.parse(link)
        paths = Paths()
        inventory = wan_mod.enable(paths, recorded_specs(paths), spec)
    except (ValueError, RuntimeError) as exc:
        raise Exit(f"sandbox.wan: {exc}", code=2) from None
    print(f"WAN mode on ({spec}); inventory: {inventory}")


@task(
    help={
        "host": "the inventory host whose history is written (default prod)",
        "days": "how far back, in days (default 730)",
        "store": "local store to write into (default: the inventory's store)",
        "offsite_dir": "directory on the vault (default: the inventory's backup.offsite_dir)",
        "inventory": "inventory to read (default sandbox/inventory.yml; the WAN one works too)",
    }
)
def history(c, host="prod", days=730, store=None, offsite_dir=None, inventory=None):
    """A store with history: daily env and units, weekly logs, monthly Redis dumps, cloned
    from one real backup of each kind, into the local store and onto the vault."""
    # Lazy: the fabfile package is heavy, and only this task needs it.
    from fabfile.core.errors import ZachotError
    from sandbox import history as history_mod
    from sandbox.config import INVENTORY

    t0 = time.monotonic()
    try:
        done = history_mod.generate(
            Path(inventory) if inventory else INVENTORY,
            host,
            int(days),
            store=Path(store).expanduser() if store else None,
            offsite_dir=offsite_dir,
        )
    except (RuntimeError, ValueError, ZachotError) as exc:
        raise Exit(f"sandbox.history: {exc}", code=1) from None
    print(f"{done.summary()} ({time.monotonic() - t0:.1f} s)")


@task
def down(c):
    """Stop every box and remove its netns, veth, mounts, the repo/wheel server, the WAN proxy."""
    fleet.down()
    print("sandbox down")


@task(help={"box": "box name, e.g. prod or new-box"})
def reset(c, box):
    """Put one box back to its initial state (drops its overlay; no rebuild)."""
    t0 = time.monotonic()
    fleet.reset(box)
    print(f"{box} reset in {time.monotonic() - t0:.1f}s")


@task
def status(c):
    """Show each box, its address and its service states."""
    print_status()


ns = Collection("sandbox", up, down, reset, status, wan, history)
