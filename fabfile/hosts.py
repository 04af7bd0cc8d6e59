"""hosts.*: what the inventory says, and which host keys we trust."""

from __future__ import annotations

from invoke import Collection, task

from .core import output
from .core.errors import RemoteCommandError
from .core.model import Host
from .core.runner import confirm, guarded, load, run_per_host, target_hosts


@task(name="list")
@guarded
def list_(c, json=False):
    """Show the inventory's hosts with address, user, groups and roles."""
    hosts = target_hosts(c, load(c), required=False)
    rows = [
        {
            "host": h.name,
            "address": h.address or "(ssh config)",
            "port": h.port or 22,
            "user": h.user or "(ssh config)",
            "groups": ",".join(h.groups),
            "sudo": h.sudo,
            "scratch": h.scratch,
        }
        for h in hosts
    ]
    if json:
        output.emit_json(rows)
        return
    columns = list(rows[0]) if rows else ["host"]
    output.table("Inventory hosts", columns, [list(r.values()) for r in rows])


@task
@guarded
def ping(c):
    """Connect with host-key checking and run `true`; report the round trip."""
    from .core.transport import Transport

    def work(host: Host) -> str:
        with Transport(host) as transport:
            transport.run(["true"])
        return "reachable, host key verified"

    run_per_host(c, "hosts.ping", work, title="Reachability")


@task(
    name="exec",
    help={
        "command": "the shell command to run on each host",
        "raw": "print the output unmasked (env values included)",
    },
)
@guarded
def exec_(c, command, raw=False):
    """Run a shell command on -H hosts over verified connections (the ad-hoc form)."""
    from .core import crypto
    from .core.transport import Transport

    show = output.info_unmasked if raw else output.info

    def work(host: Host) -> str:
        if not raw:
            # Masking knows only parsed values: those of the host's env backup, for `cat`.
            crypto.register_env_backup(host)
        with Transport(host) as transport:
            result = transport.run(["sh", "-c", command], check=False)
        for line in (result.stdout + result.stderr).splitlines():
            show(f"{host.name}: {line}")
        if not result.ok:
            raise RemoteCommandError(f"{host.name}: exited {result.exit_code}")
        return "exit 0"

    run_per_host(c, "hosts.exec", work, title="Command")


@task
@guarded
def trust(c, yes=False):
    """Show a host's key fingerprint and record it as trusted after you confirm."""
    from .core import hostkeys
    from .core.transport import scan_host_key

    def work(host: Host) -> str:
        address, port = host.address or host.name, host.port or 22
        key = scan_host_key(address, port, host.connect_timeout)
        name = hostkeys.known_hosts_name(address, port)
        record_in = host.known_hosts or hostkeys.USER_KNOWN_HOSTS
        known = hostkeys.known_key(record_in, name, key.get_name())
        if known is not None and known == key:
            return f"already trusted: {hostkeys.describe(key)}"
        if known is not None:
            raise hostkeys.HostKeyError(
                f"{host.name}: {record_in} has a different {key.get_name()} key for {name}; "
                f"remove it with ssh-keygen -f {record_in} -R '{name}' if the box was rebuilt"
            )
        output.info(f"{host.name} ({name}) offers {hostkeys.describe(key)}")
        confirm(f"Trust this key and record it in {record_in}?", yes=yes)
        hostkeys.append_known_host(record_in, name, key)
        return f"trusted {hostkeys.describe(key)}"

    run_per_host(c, "hosts.trust", work, title="Host keys")


@task(name="ssh-config")
@guarded
def ssh_config(c):
    """Print an OpenSSH config for the inventory (for plain ssh, scp and rsync)."""
    for h in target_hosts(c, load(c), required=False):
        lines = [f"Host {h.name}"]
        lines += [f"    HostName {h.address}"] if h.address else []
        lines += [f"    Port {h.port}"] if h.port else []
        lines += [f"    User {h.user}"] if h.user else []
        lines += [f"    IdentityFile {h.identity_file}"] if h.identity_file else []
        lines += [f"    UserKnownHostsFile {h.known_hosts}"] if h.known_hosts else []
        lines += ["    StrictHostKeyChecking yes" if h.host_key_policy == "strict" else ""]
        print("\n".join(line for line in lines if line) + "\n")


ns = Collection("hosts", list_, ping, exec_, trust, ssh_config)
