"""What every figure gets: settings, the local workspace, the box data, and shared helpers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .boxdata import BoxData
from .commands import FAB, fab_argv, fab_env
from .measure import BenchError, Child, median, run_child
from .results import Side
from .settings import Settings
from .workspace import Workspace


@dataclass
class Startup:
    seconds: float  # median wall time of `fab --list`: interpreter start and imports
    max_rss_mb: float


@dataclass
class BenchContext:
    settings: Settings
    workspace: Workspace
    data: BoxData
    _startup: Startup | None = field(default=None, init=False)

    def fab(self, inventory: Path, hosts: Sequence[str], *task: str) -> Child:
        """Run the project's `fab` CLI against a bench inventory; raises BenchError on failure."""
        argv = fab_argv(hosts, *task)
        try:
            return run_child(argv, env=fab_env(inventory), what=" ".join(["fab", *argv[1:]]))
        except BenchError as exc:
            # The summary table (plain text: tab-separated) says why each host failed.
            failed = [ln.replace("\t", " ") for ln in exc.stdout.splitlines() if "\tFAILED\t" in ln]
            raise BenchError("; ".join([str(exc), *failed])) from None

    def startup_note(self, ours: Side, baseline: Side) -> str:
        """The ratio again with `fab --list` time taken off ours: an estimate of the task's own
        work, to show how much of a CLI figure is interpreter start (the headline keeps it)."""
        startup = self.startup().seconds
        return (
            f"`fab --list` alone (interpreter start and imports) takes {startup:.2f} s; "
            f"without it ours would be about {ours.value - startup:.2f} s, ratio "
            f"{(ours.value - startup) / baseline.value:.3g}× (estimate, not the figure)"
        )

    def startup(self) -> Startup:
        """What `fab` costs before any task runs, to say how much of a CLI figure it is."""
        if self._startup is None:
            inventory, _ = self.workspace.fresh_store()
            runs = [
                run_child([str(FAB), "--list"], env=fab_env(inventory), what="fab --list")
                for _ in range(max(3, self.settings.reps))
            ]
            self._startup = Startup(
                median([r.seconds for r in runs]), max(r.max_rss_kb for r in runs) / 1024
            )
        return self._startup
