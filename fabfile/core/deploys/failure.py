"""A failed deploy step: recorded (once the code moved), explained, with the way on.

recover() words a failure for restores (files kept aside, re-run the same command);
a deploy says instead what runs now, read live, and what to do next.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from .. import output, services
from ..errors import ZachotError
from ..facts import deployed_ref, gather
from ..plan import Step
from ..restores.context import RestoreContext
from . import remote
from .deployment import Deployment


def watched(ctx: RestoreContext, d: Deployment, chosen: Sequence[Step]) -> tuple[Step, ...]:
    """Every step, so that its failure is recorded and explained before it propagates."""

    def watch(number: int, step: Step) -> Step:
        def run() -> str:
            try:
                return step.run()
            except ZachotError as exc:
                d.failure = _after_failure(ctx, d, number, step, exc)
                raise

        return replace(step, run=run)

    return tuple(watch(number, step) for number, step in enumerate(chosen, 1))


def _after_failure(
    ctx: RestoreContext, d: Deployment, number: int, step: Step, exc: ZachotError
) -> str:
    host = ctx.host.name
    said = [f"{host}: step {number} '{step.title}' failed: {exc.message.rstrip('.')}"]
    if step.name.startswith("start-"):
        output.info("The end of the error logs:")
        _quietly(lambda: services.error_tail(ctx.transport))
    checked_out = d.commit is not None and _head(ctx) == d.commit
    said.append(_state(ctx))
    if checked_out and step.name != "record":
        said.append(_record_failure(ctx, d, step))
    said.append(_advice(d, step, checked_out, host))
    return ". ".join(s for s in said if s)


def _head(ctx: RestoreContext) -> str | None:
    try:
        return gather(ctx.transport, deployed_ref(ctx.host.layout)).commit
    except ZachotError:
        return None


def _state(ctx: RestoreContext) -> str:
    """What runs on the host now, read live, so the message never guesses."""
    host, layout = ctx.host.name, ctx.host.layout
    try:
        ref = gather(ctx.transport, deployed_ref(layout))
        chosen = services.select(ctx.host, ("worker", "api"))
        states = services.states(ctx.transport, chosen)
    except ZachotError as exc:
        return f"the state of {host} could not be read ({exc.message})"
    units = ", ".join(f"{unit} {state}" for unit, state in states.items())
    code = f"{ref.describe} ({(ref.commit or '?')[:12]})"
    return f"Now {host} has {code} checked out; {units}"


def _record_failure(ctx: RestoreContext, d: Deployment, step: Step) -> str:
    path = remote.HISTORY
    entry = d.entry("failed", step.name)
    try:
        remote.append_history(ctx.transport, path, entry)
    except ZachotError as exc:
        return f"Recording the failure in {path} failed too ({exc.message})"
    marked = f", and {d.name(entry.bad)} is marked bad" if entry.bad else ""
    return f"The {d.action} is recorded as failed in {path}{marked}"


def _advice(d: Deployment, step: Step, checked_out: bool, host: str) -> str:
    if step.name == "record":
        return (
            f"The deploy itself is done ({d.name(d.commit)} runs); only its history line is "
            "missing, so fix that before the next deploy or a rollback will not know of this one"
        )
    if d.action == "release" and checked_out:
        return (
            "The services stay stopped or on the failed code until you go back with: "
            f"fab -H {host} deploy.rollback"
        )
    if d.action == "rollback" and checked_out:
        logs = " (see the error logs above)" if step.name.startswith("start-") else ""
        return (
            f"Fix the cause{logs} and re-run fab -H {host} deploy.rollback to retry {d.ref} "
            "(finished steps are skipped), or name another target with --to=<tag|commit>"
        )
    if step.name == "fetch":
        return "Nothing was changed; fix the cause and re-run the same command"
    return (
        "The code was not changed; fix the cause and re-run the same command "
        "(finished steps are skipped)"
    )


def _quietly(show: Callable[[], None]) -> None:
    try:
        show()
    except ZachotError as exc:
        output.warn(f"could not read the error logs: {exc.message}")
