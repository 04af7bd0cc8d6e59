import pytest
from invoke.exceptions import Exit

from fabfile.core import runner
from fabfile.core.errors import ConnectError, ExitCode, UsageError
from fabfile.core.model import Host

pytestmark = pytest.mark.unit

HOSTS = [Host(name=n) for n in ("prod", "staging", "dead")]


def work(host: Host) -> str:
    if host.name == "dead":
        raise ConnectError("dead (10.0.0.9:22): connection refused")
    return f"{host.name} done"


def test_one_failing_host_does_not_stop_the_others():
    outcomes = runner.for_each_host(HOSTS, work, title="t", parallel=2)
    assert [(o.host, o.ok) for o in outcomes] == [
        ("prod", True),
        ("staging", True),
        ("dead", False),
    ]
    with pytest.raises(Exit) as exc:
        runner.finish(outcomes)
    assert exc.value.code == ExitCode.PARTIAL


def test_single_host_failure_keeps_its_own_exit_code():
    outcomes = runner.for_each_host(HOSTS[2:], work, title="t")
    with pytest.raises(Exit) as exc:
        runner.finish(outcomes)
    assert exc.value.code == ExitCode.UNREACHABLE


def test_all_ok_exits_normally():
    runner.finish(runner.for_each_host(HOSTS[:2], work, title="t"))


def test_parallel_must_be_positive():
    with pytest.raises(UsageError, match="--parallel"):
        runner.for_each_host(HOSTS, work, title="t", parallel=0)


def test_confirm_refuses_without_yes_when_not_interactive(monkeypatch):
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    with pytest.raises(UsageError, match="refusing without --yes"):
        runner.confirm("Restore?", yes=False)
    runner.confirm("Restore?", yes=True)
