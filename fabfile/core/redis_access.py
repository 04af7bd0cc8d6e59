"""Talk to a host's Redis through an SSH tunnel on the host's one connection.

No Redis port is ever exposed: Fabric's forward_local listens on a free
loopback port here and opens a direct-tcpip channel on the Transport's SSH
connection for each client connection. Redis errors become one clear line
that says which host and what to check.
"""

from __future__ import annotations

import errno
import posixpath
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

import paramiko
from invoke.exceptions import ThreadException

from . import output, secrets
from .errors import UsageError, ZachotError
from .transport import Transport

if TYPE_CHECKING:  # the client library loads only when a task talks to Redis
    import redis

DEFAULT_PORT = 6379
# Waiting for the tunnel's listener to bind; Fabric starts it in a thread.
LISTEN_WAIT = 5.0
# direct-tcpip open failures (RFC 4254 §5.1)
_PROHIBITED, _CONNECT_FAILED = 1, 2


class RedisUnavailable(ZachotError):
    """Redis did not answer, refused us, or failed a command."""


@dataclass(frozen=True)
class RedisTarget:
    """Where Redis listens, as seen from the host (the tunnel's far end)."""

    host: str
    port: int
    db: int
    username: str | None = None
    password: str | None = None
    tls: bool = False

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class RedisServer:
    """What backups and restores need to know about the running server."""

    version: str
    dbsize: int
    dir: str
    dbfilename: str
    appendonly: bool
    appenddirname: str | None  # Redis 7 keeps the AOF in this directory under dir
    config_readable: bool  # False: CONFIG GET is renamed or denied; paths are the inventory's

    @property
    def rdb_path(self) -> str:
        return posixpath.join(self.dir, self.dbfilename)

    @property
    def aof_path(self) -> str | None:
        return posixpath.join(self.dir, self.appenddirname) if self.appenddirname else None

    def as_meta(self) -> dict[str, Any]:
        return {
            "redis_version": self.version,
            "dbsize": self.dbsize,
            "appendonly": self.appendonly,
            "appenddirname": self.appenddirname,
            "rdb_path": self.rdb_path,
        }


def parse_url(url: str) -> RedisTarget:
    """redis[s]://[[user]:password@]host[:port][/db] -> RedisTarget (db also from ?db=)."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        raise UsageError(
            f"redis.url: {parts.scheme or 'no'} scheme cannot go through an SSH tunnel; "
            "give redis://HOST:PORT/DB as the host sees it"
        )
    try:
        port = parts.port or DEFAULT_PORT
        path = parts.path.strip("/")
        db = int(path or parse_qs(parts.query).get("db", ["0"])[0])
    except ValueError:
        raise UsageError("redis.url: the port and the database must be numbers") from None
    password = unquote(parts.password) if parts.password else None
    if password:
        secrets.register([password])  # never printed, even inside an error from redis
    return RedisTarget(
        host=parts.hostname or "127.0.0.1",
        port=port,
        db=db,
        username=unquote(parts.username) if parts.username else None,
        password=password,
        tls=parts.scheme == "rediss",
    )


def describe(transport: Transport) -> str:
    """How errors name this Redis: "Redis on prod (127.0.0.1:6379 via SSH)"."""
    target = parse_url(transport.host.redis.url)
    return f"Redis on {transport.host.name} ({target.where} via SSH)"


def free_port() -> int:
    # Fabric binds the port itself, so there is a short window in which another
    # local process could take it; _ping then fails clearly rather than hanging.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def open_redis(transport: Transport, *, timeout: float = 10.0) -> Iterator[redis.Redis]:
    """A redis client for host.redis.url through an SSH tunnel, PINGed before use.

    Any redis error inside the block becomes a RedisUnavailable naming the host.
    The client is closed and the tunnel torn down on the way out.
    """
    import redis

    target = parse_url(transport.host.redis.url)
    where = describe(transport)
    _probe(transport, target, where, timeout)
    port = free_port()
    client = _client(target, port, timeout)
    tunnel = transport.connection.forward_local(
        port, remote_port=target.port, remote_host=target.host, local_host="127.0.0.1"
    )
    tunnel.__enter__()
    ok = False
    try:
        _ping(client, timeout)
        yield client
        ok = True
    except redis.RedisError as exc:
        raise explain(exc, where, timeout) from None
    finally:
        client.close()
        try:
            tunnel.__exit__(None, None, None)
        except ThreadException as exc:
            # Every reply was read, so a tunnel thread failing at teardown lost nothing.
            if ok:
                output.warn(f"{where}: SSH tunnel closed with an error: {_thread_error(exc)}")


def wait_until_up(transport: Transport, *, timeout: float, interval: float = 0.5) -> str:
    """Retry until Redis answers PING (e.g. after a start); return its version."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with open_redis(transport, timeout=min(10.0, timeout)) as client:
                return str(client.info("server").get("redis_version", "?"))
        except RedisUnavailable as exc:
            if time.monotonic() >= deadline:
                raise RedisUnavailable(f"{exc.message} (waited {timeout:g} s)") from None
            time.sleep(interval)


