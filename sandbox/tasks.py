"""Invoke tasks: `invoke sandbox.up|down|reset|status` once wired into the top-level tasks.py."""

from __future__ import annotations

import time

from invoke import Collection, task

from sandbox import fleet
from sandbox.status import print_status


@task(help={"extra_prod": "also boot N more prod-like boxes, named prod2..prodN+1"})
def up(c, extra_prod=0):
    """Build (once) and boot the fleet: prod, new-box, vault; write sandbox/inventory.yml."""
    t0 = time.monotonic()
    inventory = fleet.up(extra_prod=int(extra_prod))
    print(f"fleet up in {time.monotonic() - t0:.1f}s; inventory: {inventory}")
    print_status()


@task
def down(c):
    """Stop every box and remove its netns, veth, mounts and the repo/wheel server."""
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


ns = Collection("sandbox", up, down, reset, status)
