"""Talk to a host's Redis through an SSH tunnel on the host's one connection.

No Redis port is ever exposed, on either side: Transport.unix_tunnel listens on
a Unix socket in a private (0700) directory here and opens a direct-tcpip channel
on the host's SSH connection for each client connection, so no other local user
can reach the tunnel or race for it and receive AUTH. Redis errors become one
clear line that says which host and what to check.
"""

from __future__ import annotations

import posixpath
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

from . import secrets
from .errors import UsageError, ZachotError
from .transport import Transport

if TYPE_CHECKING:  # the client library loads only when a task talks to Redis
    import redis

DEFAULT_PORT = 6379


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
    with transport.unix_tunnel(target.host, target.port, timeout=timeout) as path:
        client = _client(target, path, timeout)
        try:
            client.ping()
            yield client
        except redis.RedisError as exc:
            raise explain(exc, where, timeout) from None
        finally:
            client.close()


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


def confine(found: RedisServer, data_dir: str, *, host: str, doing: str) -> RedisServer:
    """Refuse data paths outside redis.data_dir: any local client may CONFIG SET dir and
    dbfilename (Redis <= 6, or protected configs allowed), and root acts on these paths.

    doing: what the task does there, e.g. "restore.redis only moves files".
    """
    root = posixpath.normpath(data_dir)
    names = {"dbfilename": found.dbfilename, "appenddirname": found.appenddirname or "x"}
    inside = found.dir.startswith("/") and ".." not in found.dir.split("/")
    inside = inside and (posixpath.normpath(found.dir) + "/").startswith(root.rstrip("/") + "/")
    bad = "" if inside else f"dir={found.dir}"
    bad = bad or next((f"{k}={v}" for k, v in names.items() if not _plain_name(v)), "")
    if bad:
        raise UsageError(
            f"Redis on {host} says {output_safe(bad)}; {doing} under redis.data_dir ({root}); "
            "fix Redis's config or the inventory"
        )
    return found


def explain(exc: Exception, where: str, timeout: float) -> RedisUnavailable:
    """One line for a redis-py error; never the local tunnel socket, which means nothing."""
    import redis

    text = str(exc)
    if isinstance(exc, redis.AuthenticationError) or "NOAUTH" in text or "WRONGPASS" in text:
        why = "authentication failed; give the password in redis.url (redis://:PASSWORD@host)"
        return RedisUnavailable(f"{where}: {why}")
    if isinstance(exc, redis.TimeoutError):
        return RedisUnavailable(f"{where} does not answer PING: no reply in {timeout:g} s")
    if isinstance(exc, redis.ConnectionError):
        if "closed" in text.lower():
            why = "the connection was closed; is that port Redis, and is TLS (rediss) right?"
        else:
            why = text.rstrip(".")
        return RedisUnavailable(f"{where} does not answer PING: {why}")
    return RedisUnavailable(f"{where}: {text}")


# -- internals ------------------------------------------------------------


def _probe(transport: Transport, target: RedisTarget, where: str, timeout: float) -> None:
    """Open one direct-tcpip channel first: inside the tunnel a refused channel is only a
    closed connection to the client, so find out here, quickly and clearly."""
    problem = transport.probe_forward(target.host, target.port, timeout=timeout)
    if problem is None:
        return
    why, text = problem
    if why == "prohibited":
        user = transport.connection.user
        raise RedisUnavailable(
            f"{where}: sshd refuses port forwarding; allow it for {user!r} (AllowTcpForwarding yes)"
        )
    if why == "refused":
        unit = transport.host.redis.unit
        raise RedisUnavailable(
            f"{where} does not answer PING: connection refused on the server; is {unit} running?"
        )
    if why == "link" and not transport.is_open:
        raise RedisUnavailable(f"{where}: SSH connection lost: {text}")
    raise RedisUnavailable(f"{where} does not answer PING: {text}")  # incl. sshd's timeout


def _client(target: RedisTarget, path: str, timeout: float) -> redis.Redis:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    common: dict[str, Any] = {
        "path": path,
        "db": target.db,
        "username": target.username,
        "password": target.password,
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "retry": Retry(NoBackoff(), 0),  # errors should be fast; callers retry if they want
        # No CLIENT SETINFO on connect: two round trips through the tunnel, for a name.
        "driver_info": None,
    }
    if target.tls:
        # TLS inside the tunnel; the certificate names the server, not our end of it.
        common |= {
            "connection_class": _unix_tls(),
            "host": target.host,
            "ssl_check_hostname": False,
        }
    else:
        common["connection_class"] = redis.UnixDomainSocketConnection
    return redis.Redis(connection_pool=redis.ConnectionPool(**common))


def _unix_tls() -> type:
    import redis

    class UnixTLS(redis.SSLConnection):
        """redis-py's TLS connection, over the tunnel's Unix socket instead of TCP."""

        def __init__(self, path: str = "", **kwargs: Any) -> None:
            self.path = path
            super().__init__(**kwargs)

        def _connect(self):  # type: ignore[no-untyped-def]
            sock = redis.UnixDomainSocketConnection._connect(self)  # type: ignore[arg-type]
            try:
                return self._wrap_socket_with_ssl(sock)
            except (OSError, redis.RedisError):
                sock.close()
                raise

    return UnixTLS


def _plain_name(name: str) -> bool:
    return name not in ("", ".", "..") and "/" not in name and "\0" not in name


def output_safe(text: str, limit: int = 200) -> str:
    """A value Redis reported, printable: no control characters reach the terminal."""
    return "".join(ch if ch.isprintable() else "?" for ch in text)[:limit]


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
