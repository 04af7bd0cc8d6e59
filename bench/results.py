"""One row per figure: both sides' raw samples, the ratio, what it means, the target;
rendered as a markdown table and as JSON."""

from __future__ import annotations

import json
import operator
import os
import platform
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .measure import BenchError, median

COMPARE = {"<=": operator.le, ">=": operator.ge, "<": operator.lt}


@dataclass
class Side:
    label: str  # what ran, e.g. "fab -H prod5 backup.all"
    samples: list[float]  # one per repetition, in `unit`
    unit: str = "s"
    size_mb: float | None = None  # data moved, for MB/s
    reduce: str = "median"  # or "max" (peak memory: the worst repetition counts)

    @property
    def value(self) -> float:
        return max(self.samples) if self.reduce == "max" else median(self.samples)

    def show(self) -> str:
        text = f"{self.value:.1f} {self.unit}" if self.unit != "s" else f"{self.value:.2f} s"
        if self.size_mb and self.unit == "s":
            text += f" ({self.size_mb / self.value:.0f} MB/s)"
        return text


@dataclass
class Row:
    key: str  # "1", "3a", ...
    title: str
    meaning: str  # what the ratio is, and which way is better
    op: str  # "<=", ">=" or "<"
    target: float
    ours: Side | None = None
    baseline: Side | None = None
    ratio: float | None = None
    notes: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def met(self) -> bool | None:
        if self.error or self.ratio is None:
            return None
        return COMPARE[self.op](self.ratio, self.target)

    def verdict(self) -> str:
        return {True: "yes", False: "**NO**", None: "error"}[self.met]


@dataclass(frozen=True)
class Figure:
    """What every row of one figure shares: its rows, and a failed case as its row."""

    title: str
    meaning: str  # what the ratio is, and which way is better
    op: str = "<="
    target: float = 1.0

    def row(self, key: str, case: str, ours: Side, base: Side, target: float,
            notes: list[str]) -> Row:  # fmt: skip
        ratio = ours.value / base.value
        return Row(key, f"{self.title}: {case}", self.meaning, self.op, target, ours, base,
                   ratio, notes)  # fmt: skip

    def failed(self, key: str, exc: BenchError) -> Row:
        return Row(key, self.title, self.meaning, self.op, self.target, error=str(exc))

    def case(self, key: str, run: Callable[[], Row]) -> Row:
        """One case; a failure is that case's row, and the others still run."""
        try:
            return run()
        except BenchError as exc:
            return self.failed(key, exc)


def md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(rows: list[Row], info: dict[str, Any]) -> str:
    quick = " **Quick run: a fifth of the data; not comparable.**" if info["quick"] else ""
    head = [
        f"# Benchmarks ({info['finished']})",
        "",
        f"Repetitions per side: {info['reps']} (median shown; sides alternate which runs first)."
        + quick,
        f"Machine: {info['machine']}; load average before/after: "
        f"{info['load_before']} / {info['load_after']}. Whole run: {info['seconds']:.0f} s.",
        "",
        "| # | figure | ours | baseline | ratio | target | met |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    lines = []
    notes = []
    for r in rows:
        ours = f"{md_cell(r.ours.label)}: {r.ours.show()}" if r.ours else "-"
        base = f"{md_cell(r.baseline.label)}: {r.baseline.show()}" if r.baseline else "-"
        ratio = f"{r.ratio:.3g}×" if r.ratio is not None else "-"
        lines.append(
            f"| {r.key} | {md_cell(r.title)} | {ours} | {base} | {ratio} | "
            f"{r.op} {r.target:g}× | {r.verdict()} |"
        )
        for note in ([f"error: {r.error}"] if r.error else []) + r.notes + _samples(r):
            notes.append(f"- **{r.key}** {md_cell(note)}")
    meanings = [f"- **{r.key}** ratio = {r.meaning}" for r in rows]
    return "\n".join(
        [*head, *lines, "", "What the ratios mean:", *meanings, "", "Notes:", *notes, ""]
    )


def _samples(row: Row) -> list[str]:
    sides = [s for s in (row.ours, row.baseline) if s]
    if not sides:
        return []
    return ["samples: " + "; ".join(f"{s.label}: {_numbers(s.samples)} {s.unit}" for s in sides)]


def _numbers(values: list[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


def as_json(rows: list[Row], info: dict[str, Any]) -> str:
    data = {
        "info": info,
        "figures": [
            {
                **asdict(r),
                "met": r.met,
                "ours_median": r.ours.value if r.ours else None,
                "baseline_median": r.baseline.value if r.baseline else None,
            }
            for r in rows
        ],
    }
    return json.dumps(data, indent=2)


def run_info(reps: int, quick: bool) -> dict[str, Any]:
    return {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "reps": reps,
        "quick": quick,
        "machine": f"{platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "load_before": _load(),
        "env": {"PYTHONDONTWRITEBYTECODE": os.environ.get("PYTHONDONTWRITEBYTECODE")},
    }


def finish_info(info: dict[str, Any], seconds: float) -> dict[str, Any]:
    return {
        **info,
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_after": _load(),
        "seconds": seconds,
    }


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def write(rows: list[Row], info: dict[str, Any], into: Path) -> tuple[Path, Path]:
    """bench/results/<stamp>.{md,json}, and the same as latest.{md,json}."""
    into.mkdir(parents=True, exist_ok=True)
    stamp = info["finished"].replace(":", "").replace("-", "").replace("+0000", "Z")
    md, js = markdown(rows, info), as_json(rows, info)
    for name in (stamp, "latest"):
        (into / f"{name}.md").write_text(md)
        (into / f"{name}.json").write_text(js + "\n")
    return into / f"{stamp}.md", into / f"{stamp}.json"
