"""Sandbox fleet: real Debian 12 boxes (systemd-nspawn in network namespaces) that stand in
for zachot's servers. Entry points: sandbox.tasks (invoke), sandbox.fleet, box_exec.

Measured on the project's machine (2 vCPU): first `up` from nothing about 90 s (debootstrap
77 s, layers and boot about 10 s); cached `up` from down about 2.5 s; `up` when already
running about 1 s; `reset <box>` about 1-2 s.
"""

from sandbox.box import box_exec
from sandbox.config import Paths, fleet_specs

__all__ = ["Paths", "box_exec", "fleet_specs"]
