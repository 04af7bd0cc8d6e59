"""restore.server (runbook scenario 1): a fresh Debian box rebuilt from another host's backups.

The runbook's seven steps, each with a done-check, so a re-run after a failure
skips what is already there. Paths come from the target's inventory layout;
the env file and units from the --source host's backups; the code from the
repo at the commit those backups recorded. A box that already serves a healthy
API is refused (unless --force) so a live server is not overwritten by mistake.
"""

from __future__ import annotations

import posixpath
import tarfile
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from .. import output, service_user, services
from ..dramatiq_queues import workers_alive
from ..errors import BackupNotFoundError, UsageError, ZachotError
from ..facts import gather
from ..model import Host, Layout
from ..offsite_fetch import Fetched, fetch_for_restore
from ..plan import Plan, Step
from ..redis_access import RedisUnavailable, open_redis
from ..store import BackupRef
from . import packages, steps, units
from . import server_facts as facts
from .context import RestoreContext
from .diffs import env_key_diff
from .env import env_install
from .server_options import Options, PipSource, Wanted, wanted_ref

RUNBOOK_RTO = "30-60 min"
STEPS = ("packages", "user", "code", "files", "venv", "logs", "start")  # plan()'s, in order
BASE_PACKAGES = ("python3", "python3-venv", "python3-pip", "redis-server", "git")
PIP_QUIET = (
    "-q",
    "--no-input",
    "--disable-pip-version-check",
    "--no-cache-dir",
    "--progress-bar",
    "off",
)


class ServerRestoreError(ZachotError):
    pass


def plan(ctx: RestoreContext, options: Options) -> Plan:
    env_ref, units_ref = _backups(ctx, options.selector)
    wanted = wanted_ref(options.ref, [env_ref, units_ref])
    built = (
        packages_step(ctx),
        user_step(ctx),
        code_step(ctx, wanted),
        files_step(ctx, env_ref, units_ref),
        venv_step(ctx, options.pip),
        logs_step(ctx),
        start_step(ctx),
    )
    return Plan(
        ctx.host.name,
        f"restore.server from {env_ref.host}'s backups (env {env_ref.id}, units {units_ref.id})",
        _guard(ctx, built, options),
    )


def plan_fetching(
    ctx: RestoreContext, options: Options, find: Callable[[str], Host]
) -> tuple[Plan, Fetched | None]:
    """The plan when the laptop may be lost too: what the store lacks of the env and units
    backups comes from the off-site copy first, and the title says so. A dry run fetches
    nothing: its plan is the fetch step alone, since the restore's steps read those files."""
    fetched = fetch_for_restore(
        ctx.origin or ctx.host, find, options.selector, dry_run=options.dry_run
    )
    if fetched and fetched.dry_run:
        title = f"restore.server from {ctx.source}'s backups; {fetched.note}"
        restore = Step(
            "restore",
            f"restore the {options.selector} env and units backups of {ctx.source}",
            (
                f"run restore.server's steps ({', '.join(STEPS)}) from the fetched backups; "
                f"they read those files, so to see them first: fab -H {ctx.source} "
                "backup.fetch, then this --dry-run again",
            ),
        )
        return Plan(ctx.host.name, title, (fetched.step(), restore)), fetched
    built = plan(ctx, options)
    return (replace(built, title=f"{built.title}; {fetched.note}") if fetched else built), fetched


def _backups(ctx: RestoreContext, selector: str) -> tuple[BackupRef, BackupRef]:
    try:
        return ctx.backup("env", selector), ctx.backup("units", selector)
    except BackupNotFoundError as exc:
        if ctx.source != ctx.host.name:
            raise
        raise BackupNotFoundError(
            f"{exc.message}; a new box has no backups of its own: name the lost host with "
            f"--source, or once in the inventory: replaces: <host> on {ctx.host.name}"
        ) from None


