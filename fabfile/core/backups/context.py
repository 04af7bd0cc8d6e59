"""What every backup step of one host shares: the host, its connection, the store."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from .. import facts, output
from ..errors import FactError
from ..manifest import FileRecord
from ..model import Host
from ..store import Store
from ..transport import RemoteFile, Transport


@dataclass
class BackupContext:
    host: Host
    transport: Transport
    store: Store
    now: datetime  # one timestamp per run: local ids and server copies agree
    _deployed: facts.DeployedRef | None = field(default=None, init=False)

    @property
    def server_stamp(self) -> str:
        """The runbook's suffix for server-side copies: YYYYmmdd_HHMMSS."""
        return self.now.strftime("%Y%m%d_%H%M%S")

    def deployed(self) -> dict[str, str | None]:
        """The deployed commit, recorded so restore.server can clone the same ref."""
        if self._deployed is None:
            try:
                self._deployed = facts.gather(self.transport, facts.deployed_ref(self.host.layout))
            except FactError as exc:
                # The repo is the service user's: a broken or hostile one must not stop the
                # backups. Said aloud, and recorded as unknown.
                output.warn(f"{exc.message}; the deployed commit is recorded as unknown")
                self._deployed = facts.DeployedRef(commit=None, describe=None)
        return {"commit": self._deployed.commit, "describe": self._deployed.describe}


def record_for(name: str, remote: RemoteFile, *, stored_in: str | None = None) -> FileRecord:
    return FileRecord(
        name=name,
        sha256=remote.sha256,
        size=remote.size,
        source=remote.path,
        mode=remote.mode,
        owner=remote.owner,
        group=remote.group,
        mtime=remote.mtime,
        stored_in=stored_in,
    )
