import pytest

from fabfile.core.restores.steps import parse_digests

pytestmark = pytest.mark.unit


def test_digests_of_a_file_and_its_kept_copies():
    out = (
        "4a2f" + "0" * 60 + "  /opt/zachot/envs/prod/etc/zachot.env\n"
        "9b1c" + "0" * 60 + "  /opt/zachot/envs/prod/etc/zachot.env.pre-restore.20261124_151500\n"
    )
    found = parse_digests(out)
    assert found["/opt/zachot/envs/prod/etc/zachot.env"].startswith("4a2f")
    assert len(found) == 2
