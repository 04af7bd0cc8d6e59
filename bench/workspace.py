"""A temporary local workspace: copies of the sandbox inventory whose store is a temp dir,
so benchmark archives never land in the shared sandbox store."""

from __future__ import annotations

import itertools
import shutil
import tempfile
from pathlib import Path

import yaml

from fabfile.core.inventory import load_inventory
from fabfile.core.model import Host

from .measure import BenchError
from .settings import SANDBOX_INVENTORY


class Workspace:
    def __init__(self, source: Path = SANDBOX_INVENTORY) -> None:
        if not source.exists():
            raise BenchError(f"{source} is missing; bring the sandbox up: invoke sandbox.up")
        self.source = source
        self.root = Path(tempfile.mkdtemp(prefix="zachot-bench-"))
        self._ids = itertools.count(1)

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def path(self, name: str) -> Path:
        return self.root / name

    def fresh_store(self) -> tuple[Path, Path]:
        """A new empty store and an inventory pointing at it: (inventory, store)."""
        n = next(self._ids)
        store = self.root / f"store-{n}"
        data = yaml.safe_load(self.source.read_text())
        data["all"]["vars"].setdefault("store", {})["path"] = str(store)
        inventory = self.root / f"inventory-{n}.yml"
        inventory.write_text(yaml.safe_dump(data, sort_keys=False))
        return inventory, store

    def drop_store(self, store: Path) -> None:
        shutil.rmtree(store, ignore_errors=True)

    def host(self, name: str) -> Host:
        return load_inventory(self.source).hosts[name]
