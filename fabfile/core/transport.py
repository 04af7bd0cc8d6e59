"""The one module that talks SSH: commands, pulls and pushes for one host.

Commands are argv lists, shell-quoted here and nowhere else. Transfers use a raw
exec channel running agent.py on the server (Fabric's `c.run` corrupts binary
and its SFTP `get` is slow; see FACTS.md). Every transfer is hashed on both
ends, written under a temporary name, fsynced and renamed only when the hashes
agree, so an interrupted transfer never leaves a partial file under its name.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import secrets as random_names
import select
import shlex
import shutil
import socket
import tarfile
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Generic, TypeVar

import paramiko
from fabric import Config, Connection

from . import hostkeys, output
from .agent import SMALL_FILE_CAP, TRAILER
from .agent import SOURCE as AGENT_SOURCE
from .errors import (
    ConnectError,
    HostKeyError,
    RemoteCommandError,
    SudoError,
    TransferError,
    local_write_error,
)
from .model import Host

# Our errors say what failed; paramiko's own log lines (e.g. a refused tunnel
# channel) would otherwise reach stderr through logging's last-resort handler.
logging.getLogger("paramiko").setLevel(logging.CRITICAL)

CHUNK = 1 << 20
# No byte for this long means the link is dead; keepalives keep idle links open.
IDLE_TIMEOUT = 120.0
KEEPALIVE = 15
TUNNEL_POLL = 0.1  # seconds; how soon a tunnel's threads notice it is closing
LINK_SETTLE = 2.0  # seconds to let paramiko notice a dead link it half-noticed
GCM_FIRST = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")

T = TypeVar("T")


def _gcm_first_transport(sock: Any, **kwargs: Any) -> paramiko.Transport:
    if isinstance(sock, socket.socket) and sock.family in (socket.AF_INET, socket.AF_INET6):
        # Without it Nagle holds each small SSH message (a channel open, an exec, a window
        # adjust) until the previous one is acknowledged: up to a delayed ACK per exchange.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    # paramiko ranks AES-GCM last; on 2 vCPU it is the fastest cipher by far.
    transport = paramiko.Transport(sock, **kwargs)
    opts = transport.get_security_options()
    preferred = tuple(c for c in GCM_FIRST if c in opts.ciphers)
    opts.ciphers = preferred + tuple(c for c in opts.ciphers if c not in preferred)
    return transport


def scan_host_key(address: str, port: int, timeout: float) -> paramiko.PKey:
    """A server's host key, for hosts.trust: no authentication, nothing run there."""
    try:
        sock = socket.create_connection((address, port), timeout=timeout)
    except OSError as exc:
        raise ConnectError(f"cannot reach {address}:{port}: {exc.strerror or exc}") from exc
    transport = paramiko.Transport(sock)
    try:
        transport.start_client(timeout=timeout)
        return transport.get_remote_server_key()
    except paramiko.SSHException as exc:
        raise ConnectError(f"SSH handshake with {address}:{port} failed: {exc}") from exc
    finally:
        transport.close()


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    exit_code: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


@dataclass(frozen=True)
class RemoteFile:
    path: str
    sha256: str
    size: int
    mode: int
    owner: str
    group: str
    mtime: float


@dataclass(frozen=True)
class PulledFile:
    remote: RemoteFile
    data: bytes


@dataclass(frozen=True)
class StreamResult:
    sha256: str
    size: int
    stderr: bytes = b""  # what the command said (tar's listing and warnings), trailer included


class LaterInput:
    """stdin known only after its command has started: tar's file list, say, once the listing
    beside it returns. The exchange (and the server's start-up) runs meanwhile; give() sends."""

    def __init__(self) -> None:
        self._ready = threading.Event()
        self._data = b""

    def give(self, data: bytes) -> None:
        """Always once, b"" when there is nothing to send: the command waits for it."""
        self._data = data
        self._ready.set()

    def wait(self) -> bytes:
        self._ready.wait()
        return self._data


@dataclass
class _Exchange:
    exit_code: int
    stdout: bytes
    stderr: bytes


