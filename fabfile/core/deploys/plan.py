"""deploy.rollback (runbook scenario 3) and deploy.release as one plan shape.

fetch (release always; rollback only when the clone lacks the target) -> stop API
and worker -> show the last commits and deploys -> check out the target, detached,
as the service user -> pip install when requirements.txt changed -> start worker,
then API, each gated -> record the deploy in the host's history. Redis is never
touched. When a step fails, the deploy is recorded as failed (once the code was
changed), the error logs are shown, and the operator is told what runs now and
what to do next.
"""

from __future__ import annotations

import posixpath
from dataclasses import replace

from .. import output, service_user
from ..errors import UsageError, ZachotError
from ..facts import gather
from ..manifest import short_repr
from ..plan import Plan, Step
from ..restores import server as server_restore
from ..restores import server_facts, server_options
from ..restores import steps as restore_steps
from ..restores.context import RestoreContext
from . import remote
from .deployment import Deployment
from .failure import watched
from .target import NoTarget, rollback_target

RUNBOOK_RTO = "5-15 min"
LOG_COUNT = 10
HISTORY_SHOWN = 5
REQUIREMENTS = "requirements.txt"


class DeployError(ZachotError):
    pass


def check_to(to: str) -> str:
    try:
        return server_options.check_ref(to)
    except UsageError:
        raise UsageError(f"--to {short_repr(to)} is not a tag, branch or commit name") from None


def plan(
    ctx: RestoreContext, action: str, to: str | None, pip: server_options.PipSource
) -> tuple[Plan, Deployment]:
    d = _deployment(ctx, action, to)
    local = gather(ctx.transport, remote.resolve(ctx.host.layout, d.wanted))
    if action == "rollback" and local:
        _settle(ctx, d, local)  # the target is known now: no fetch needed
    fetched = [] if d.commit else [_fetch(ctx, d, local)]
    chosen = [
        *fetched,
        _unless_noop(d, restore_steps.stop(ctx, ("worker", "api"))),
        _log(ctx, d, local),
        _checkout(ctx, d, local),
        _requirements(ctx, d, pip, local),
        _unless_noop(d, restore_steps.start(ctx, ("worker",))),
        _unless_noop(d, restore_steps.start(ctx, ("api",))),
        _record(ctx, d),
    ]
    where = f" ({local[:12]})" if local else ""
    title = f"deploy.{action} to {d.ref}{where}: {d.why}"
    return Plan(ctx.host.name, title, watched(ctx, d, chosen)), d


def _deployment(ctx: RestoreContext, action: str, to: str | None) -> Deployment:
    host, layout = ctx.host.name, ctx.host.layout
    state = gather(ctx.transport, remote.repo_state(layout))
    if state.head is None:
        raise UsageError(
            f"{host}: no git checkout at {layout.repo_dir}; rebuild the box with restore.server"
        )
    if state.changed:
        raise UsageError(
            f"{host}: {layout.repo_dir} has local changes in {state.changed} tracked file(s), "
            "which a checkout would carry along or refuse; look with git status there and "
            "commit, stash or reset them first"
        )
    path = remote.HISTORY
    history = remote.read_history(ctx.transport, path)
    for problem in history.problems:
        output.warn(f"{host}: {path}: {problem}")
    if to is not None:
        ref = check_to(to)
        return Deployment(action, ref, ref, "named with --to", state.head, history, state.tags)
    if action == "release":
        raise UsageError("deploy.release needs --to=<tag|branch|commit>")
    try:
        chosen = rollback_target(history, state.head, state.tags, state.ancestry)
    except NoTarget as exc:
        raise UsageError(f"{host}: {exc}; name the target with --to=<tag|commit>") from None
    # The commit is settled by plan() once the clone is known to have it.
    return Deployment(
        action, chosen.label, chosen.commit, chosen.why, state.head, history, state.tags
    )


def _settle(ctx: RestoreContext, d: Deployment, commit: str) -> str:
    """Fix the target commit; say so when it is marked bad or already runs."""
    d.commit = commit
    d.previous = d.history.live_before(d.head, commit)
    said = f"{d.ref} is {commit[:12]}"
    if marked := d.history.bad().get(commit):
        output.warn(
            f"{d.name(commit)} is marked bad by the {marked.action} of {marked.time}; "
            "deploying it anyway, as you named it"
        )
    retrying = d.history.in_flight(d.head) is not None
    if commit == d.head and not retrying and server_restore.stack_healthy(ctx):
        d.noop = True
        d.outcome = f"{ctx.host.name} already runs {d.name(commit)}, healthy: nothing to do"
        return f"{said}, which already runs, healthy: nothing to do"
    return said


def _unless_noop(d: Deployment, step: Step) -> Step:
    done = step.done
    return replace(step, done=lambda: d.noop or bool(done and done()))


def _fetch(ctx: RestoreContext, d: Deployment, local: str | None) -> Step:
    layout = ctx.host.layout
    repo, url = layout.repo_dir, layout.repo_url

    def run() -> str:
        fetch = ["git", "--no-pager", "-C", repo, "fetch", "-q", "--tags", "origin"]
        service_user.run(ctx.transport, layout, fetch)
        commit = gather(ctx.transport, remote.resolve(layout, d.wanted))
        if commit is None:
            raise DeployError(
                f"{d.wanted} is not a tag, branch or commit at {url}; the services were not touched"
            )
        return _settle(ctx, d, commit)

    now = f" (the clone has it at {local[:12]} now)" if local else " (not in the clone yet)"
    return Step(
        "fetch",
        f"fetch from origin and find {d.ref}",
        (
            f"git -C {repo} fetch --tags origin as {layout.service_user} ({url})",
            f"resolve {d.wanted}: a tag, else origin's branch, else a commit{now}",
        ),
        run,
    )


