"""Plans are values: steps computed first, shown by --dry-run, then executed.

A step's `actions` say what it will do, in words and commands; its `run`
does it and returns one line of result. Execution times every step, which is
how restores report their measured RTO.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from . import output
from .errors import ZachotError

SKIPPED = "already done, skipped"  # the detail of a step whose done-check passed


@dataclass(frozen=True)
class Step:
    name: str
    title: str
    actions: tuple[str, ...] = ()
    run: Callable[[], str] = field(default=lambda: "", compare=False, repr=False)
    # Resuming after a failure: a step whose work is already there is skipped.
    done: Callable[[], bool] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Plan:
    host: str
    title: str
    steps: tuple[Step, ...]


@dataclass(frozen=True)
class StepResult:
    step: Step
    ok: bool
    detail: str
    seconds: float


class StepFailed(ZachotError):
    def __init__(self, plan: Plan, results: list[StepResult], cause: ZachotError) -> None:
        failed = results[-1]
        number = len(results)
        super().__init__(
            f"{plan.host}: step {number} '{failed.step.title}' failed: {cause.message}"
        )
        self.exit_code = cause.exit_code
        self.plan, self.results = plan, results


def show(plans: Sequence[Plan], *, dry_run: bool = True) -> None:
    """Every step and what it would do; with dry_run that is all that happens."""
    note = " (dry run, nothing changes)" if dry_run else ""
    for plan in plans:
        output.info(f"Plan for {plan.host}: {plan.title}{note}")
        for number, step in enumerate(plan.steps, 1):
            output.info(f"  {number}. {step.title}")
            for action in step.actions:
                output.info(f"       would {action}")


def execute(plan: Plan, *, keep_going: bool = False) -> list[StepResult]:
    """Run the steps in order. Stop at the first failure unless keep_going."""
    results: list[StepResult] = []
    for step in plan.steps:
        started = time.monotonic()
        try:
            detail = SKIPPED if step.done and step.done() else step.run()
            results.append(StepResult(step, True, detail, time.monotonic() - started))
        except ZachotError as exc:
            failed = StepResult(step, False, exc.message, time.monotonic() - started)
            results.append(failed)
            if not keep_going:
                raise StepFailed(plan, results, exc) from None
    return results


def report(plan: Plan, results: Sequence[StepResult], *, target: str = "") -> None:
    """One row per step with its time; the total is the measured RTO."""
    rows = [
        (i, r.step.title, "ok" if r.ok else "FAILED", f"{r.seconds:.1f}", r.detail)
        for i, r in enumerate(results, 1)
    ]
    rows += [("", r.title, "not run", "", "") for r in plan.steps[len(results) :]]
    total = sum(r.seconds for r in results)
    versus = f" (runbook: {target})" if target else ""
    output.table(
        f"{plan.host}: {plan.title} — total {total:.1f} s{versus}",
        ["#", "step", "result", "s", "detail"],
        rows,
    )
