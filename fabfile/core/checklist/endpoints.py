"""The endpoint item: the API's health URL answers 200, asked from the host itself."""

from __future__ import annotations

from ..model import Host
from .model import FAIL, OK, HostFacts, Row
from .stack import restart_fix


def rows(host: Host, facts: HostFacts) -> list[Row]:
    url = host.layout.api_health_url
    if facts.health == "200":
        return [Row("endpoints", url, OK, "200")]
    return [Row("endpoints", url, FAIL, f"answered {facts.health}", restart_fix(host, facts))]
