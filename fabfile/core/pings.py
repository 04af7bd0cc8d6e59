"""Pings in the healthchecks.io protocol, so a routine that stops running is noticed.

<url>/start when the routine begins, <url> when it succeeds, <url>/<exit code> when it
fails (https://healthchecks.io/docs/http_api/). Each ping is an empty-bodied GET: never a
secret, never a log line. A monitor that cannot be reached costs a warning and a few
seconds, never the backup: the routine's exit code is its own.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Callable
from urllib.parse import urlsplit

from . import output

TIMEOUT = 10.0  # seconds per attempt, as healthchecks.io's own examples use
RETRIES = 3
PAUSE = 1.0  # seconds before a retry, doubled each time
Event = str | int  # "start", "success", or the failing exit code


def url_for(base: str, event: Event) -> str:
    stem = base.rstrip("/")
    if event == "success":
        return stem
    if event == "start" or (isinstance(event, int) and 0 < event < 256):
        return f"{stem}/{event}"
    raise ValueError(f"not a ping event: {event!r}")


def _where(url: str) -> str:
    # The path holds the check's secret UUID or ping key: name only the server.
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def ping(
    base: str | None,
    event: Event,
    *,
    timeout: float = TIMEOUT,
    retries: int = RETRIES,
    pause: float = PAUSE,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """Send one ping; True when the monitor answered 2xx. None as base: monitoring is off."""
    if not base:
        return False
    url = url_for(base, event)
    request = urllib.request.Request(url, headers={"User-Agent": "zachot-ops backup.routine"})
    why = ""
    for attempt in range(retries + 1):
        if attempt:
            sleep(pause * 2 ** (attempt - 1))
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:
                if 200 <= answer.status < 300:
                    return True
                why = f"HTTP {answer.status}"
        except urllib.error.HTTPError as exc:
            why = f"HTTP {exc.code}"
            if 400 <= exc.code < 500 and exc.code != 429:
                break  # a wrong URL stays wrong; retrying only delays the routine
        except (OSError, ValueError) as exc:  # refused, timed out, DNS
            why = type(exc).__name__ if not str(exc) else " ".join(str(exc).split())
    output.warn(f"healthcheck ping {event!r} to {_where(url)} failed ({why}) after "
                f"{attempt + 1} attempt(s); check backup.healthcheck_url")  # fmt: skip
    return False
