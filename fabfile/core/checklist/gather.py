"""Everything the checklist looks at, over one connection: one script, one Redis tunnel.

The only I/O of the checklist's reading side. The local store is read for the
newest backups (their ages, and the ref they recorded as deployed).
"""

from __future__ import annotations

from datetime import UTC, datetime

from ..dramatiq_queues import read_report
from ..errors import ExitCode, TransferError, ZachotError
from ..manifest import KINDS
from ..model import Host
from ..redis_access import RedisUnavailable, open_redis
from ..store import Store
from ..transport import Transport
from . import remote
from .model import BackupInfo, HostFacts, RedisFacts

REDIS_TIMEOUT = 3.0


class NoShell(ZachotError):
    """The host took the connection but ran no script (e.g. an SFTP-only box)."""

    exit_code = ExitCode.UNREACHABLE


def sections(transport: Transport, wanted: tuple[str, ...] = remote.CHECKLIST) -> dict[str, str]:
    argv, script = remote.command(transport.host, wanted)
    name = transport.host.name
    try:
        said = transport.run(argv, sudo=True, check=False, stdin=script)
    except TransferError as exc:  # an SFTP-only server closes the channel on the script
        raise NoShell(f"{exc.message}; does {name} run shell commands (SFTP only?)") from None
    parts = remote.split(said.stdout)
    if "units" not in parts:
        last = (said.stderr.strip().splitlines() or [f"exit {said.exit_code}"])[-1]
        raise NoShell(f"{name}: runs no shell commands ({last}); SFTP only?")
    return parts


def redis_facts(transport: Transport) -> RedisFacts:
    """PING through the tunnel, then the live workers and the queue sizes (real keys)."""
    dramatiq = transport.host.dramatiq
    try:
        with open_redis(transport, timeout=REDIS_TIMEOUT) as client:
            version = client.info("server").get("redis_version", "?")
            timeout_ms = round(dramatiq.heartbeat_timeout * 1000)
            report = read_report(client, dramatiq.namespace, dramatiq.queues, timeout_ms)
    except RedisUnavailable as exc:
        return RedisFacts(ok=False, detail=exc.message)
    queues = report.as_meta()["queues"]
    stale = report.workers_known - report.workers_alive
    return RedisFacts(True, f"PONG, redis {version}", report.workers_alive, queues, stale)


def backups(host: Host) -> dict[str, BackupInfo]:
    """The newest local backup of each kind (nothing when the store has none)."""
    store = Store(host.store.path)
    found = {}
    for kind in KINDS:
        ref = store.latest(host.name, kind)
        if ref is not None:
            deployed = ref.manifest.meta.get("deployed")
            deployed = deployed if isinstance(deployed, dict) else None
            found[kind] = BackupInfo(kind, ref.id, ref.created, deployed, host.name)
    return found


def host_facts(transport: Transport, record: Host | None = None) -> HostFacts:
    """`record`: whose backups say what should be deployed (a drill's source); default the host."""
    parts = sections(transport)
    newest = backups(record or transport.host)
    return assemble(parts, redis_facts(transport), newest, datetime.now(UTC))


def assemble(
    parts: dict[str, str],
    redis: RedisFacts,
    newest: dict[str, BackupInfo],
    now: datetime,
) -> HostFacts:
    """Facts from the script's sections (pure: what unit tests feed recorded output to)."""
    get = parts.get
    return HostFacts(
        units=remote.parse_units(get("units", "")),
        env=remote.parse_env(get("env", "")),
        code=remote.parse_code(get("code", ""), get("history", "@absent")),
        python=remote.parse_python(get("python", ""), get("venv", "")),
        health=remote.parse_health(get("health", "")),
        logs=remote.parse_logs(get("logs", "")),
        redis=redis,
        backups=newest,
        now=now,
    )
