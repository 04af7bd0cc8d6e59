"""restore.env (runbook scenario 4): the env file back from a backup, services healthy."""

from __future__ import annotations

from .. import output
from ..backups.env import NAME
from ..crypto import find_record
from ..errors import ZachotError
from ..facts import gather
from ..plan import Plan, Step
from ..secrets import MASK, parse_env
from ..store import BackupRef
from . import steps
from .context import RestoreContext
from .diffs import env_key_diff

RUNBOOK_RTO = "2-5 min"


class EnvCheckFailed(ZachotError):
    pass


def env_install(ctx: RestoreContext, ref: BackupRef) -> steps.Install:
    """The env file of a backup, as it must land: 0600, owned by the service user."""
    record = find_record(ref, NAME)
    layout = ctx.host.layout
    user = layout.service_user
    return steps.from_backup(ctx, ref, record, layout.env_file, mode=0o600, owner=user, group=user)


def plan(ctx: RestoreContext, selector: str) -> Plan:
    ref = ctx.backup("env", selector)
    wanted = env_install(ctx, ref)
    current = ctx.remote_bytes(wanted.remote)
    diff = tuple(f"diff: {line}" for line in env_key_diff(current, wanted.local.read_bytes()))
    install = steps.install(ctx, f"put env backup {ref.id} of {ref.host} in place", [wanted])
    install = Step(install.name, install.title, install.actions + diff, install.run, install.done)
    return Plan(
        ctx.host.name,
        f"restore.env from {ref.host}/{ref.id}",
        (
            steps.stop(ctx, ("worker", "api")),
            install,
            Step(
                "check-env",
                "parse it and check the required keys",
                ("parse with python-dotenv; show key names with masked values",),
                run=lambda: check(ctx, wanted),
            ),
            steps.start(ctx, ("redis", "worker", "api")),
        ),
    )


def check(ctx: RestoreContext, wanted: steps.Install) -> str:
    summary = parse_env(wanted.local.read_bytes(), ctx.host.layout.required_env_keys)
    on_server = gather(ctx.transport, steps.digests(wanted.remote)).get(wanted.remote)
    if on_server != wanted.sha256:
        raise EnvCheckFailed(f"{wanted.remote} on the server does not match the backup")
    if summary.missing:
        lacks = f"the backup lacks required keys: {', '.join(summary.missing)}"
        if not ctx.force:
            raise EnvCheckFailed(lacks)
        output.warn(f"--force: {lacks}")
    return ", ".join(f"{key}={MASK}" for key in summary.keys)
