"""Figure 2: one 500 MB incompressible file through Transport.pull against `scp`.

Both sides are timed from connecting to the file being complete on local disk, as
the login user (sudo=False: the file is world-readable, and scp cannot sudo).
Transport.pull also hashes both ends and fsyncs before its rename; scp does neither.
"""

from __future__ import annotations

from fabfile.core.transport import Transport

from ..commands import negotiated_cipher, scp_argv
from ..context import BenchContext
from ..measure import paired, run_child, timed
from ..results import Row, Side
from ..settings import MB, OWN_BOX

TITLE = "pull one incompressible file"
OP, TARGET = ">=", 1.1
MEANING = "Transport.pull MB/s / scp MB/s (higher is better)"


def run(ctx: BenchContext) -> list[Row]:
    host = ctx.workspace.host(OWN_BOX)
    remote = ctx.data.big_file()
    size_mb = ctx.settings.big_file / MB
    local = ctx.workspace.path("pulled.bin")
    ciphers: set[str] = set()

    def ours() -> float:
        def pull() -> None:
            with Transport(host) as transport:
                transport.pull(remote, local, sudo=False)
                ciphers.add(transport.connection.client.get_transport().remote_cipher)

        try:
            return timed(pull)
        finally:
            local.unlink(missing_ok=True)

    def scp() -> float:
        try:
            return run_child(scp_argv(host, remote, local), what="scp").seconds
        finally:
            local.unlink(missing_ok=True)

    ours(), scp()  # warm-up: page cache on the box, connections
    mine, base = paired(ctx.settings.reps, ours, scp)
    ours_side = Side("Transport.pull", mine, size_mb=size_mb)
    base_side = Side("scp", base, size_mb=size_mb)
    return [
        Row(
            "2",
            f"{TITLE} ({size_mb:.0f} MB, {OWN_BOX})",
            MEANING,
            OP,
            TARGET,
            ours=ours_side,
            baseline=base_side,
            ratio=base_side.value / ours_side.value,
            notes=[
                f"cipher: ours {', '.join(sorted(ciphers))}, scp {negotiated_cipher(host)}; "
                "both times include connecting",
                "ours also sha256-hashes on both ends and fsyncs before rename; scp does not",
            ],
        )
    ]