class Transport:
    """One verified SSH connection to one inventory host, opened on first use."""

    def __init__(self, host: Host, *, sudo_password: str | None = None) -> None:
        self.host = host
        self._sudo_password = sudo_password or (
            os.environ.get(host.sudo_password_env) if host.sudo_password_env else None
        )
        self._sudo_mode: str | None = None
        self._connection: Connection | None = None

    # -- connection -----------------------------------------------------
    def __enter__(self) -> Transport:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def connection(self) -> Connection:
        """The opened Fabric Connection (users, hosts; SSH I/O stays in this module)."""
        return self.open()._connection  # type: ignore[return-value]

    @property
    def is_open(self) -> bool:
        """Whether the SSH connection is up, without opening it again."""
        return self._connection is not None and self._connection.is_connected

    def open(self) -> Transport:
        if self._connection is not None and self._connection.is_connected:
            return self
        conn = self._make_connection()
        try:
            conn.open()
        except HostKeyError:
            conn.close()
            raise
        except paramiko.BadHostKeyException as exc:
            conn.close()
            raise hostkeys.changed_key_error(self.host, exc) from None
        except Exception as exc:
            conn.close()
            raise self._connect_error(conn, exc) from None
        conn.client.get_transport().set_keepalive(KEEPALIVE)
        self._connection = conn
        return self

    def close(self) -> None:
        if self._connection is not None:
            connection, self._connection = self._connection, None
            # On a link that died, closing (SFTP's goodbye) raises EOFError: nothing to say.
            with suppress(paramiko.SSHException, EOFError, OSError):
                try:
                    connection.close()
                finally:
                    connection.client.close()

    def _make_connection(self) -> Connection:
        host = self.host
        connect_kwargs: dict[str, Any] = {
            "transport_factory": _gcm_first_transport,
            "banner_timeout": host.connect_timeout,
            "auth_timeout": host.connect_timeout,
        }
        if host.identity_file:
            connect_kwargs["key_filename"] = [str(host.identity_file)]
            connect_kwargs["look_for_keys"] = False
        # Look the inventory name up in ~/.ssh/config, so ProxyJump, User and
        # IdentityFile there fill what the inventory leaves out.
        conn = Connection(
            host.name,
            user=host.user,
            port=host.port,
            connect_timeout=host.connect_timeout,
            connect_kwargs=connect_kwargs,
            config=Config(),
        )
        if host.address:
            conn.host = host.address
        conn.client.set_missing_host_key_policy(hostkeys.policy_for(host))
        hostkeys.load_known_hosts(conn.client, host)
        # Fabric builds ProxyJump hops with its accept-any-key policy: verify each like the host.
        for hop in _hops(conn):
            hop.client.set_missing_host_key_policy(
                hostkeys.policy_for(host, hop=f"{hop.host}:{hop.port}")
            )
            hostkeys.load_known_hosts(hop.client, host)
            hop.connect_timeout = host.connect_timeout
        return conn

    def _connect_error(self, conn: Connection, exc: Exception) -> ConnectError:
        where = f"{self.host.name} ({conn.host}:{conn.port})"
        seconds = self.host.connect_timeout
        if isinstance(exc, socket.timeout | TimeoutError):
            why = f"no answer in {seconds:g} s; is the box up, is the address right?"
        elif isinstance(exc, paramiko.AuthenticationException):
            why = f"authentication failed for user {conn.user!r}; check user and identity_file"
        elif _unreachable(exc):
            why = "host unreachable (no route, or no reply); is the box up, is the address right?"
        elif isinstance(
            exc, paramiko.ssh_exception.NoValidConnectionsError | ConnectionRefusedError
        ):
            why = "connection refused; is sshd running and is the port right?"
        elif isinstance(exc, ConnectionError | EOFError) or (
            isinstance(exc, paramiko.SSHException) and _closed_before_banner(exc)
        ):
            # Taken, then closed or reset at once: a firewall or proxy, or not an sshd.
            why = (
                "the connection was closed before the SSH handshake finished; is it an SSH "
                "port, or is a firewall or proxy in the way?"
            )
        elif isinstance(exc, socket.gaierror):
            why = f"cannot resolve {conn.host!r}; check address in the inventory"
        elif isinstance(exc, paramiko.SSHException) and str(exc) in _HANDSHAKE_STALLED:
            # The port took the connection but no SSH handshake finished: a hung
            # sshd, an overloaded box, or a port that is not SSH at all.
            why = f"no SSH handshake in {seconds:g} s; is sshd hung, is the port right?"
        else:
            why = f"{type(exc).__name__}: {exc}"
        return ConnectError(f"{where}: {why}")

    # -- commands -------------------------------------------------------
    def run(
        self,
        argv: Sequence[str],
        *,
        sudo: bool = False,
        check: bool = True,
        stdin: bytes | None = None,
        timeout: float | None = None,
        errors: str = "replace",
    ) -> CommandResult:
        """Run argv (quoted here) and capture its output as text.

        errors="surrogateescape" keeps stdout's bytes exact (file names sent back later)."""
        ex = self._sudo_exchange(argv, sudo, stdin=stdin or b"", timeout=timeout)
        result = CommandResult(
            tuple(argv),
            ex.exit_code,
            ex.stdout.decode("utf-8", errors),
            ex.stderr.decode("utf-8", "replace"),
        )
        if check and not result.ok:
            last = (result.stderr.strip().splitlines() or ["no error output"])[-1]
            raise RemoteCommandError(
                f"{self.host.name}: `{shlex.join(argv)}` exited {result.exit_code}: {last}"
            )
        return result

    def _sudo_exchange(
        self,
        argv: Sequence[str],
        sudo: bool,
        *,
        stdin: bytes | LaterInput,
        sink: Callable[[bytes], None] | None = None,
        timeout: float | None,
    ) -> _Exchange:
        """Run argv, with sudo if asked. The first sudo command is also the sudo probe: on a
        far link a separate `sudo -n true` costs a round trip that nearly every task paid."""
        if sudo and self.host.sudo and self._sudo_mode is None and not self._sudo_password:
            command = shlex.join(["sudo", "-n", "--", *argv])
            ex = self._exchange(command, stdin=stdin, sink=sink, timeout=timeout)
            if not _sudo_declined(ex):
                self._sudo_mode = "nopasswd"
                return ex
            # sudo refused before argv ran (no output reached sink): ask why, which raises
            # the right error or finds that a password works, then run argv once.
        command, prefix = self._command(argv, sudo)
        return self._exchange(command, prefix=prefix, stdin=stdin, sink=sink, timeout=timeout)

    def _command(self, argv: Sequence[str], sudo: bool) -> tuple[str, bytes]:
        if not sudo or not self.host.sudo:
            return shlex.join(argv), b""
        mode = self._check_sudo()
        if mode == "password":
            # -k: ignore cached credentials, so sudo always reads exactly one line.
            return shlex.join(["sudo", "-k", "-S", "-p", "", "--", *argv]), self._password_line()
        return shlex.join(["sudo", "-n", "--", *argv]), b""

    def _password_line(self) -> bytes:
        return (self._sudo_password or "").encode() + b"\n"

    def _check_sudo(self) -> str:
        """Find how sudo works here before anything is run through it."""
        if self._sudo_mode:
            return self._sudo_mode
        probe = self._exchange("sudo -n true", stdin=b"", timeout=None)
        if probe.exit_code == 0:
            self._sudo_mode = "nopasswd"
            return self._sudo_mode
        user = self.connection.user
        not_allowed = SudoError(f"{self.host.name}: user {user!r} may not use sudo; ask an admin")
        if _sudo_refused(probe.stderr):
            raise not_allowed
        if not self._sudo_password:
            # `sudo -n -v` tells a non-sudoer apart without a password; `true` cannot.
            validate = self._exchange("sudo -n -v", stdin=b"", timeout=None)
            if _sudo_refused(validate.stderr):
                raise not_allowed
            raise SudoError(
                f"{self.host.name}: sudo needs a password for {user!r}; set sudo_password_env "
                "in the inventory or pass fab --prompt-for-sudo-password"
            )
        check = self._exchange("sudo -k -S -p '' -v", stdin=self._password_line(), timeout=None)
        # sudo -n asks a non-sudoer for a password too; only -v says "may not run sudo".
        if _sudo_refused(check.stderr):
            raise not_allowed
        if check.exit_code != 0:
            raise SudoError(f"{self.host.name}: sudo password rejected for {user!r}")
        self._sudo_mode = "password"
        return self._sudo_mode

    # -- transfers ------------------------------------------------------
    def pull(
        self,
        remote_path: str,
        local_path: Path,
        *,
        sudo: bool = False,
        label: str | None = None,
        small: bool = False,
    ) -> RemoteFile:
        """Copy one remote file to local_path; return what the server saw.

        The agent never follows a link another user could plant; `small` refuses a file
        over SMALL_FILE_CAP (an env file that size is an attack, not a config)."""
        op = ["read", remote_path, str(SMALL_FILE_CAP if small else 0)]
        trailer = self._pull(op, local_path, sudo, label or remote_path)
        return _remote_file(remote_path, trailer)

    def pull_small_files(
        self, required: Sequence[str], optional: Sequence[str] = (), *, sudo: bool = False
    ) -> dict[str, PulledFile]:
        """Several small files in one round trip; optional entries may be globs.

        A missing required file fails the whole call; optional ones are simply absent.
        """
        with tempfile.TemporaryDirectory(prefix="zachot-pull-") as scratch:
            archive = Path(scratch) / "files.tar"
            self._pull(["pack", *required, "--", *optional], archive, sudo, "files")
            with tarfile.open(archive) as tar:
                return {
                    f"/{m.name}": _pulled(m, tar.extractfile(m).read())
                    for m in tar.getmembers()
                    if m.isfile()
                }

    def stream_to(
        self,
        argv: Sequence[str],
        write: Callable[[bytes], object],
        *,
        where: Path,
        sudo: bool = False,
        label: str,
        total: int | None = None,
        stdin: bytes | LaterInput = b"",
    ) -> StreamResult:
        """Hand a remote command's stdout (e.g. tar) to write() as it arrives, hashed on both
        ends: only if this returns did every byte arrive unaltered. where: the local file
        write() fills, named when a write fails."""
        trailer = self._receive(["stream", *argv], write, where, sudo, label, total, stdin)
        return StreamResult(trailer["sha256"], trailer["sent"], trailer["stderr"])

    def push(
        self,
        local_path: Path,
        remote_path: str,
        *,
        mode: int = 0o600,
        owner: str = "",
        group: str = "",
        sudo: bool = False,
        label: str | None = None,
    ) -> RemoteFile:
        """Install local_path at remote_path atomically with its mode and owner."""
        digest = _sha256_file(local_path)
        argv = ["write", remote_path, f"{mode:o}", owner, group, digest]
        command, prefix = self._command(_agent(argv), sudo)
        size = local_path.stat().st_size
        with (
            local_path.open("rb") as src,
            output.progress(f"push {label or remote_path}", size) as adv,
        ):
            ex = self._exchange(
                command, prefix=prefix, stdin=_FileInput(src, adv), timeout=IDLE_TIMEOUT
            )
        trailer = self._trailer(ex, remote_path)
        if trailer["sha256"] != digest:
            raise TransferError(f"{self.host.name}: {remote_path}: server stored different bytes")
        return _remote_file(remote_path, trailer)

    # -- root file operations beside the service user's files (agent.py) --
    def copy_file(self, src: str, dst: str, *, private: bool = False, same_as: str = "") -> bool:
        """Copy src to the new file dst (O_EXCL|O_NOFOLLOW, 0600, src's owner and times).

        private: dst's directory must be root-owned 0700 (made if absent). same_as: skip
        the copy when the newest `<same_as><digits>` file there holds the same bytes.
        False when skipped."""
        trailer = self._agent_op(["copy", src, dst, "1" if private else "", same_as], dst)
        return bool(trailer.get("copied"))

    def ensure_private_dir(self, path: str) -> None:
        """path is root-owned 0700 (made so if absent), or a one-line refusal naming the fix."""
        self._agent_op(["private", path], path)

    def remove_private(self, directory: str, names: Sequence[str]) -> None:
        """Remove names from root's 0700 directory, by name at its checked descriptor."""
        self._agent_op(["unlink", directory, *names], directory)

    def set_owner(self, path: str, *, mode: int, owner: str, group: str) -> None:
        """chown and chmod through the file's own descriptor; a planted link is refused."""
        self._agent_op(["own", path, f"{mode:o}", owner, group], path)

    def make_dir(self, path: str, *, mode: int, owner: str, group: str, fix: bool = False) -> bool:
        """Create path if absent (owner and mode set on its fd); True when it was made.

        fix: an existing directory gets owner and mode too (install -d), unless it is root's
        and the owner asked for is not (it is left as it is)."""
        op = ["mkdir", path, f"{mode:o}", owner, group, "1" if fix else ""]
        return bool(self._agent_op(op, path)["made"])

    def digests(self, path: str, suffix: str) -> dict[str, RemoteFile]:
        """path and the `<path><suffix>*` files beside it that are regular files reached
        without an untrusted link, with their sha256, mode and owner."""
        trailer = self._agent_op(["digests", path, suffix], path)
        return {p: _remote_file(p, t) for p, t in trailer["files"].items()}

    def _agent_op(self, op: list[str], what: str) -> dict[str, Any]:
        ex = self._sudo_exchange(_agent(op), True, stdin=b"", timeout=IDLE_TIMEOUT)
        return self._trailer(ex, what)

    def _pull(self, op: list[str], local_path: Path, sudo: bool, label: str) -> dict[str, Any]:
        """op's output into local_path: under a temporary name, fsynced, renamed when whole."""
        local_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        part = local_path.with_name(f".{local_path.name}.part-{random_names.token_hex(4)}")
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as out:
                trailer = self._receive(op, out.write, local_path, sudo, label)
                out.flush()
                os.fsync(out.fileno())
            os.replace(part, local_path)
            _fsync_dir(local_path.parent)
            return trailer
        except OSError as exc:
            raise local_write_error(local_path, exc) from None
        finally:
            part.unlink(missing_ok=True)

    def _receive(
        self,
        op: list[str],
        write: Callable[[bytes], object],
        where: Path,
        sudo: bool,
        label: str,
        total: int | None = None,
        stdin: bytes | LaterInput = b"",
    ) -> dict[str, Any]:
        """op's output to write(), checked against the agent's sha256 once it has ended."""
        digest = hashlib.sha256()
        with output.progress(f"pull {label}", total) as adv:

            def sink(data: bytes) -> None:
                digest.update(data)
                try:
                    write(data)
                except OSError as exc:  # our disk, not the connection
                    raise local_write_error(where, exc) from None
                adv(len(data))

            ex = self._sudo_exchange(_agent(op), sudo, stdin=stdin, sink=sink, timeout=IDLE_TIMEOUT)
            trailer = {**self._trailer(ex, label), "stderr": ex.stderr}
        if trailer["sha256"] != digest.hexdigest():
            raise TransferError(f"{self.host.name}: {label}: checksum mismatch after transfer")
        return trailer

    def _trailer(self, ex: _Exchange, what: str) -> dict[str, Any]:
        text = ex.stderr.decode("utf-8", "replace")
        lines = [ln for ln in text.splitlines() if ln.startswith(TRAILER)]
        if not lines:
            if ex.exit_code == 127 or "python3: not found" in text:
                raise TransferError(
                    f"{self.host.name}: python3 is needed for transfers; install it"
                )
            last = (text.strip().splitlines() or [f"exit {ex.exit_code}"])[-1]
            raise TransferError(f"{self.host.name}: {what}: transfer failed: {last}")
        trailer = json.loads(lines[-1][len(TRAILER) :])
        if not trailer.get("ok"):
            said = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith(TRAILER)]
            why = f" ({said[-1].strip()})" if said else ""
            message = str(trailer.get("message"))
            # The agent's refusals name the path themselves; do not say it twice.
            where = "" if message.startswith(what) else f"{what}: "
            raise TransferError(f"{self.host.name}: {where}{message}{why}")
        return trailer

    # -- concurrency ----------------------------------------------------
    def background(self, call: Callable[[], T]) -> Pending[T]:
        """Start call (exchanges on this connection) on its own channel now; a far link then
        charges one round trip for it and what runs beside it, not one each."""
        self.open()  # once, here: two threads must not each open a connection
        return Pending(call)

    def together(self, *calls: Callable[[], T]) -> list[T]:
        """Run calls side by side on this connection; results in order, the first error raised
        once all have ended."""
        pending = [self.background(call) for call in calls]
        return [p.result() for p in pending]

    # -- the channel ----------------------------------------------------
    def _exchange(
        self,
        command: str,
        *,
        prefix: bytes = b"",
        stdin: Input,
        sink: Callable[[bytes], None] | None = None,
        timeout: float | None,
    ) -> _Exchange:
        transport = self.connection.client.get_transport()
        try:
            chan = transport.open_session(timeout=self.host.connect_timeout)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise TransferError(f"{self.host.name}: connection lost: {exc}") from None
        chan.settimeout(timeout)
        stderr: list[bytes] = []
        drain = threading.Thread(target=_drain_stderr, args=(chan, stderr), daemon=True)
        collected: list[bytes] = []
        try:
            _exec_pipelined(chan, command)
            drain.start()
            _send(chan, prefix, stdin)
            while data := chan.recv(CHUNK):
                (sink or collected.append)(data)
            drain.join()
            # -1: the channel closed without an exit status (paramiko's exit_status_ready()
            # is also true then, so it cannot tell a dead link from a finished command).
            status = chan.recv_exit_status()
            if status == -1 and _connection_died(transport):
                doing = "a transfer" if TRAILER in command else f"`{command[:60]}`"
                raise TransferError(f"{self.host.name}: connection lost during {doing}")
            return _Exchange(status, b"".join(collected), b"".join(stderr))
        except TimeoutError:
            raise TransferError(
                f"{self.host.name}: no data for {timeout:g}s; the connection looks dead"
            ) from None
        except (paramiko.SSHException, EOFError, OSError) as exc:
            why = f": {exc}" if str(exc) else ""  # EOFError says nothing
            raise TransferError(f"{self.host.name}: connection lost{why}") from None
        finally:
            # Closing sends a message; on a dead link that raises and would hide our error.
            with suppress(paramiko.SSHException, EOFError, OSError):
                chan.close()

    # -- tunnels ----------------------------------------------------------
    def direct_channel(self, host: str, port: int, *, timeout: float) -> paramiko.Channel:
        """A direct-tcpip channel on this connection to host:port as the server sees it.

        Raises paramiko's ChannelException (sshd refused, or nothing listens there),
        SSHException, EOFError or OSError (the link)."""
        ssh = self.connection.client.get_transport()
        return ssh.open_channel("direct-tcpip", (host, port), ("127.0.0.1", 0), timeout=timeout)

    def probe_forward(self, host: str, port: int, *, timeout: float) -> tuple[str, str] | None:
        """Open and close one direct-tcpip channel to host:port: None if it works, else
        (why, text) with why one of "prohibited" (sshd forbids forwarding), "refused"
        (nothing listens there), "other" (sshd's text), "link" (the connection)."""
        try:
            channel = self.direct_channel(host, port, timeout=timeout)
        except paramiko.ChannelException as exc:
            why = {1: "prohibited", 2: "refused"}.get(exc.code, "other")  # RFC 4254 codes
            return why, exc.text or ""
        except (paramiko.SSHException, EOFError, OSError) as exc:
            return "link", str(exc)
        channel.close()
        return None

    @contextmanager
    def unix_tunnel(self, host: str, port: int, *, timeout: float) -> Iterator[str]:
        """A Unix socket forwarding each connection to host:port over this SSH connection.

        It lives in a fresh 0700 directory (mkdtemp), so no other local user can connect to
        it or bind its name first, as they could a loopback TCP port. Yields its path;
        everything is closed and removed on the way out."""
        folder = tempfile.mkdtemp(prefix="zachot-tunnel-")
        path = os.path.join(folder, "socket")
        stop = threading.Event()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        args = (listener, (host, port), timeout, stop)
        serve = threading.Thread(target=self._serve_tunnel, args=args, daemon=True)
        try:
            listener.bind(path)
            listener.listen(16)
            listener.settimeout(TUNNEL_POLL)  # so the accept loop sees `stop`
            serve.start()
            yield path
        finally:
            stop.set()
            if serve.is_alive():
                serve.join(timeout=TUNNEL_POLL * 10)
            listener.close()
            shutil.rmtree(folder, ignore_errors=True)

    def _serve_tunnel(
        self,
        listener: socket.socket,
        dest: tuple[str, int],
        timeout: float,
        stop: threading.Event,
    ) -> None:
        pumps: list[threading.Thread] = []
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                break
            try:
                chan = self.direct_channel(*dest, timeout=timeout)
            except (paramiko.SSHException, EOFError, OSError):
                client.close()  # the client sees a closed connection; open_redis probed first
                continue
            pump = threading.Thread(target=_pump, args=(client, chan, stop), daemon=True)
            pump.start()
            pumps.append(pump)
        for pump in pumps:
            pump.join(timeout=TUNNEL_POLL * 10)