def _guard(ctx: RestoreContext, built: tuple[Step, ...], options: Options) -> tuple[Step, ...]:
    """A box that already serves a healthy API is a live server: change it only with --force."""
    if not api_healthy(ctx):
        return built
    pending = [s.title for s in built if not (s.done and s.done())]
    if not pending:
        return built  # a re-run on a box this task built: every step is skipped
    said = (
        f"{ctx.host.name} already runs a healthy zachot API, and this restore would change it "
        f"({'; '.join(pending)})"
    )
    if not options.force:
        if options.dry_run:
            output.warn(f"{said}; the real run needs --force")
            return built
        raise UsageError(f"{said}; if you mean to replace that server, add --force")
    # Stopped first, so the services come back on the restored code and env.
    return (steps.stop(ctx, ("worker", "api")), *built)


def api_healthy(ctx: RestoreContext) -> bool:
    try:
        for service in services.select(ctx.host, ("api",)):
            services.gate(ctx.transport, service, timeout=0)
    except services.HealthGateFailed:
        return False
    return True


def packages_step(ctx: RestoreContext) -> Step:
    def missing() -> list[str]:
        have = gather(ctx.transport, packages.installed(BASE_PACKAGES))
        return packages.missing(BASE_PACKAGES, have)

    def run() -> str:
        wanted = missing()
        for argv in packages.apt_commands(wanted):
            ctx.transport.run(argv, sudo=True)
        if left := missing():
            raise ServerRestoreError(f"apt-get finished but {', '.join(left)} still missing")
        return f"installed {', '.join(wanted)}"

    now = missing()
    actions = (
        [f"apt-get update, then apt-get install -y {' '.join(now)}"]
        if now
        else [f"skip: {', '.join(BASE_PACKAGES)} are installed (no apt-get update)"]
    )
    return Step("packages", "install the base packages", tuple(actions), run, lambda: not missing())


def user_step(ctx: RestoreContext) -> Step:
    layout = ctx.host.layout
    # backup_dir is root's (0700): the service user must not steer root's copies there.
    user = layout.service_user
    specs = [s for s in facts.service_dirs(layout) if s.path != layout.backup_dir]

    def done() -> bool:
        return gather(ctx.transport, facts.user_exists(user)) and _dirs_ready(ctx, specs)

    def run() -> str:
        said = []
        if not gather(ctx.transport, facts.user_exists(user)):
            # -U fails when the group exists already (e.g. a half-removed user): join it then.
            script = (
                'if getent group "$1" >/dev/null; then group="-g$1"; else group=-U; fi; '
                'useradd -r "$group" -d "$2" -s /usr/sbin/nologin -- "$1"'
            )
            ctx.transport.run(["sh", "-c", script, "sh", user, layout.root], sudo=True)
            said.append(f"created user {user}")
        _make_dirs(ctx, specs)
        ctx.transport.ensure_private_dir(layout.backup_dir)
        return "; ".join([*said, f"{len(specs)} directories owned by {user}", "backups root's"])

    return Step(
        "user",
        f"create the {user} user and the {layout.root} directories",
        (
            f"useradd -r -U -d {layout.root} -s /usr/sbin/nologin {user} (unless it exists)",
            *(f"install -d -m {s.mode:04o} -o {user} -g {user} {s.path}" for s in specs),
            f"install -d -m 0700 -o root -g root {layout.backup_dir}",
        ),
        run,
        done,
    )


def _dirs_ready(ctx: RestoreContext, specs: Sequence[facts.DirSpec]) -> bool:
    have = gather(ctx.transport, facts.dir_stats([s.path for s in specs]))
    return facts.dirs_ready(have, specs, ctx.host.layout.service_user)


def _make_dirs(ctx: RestoreContext, specs: Sequence[facts.DirSpec]) -> None:
    # Through the agent, not `install -d`: these are in a directory the service user can
    # write, where a planted link would have root chown whatever it points at.
    user = ctx.host.layout.service_user
    for s in specs:
        ctx.transport.make_dir(s.path, mode=s.mode, owner=user, group=user, fix=True)


