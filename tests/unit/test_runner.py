import pytest
from invoke import Config, Context
from invoke.exceptions import Exit

from fabfile.core import runner
from fabfile.core.errors import ConnectError, ExitCode, UsageError
from fabfile.core.inventory import load_inventory
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


def test_target_hosts_come_from_the_whole_h_list_or_every_host(tmp_path):
    path = tmp_path / "inventory.yml"
    path.write_text(
        "all:\n  vars:\n    backup:\n      offsite_host: vault\n"
        "  hosts:\n    prod:\n    prod2:\n    vault:\n"
    )
    inventory = load_inventory(path)

    def names(hosts_flag: str | None, **kwargs) -> list[str]:
        c = Context(Config(overrides={"zachot": {"hosts": hosts_flag}}))
        return [h.name for h in runner.target_hosts(c, inventory, **kwargs)]

    assert names("prod2,vault") == ["prod2", "vault"]
    assert names(None, required=False) == ["prod", "prod2", "vault"]
    assert names(None, required=False, offsite_boxes=False) == ["prod", "prod2"]
    with pytest.raises(UsageError, match="name a host or group with -H"):
        names(None)
