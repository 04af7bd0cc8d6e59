"""A private corner of the sandbox for one fault test: a fresh box, its own store and inventory.

This suite owns prod8 to prod11: each test gets one of them reset before and after it.
The inventory is a copy of the sandbox's whose store is a temp dir, so a run killed on
purpose never touches another test's store or its lock. The off-site copy is off unless
a test turns it on; then it goes to a `faults-<random>` directory on the shared vault,
which is removed afterwards.

Test modules import the fixtures they use (`from .lab import prod9_lab  # noqa: F401`).
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from fabfile.core.crontab import job_command
from fabfile.core.inventory import load_inventory
from fabfile.core.model import Host
from fabfile.core.store import Store
from tests.integration.conftest import ROOT, Fleet

ENV = "/opt/zachot/envs/prod/etc/zachot.env"
VAULT = "vault"
VAULT_ROOT = "/srv/vault/backups"  # the vault user's SFTP home, seen from inside the box
SERVICES = ("redis-server", "zachot-worker", "zachot-api")


@dataclasses.dataclass
class Lab:
    fleet: Fleet  # its fab() and fab_started() use this lab's inventory
    box: str
    tmp: Path
    store: Store
    offsite_dir: str
    source: Path  # the sandbox's own inventory, which this lab's copies

    @property
    def inventory(self) -> Path:
        return self.fleet.inventory

    def configure(self, *, offsite: bool = False, hosts: dict[str, dict[str, Any]] | None = None):
        """Rewrite this lab's inventory: the off-site copy on or off, per-host overrides."""
        data = yaml.safe_load(self.source.read_text())
        settings = data["all"]["vars"]
        settings["store"] = {**settings.get("store", {}), "path": str(self.store.root)}
        backup = settings.setdefault("backup", {})
        if offsite:
            backup["offsite_dir"] = self.offsite_dir
        else:
            backup.pop("offsite_host", None)
        for name, changes in (hosts or {}).items():
            data["all"]["hosts"][name] = {**(data["all"]["hosts"][name] or {}), **changes}
        self.inventory.write_text(yaml.safe_dump(data, sort_keys=False))

    def host(self, name: str | None = None) -> Host:
        return load_inventory(self.inventory).host(name or self.box)

    def fab(self, *args: str, hosts: str | None = None, timeout: float = 600):
        return self.fleet.fab("-H", hosts or self.box, *args, timeout=timeout)

    def started(self, *args: str, hosts: str | None = None) -> subprocess.Popen[str]:
        return self.fleet.fab_started("-H", hosts or self.box, *args)

    def cron_fires(self, log: Path, timeout: float = 600) -> int:
        """The scheduled job's command line (crontab.job_command), run the way cron runs it:
        /bin/sh, a bare PATH, appending to `log`."""
        fab = Path(sys.executable).parent / "fab"
        command = job_command(project=ROOT, fab=fab, inventory=self.inventory, hosts=self.box,
                              log=log)  # fmt: skip
        env = {"HOME": os.environ.get("HOME", "/root"), "PATH": "/usr/bin:/bin", "SHELL": "/bin/sh"}
        return subprocess.run(["/bin/sh", "-c", command], env=env, timeout=timeout).returncode

    def sh(self, script: str, *, box: str | None = None, timeout: float = 300) -> str:
        """Root shell in the box, not through the code under test; must succeed."""
        said = self.fleet.sh(box or self.box, script, timeout=timeout)
        assert said.returncode == 0, f"{script!r} on {box or self.box}: {said.stderr}"
        return said.stdout

    def sha256(self, path: str, *, box: str | None = None) -> str | None:
        said = self.fleet.exec(box or self.box, ["sha256sum", "--", path])
        return said.stdout.split()[0] if said.returncode == 0 else None

    def active(self) -> list[str]:
        return self.fleet.exec(self.box, ["systemctl", "is-active", *SERVICES]).stdout.split()

    def reaches_repo(self) -> bool:
        """The box can still fetch from the sandbox's repo server: a fault left no damage."""
        url = self.host().layout.repo_url
        return self.fleet.exec(self.box, ["git", "ls-remote", "--heads", url]).returncode == 0

    def healthy(self) -> bool:
        return self.active() == ["active"] * len(SERVICES) and self.fleet.job_processed(self.box)


def _lab(fleet: Fleet, tmp_path: Path, box: str) -> Iterator[Lab]:
    fleet.reset(box)
    store = tmp_path / "store"
    private = dataclasses.replace(fleet, inventory=tmp_path / "inventory.yml")
    offsite_dir = f"faults-{secrets.token_hex(4)}"
    lab = Lab(private, box, tmp_path, Store(store), offsite_dir, fleet.inventory)
    lab.configure()
    try:
        yield lab
    finally:
        fleet.reset(box)  # back to its recorded host key, no mounts, no users, no data
        # Only this test's own directory on the shared vault.
        fleet.exec(VAULT, ["rm", "-rf", "--", f"{VAULT_ROOT}/{lab.offsite_dir}"])


# Imported by name into each test module; the tests ask for `prod9`, `prod10`...
@pytest.fixture(name="prod9")
def prod9_lab(fleet, tmp_path) -> Iterator[Lab]:
    yield from _lab(fleet, tmp_path, "prod9")


@pytest.fixture(name="prod10")
def prod10_lab(fleet, tmp_path) -> Iterator[Lab]:
    yield from _lab(fleet, tmp_path, "prod10")


@pytest.fixture(name="prod11")
def prod11_lab(fleet, tmp_path) -> Iterator[Lab]:
    yield from _lab(fleet, tmp_path, "prod11")


@pytest.fixture(name="prod8")
def prod8_lab(fleet, tmp_path) -> Iterator[Lab]:
    yield from _lab(fleet, tmp_path, "prod8")