def server(client: redis.Redis, *, fallback_dir: str) -> RedisServer:
    """Version, size and the data files; CONFIG GET when allowed, else the inventory's dir."""
    import redis

    info = client.info()
    try:
        config = client.config_get("dir") | client.config_get("dbfilename")
        config |= client.config_get("appenddirname")  # {} before Redis 7
        config = {_text(k): _text(v) for k, v in config.items()}
        readable = "dir" in config
    except redis.ResponseError:
        config, readable = {}, False  # managed Redis often renames CONFIG
    return RedisServer(
        version=str(info.get("redis_version", "?")),
        dbsize=int(client.dbsize()),
        dir=config.get("dir") or fallback_dir,
        dbfilename=config.get("dbfilename") or "dump.rdb",
        appendonly=bool(info.get("aof_enabled")),
        appenddirname=config.get("appenddirname") or None,
        config_readable=readable,
    )


def explain(exc: Exception, where: str, timeout: float) -> RedisUnavailable:
    """One line for a redis-py error; never the local tunnel port, which means nothing."""
    import redis

    text = str(exc)
    if isinstance(exc, redis.AuthenticationError) or "NOAUTH" in text or "WRONGPASS" in text:
        why = "authentication failed; give the password in redis.url (redis://:PASSWORD@host)"
        return RedisUnavailable(f"{where}: {why}")
    if isinstance(exc, redis.TimeoutError):
        return RedisUnavailable(f"{where} does not answer PING: no reply in {timeout:g} s")
    if isinstance(exc, redis.ConnectionError):
        if _refused(exc):
            why = "the tunnel's local end did not open (port taken?); try again"
        elif "closed" in text.lower():
            why = "the connection was closed; is that port Redis, and is TLS (rediss) right?"
        else:
            why = text.rstrip(".")
        return RedisUnavailable(f"{where} does not answer PING: {why}")
    return RedisUnavailable(f"{where}: {text}")


# -- internals ------------------------------------------------------------


def _probe(transport: Transport, target: RedisTarget, where: str, timeout: float) -> None:
    """Open one direct-tcpip channel first: a refused one would kill Fabric's tunnel thread
    and leave the client waiting, so find out here, quickly and clearly."""
    ssh = transport.connection.client.get_transport()
    try:
        channel = ssh.open_channel(
            "direct-tcpip", (target.host, target.port), ("127.0.0.1", 0), timeout=timeout
        )
    except paramiko.ChannelException as exc:
        if exc.code == _PROHIBITED:
            user = transport.connection.user
            raise RedisUnavailable(
                f"{where}: sshd refuses port forwarding; allow it for {user!r} "
                "(AllowTcpForwarding yes)"
            ) from None
        if exc.code == _CONNECT_FAILED:
            unit = transport.host.redis.unit
            raise RedisUnavailable(
                f"{where} does not answer PING: connection refused on the server; "
                f"is {unit} running?"
            ) from None
        raise RedisUnavailable(f"{where} does not answer PING: {exc.text}") from None
    except (paramiko.SSHException, EOFError, OSError) as exc:
        if ssh.is_active():  # sshd could not reach Redis in time
            raise RedisUnavailable(f"{where} does not answer PING: {exc}") from None
        raise RedisUnavailable(f"{where}: SSH connection lost: {exc}") from None
    channel.close()


def _client(target: RedisTarget, port: int, timeout: float) -> redis.Redis:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis(
        host="127.0.0.1",
        port=port,
        db=target.db,
        username=target.username,
        password=target.password,
        ssl=target.tls,
        # The certificate names the server, not our end of the tunnel.
        ssl_check_hostname=False,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),  # our own retry is in _ping; errors should be fast
    )


def _ping(client: redis.Redis, timeout: float) -> None:
    """PING, retrying only while the tunnel's listener is not bound yet."""
    import redis

    deadline = time.monotonic() + min(LISTEN_WAIT, timeout)
    while True:
        try:
            client.ping()
            return
        except redis.ConnectionError as exc:
            if not _refused(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


def _refused(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if getattr(seen, "errno", None) == errno.ECONNREFUSED:
            return True
        seen = seen.__cause__ or seen.__context__
    return "Connection refused" in str(exc)


def _thread_error(exc: ThreadException) -> str:
    wrappers = getattr(exc, "exceptions", None) or []
    return "; ".join(f"{type(w.value).__name__}: {w.value}" for w in wrappers) or str(exc)


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