def detach(layout: Layout, commit: str) -> list[str]:
    """Check out commit (an id), detached; run it as the service user, whose repo it is."""
    git = ["git", "--no-pager", "-C", layout.repo_dir, "-c", "advice.detachedHead=false"]
    return [*git, "checkout", "-q", "--detach", commit]


def code_step(ctx: RestoreContext, wanted: Wanted) -> Step:
    layout = ctx.host.layout
    repo, url = layout.repo_dir, layout.repo_url

    def state() -> facts.Checkout:
        return gather(ctx.transport, facts.checkout(layout, wanted.ref))

    def run() -> str:
        found, said = state(), []
        if found.state == "not-a-repo":
            aside = f"{repo}.pre-restore.{ctx.stamp}"
            # The service user's to move: root renaming in its directory could be redirected.
            service_user.run(ctx.transport, ctx.host.layout, ["mv", "-T", "--", repo, aside])
            said.append(f"moved the old {repo} aside to {aside}")
        if found.state != "repo":
            service_user.run(
                ctx.transport,
                ctx.host.layout,
                ["git", "clone", "-q", "--no-checkout", "--", url, repo],
            )
            said.append(f"cloned {url}")
            found = state()
        if found.want is None:
            service_user.run(
                ctx.transport,
                ctx.host.layout,
                ["git", "--no-pager", "-C", repo, "fetch", "-q", "--tags", "origin"],
            )
            found = state()
        if found.want is None:
            raise ServerRestoreError(
                f"{wanted.ref} is not in {url}; name an existing tag or commit with --ref"
            )
        service_user.run(ctx.transport, ctx.host.layout, detach(layout, found.want))
        if not state().done:
            raise ServerRestoreError(f"{repo}: HEAD is not {found.want} after the checkout")
        return "; ".join([*said, f"HEAD at {found.want[:12]}"])

    return Step(
        "code",
        f"clone the repo at {wanted.ref[:12]}",
        (
            f"git clone {url} {repo} as {layout.service_user} (unless it is there)",
            f"git checkout --detach {wanted.ref}: {wanted.why}",
        ),
        run,
        lambda: state().done,
    )


def files_step(ctx: RestoreContext, env_ref: BackupRef, units_ref: BackupRef) -> Step:
    """The env file (0600, service user) and the units, then daemon-reload and enable."""
    env_file = env_install(ctx, env_ref)
    env_diff = env_key_diff(ctx.remote_bytes(env_file.remote), env_file.local.read_bytes())
    env_step = steps.install(ctx, "put the env file in place", [env_file])
    unit_step = units.install_step(ctx, units_ref, diff=True)
    stack = [s.unit for s in services.stack(ctx.host)]

    def reloaded() -> bool:
        return facts.units_ready(gather(ctx.transport, facts.unit_states(stack)), len(stack))

    reload = units.reload_and_enable(ctx)
    env_actions = env_step.actions + tuple(f"diff: {ln}" for ln in env_diff)
    parts = (
        Step("env", "put the env file in place", env_actions, env_step.run, env_step.done),
        Step("units", unit_step.title, unit_step.actions, unit_step.run, unit_step.done),
        Step(reload.name, reload.title, reload.actions, reload.run, reloaded),
    )

    def run() -> str:
        return "; ".join(f"{p.name}: {p.run()}" for p in parts if not (p.done and p.done()))

    return Step(
        "files",
        f"restore the env file and the units from {env_ref.host}'s backups",
        tuple(a for p in parts for a in p.actions),
        run,
        lambda: all(p.done() for p in parts if p.done),
    )