class Pending(Generic[T]):
    """A call running on its own thread; result() waits and returns or raises what it did."""

    def __init__(self, call: Callable[[], T]) -> None:
        self._outcome: tuple[bool, Any] = (False, None)
        self._thread = threading.Thread(target=self._run, args=(call,), daemon=True)
        self._thread.start()

    def _run(self, call: Callable[[], T]) -> None:
        try:
            self._outcome = (True, call())
        except BaseException as exc:  # handed to the caller's thread by result()
            self._outcome = (False, exc)

    def result(self) -> T:
        self._thread.join()
        ok, value = self._outcome
        if not ok:
            raise value
        return value


def _hops(conn: Connection) -> Iterator[Connection]:
    """The ProxyJump gateways Fabric made from ~/.ssh/config, nearest to the host first.

    A ProxyCommand (a string) is not a hop we connect: its own ssh checks its keys."""
    gateway = conn.gateway
    while isinstance(gateway, Connection):
        yield gateway
        gateway = gateway.gateway


def _pump(client: socket.socket, chan: paramiko.Channel, stop: threading.Event) -> None:
    """Copy bytes both ways between one tunnel client and its channel until either closes."""
    with client, chan:
        try:
            while not stop.is_set():
                ready, _, _ = select.select([client, chan], [], [], TUNNEL_POLL)
                for end, other in ((client, chan), (chan, client)):
                    if end in ready:
                        data = end.recv(CHUNK)
                        if not data:
                            return
                        other.sendall(data)
        except (paramiko.SSHException, EOFError, OSError):
            return  # the client or the link went away; the redis client reports it


