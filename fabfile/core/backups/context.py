"""What every backup step of one host shares: the host, its connection, the store."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from .. import facts, output
from ..errors import FactError
from ..manifest import FileRecord
from ..model import Host
from ..store import Store
from ..transport import Pending, RemoteFile, Transport

T = TypeVar("T")


@dataclass
class BackupContext:
    host: Host
    transport: Transport
    store: Store
    now: datetime  # one timestamp per run: local ids and server copies agree
    _deployed: facts.DeployedRef | None = field(default=None, init=False)
    _asking: Pending[facts.DeployedRef | FactError] | None = field(default=None, init=False)
    _early: dict[str, Pending[Any]] = field(default_factory=dict, init=False)

    @property
    def server_stamp(self) -> str:
        """The runbook's suffix for server-side copies: YYYYmmdd_HHMMSS."""
        return self.now.strftime("%Y%m%d_%H%M%S")

    def ask_deployed(self) -> None:
        """Start asking git for the deployed commit beside the exchanges that follow: on a far
        link that is one round trip less for every backup that records it."""
        if self._deployed is None and self._asking is None:
            self._asking = self.transport.background(self._read_deployed)

    def early(self, key: str, call: Callable[[], Any]) -> None:
        """Start a read-only exchange now, beside the first step's: on a far link a later
        step then waits for no round trip of its own. answer(key, ...) takes its result."""
        if key not in self._early:
            self._early[key] = self.transport.background(call)

    def answer(self, key: str, call: Callable[[], T]) -> T:
        """What early(key) started (its error raised here, in the step), else call() now."""
        pending = self._early.pop(key, None)
        return pending.result() if pending is not None else call()

    def deployed(self) -> dict[str, str | None]:
        """The deployed commit, recorded so restore.server can clone the same ref."""
        if self._deployed is None:
            self.ask_deployed()
            assert self._asking is not None
            said = self._asking.result()
            if isinstance(said, FactError):
                # The repo is the service user's: a broken or hostile one must not stop the
                # backups. Said aloud, and recorded as unknown.
                output.warn(f"{said.message}; the deployed commit is recorded as unknown")
                said = facts.DeployedRef(commit=None, describe=None)
            self._deployed = said
        return {"commit": self._deployed.commit, "describe": self._deployed.describe}

    def _read_deployed(self) -> facts.DeployedRef | FactError:
        try:
            return facts.gather(self.transport, facts.deployed_ref(self.host.layout))
        except FactError as exc:
            return exc


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
