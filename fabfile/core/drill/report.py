"""A drill's outcome as a value, and its two renderings: JSON and markdown. Pure.

The RTO is the sum of the restore steps' measured times, judged against the
runbook's target for scenario 1; the RPO is the age of the newest backup of
each kind at drill time, judged against the source's backup.max_age_days.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from ..checklist.report import ChecklistFailed, Report
from ..manifest import format_utc
from ..output import human_age
from ..plan import SKIPPED, Plan, StepResult
from ..store import BackupRef

if TYPE_CHECKING:
    from ..offsite_fetch import Fetched

FORMAT = 1
_TARGET = re.compile(r"(?:\d+(?:\.\d+)?\s*-\s*)?(\d+(?:\.\d+)?)\s*(s|sec|min|h)\b", re.ASCII)
_UNIT = {"s": 1, "sec": 1, "min": 60, "h": 3600}


def target_seconds(target: str) -> float | None:
    """The upper bound of a runbook time like "30-60 min", in seconds; None if unreadable."""
    found = _TARGET.search(target)
    return float(found[1]) * _UNIT[found[2]] if found else None


@dataclass(frozen=True)
class StepTime:
    number: int
    name: str
    title: str
    result: str  # ok, skipped (its work was already there), failed, not run
    seconds: float
    detail: str

    def as_json(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "name": self.name,
            "title": self.title,
            "result": self.result,
            "seconds": round(self.seconds, 3),
            "detail": self.detail,
        }


def _result(r: StepResult) -> str:
    if not r.ok:
        return "failed"
    return "skipped" if r.detail == SKIPPED else "ok"


def step_times(
    plan: Plan | None, results: Sequence[StepResult], fetched: Fetched | None = None
) -> tuple[StepTime, ...]:
    """Every step: the fetch from off-site when the store lacked the backups (the laptop
    lost too: part of the RTO), the plan's timed steps, then those a failure left not run."""
    rows = [("fetch", fetched.step().title, "ok", fetched.seconds, fetched.note)] if fetched else []
    rows += [(r.step.name, r.step.title, _result(r), r.seconds, r.detail) for r in results]
    rest = plan.steps[len(results) :] if plan else ()
    rows += [(step.name, step.title, "not run", 0.0, "") for step in rest]
    return tuple(StepTime(n, *row) for n, row in enumerate(rows, 1))


@dataclass(frozen=True)
class BackupAge:
    """The newest backup of one kind of the source at drill time (id None: there is none)."""

    kind: str
    id: str | None
    created: datetime | None
    restored: bool  # this drill put it on the target
    max_age_days: float

    @classmethod
    def of(cls, kind: str, ref: BackupRef | None, restored: bool, max_age_days: float) -> BackupAge:
        if ref is None:
            return cls(kind, None, None, False, max_age_days)
        return cls(kind, ref.id, ref.created, restored, max_age_days)

    def age(self, now: datetime) -> timedelta | None:
        return now - self.created if self.created else None

    def fresh(self, now: datetime) -> bool | None:
        age = self.age(now)
        return None if age is None else age <= timedelta(days=self.max_age_days)

    def as_json(self, now: datetime) -> dict[str, Any]:
        age = self.age(now)
        return {
            "kind": self.kind,
            "id": self.id,
            "created": format_utc(self.created) if self.created else None,
            "age_seconds": int(age.total_seconds()) if age is not None else None,
            "restored": self.restored,
            "max_age_days": self.max_age_days,
            "within_max_age": self.fresh(now),
        }


