"""Where the sandbox keeps its state and which boxes it runs.

State lives outside the repo (default ~/.cache/zachot-sandbox, or $ZACHOT_SANDBOX_DIR)
so a fresh checkout stays clean; only sandbox/inventory.yml is written inside it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PREFIX = "zt-"  # every netns, veth and machine we create starts with this
SUBNET = "10.231"  # box N gets 10.231.N.2, its host side 10.231.N.1
SERVE_PORT = 8080  # git repo + wheelhouse, bound only to host-side veth addresses
API_PORT = 8000
SANDBOX_PKG = Path(__file__).resolve().parent
INVENTORY = SANDBOX_PKG / "inventory.yml"


def state_dir() -> Path:
    """Root of everything the sandbox generates (images, boxes, keys, pid files)."""
    raw = os.environ.get("ZACHOT_SANDBOX_DIR") or "~/.cache/zachot-sandbox"
    return Path(raw).expanduser().resolve()


@dataclass(frozen=True)
class BoxSpec:
    name: str  # inventory name, also the hostname inside
    index: int  # third octet of its /24
    role: str  # "prod", "new-box" or "vault": which provisioning layer it boots from

    @property
    def ident(self) -> str:
        # Linux interface names are capped at 15 chars: keep "zt-<ident>-h" short.
        return self.name.replace("-", "")[:9]

    @property
    def netns(self) -> str:
        return f"{PREFIX}{self.ident}"

    @property
    def machine(self) -> str:
        return f"{PREFIX}{self.ident}"

    @property
    def veth_host(self) -> str:
        return f"{PREFIX}{self.ident}-h"

    @property
    def veth_box(self) -> str:
        return f"{PREFIX}{self.ident}-c"

    @property
    def host_ip(self) -> str:
        return f"{SUBNET}.{self.index}.1"

    @property
    def address(self) -> str:
        return f"{SUBNET}.{self.index}.2"


def fleet_specs(extra_prod: int = 0) -> list[BoxSpec]:
    """The standard three boxes, plus prod2..prodN+1 that boot from the prod layer."""
    specs = [
        BoxSpec("prod", 1, "prod"),
        BoxSpec("new-box", 2, "new-box"),
        BoxSpec("vault", 3, "vault"),
    ]
    specs += [BoxSpec(f"prod{i}", 2 + i, "prod") for i in range(2, extra_prod + 2)]
    return specs


class Paths:
    """Layout of the state directory; one place so down/reset agree with up."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or state_dir()
        self.images = self.root / "images"
        self.boxes = self.root / "boxes"
        self.serve = self.root / "serve"  # what the host side of the veths serves
        self.repo = self.serve / "zachot.git"
        self.wheels = self.serve / "wheels"
        self.store = self.root / "store"
        self.key = self.root / "ssh" / "id_ed25519"
        self.known_hosts = self.root / "ssh" / "known_hosts"
        self.run = self.root / "run"
        self.fleet_file = self.run / "fleet.json"
        self.server_pid = self.run / "serve.pid"
        self.lock = self.run / "lock"

    def box_dir(self, name: str) -> Path:
        return self.boxes / name