class _FileInput:
    """stdin for a push: the file, with progress."""

    def __init__(self, src: BinaryIO, advance: Callable[[int], None]) -> None:
        self.src, self.advance = src, advance


# What an exchange can send its command: bytes, a file, or bytes given later.
Input = bytes | _FileInput | LaterInput | None


def _send(chan: paramiko.Channel, prefix: bytes, stdin: Input) -> None:
    """prefix (sudo's password line) at once, then stdin, then EOF."""
    if prefix:
        chan.sendall(prefix)
    if isinstance(stdin, LaterInput):
        stdin = stdin.wait()
    if isinstance(stdin, _FileInput):
        while block := stdin.src.read(CHUNK):
            chan.sendall(block)
            stdin.advance(len(block))
    elif stdin:
        chan.sendall(stdin)
    chan.shutdown_write()


def _connection_died(transport: paramiko.Transport) -> bool:
    """A channel that ended without an exit status: did the connection die under it?

    paramiko closes the channels of a dead connection a moment before it marks the
    transport inactive; wait for its thread briefly, or a dead link reads as "exit -1"."""
    transport.join(timeout=LINK_SETTLE)
    return not transport.is_active()


def _drain_stderr(chan: paramiko.Channel, into: list[bytes]) -> None:
    # Read stderr concurrently: both streams filling their windows deadlocks (paramiko #1778).
    try:
        while data := chan.recv_stderr(CHUNK):
            into.append(data)
    except (TimeoutError, OSError, EOFError):
        pass


