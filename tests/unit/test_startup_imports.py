"""Every `fab` start loads the whole task collection; what that loads is its start-up cost.

Task modules import the core they need inside their functions, so `fab --list` or
`fab -H prod backup.logs` does not pay for the drill report, the checklist, the S3 client,
Redis or rich tables. The check is on which modules load, not on a timing (this machine is
shared and noisy).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]

# Loaded only by the task (or the terminal) that needs them.
LAZY = (
    "boto3",
    "botocore",
    "redis",
    "rich",
    "prometheus_client",
    "pyrage",
    "dotenv",
    "urllib.request",
    "fabfile.core.transport",
    "fabfile.core.store",
    "fabfile.core.offsite",
    "fabfile.core.drill",
    "fabfile.core.checklist",
    "fabfile.core.restores",
    "fabfile.core.deploys",
    "fabfile.core.backups",
)


def _loaded(statement: str) -> set[str]:
    code = f"{statement}; import json, sys; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return set(json.loads(done.stdout.splitlines()[-1]))


def test_loading_the_collection_imports_no_heavy_module():
    loaded = _loaded("import fabfile")
    assert "fabfile.backup.pull" in loaded  # the collection itself did load
    assert sorted(m for m in LAZY if m in loaded) == []
    assert "paramiko" not in loaded  # Fabric's program loads it; the tasks need not


def test_the_fab_program_adds_only_fabric():
    loaded = _loaded("import fabfile.cli")
    assert sorted(m for m in LAZY if m in loaded) == []


def test_plain_output_does_not_load_rich():
    # Not a terminal (cron, the bench, a pipe): lines and tables go out without rich.
    code = (
        "from fabfile.core import output; output.info('x'); output.warn('y'); "
        "output.table('t', ['a'], [['1']])"
    )
    loaded = _loaded(code)
    assert "rich" not in loaded