def _log(ctx: RestoreContext, d: Deployment, local: str | None) -> Step:
    layout = ctx.host.layout

    def commits(target: str | None) -> list[str]:
        revs = ["HEAD", *([target] if target and target != d.head else [])]
        return gather(ctx.transport, remote.recent_commits(layout, revs, LOG_COUNT))

    def run() -> str:
        lines = commits(d.commit)
        output.info(f"Last {LOG_COUNT} commits (HEAD and {d.name(d.commit)}):")
        for line in lines:
            output.info(f"  {line}")
        for entry in d.history.last(HISTORY_SHOWN):
            output.info(f"  deployed: {entry.describe()}")
        return f"{len(lines)} commits; HEAD {d.name(d.head)} -> {d.name(d.commit)}"

    preview = commits(local)
    history = [f"history: {e.describe()}" for e in d.history.last(HISTORY_SHOWN)]
    return _unless_noop(
        d,
        Step(
            "log",
            f"show the last {LOG_COUNT} commits and deploys",
            (
                f"git log --oneline -{LOG_COUNT} HEAD {d.ref}",
                *(f"log: {line}" for line in preview),
                *history,
            ),
            run,
        ),
    )


def _checkout(ctx: RestoreContext, d: Deployment, local: str | None) -> Step:
    layout = ctx.host.layout
    repo, user = layout.repo_dir, layout.service_user
    marker = posixpath.join(layout.venv_dir, server_facts.MARKER)

    def done() -> bool:
        if d.commit is None:
            return False
        return gather(ctx.transport, server_facts.checkout(layout, d.commit)).done

    def run() -> str:
        assert d.commit is not None  # settled at plan time or by the fetch step
        _seed_marker(ctx, marker)
        service_user.run(ctx.transport, layout, server_restore.detach(layout, d.commit))
        if not done():
            raise DeployError(f"{repo}: HEAD is not {d.commit[:12]} after the checkout")
        return f"HEAD at {d.name(d.commit)}, detached"

    what = f"{d.ref} ({local[:12]})" if local else f"{d.ref} as fetched"
    return _unless_noop(
        d,
        Step(
            "checkout",
            f"check out {d.ref}",
            (f"git -C {repo} checkout --detach {what} as {user}",),
            run,
            done,
        ),
    )


def _seed_marker(ctx: RestoreContext, marker: str) -> None:
    """The venv's record of the requirements.txt it holds (restore.server writes it).
    A box set up by hand has none: the venv is taken to match the code that runs."""
    layout = ctx.host.layout
    script = (
        '[ -f "$2" ] || ! git -C "$1" cat-file -e "HEAD:$3" 2>/dev/null || '
        'git --no-pager -C "$1" show "HEAD:$3" | sha256sum | cut -d" " -f1 > "$2"'
    )
    command = ["sh", "-c", script, "sh", layout.repo_dir, marker, REQUIREMENTS]
    service_user.run(ctx.transport, layout, command)


def _requirements(
    ctx: RestoreContext, d: Deployment, pip: server_options.PipSource, local: str | None
) -> Step:
    layout = ctx.host.layout
    requirements = posixpath.join(layout.repo_dir, REQUIREMENTS)
    install = server_restore.venv_step(ctx, pip)

    def run() -> str:
        now = gather(ctx.transport, server_facts.venv_state(layout, requirements))
        if now.want is None:
            return f"no {REQUIREMENTS} in {d.name(d.commit)}: nothing to install"
        if now.done:
            return f"{REQUIREMENTS} unchanged: no pip install"
        return install.run()

    pip_install = f"pip install -r {requirements} from {pip.describe()}"
    if local:
        before, after = gather(
            ctx.transport, remote.blob_ids(layout, REQUIREMENTS, [d.head, local])
        )
        said = (
            f"skip: {REQUIREMENTS} is the same in HEAD and {d.ref}"
            if before == after
            else (f"{REQUIREMENTS} differs between HEAD and {d.ref}: {pip_install}")
        )
    else:
        said = f"{pip_install} if {REQUIREMENTS} changed (known after the fetch)"
    return _unless_noop(
        d, Step("requirements", "install the requirements if they changed", (said,), run)
    )


def _record(ctx: RestoreContext, d: Deployment) -> Step:
    path = remote.HISTORY

    def run() -> str:
        entry = d.entry("ok")
        remote.append_history(ctx.transport, path, entry)
        d.outcome = f"{ctx.host.name} runs {d.name(d.commit)}, healthy"
        if entry.bad:
            d.outcome += f"; {d.name(entry.bad)} is marked bad, so the next rollback skips it"
        return f"{d.action} recorded in {path}"

    what = "; the commit rolled back from is marked bad" if d.action == "rollback" else ""
    return _unless_noop(
        d,
        Step(
            "record",
            "record the deploy in the host's history",
            (f"append one JSON line to {path} (root, 0644){what}",),
            run,
        ),
    )