@dataclass(frozen=True)
class Drill:
    id: str
    source: str
    target: str
    started: datetime
    finished: datetime
    steps: tuple[StepTime, ...]
    rto_target: str  # the runbook's, e.g. "30-60 min"
    backups: tuple[BackupAge, ...]
    checklist: Report | None
    restore_error: str | None = None  # the failed step's one line
    checklist_error: str | None = None  # the checklist could not run
    code: str = ""  # which code the backups recorded as deployed
    pip: str = ""  # where the venv's packages came from
    fetched: Fetched | None = None  # the backups came from the off-site copy

    @property
    def rto_seconds(self) -> float:
        return sum(s.seconds for s in self.steps)

    @property
    def rto_within(self) -> bool | None:
        """None when there is nothing to judge: no target, or the restore did not finish."""
        limit = target_seconds(self.rto_target)
        if limit is None or self.restore_error:
            return None
        return self.rto_seconds <= limit

    @property
    def skipped(self) -> list[str]:
        """Steps whose work the target already had (base packages, an earlier drill's state):
        the RTO does not include their time."""
        return [s.title for s in self.steps if s.result == "skipped"]

    @property
    def failures(self) -> list[str]:
        found = []
        if self.restore_error:
            found.append(f"restore: {self.restore_error}")
        if self.checklist_error:
            found.append(f"checklist: {self.checklist_error}")
        elif self.checklist is None:
            if not self.restore_error:
                found.append("checklist: not run")
        else:
            try:
                self.checklist.verdict()
            except ChecklistFailed as exc:
                found.append(f"checklist: {exc.message}")
        return found

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def verdict(self) -> str:
        return "PASS" if self.passed else "FAIL"

    @property
    def wall_seconds(self) -> float:
        return (self.finished - self.started).total_seconds()

    def as_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "id": self.id,
            "source": self.source,
            "target": self.target,
            "started": format_utc(self.started),
            "finished": format_utc(self.finished),
            "pass": self.passed,
            "failures": self.failures,
            "steps": [s.as_json() for s in self.steps],
            "total": {
                "seconds": round(self.rto_seconds, 3),
                "target": self.rto_target,
                "target_seconds": target_seconds(self.rto_target),
                "within_target": self.rto_within,
                "skipped_steps": self.skipped,
            },
            "wall_seconds": round(self.wall_seconds, 3),
            "backups": [b.as_json(self.started) for b in self.backups],
            "code": self.code,
            "pip": self.pip,
            "checklist": self.checklist.as_json() if self.checklist else None,
            "checklist_error": self.checklist_error,
            "fetched": {
                "from": self.fetched.origin,
                "backups": self.fetched.backups,
                "seconds": round(self.fetched.seconds, 3),
            }
            if self.fetched
            else None,
        }

    def rto_line(self) -> str:
        if self.restore_error:
            ran = sum(s.result != "not run" for s in self.steps)
            return f"none, the restore failed after {ran} steps ({self.rto_seconds:.1f} s)"
        within = {True: "within the target", False: "OVER the target", None: "no target"}
        said = f"{self.rto_seconds:.1f} s (runbook: {self.rto_target}, {within[self.rto_within]})"
        if self.steps and len(self.skipped) == len(self.steps):
            said += f"; every step found its work already done on {self.target}: nothing restored"
        elif self.skipped:
            said += (
                f"; {len(self.skipped)} of {len(self.steps)} steps found their work already "
                f"done on {self.target} and are not in it: {', '.join(self.skipped)}"
            )
        if self.fetched:
            said += f"; {self.fetched.seconds:.1f} s of it fetching from off-site"
        return said

    def origin_line(self) -> str:
        """Where the restored backups came from."""
        if not self.fetched:
            return "the local store"
        ids = ", ".join(f"{k} {' '.join(v)}" for k, v in self.fetched.backups.items())
        return f"restored from the off-site copy ({self.fetched.origin}), the store lacked {ids}"

    def backup_rows(self) -> list[tuple[str, str, str, str, str]]:
        rows = []
        for b in self.backups:
            age = b.age(self.started)
            limit = f"{b.max_age_days:g}d"
            fresh = {True: f"≤ {limit}", False: f"OLDER than {limit}", None: "-"}[
                b.fresh(self.started)
            ]
            rows.append(
                (
                    b.kind,
                    b.id or "none",
                    human_age(b.created, self.started) if age is not None else "-",
                    fresh,
                    "yes" if b.restored else "no",
                )
            )
        return rows

    def markdown(self) -> str:
        when = self.started.strftime("%Y-%m-%d %H:%M:%S UTC")
        lines = [
            f"# Drill {self.id}: {self.source} restored onto {self.target} — {self.verdict}",
            "",
            f"- started {when}, took {self.wall_seconds:.1f} s in all",
            f"- measured RTO (restore.server steps): {self.rto_line()}",
            f"- code: {self.code or '-'}; packages: {self.pip or '-'}",
            f"- backups: {self.origin_line()}",
        ]
        lines += [f"- failed: {_cell(f)}" for f in self.failures]
        lines += ["", "## Restore steps (restore.server)", ""]
        lines += _table(
            ["#", "step", "result", "seconds", "detail"],
            [(s.number, s.title, s.result, f"{s.seconds:.1f}", s.detail) for s in self.steps]
            + [
                (
                    "",
                    "**total (RTO)**",
                    "",
                    f"{self.rto_seconds:.1f}",
                    f"runbook: {self.rto_target}",
                )
            ],
        )
        lines += ["", f"## Backups of {self.source} (RPO: age at drill time)", ""]
        lines += _table(["kind", "id", "age", "max age", "restored"], self.backup_rows())
        lines += ["", f"## Checklist on {self.target}", ""]
        if self.checklist is None:
            lines.append(f"Not run: {self.checklist_error or 'the restore failed'}")
        else:
            lines.append(f"{self.checklist.title}")
            lines.append("")
            lines += _table(
                ["", "group", "item", "evidence", "fix"],
                [
                    (r.state, r.group, r.item, r.evidence, r.fix.command if r.fix else "")
                    for r in self.checklist.rows
                ],
            )
        return "\n".join(lines) + "\n"


def _cell(value: object) -> str:
    return " ".join(str(value).split()).replace("|", "\\|")


def _table(columns: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    out += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return out
