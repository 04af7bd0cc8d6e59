"""pytest plugin: the fault and attack reports, one row per class. `invoke faults` loads it.

A test joins a report through its marker, nothing else:

    @pytest.mark.fault("connection dies mid-transfer", checked="latest kept; a retry works")
    @pytest.mark.attack("git config as root", checked="no root process ran the hook")

Each test with the marker (each parametrized case) is one case of its class; it
survived (withstood) when it passed in every phase. The tables are Markdown, for the README.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

_RANK = {"skipped": 0, "passed": 1, "failed": 2}  # a case's worst phase decides


@dataclass
class Row:
    tried: int = 0
    survived: int = 0
    not_run: int = 0
    checked: list[str] = field(default_factory=list)


class FaultReport:
    def __init__(self, marker: str, title: str, head: tuple[str, str]) -> None:
        self.marker, self.title, self.head = marker, title, head
        self.cases: dict[str, tuple[str, str]] = {}  # nodeid -> (fault class, what it checks)
        self.outcomes: dict[str, str] = {}

    @pytest.hookimpl(trylast=True)  # after -k/-m deselection
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        for item in items:
            mark = item.get_closest_marker(self.marker)
            if mark is not None:
                fault = mark.args[0] if mark.args else "(unnamed)"
                self.cases[item.nodeid] = (fault, mark.kwargs.get("checked", ""))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.nodeid not in self.cases:
            return
        if report.passed and report.when != "call":
            return  # a passing setup or teardown says nothing yet
        previous = self.outcomes.get(report.nodeid)
        if previous is None or _RANK[report.outcome] > _RANK[previous]:
            self.outcomes[report.nodeid] = report.outcome

    def rows(self) -> dict[str, Row]:
        rows: dict[str, Row] = {}
        for nodeid, (fault, checked) in self.cases.items():
            row = rows.setdefault(fault, Row())
            outcome = self.outcomes.get(nodeid)
            if outcome is None:
                continue  # deselected or never reached
            if outcome == "skipped":
                row.not_run += 1
            else:
                row.tried += 1
                row.survived += outcome == "passed"
            if checked and checked not in row.checked:
                row.checked.append(checked)
        return {fault: row for fault, row in rows.items() if row.tried or row.not_run}

    def table(self) -> list[str]:
        first, passed = self.head
        lines = [f"| {first} | cases tried | {passed} | what was checked |", "|---|---|---|---|"]
        for fault, row in self.rows().items():
            skipped = f" ({row.not_run} not run)" if row.not_run else ""
            checked = "; ".join(row.checked).replace("|", "\\|")
            lines.append(f"| {fault} | {row.tried}{skipped} | {row.survived} | {checked} |")
        return lines

    def pytest_terminal_summary(self, terminalreporter) -> None:
        rows = self.rows()
        if not rows:
            return
        broken = sum(r.tried - r.survived for r in rows.values())
        title = self.title + (f": {broken} case(s) NOT {self.head[1]}" if broken else "")
        terminalreporter.section(title, sep="=", red=bool(broken), green=not broken, bold=True)
        for line in self.table():
            terminalreporter.line(line)


def pytest_configure(config: pytest.Config) -> None:
    faults = FaultReport("fault", "fault report", ("fault", "survived"))
    attacks = FaultReport("attack", "attack report", ("attack", "withstood"))
    config.pluginmanager.register(faults, "zachot-fault-report")
    config.pluginmanager.register(attacks, "zachot-attack-report")
