"""Figure 7's setting: the WAN link on, a 730-day history of one box, rsync on the vault.

Everything it changes is undone by close(): the WAN proxy (if it started it), the history's
directory on the vault, the vault's temporary `ops` login and rsync, and the test logs.
"""

from __future__ import annotations

import glob
import secrets
import shlex
from pathlib import Path

import yaml

from fabfile.core.inventory import load_inventory
from fabfile.core.model import Host
from sandbox import box_exec, history, wan
from sandbox.config import Paths
from sandbox.inventory import wan_inventory_data
from sandbox.state import recorded_specs

from .commands import ssh_argv
from .measure import BenchError
from .workspace import Workspace

LINK = wan.LinkSpec.parse("30ms,100mbit")
VAULT = "vault"
RSYNC_DEB = "/var/cache/apt/archives/rsync_*_amd64.deb"
# The vault user is SFTP-only (ForceCommand): rsync logs in as a temporary user allowed
# one thing, `sudo -u vault rsync`, so it reads the vault's files as their owner.
RSYNC_USER = "benchrsync"
RSYNC_SETUP = f"""set -e
id {RSYNC_USER} >/dev/null 2>&1 || useradd -M -s /bin/sh {RSYNC_USER}
echo '{RSYNC_USER} ALL=(vault) NOPASSWD: /usr/bin/rsync' > /etc/sudoers.d/{RSYNC_USER}
chmod 0440 /etc/sudoers.d/{RSYNC_USER}
umask 022; cat > /etc/ssh/authorized_keys/{RSYNC_USER}
"""
RSYNC_TEARDOWN = (
    f"rm -f /etc/ssh/authorized_keys/{RSYNC_USER} /etc/sudoers.d/{RSYNC_USER} /var/tmp/rsync.deb;"
    f" userdel {RSYNC_USER}; dpkg -r rsync"
)


class WanLab:
    def __init__(self, workspace: Workspace, box: str, days: int) -> None:
        self.paths = Paths()
        self.source = workspace.source
        self.box, self.days = box, days
        self.offsite_dir = f"bench-wan-{secrets.token_hex(4)}"
        self.store = workspace.path("wan-store")
        self.local_inventory = workspace.path("wan-local.yml")
        self.inventory = workspace.path("wan.yml")
        self._started_wan = False
        self._rsync_on_vault = False

    def open(self) -> str:
        """Link, inventories, history; returns one line saying what was made."""
        running = wan.running(self.paths)
        if running is not None and running != LINK:
            raise BenchError(f"WAN mode is on at {running}; this figure needs {LINK}")
        specs = recorded_specs(self.paths)
        if running is None:
            wan.enable(self.paths, specs, LINK)
            self._started_wan = True
        data = yaml.safe_load(self.source.read_text())
        settings = data["all"]["vars"]
        settings["store"] = {"path": str(self.store)}
        settings["backup"]["offsite_dir"] = self.offsite_dir
        self.local_inventory.write_text(yaml.safe_dump(data, sort_keys=False))
        ports = {s.name: wan.proxy_port(s) for s in specs}
        wan_data = wan_inventory_data(data, ports, wan.known_hosts_file(self.paths))
        self.inventory.write_text(yaml.safe_dump(wan_data, sort_keys=False))
        made = history.generate(self.local_inventory, self.box, self.days)
        return made.summary()

    def host(self, name: str) -> Host:
        """A host as the WAN inventory has it (address 127.0.0.1, its proxy port)."""
        return load_inventory(self.inventory).host(name)

    def enable_rsync(self) -> None:
        """rsync in the vault (it has no network: the host's .deb, installed there) and a
        temporary key login that may only run rsync as the vault user."""
        debs = sorted(glob.glob(RSYNC_DEB))
        if not debs:
            raise BenchError("no rsync .deb on this machine: apt-get install rsync")
        self._rsync_on_vault = True
        deb = Path(debs[-1]).read_bytes()
        _in_vault(["sh", "-c", "cat > /var/tmp/rsync.deb && dpkg -i /var/tmp/rsync.deb"], deb)
        _in_vault(["sh", "-c", RSYNC_SETUP], self.paths.key.with_suffix(".pub").read_bytes())

    def rsync_argv(self) -> list[str]:
        """`rsync -a --dry-run` of the host's local store to its off-site copy, through the link."""
        vault = self.host(VAULT)
        ssh = ssh_argv(vault, "")[:-2]  # ssh and its options, without user@host and command
        remote = f"/srv/vault/backups/{self.offsite_dir}/{self.box}/"
        return [
            "rsync",
            "-a",
            "--dry-run",
            "-e",
            shlex.join(ssh),
            "--rsync-path=sudo -u vault rsync",
            f"{self.store}/{self.box}/",
            f"{RSYNC_USER}@{vault.address}:{remote}",
        ]

    def close(self) -> list[str]:
        said = []
        history.remove_offsite(VAULT, self.offsite_dir)
        said.append(f"{VAULT}: removed {self.offsite_dir}")
        if self._rsync_on_vault:
            box_exec(VAULT, ["sh", "-c", RSYNC_TEARDOWN])
            said.append(f"{VAULT}: removed the {RSYNC_USER} login and rsync")
        if self._started_wan:
            wan.stop(self.paths)
            said.append("WAN proxy stopped")
        return said


def _in_vault(argv: list[str], data: bytes) -> None:
    try:
        history.box_exec_bytes(VAULT, argv, data, timeout=120)
    except RuntimeError as exc:
        raise BenchError(str(exc)) from None
