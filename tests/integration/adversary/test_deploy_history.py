"""The deploy history is root's record: it never lives where the service user can plant a link.

It used to be /opt/zachot/deploy/revisions.log, appended by root in a directory that
`zachot` owns: a link planted there made root append a line to any file (here, the canary).
"""

from __future__ import annotations

import pytest

from .hostile import (
    CANARY,
    ROOT_DIR,
    attacker,
    canary_state,
    prod7_lab,  # noqa: F401
    setup_canaries,
)

pytestmark = pytest.mark.integration


@pytest.mark.attack(
    "symlink to a root-only file",
    checked="deploy history: root appends only in its own /var/lib dir; canary unchanged",
)
def test_a_link_planted_for_the_deploy_history_is_not_followed(prod7):
    setup_canaries(prod7)
    before = canary_state(prod7)
    attacker(
        prod7,
        f"rm -rf {ROOT_DIR}/deploy && mkdir {ROOT_DIR}/deploy && "
        f"ln -s {CANARY} {ROOT_DIR}/deploy/revisions.log",
    )
    run = prod7.fab("deploy.release", "--to=v1.1.0", "--yes")
    assert run.returncode == 0, run.stdout + run.stderr
    assert canary_state(prod7) == before
    record = prod7.sh("cat /var/lib/zachot-ops/revisions.log")
    assert '"action": "release"' in record or '"action":"release"' in record
    assert prod7.sh("stat -c '%U %a' /var/lib/zachot-ops").split() == ["root", "755"]