def venv_step(ctx: RestoreContext, source: PipSource) -> Step:
    layout = ctx.host.layout
    reqs = posixpath.join(layout.repo_dir, "requirements.txt")
    remote_wheels = posixpath.join(layout.root, "wheelhouse")
    marker = posixpath.join(layout.venv_dir, facts.MARKER)

    def run() -> str:
        make = 'test -x "$1/bin/python" || exec python3 -m venv -- "$1"'
        service_user.run(ctx.transport, ctx.host.layout, ["sh", "-c", make, "sh", layout.venv_dir])
        if source.wheelhouse:
            _push_wheels(ctx, source.wheelhouse, remote_wheels)
        pip = posixpath.join(layout.venv_dir, "bin", "pip")
        said = service_user.run(
            ctx.transport,
            ctx.host.layout,
            [pip, "install", *PIP_QUIET, *source.pip_args(remote_wheels), "-r", reqs],
            check=False,
        )
        if source.wheelhouse:
            service_user.run(ctx.transport, ctx.host.layout, ["rm", "-rf", "--", remote_wheels])
        if not said.ok:
            last = (said.stderr.strip().splitlines() or [f"exit {said.exit_code}"])[-1]
            hint = "; without internet use --wheelhouse, --find-links or --index-url"
            offline = hint if source == PipSource() else ""
            raise ServerRestoreError(f"pip install -r {reqs} failed: {last}{offline}")
        record = 'sha256sum < "$1" | cut -d" " -f1 > "$2"'
        service_user.run(ctx.transport, ctx.host.layout, ["sh", "-c", record, "sh", reqs, marker])
        return f"venv {layout.venv_dir}; installed requirements.txt from {source.describe()}"

    return Step(
        "venv",
        "create the venv and pip install -r requirements.txt",
        (
            f"python3 -m venv {layout.venv_dir} as {layout.service_user} (unless it is there)",
            f"pip install -r {reqs} from {source.describe()}",
            f"record the sha256 of requirements.txt in {marker}",
        ),
        run,
        lambda: gather(ctx.transport, facts.venv_state(layout, reqs)).done,
    )


def _push_wheels(ctx: RestoreContext, local: Path, remote_dir: str) -> None:
    """One tarball of the wheelhouse's *.whl, pushed and unpacked as the service user."""
    tarball = ctx.workdir / "wheelhouse.tar"
    with tarfile.open(tarball, "w") as tar:
        for wheel in sorted(local.glob("*.whl")):
            tar.add(wheel, arcname=wheel.name)
    user = ctx.host.layout.service_user
    remote_tar = f"{remote_dir}.tar"
    ctx.transport.push(tarball, remote_tar, mode=0o644, owner=user, group=user, sudo=True)
    unpack = 'rm -rf -- "$2" && mkdir -p -- "$2" && tar -xf "$1" -C "$2" && rm -f -- "$1"'
    service_user.run(
        ctx.transport, ctx.host.layout, ["sh", "-c", unpack, "sh", remote_tar, remote_dir]
    )


def logs_step(ctx: RestoreContext) -> Step:
    layout = ctx.host.layout
    specs = [facts.DirSpec(layout.logs_dir, 0o755)]

    def run() -> str:
        _make_dirs(ctx, specs)
        return f"{layout.logs_dir} owned by {layout.service_user}"

    return Step(
        "logs",
        "create the logs directory",
        (f"install -d -o {layout.service_user} -g {layout.service_user} {layout.logs_dir}",),
        run,
        lambda: _dirs_ready(ctx, specs),
    )


def start_step(ctx: RestoreContext) -> Step:
    step = steps.start(ctx, ("redis", "worker", "api"))

    def run() -> str:
        try:
            return step.run()
        except services.HealthGateFailed:
            services.error_tail(ctx.transport)  # why it did not come up, masked
            raise

    return Step(step.name, step.title, step.actions, run, lambda: stack_healthy(ctx))


def stack_healthy(ctx: RestoreContext) -> bool:
    """Every unit active, a live worker heartbeat in Redis, and the API's health URL 200."""
    stack = services.stack(ctx.host)
    if set(services.states(ctx.transport, stack).values()) != {"active"}:
        return False
    try:
        with open_redis(ctx.transport) as client:
            if workers_alive(client, ctx.host.dramatiq.namespace) < 1:
                return False
    except RedisUnavailable:
        return False
    return api_healthy(ctx)
