"""drill: the runbook's periodic test restore, made routine.

The latest backups of a source host go onto a scratch host through
restore.server's own plan (recovery.run_recovery), the checklist runs there,
and a report with the measured RTO and RPO is kept in the store
(history.py). guard.py refuses any host the inventory does not mark scratch.
"""

from .guard import DrillRefused, refusal
from .history import LastDrill, last
from .report import Drill
from .run import DrillFailed, drill

__all__ = ["Drill", "DrillFailed", "DrillRefused", "LastDrill", "drill", "last", "refusal"]
