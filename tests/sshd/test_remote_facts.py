"""Issue 12: facts over a real SSH connection: a failed command fails, "absent" is an answer."""

from __future__ import annotations

from dataclasses import replace

import pytest

from fabfile.core import facts
from fabfile.core.errors import FactError
from fabfile.core.model import Layout
from fabfile.core.restores import server_facts, steps
from fabfile.core.transport import Transport
from tests.sshd.helpers import make_server

pytestmark = pytest.mark.sshd


@pytest.fixture
def transport(sshd):
    with Transport(sshd.host) as connected:
        yield connected


def test_a_missing_binary_fails_the_fact_with_its_code_and_stderr(transport):
    with pytest.raises(FactError, match=r"`no-such-tool-zz --version` exited 127: .*not found"):
        facts.gather(transport, facts.Fact(("no-such-tool-zz", "--version"), str))


def test_absent_things_are_answers(transport, tmp_path):
    assert facts.gather(transport, facts.is_file(str(tmp_path / "none"))) is False
    assert facts.gather(transport, server_facts.user_exists("no-such-user-zz")) is False
    assert facts.gather(transport, facts.regular_files(str(tmp_path / "none"))) == []
    assert facts.gather(transport, steps.digests(str(tmp_path / "none"))) == {}
    layout = Layout(root=str(tmp_path), repo_dir=str(tmp_path / "none"), service_user="root")
    assert facts.gather(transport, facts.deployed_ref(layout)) == facts.DeployedRef(None, None)


def test_a_broken_clone_is_an_error_not_nothing_deployed(transport, tmp_path):
    layout = make_server(tmp_path / "server")
    assert facts.gather(transport, facts.deployed_ref(layout)).describe == "v1.0.0"
    (tmp_path / "server" / "repo" / ".git" / "HEAD").write_text("garbage\n")
    with pytest.raises(FactError, match="exited 128"):
        facts.gather(transport, facts.deployed_ref(layout))


def test_a_listing_that_cannot_reach_its_directory_fails(transport, tmp_path):
    with pytest.raises(FactError, match="No such file or directory"):
        facts.gather(transport, facts.regular_files(str(tmp_path / "gone" / "logs")))
    layout = replace(make_server(tmp_path / "server"), service_user="nobody", root="/")
    with pytest.raises(FactError, match="Permission denied"):  # the sshd tier's tmp is 0700
        facts.gather(transport, facts.regular_files(layout.logs_dir, user=layout))
