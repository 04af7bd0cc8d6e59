"""What a bench run uses: repetitions, data sizes and which sandbox boxes."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SANDBOX_INVENTORY = ROOT / "sandbox" / "inventory.yml"
RESULTS = ROOT / "bench" / "results"
FABFILE = ROOT / "fabfile"
MB = 1_000_000

# The boxes this bench may fill and clean (other agents use prod..prod4 and new-box).
OWN_BOX = "prod5"
# Figure 6 breaks and recovers these; both are reset afterwards.
RTO_BOX = "prod7"
SCRATCH_BOX = "new-box"
FLEET = {
    1: ("prod5",),
    4: ("prod5", "prod6", "prod7", "prod8"),
    8: ("prod", "prod2", "prod3", "prod4", "prod5", "prod6", "prod7", "prod8"),
}


@dataclass(frozen=True)
class Settings:
    reps: int = 3  # each side is run this many times, interleaved; the median is reported
    big_file: int = 500 * MB  # figure 2: one incompressible file
    log_files: int = 15  # figure 3: this many plain files and as many .gz files ...
    log_file_size: int = 10 * MB  # ... of this size each (about 300 MB in all)
    memory_total: int = 500 * MB  # figure 5: logs directory size for the RSS run
    rss_limit_mb: float = 100.0
    quick: bool = False

    def quick_variant(self) -> Settings:
        """One repetition and a fifth of the data: a smoke run, not comparable figures."""
        return replace(
            self,
            reps=1,
            big_file=self.big_file // 5,
            log_files=3,
            memory_total=self.memory_total // 5,
            quick=True,
        )

    @property
    def logs_total(self) -> int:
        return 2 * self.log_files * self.log_file_size