# What paramiko raises when banner_timeout or the connect timeout ends a handshake.
_BANNER_ERROR = "Error reading SSH protocol banner"
_HANDSHAKE_STALLED = frozenset({_BANNER_ERROR, "No existing session"})


def _closed_before_banner(exc: paramiko.SSHException) -> bool:
    """paramiko words a closed (FIN) or reset (RST) port like a banner timeout; the
    exception under it tells them apart."""
    return str(exc).startswith(_BANNER_ERROR) and isinstance(
        exc.__context__, EOFError | ConnectionError
    )


def _unreachable(exc: Exception) -> bool:
    """No route or no ARP reply: paramiko raises NoValidConnectionsError for it, as for refused."""
    found = getattr(exc, "errors", None)
    errors = list(found.values()) if isinstance(found, dict) else [exc]
    codes = {getattr(e, "errno", None) for e in errors}
    return bool(codes) and codes <= {errno.EHOSTUNREACH, errno.ENETUNREACH}


def _exec_pipelined(chan: paramiko.Channel, command: str) -> None:
    """Channel.exec_command without waiting for the server's answer, as OpenSSH's client does:
    stdin follows at once, saving one round trip per command. A refused request closes the
    channel (paramiko's _request_failed), which reads as no exit status."""
    m = paramiko.Message()
    m.add_byte(paramiko.common.cMSG_CHANNEL_REQUEST)
    m.add_int(chan.remote_chanid)
    m.add_string("exec")
    m.add_boolean(True)
    m.add_string(command)
    chan.transport._send_user_message(m)


