"""What the inventory says about a host, as frozen values.

Defaults are the runbook's production layout. inventory.py fills these from
YAML and validates every field against its type hint; nothing else reads YAML.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

HostKeyPolicy = Literal["strict", "accept-new"]
DEFAULT_STORE = Path("~/backups/zachot").expanduser()


@dataclass(frozen=True)
class Layout:
    root: str = "/opt/zachot"
    env_file: str = "/opt/zachot/envs/prod/etc/zachot.env"
    unit_dir: str = "/etc/systemd/system"
    units: tuple[str, ...] = ("zachot-api.service", "zachot-worker.service")
    logs_dir: str = "/opt/zachot/logs"
    repo_dir: str = "/opt/zachot/repo"
    repo_url: str = "https://github.com/your-org/zachot.git"
    venv_dir: str = "/opt/zachot/envs/prod"
    service_user: str = "zachot"
    backup_dir: str = "/opt/zachot/backups"
    api_health_url: str = "http://127.0.0.1:8000/health"
    required_env_keys: tuple[str, ...] = ("REDIS_URL", "WORKER_CONCURRENCY")
    # Where the repo keeps its copy of the units (runbook: "infra/"), relative to repo_dir.
    units_repo_dir: str | None = None


@dataclass(frozen=True)
class RedisSettings:
    unit: str = "redis-server.service"
    data_dir: str = "/var/lib/redis"
    url: str = "redis://127.0.0.1:6379/0"


@dataclass(frozen=True)
class DramatiqSettings:
    # Real broker keys are "<namespace>:<queue>" etc. (FACTS.md); the runbook's
    # "dramatiq:queue:default" does not exist.
    namespace: str = "dramatiq"
    queues: tuple[str, ...] = ("default",)
    # Dramatiq's heartbeat timeout (its broker's default 60 s): an older heartbeat is a
    # stale worker, not a live one.
    heartbeat_timeout: float = 60.0


@dataclass(frozen=True)
class StoreSettings:
    path: Path = DEFAULT_STORE
    lock_timeout: float = 30.0


@dataclass(frozen=True)
class BackupSettings:
    # backup.verify fails when the newest backup of a kind is older than this.
    max_age_days: float = 7.0
    # backup.prune keeps, per host and kind, like restic's forget; the newest
    # verified backup is kept whatever these say.
    keep_last: int = 3
    keep_daily: int = 7
    keep_weekly: int = 4
    keep_monthly: int = 6
    # Timestamped env copies in layout.backup_dir on the server.
    server_keep_last: int = 10
    # backup.verify's rolling read-back of older backups (local and off-site), per run:
    # at most this many MiB and this many backups (the count bounds the vault's round trips).
    read_budget_mib: float = 64.0
    read_count: int = 16
    # age public keys: when given, backups of every kind are stored encrypted.
    age_recipients: tuple[str, ...] = ()
    # Kinds (units, logs) whose plain backups may still go off-site: an explicit opt-out.
    offsite_plain: tuple[str, ...] = ()
    # The operator's age identity, to decrypt for verify and restore.
    age_identity: Path | None = None
    # Off-site copy: an inventory host reached over SFTP, and the directory
    # there, relative to the SFTP login directory.
    offsite_host: str | None = None
    offsite_dir: str = "zachot"
    # Or S3-compatible object storage (offsite_dir is then the key prefix); credentials
    # come from boto3's chain (AWS_* environment variables, a profile file), never from here.
    offsite_s3_endpoint: str | None = None
    offsite_s3_bucket: str | None = None
    offsite_s3_region: str = "us-east-1"
    # S3 Object Lock: each upload is retained this many days (0: none).
    offsite_retain_days: int = 0
    # The laptop's cron entry (backup.cron): runbook's weekly, Sunday 02:00.
    cron_schedule: str = "0 2 * * 0"
    # backup.routine: --if-overdue runs it only when the last success is older than this;
    # monitoring, both off unless set: healthchecks.io-style pings, a Prometheus textfile.
    routine_overdue_hours: float = 168.0
    healthcheck_url: str | None = None
    metrics_file: Path | None = None


@dataclass(frozen=True)
class RestoreSettings:
    # Where restore.server and drill get pip packages when no flag says: a local
    # wheelhouse pushed to the box, or a URL the box reaches (at most one).
    wheelhouse: Path | None = None
    find_links: str | None = None
    index_url: str | None = None


@dataclass(frozen=True)
class Host:
    name: str
    # None means: ask ~/.ssh/config (HostName, Port, User, IdentityFile, ProxyJump).
    address: str | None = None
    port: int | None = None
    user: str | None = None
    identity_file: Path | None = None
    sudo: bool = True
    # Name of an environment variable that holds the sudo password; never the password itself.
    sudo_password_env: str | None = None
    connect_timeout: float = 10.0
    known_hosts: Path | None = None
    host_key_policy: HostKeyPolicy = "strict"
    scratch: bool = False
    # The host this one stands in for (new-box replaces prod): restore.server's and
    # drill's default --source.
    replaces: str | None = None
    groups: tuple[str, ...] = ()
    layout: Layout = field(default_factory=Layout)
    redis: RedisSettings = field(default_factory=RedisSettings)
    dramatiq: DramatiqSettings = field(default_factory=DramatiqSettings)
    store: StoreSettings = field(default_factory=StoreSettings)
    backup: BackupSettings = field(default_factory=BackupSettings)
    restore: RestoreSettings = field(default_factory=RestoreSettings)