# What sudo -n says when it did not run the command (its own refusals, or no sudo at all).
_SUDO_DECLINED = (
    b"sudo: a password is required",
    b"sudo: a terminal is required",
    b"sudo: sorry, you must have a tty",
    b"sudo: not found",
    b"sudo: command not found",
)


def _sudo_declined(ex: _Exchange) -> bool:
    return ex.exit_code != 0 and (
        _sudo_refused(ex.stderr) or any(said in ex.stderr for said in _SUDO_DECLINED)
    )


def _sudo_refused(stderr: bytes) -> bool:
    said = stderr.decode("utf-8", "replace")
    return any(s in said for s in ("not in the sudoers", "not allowed", "may not run sudo"))


def _agent(argv: Sequence[str]) -> list[str]:
    # -I: no cwd or script dir on sys.path, no PYTHON* variables, no user site. -S: no site
    # module either (the agent is stdlib only): about 20 ms less per exchange on a box.
    # One word, so the argv keeps its shape (fault injection finds op and path by position).
    return ["python3", "-IS", "-c", AGENT_SOURCE, *argv]


def _remote_file(path: str, trailer: dict[str, Any]) -> RemoteFile:
    return RemoteFile(
        path=path,
        sha256=trailer["sha256"],
        size=trailer["size"],
        mode=trailer["mode"],
        owner=trailer["owner"],
        group=trailer["group"],
        mtime=trailer["mtime"],
    )


def _pulled(member: tarfile.TarInfo, data: bytes) -> PulledFile:
    digest = hashlib.sha256(data).hexdigest()
    remote = RemoteFile(
        f"/{member.name}", digest, len(data), member.mode, member.uname, member.gname, member.mtime
    )
    return PulledFile(remote, data)


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as src:
        while block := src.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
